"""The settings of a directory environment (the ``[[environment]]`` table with ``driver = "directory"``)."""

# No `from __future__ import annotations`: pydantic would compile and eval each field's annotation string
# when the model class is created (every command's import of the config); evaluated here, they are bytecode.

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from reconciler.envconfig import EnvironmentConfig

from .driver import DirectoryDriver

__all__ = ["DirectoryEnvironment", "SETTINGS"]


class DirectoryEnvironment(EnvironmentConfig):
    """An environment that is a folder of JSON exports."""

    driver: Literal["directory"]
    path: Path = Field(description="The folder (it must exist: a missing folder is an error, never 'no flows').")

    PATH_FIELDS: ClassVar[tuple[str, ...]] = (*EnvironmentConfig.PATH_FIELDS, "path")

    def exclusive_location(self) -> tuple[str, str, str]:
        # By real path: symlinks, '..' and bind paths name one folder.
        return "path", "folder", os.path.realpath(self.path)

    def build_driver(self) -> DirectoryDriver:
        return DirectoryDriver(self.path, self.flow_identity, self.rules)


SETTINGS = DirectoryEnvironment
