"""The settings of a directory environment (the ``[[environment]]`` table with ``driver = "directory"``)."""

# No `from __future__ import annotations`: pydantic would compile and eval each field's annotation string
# when the model class is created (every command's import of the config); evaluated here, they are bytecode.

from pathlib import Path
from typing import Literal

from pydantic import Field

from reconciler.envconfig import EnvironmentConfig

from .settingsbase import DirectoryMethods

__all__ = ["DirectoryEnvironment", "SETTINGS"]


class DirectoryEnvironment(DirectoryMethods, EnvironmentConfig):
    """An environment that is a folder of JSON exports."""

    driver: Literal["directory"]
    path: Path = Field(description="The folder (it must exist: a missing folder is an error, never 'no flows').")


SETTINGS = DirectoryEnvironment
