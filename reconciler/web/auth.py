"""Who may act on the status page: the API's bearer token, entered once in a login form.

- **Login** (``POST /login``): the token is compared in constant time with the service's
  (``RECONCILER_API_TOKEN`` or ``[server] token_file``); a right one opens a session: a random id
  in a cookie (``HttpOnly``, ``SameSite=Strict``, ``Path=/``, 12 hours; ``Secure`` with ``[server]
  secure_cookie``, on by default when ``public_url`` is https), the token itself never stored
  in the browser. Sessions live in memory: a restart logs everyone out, and so does ``POST /logout``.
- **CSRF**: an action needs the session cookie *and* the session's own random CSRF token as a form
  field (a synchronizer token: another site can make the browser send the cookie, with SameSite it
  does not even do that, but it can never read the token), and a request whose ``Origin`` or
  ``Sec-Fetch-Site`` says it comes from another site is refused before anything else. A request
  with ``Authorization: Bearer <token>`` carries no ambient credential and needs neither.
- Nothing here changes state on GET: the server only routes POST to actions.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Sessions", "Session", "COOKIE", "cross_site", "cookie_of"]

COOKIE = "reconciler_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires: float


class Sessions:
    """The logged-in browsers of one process."""

    def __init__(self, token: str | None, *, clock: Callable[[], float] = time.monotonic, secure: bool = False):
        self._token, self._clock = token, clock
        self._attrs = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    @property
    def enabled(self) -> bool:
        """False when no API token is configured: nobody can log in, every action is refused."""
        return bool(self._token)

    def token_ok(self, given: str) -> bool:
        token = self._token
        return bool(token) and hmac.compare_digest(given.strip().encode(), token.encode())  # type: ignore[union-attr]

    def bearer_ok(self, header: str) -> bool:
        return header.startswith("Bearer ") and self.token_ok(header[7:])

    def login(self, given: str) -> Session | None:
        """A new session for the right token, None for a wrong one."""
        if not self.token_ok(given):
            return None
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + SESSION_SECONDS)
        with self._lock:
            self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
            if len(self._by_id) >= MAX_SESSIONS:  # the oldest go first
                for k in sorted(self._by_id, key=lambda k: self._by_id[k].expires)[: len(self._by_id) - MAX_SESSIONS + 1]:
                    del self._by_id[k]
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
        if session is None or session.expires <= self._clock():
            return None
        return session

    def logout(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)

    @staticmethod
    def csrf_ok(session: Session, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), session.csrf.encode())

    def set_cookie(self, session: Session) -> str:
        return f"{COOKIE}={session.id}{self._attrs}; Max-Age={SESSION_SECONDS}"

    def clear_cookie(self) -> str:
        return f"{COOKIE}={self._attrs}; Max-Age=0"


def cookie_of(headers: Mapping[str, str]) -> str | None:
    """The session id from a ``Cookie`` header (the first one of our name)."""
    for part in headers.get("Cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def cross_site(headers: Mapping[str, str]) -> bool:
    """True when the browser says the request comes from another origin than the page's host."""
    site = headers.get("Sec-Fetch-Site", "")
    if site and site not in ("same-origin", "none"):
        return True
    origin = headers.get("Origin", "")
    if origin and origin != "null":
        host = headers.get("Host", "")
        return origin.split("://", 1)[-1] != host
    return origin == "null"
