"""Structured logging: JSON lines for machines, readable lines on a terminal.

Logs go to stderr so that command output on stdout stays clean for scripts.

structlog (with its standard-library integration, which imports asyncio) costs ~50 ms of a process's
start, and a one-shot command at the default level (warning) usually logs nothing. So the modules log
through :func:`get_logger`'s proxy: it drops an event below the level :func:`setup_logging` set without
importing anything, and imports and configures structlog when the first event at an enabled level is
emitted (the configuration :func:`setup_logging` was given, taken then: same processors, same stream,
same renderer, same redaction). :func:`bound_contextvars` binds context for every event emitted inside
it, as ``structlog.contextvars.bound_contextvars`` does, without importing structlog until one is.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from reconciler.redaction import Redactor

__all__ = ["setup_logging", "get_logger", "bound_contextvars", "LazyLogger"]

#: the standard library's levels by name (``logging`` itself is not imported for them)
_NAMED = {"NOTSET": 0, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40, "CRITICAL": 50, "FATAL": 50}
#: each method's level, as structlog's filtering bound logger has them
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "exception": 40, "critical": 50,
           "fatal": 50}

# setup_logging's configuration while structlog is not imported yet: (its level, its settings).
# None: structlog is configured (or setup_logging was not called: structlog's own defaults apply).
_pending: tuple[int, dict[str, Any]] | None = None
_applying = threading.Lock()  # the service's threads: none emits through structlog before it is configured
_context: ContextVar[tuple[tuple[str, Any], ...]] = ContextVar("reconciler_log_context", default=())


def setup_logging(level: str = "warning", fmt: Literal["auto", "json", "console"] = "auto", *,
                  redactor: Redactor | None = None) -> None:
    """``redactor``: known secret values are masked in every event before it is written.

    What the process's streams are (the redacting wrapper, a terminal or not) is taken now; structlog
    is configured now if it is imported already, else when the first enabled event is emitted."""
    global _pending
    settings = {"json": fmt == "json" or (fmt == "auto" and not sys.stderr.isatty()), "redactor": redactor,
                "level": _NAMED.get(level.upper(), 30), "file": sys.stderr}
    _pending = (settings["level"], settings)
    if "structlog" in sys.modules:
        _apply()


def reset() -> None:
    """Forget a configuration not applied yet (tests: one test's ``main()`` must not set the next one's level)."""
    global _pending
    _pending = None


def _apply() -> Any:
    """structlog, configured as :func:`setup_logging` was told (once)."""
    global _pending
    import structlog

    if _pending is None:
        return structlog
    with _applying:
        if _pending is None:
            return structlog
        s = _pending[1]
        if structlog.is_configured():
            _pending = None
            return structlog  # configured by someone else since setup_logging (a test's capture_logs): theirs is later
        renderer = structlog.processors.JSONRenderer() if s["json"] else structlog.dev.ConsoleRenderer(colors=False)
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                *([s["redactor"].processor] if s["redactor"] is not None else []),
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(s["level"]),
            logger_factory=structlog.PrintLoggerFactory(file=s["file"]),
            cache_logger_on_first_use=False,
        )
        _pending = None  # last: another thread's event below the level is still dropped without structlog
    return structlog


class LazyLogger:
    """``structlog.get_logger(name)``, imported when an event at an enabled level is first emitted."""

    __slots__ = ("_name", "_real")

    def __init__(self, name: str):
        self._name = name
        self._real: Any = None

    def _emit(self, method: str, event: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        pending = _pending
        if pending is not None and _LEVELS[method] < pending[0]:
            return None  # what the filtering logger structlog would be configured with drops
        real = self._logger()
        bound = _context.get()
        if not bound:
            return getattr(real, method)(event, *args, **kw)
        with sys.modules["structlog"].contextvars.bound_contextvars(**dict(bound)):
            return getattr(real, method)(event, *args, **kw)

    def _logger(self) -> Any:
        structlog = _apply()
        if self._real is None:
            self._real = structlog.get_logger(self._name)
        return self._real

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("debug", event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("info", event, args, kw)

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("warning", event, args, kw)

    warn = warning

    def error(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("error", event, args, kw)

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("exception", event, args, kw)  # called in the except block: exc_info is still there

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("critical", event, args, kw)

    fatal = critical

    def __getattr__(self, name: str) -> Any:  # bind, new, ...: structlog's own
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._logger(), name)


def get_logger(name: str) -> LazyLogger:
    return LazyLogger(name)


@contextmanager
def bound_contextvars(**kw: Any) -> Iterator[None]:
    """``structlog.contextvars.bound_contextvars(**kw)`` for the events :class:`LazyLogger` emits inside
    (each is emitted with these bound in structlog's context: the same fields, merged the same way)."""
    token = _context.set((*_context.get(), *kw.items()))
    try:
        yield
    finally:
        _context.reset(token)
