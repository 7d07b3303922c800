"""What a Node-RED environment's settings do, without pydantic (see :mod:`reconciler.configbase`): one
copy for the model of :mod:`.settings` and the frozen view a cached config holds."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from reconciler.canonical import Rules
from reconciler.configbase import EnvironmentMethods

if TYPE_CHECKING:
    from .driver import NodeRedDriver

__all__ = ["NodeRedMethods"]


class NodeRedMethods(EnvironmentMethods):
    __slots__ = ()

    def exclusive_location(self: Any) -> tuple[str, str, str]:
        # Two environments on one instance would each take the other's tabs for their own (prune deletes them).
        return "url", "Node-RED instance", self.url.rstrip("/").lower()

    @property
    def rules(self: Any) -> Rules:
        """The environment's rules, plus: every list of nodes is sorted by id (the order means nothing), and a
        global config node's z (Node-RED 1.x wrote "z": "") is dropped."""
        return _rules(tuple(self.ignore), tuple(self.sort.items()))

    def build_driver(self: Any) -> "NodeRedDriver":
        from .driver import NodeRedDriver

        return NodeRedDriver(
            self.url,
            self.flow_identity,
            self.rules,
            token_env=self.token_env,
            username_env=self.username_env,
            password_env=self.password_env,
            timeout=self.timeout,
            attempts=self.attempts,
            backoff=self.backoff,
            check_types=self.check_types,
            version_env=self.version_env,
            default_version=self.default_version,
            deploy=self.deploy,
            health_check=self.health_check,
            health_settle=self.health_settle,
            restore_unhealthy=self.on_unhealthy == "restore",
        )


@lru_cache(maxsize=64)
def _rules(ignore: tuple[str, ...], sort: tuple[tuple[str, str], ...]) -> Rules:
    """One Rules per set of settings (immutable; reading each flow asks for them, and making them parses
    every pointer)."""
    from .mapping import CANONICAL_IGNORE, NODE_LISTS_BY_ID

    return Rules.of((*CANONICAL_IGNORE, *ignore), {**NODE_LISTS_BY_ID, **dict(sort)})
