"""A sink's credential (a token, an HMAC key, a Slack webhook URL): read when it is used, never shown.

It comes from an environment variable or a file, and is read at each delivery,
so a rotated file is picked up without a restart. Every value read is handed to
``seen`` (the process's :class:`~reconciler.redaction.Redactor`), so that it is
masked should a message ever carry it; messages name the variable or the file,
never the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.drivers._common import secret_from
from reconciler.errors import StallError

__all__ = ["Secret", "SecretAuth"]


@dataclass(frozen=True)
class Secret:
    """A credential held by ``$env`` or in ``file`` (exactly one), for ``what`` (used in messages)."""

    env: str | None
    file: Path | None
    what: str
    environ: Mapping[str, str] | None = None
    seen: Callable[[Iterable[str]], None] | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        return f"${self.env}" if self.env is not None else f"the file {self.file}"

    def value(self) -> str:
        """The credential; a StallError naming where it should be when it is not there."""
        if self.env is not None:
            value = secret_from(os.environ if self.environ is None else self.environ, self.env, where=self.what)
        else:
            assert self.file is not None
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise StallError(f"{self.what}: cannot read {self.file}: {exc.strerror}") from exc
            if not value:
                raise StallError(f"{self.what}: {self.file} is empty; it must hold the credential")
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise StallError(f"{self.what}: {self.file} holds a control character (more than one line?)")
        if self.seen is not None:
            self.seen([value])
        return value


@dataclass(frozen=True)
class SecretAuth:
    """:class:`~reconciler.drivers._http.Auth` from a :class:`Secret`: ``<header>: <scheme> <token>``."""

    secret: Secret
    header: str = "Authorization"
    scheme: str = "Bearer"

    def headers(self) -> dict[str, str]:
        token = self.secret.value()
        return {self.header: f"{self.scheme} {token}" if self.scheme else token}

    def refresh(self) -> bool:
        return False

    def refused(self, status: int, what: str) -> StallError:
        return StallError(f"{what}; the forge refused the token in {self.secret.where} ({self.secret.what}): "
                          "check it and its permissions")
