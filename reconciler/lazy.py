"""A package's names imported when first used (PEP 562), in one place for every package that does it.

A command whose config comes from its cache (:mod:`reconciler.configcache`) builds drivers and sinks
from views of their settings, so a package must not import its pydantic settings models (or its HTTP
client) just because another of its names was used. Such a package names where each of its names lives::

    __getattr__ = lazy_attributes(__name__, {"DirectoryDriver": "driver", "SETTINGS": "settings"})

``where[name]`` is the submodule holding ``name``, or None when ``name`` is that submodule itself. The
value is kept in the package once imported, so the hook runs once per name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, where: Mapping[str, str | None]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each name of ``where`` imported from its submodule when first named."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        sub = where[name]
        module = import_module(f"{package}.{sub or name}")
        value = module if sub is None else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
