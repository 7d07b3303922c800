"""What a flink-sql environment's settings do, without pydantic (see :mod:`reconciler.configbase`): one
copy for the model of :mod:`.settings` and the frozen view a cached config holds."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from reconciler.configbase import EnvironmentMethods

if TYPE_CHECKING:
    from .driver import FlinkSqlDriver

__all__ = ["FlinkSqlMethods"]


class FlinkSqlMethods(EnvironmentMethods):
    __slots__ = ()

    PATH_FIELDS = (*EnvironmentMethods.PATH_FIELDS, "path")

    def exclusive_location(self: Any) -> tuple[str, str, str]:
        return "path", "folder", os.path.realpath(self.path)

    def build_driver(self: Any) -> "FlinkSqlDriver":
        from .driver import FlinkSqlDriver

        return FlinkSqlDriver(self.path)
