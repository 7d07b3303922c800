"""The health gate of an http environment whose mapping declares ``[environment.health]``.

After a write the engine asks the driver (:class:`~reconciler.drivers.HealthChecked`) whether the
platform runs the written flows. This driver reads each flow's state at the health route until it is
one of ``healthy`` or ``unhealthy``, or the environment's ``health_timeout`` passes; the engine then
restores the previous version of the unhealthy ones (``on_unhealthy = "restore"``) or reports them,
and quarantines the commit for them, as for Node-RED. A state the platform never settles counts as
unhealthy at the deadline, saying what it last answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reconciler import pointers
from reconciler.canonical import InvalidJSON, parse_json
from reconciler.errors import RetryableError
from reconciler.flows import FlowKey

from .driver import HttpDriver
from .mapping import expand

if TYPE_CHECKING:
    from .settings import HttpEnvironment

__all__ = ["HealthCheckedHttpDriver"]

_MAX_QUOTE = 300


class HealthCheckedHttpDriver(HttpDriver):
    """An :class:`HttpDriver` with the health gate of its mapping's health route."""

    def __init__(self, env: "HttpEnvironment", *, environ: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        super().__init__(env, environ=environ, sleep=sleep)
        assert env.health is not None
        self._route = env.health
        self._pause, self._clock = sleep, clock

    def check_health(self, keys: Sequence[FlowKey], timeout: float) -> dict[FlowKey, str]:
        """The written flows the platform does not report running within ``timeout`` seconds, with why."""
        deadline = self._clock() + timeout
        waiting: dict[FlowKey, str] = {k: "no answer yet" for k in keys}
        bad: dict[FlowKey, str] = {}
        while waiting:
            for key in sorted(waiting):
                verdict, why = self._state_of(key)
                if verdict == "healthy":
                    del waiting[key]
                elif verdict == "unhealthy":
                    bad[key] = why
                    del waiting[key]
                else:
                    waiting[key] = why
            if not waiting or self._clock() >= deadline:
                break
            self._pause(min(self._route.interval, max(0.0, deadline - self._clock())))
        for key, why in waiting.items():
            bad[key] = f"not reported healthy within {timeout:g} s ({why})"
        return bad

    def _state_of(self, key: FlowKey) -> tuple[str, str]:
        """("healthy" | "unhealthy" | "waiting", what the platform said)."""
        route = self._route
        id_ = None
        if "{id}" in route.path:
            ids, _ = self._ids_of(key)
            if len(ids) != 1:
                return "waiting", "its id is not known yet" if not ids else f"{len(ids)} flows of this name"
            id_ = ids[0]
        path = expand(route.path, self.mapping.values(key, id_))
        try:
            resp = self._http.request("GET", self._http.target(path))
        except RetryableError as exc:  # down after the retries: say so at the deadline
            return "waiting", str(exc)
        if resp.status == 404:
            return "waiting", "HTTP 404 (not deployed yet)"
        if not 200 <= resp.status < 300:
            return "waiting", f"HTTP {resp.message}"[:_MAX_QUOTE]
        try:
            doc = parse_json(resp.body)
        except InvalidJSON:
            return "waiting", "the answer is not JSON"
        state = pointers.get(doc, route.state)
        if state is pointers.MISSING:
            return "waiting", f"no state at {route.state or '/'}"
        said = _quote(state, pointers.get(doc, route.message) if route.message is not None else pointers.MISSING)
        if _member(state, route.healthy):
            return "healthy", said
        if _member(state, route.unhealthy):
            return "unhealthy", said
        return "waiting", said


def _member(value: Any, allowed: tuple[Any, ...]) -> bool:
    return any(type(value) is type(a) and value == a for a in allowed)


def _quote(state: Any, message: Any) -> str:
    text = f"state {json.dumps(state, ensure_ascii=False)}"
    if message is not pointers.MISSING and message not in (None, ""):
        text += f": {message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)}"
    return text[:_MAX_QUOTE]
