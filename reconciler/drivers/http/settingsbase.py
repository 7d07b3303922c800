"""What an http environment's settings do, without pydantic (see :mod:`reconciler.configbase`): one copy
for the models of :mod:`.settings` and the frozen views a cached config holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.configbase import EnvironmentMethods
from reconciler.flows import Identity

if TYPE_CHECKING:
    from .driver import HttpDriver

__all__ = ["HttpMethods", "ListRouteMethods"]


class ListRouteMethods:
    __slots__ = ()

    @property
    def rechecked(self: Any) -> bool:
        return self.cursor is not None if self.recheck is None else self.recheck


class HttpMethods(EnvironmentMethods):
    __slots__ = ()

    @property
    def flow_identity(self: Any) -> Identity:
        return Identity(self.identity.name, self.identity.version, self.identity.fixed_version)

    def build_driver(self: Any) -> "HttpDriver":
        from .driver import HttpDriver  # here, not at the top: the driver builds on the settings' models

        if self.health is not None:
            from .health import HealthCheckedHttpDriver

            return HealthCheckedHttpDriver(self)
        return HttpDriver(self)
