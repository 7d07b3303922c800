"""The last guard on everything a process prints, logs or serves: known secret values masked.

Messages are built to name secrets, never quote them; but a value can still reach a
line that was not written for it (a flow *named* after a password, a platform's
error echoing a request). A :class:`Redactor` collects the secret values a process
has loaded (the engine adds each environment's when it reads them) and masks them
in text: the CLI wraps stdout and stderr with :class:`RedactingStream`, logging
runs every event through :meth:`Redactor.processor`, and the service passes its
HTTP answers through :meth:`Redactor.json`. Values shorter than four characters
are not searched (they would match everywhere).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["Redactor", "RedactingStream", "PassThrough", "MASK", "MIN_SECRET"]

MASK = "***"
MIN_SECRET = 4


class Redactor:
    """The secret values one process knows, and the masking of them."""

    def __init__(self, values: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET}
        with self._lock:
            if new - set(self._values):
                # longest first, so a secret containing another is masked whole
                self._values = tuple(sorted(set(self._values) | new, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._values)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def json(self, obj: Any) -> Any:
        """A copy of JSON-like data with every string (keys included) masked."""
        if not self._values:
            return obj
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, dict):
            return {self(k) if isinstance(k, str) else k: self.json(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.json(v) for v in obj]
        return obj

    def processor(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        """A structlog processor: every string of the event masked."""
        if not self._values:
            return event
        return {k: self.json(v) if isinstance(v, (str, dict, list, tuple)) else v for k, v in event.items()}


class PassThrough(io.TextIOBase):
    """A text stream in front of ``self._inner``: flushing, the terminal test, the descriptor and the
    encoding are the inner stream's; a subclass says what ``write`` does."""

    _inner: TextIO

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")


class RedactingStream(PassThrough):
    """A text stream that masks known secrets in everything written through it."""

    def __init__(self, inner: TextIO, redactor: Redactor):
        self._inner, self._redactor = inner, redactor

    def write(self, text: str) -> int:
        self._inner.write(self._redactor(text))
        return len(text)
