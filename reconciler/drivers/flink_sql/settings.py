"""The settings of a Flink SQL environment (``[[environment]]`` with ``driver = "flink-sql"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from reconciler.envconfig import EnvironmentConfig

from .driver import ONE_WAY
from .settingsbase import FlinkSqlMethods

__all__ = ["FlinkSqlEnvironment", "SETTINGS"]


class FlinkSqlEnvironment(FlinkSqlMethods, EnvironmentConfig):
    """An environment that is a folder of Flink SQL scripts rendered from event-processing flows."""

    driver: Literal["flink-sql"]
    path: Path = Field(description="The folder of <name>@<version>.sql scripts (it must exist), e.g. the one a "
                                   "Flink SQL runner job reads.")

    @model_validator(mode="after")
    def _one_way(self) -> "FlinkSqlEnvironment":
        if self.drift == "adopt":
            raise ValueError(f'drift = "adopt" is not possible for a flink-sql environment: {ONE_WAY}. '
                             'Use drift = "restore" or "report"')
        return self


SETTINGS = FlinkSqlEnvironment
