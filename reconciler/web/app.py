"""The status page's routes: which path is which page, the login and the actions, and the headers every
page is sent with. The HTTP server (:mod:`reconciler.server`) hands it GET and POST requests for its
paths and writes what it answers; ``/events`` is streamed by the server from :attr:`WebUI.events`.

Pages are Jinja2 templates with autoescaping on, every value passed through the service's redactor
before it is escaped (and the whole answer after, as every answer of the server is). Every page is
read-only and works without JavaScript; the vendored ``static/app.js`` only reloads the page's content
when an event says a reconcile ended. Actions are POST only (:data:`ACTIONS`), with the API token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from jinja2 import Environment, PackageLoader, StrictUndefined

from reconciler.flows import FlowKey
from reconciler.logsetup import get_logger
from reconciler.names import decode
from reconciler.plan import State

from .auth import Session, Sessions, cookie_of, cross_site
from .events import HEARTBEAT, EventHub
from .flowview import flow_page
from .views import STATES, GitReader, ago, env_url, environment, overview

if TYPE_CHECKING:
    from reconciler.service import Service

__all__ = ["WebUI", "Page", "CSP", "ACTIONS", "EVENTS_PATH"]

log = get_logger("reconciler.web")

EVENTS_PATH = "/events"
#: the Content-Security-Policy of every page: nothing inline, nothing from anywhere but this server
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_PAGE_HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "same-origin"),
                 ("Cross-Origin-Opener-Policy", "same-origin"), ("Cross-Origin-Resource-Policy", "same-origin"))
_STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_ENV = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
_SEG = r"[^/?#]{1,800}"
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class Page:
    """One answer: status, body, content type and the headers to add."""

    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Request:
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]

    def arg(self, name: str) -> str:
        return (self.query.get(name) or [""])[0]


def _sync(svc: "Service", env: str, form: Mapping[str, str]) -> bool:
    return svc.trigger(env, "web")


def _holding(suspend: bool) -> Callable[["Service", str, Mapping[str, str]], bool]:
    def act(svc: "Service", env: str, form: Mapping[str, str]) -> bool:
        """Suspend or resume the environment, or one flow of it (``flow`` = NAME[@VERSION]); persisted
        under refs/reconciler/suspend/ like the command line's. ValueError: a bad selector."""
        flows = [form["flow"].strip()] if form.get("flow", "").strip() else []
        reason = " ".join(form.get("reason", "").split())[:200]
        try:
            svc.set_suspension(env, flows, suspend=suspend, by="status page", reason=reason)
        except LookupError:
            return False
        return True

    return act


#: what a logged-in person can do to an environment: POST /environments/<env>/<action>, each a label
#: for the button and a function of (service, environment, the form's fields).
ACTIONS: dict[str, tuple[str, Callable[["Service", str, Mapping[str, str]], bool]]] = {
    "sync": ("Sync now", _sync),
    "suspend": ("Suspend", _holding(True)),
    "resume": ("Resume", _holding(False)),
}

_OVERVIEW = re.compile(r"/")
_ENV_PAGE = re.compile(rf"/environments/({_ENV})")
_FLOW_PAGE = re.compile(rf"/environments/({_ENV})/flows/({_SEG})/({_SEG})")
_ACTION = re.compile(rf"/environments/({_ENV})/([a-z]+)")
_STATIC_FILE = re.compile(r"/static/([a-z]+\.[a-z]+)")


class WebUI:
    """The status page of one service."""

    def __init__(self, service: "Service", *, bound_host: str = "127.0.0.1", heartbeat: float = HEARTBEAT):
        self.service = service
        self.events = EventHub(heartbeat=heartbeat)
        service.add_run_listener(self.events.on_run)
        server = service.config.server
        secure = server.secure_cookie if server.secure_cookie is not None else \
            (server.public_url or "").lower().startswith("https://")
        self.sessions = Sessions(service.api_token, secure=secure)
        self.reader = GitReader(service.config)
        # Bound to loopback: only loopback names may be asked for (a page of another site resolving its
        # name to 127.0.0.1, DNS rebinding, is refused).
        self.loopback_only = bound_host in _LOOPBACK or bound_host.startswith("127.")
        redact = service.redactor
        self.templates = Environment(loader=PackageLoader("reconciler.web", "templates"), autoescape=True,
                                     undefined=StrictUndefined, finalize=lambda v: redact(v) if isinstance(v, str) else v)
        self.templates.filters["ago"] = ago
        self.templates.globals.update(states=STATES, actions=[(k, label) for k, (label, _) in ACTIONS.items()],
                                      env_url=env_url)

    @staticmethod
    def handles(path: str) -> bool:
        """Is ``path`` one of the page's (every other path stays the API's)?"""
        return path in ("/", "/login", "/logout", EVENTS_PATH) or path.startswith(("/environments/", "/static/"))

    def allowed_host(self, headers: Mapping[str, str]) -> bool:
        if not self.loopback_only:
            return True
        host = headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in _LOOPBACK or name.startswith("127.")

    def close(self) -> None:
        self.events.close()

    # -- rendering -------------------------------------------------------------------------

    def _render(self, status: int, template: str, req: Request, **context: Any) -> Page:
        session = self.sessions.get(cookie_of(req.headers))
        html = self.templates.get_template(template).render(
            session=session, csrf=session.csrf if session else "", login_enabled=self.sessions.enabled,
            here=req.path, **context)
        return Page(status, html.encode("utf-8"), headers=_PAGE_HEADERS)

    def _message(self, status: int, req: Request, title: str, text: str, back: str = "/") -> Page:
        return self._render(status, "message.html", req, title=title, text=text, back=back)

    def _redirect(self, to: str, *extra: tuple[str, str]) -> Page:
        return Page(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", (("Location", to), *extra))

    # -- GET -------------------------------------------------------------------------------

    def get(self, path: str, query: str, headers: Mapping[str, str]) -> Page:
        try:
            return self._get(path, query, headers)
        except Exception:  # noqa: BLE001 - a bug in a page must answer 500, never drop the connection
            log.exception("status page failed", path=path[:200])
            return self._message(500, Request(path, {}, headers), "Internal error", "This page failed; see the log.")

    def post(self, path: str, headers: Mapping[str, str], body: bytes) -> Page:
        try:
            return self._post(path, headers, body)
        except Exception:  # noqa: BLE001
            log.exception("status page action failed", path=path[:200])
            return self._message(500, Request(path, {}, headers), "Internal error", "This action failed; see the log.")

    def _get(self, path: str, query: str, headers: Mapping[str, str]) -> Page:
        req = Request(path, parse_qs(query, max_num_fields=20), headers)
        if not self.allowed_host(headers):
            return self._message(HTTPStatus.FORBIDDEN, req, "Refused", "This service answers its loopback name only.")
        if (m := _STATIC_FILE.fullmatch(path)) and m.group(1) in _STATIC:
            data = (resources.files("reconciler.web") / "static" / m.group(1)).read_bytes()
            return Page(200, data, _STATIC[m.group(1)], _PAGE_HEADERS)
        if _OVERVIEW.fullmatch(path):
            return self._render(200, "overview.html", req, page=overview(self.service, self.reader))
        if path == "/login":
            return self._render(200, "login.html", req, next=_local(req.arg("next")), wrong=False)
        if m := _ENV_PAGE.fullmatch(path):
            state = req.arg("state") if req.arg("state") in STATES else ""
            page = environment(self.service, self.reader, m.group(1), state)
            if page is None:
                return self._message(404, req, "Not found", self.service.why_not(m.group(1)))
            return self._render(200, "environment.html", req, env=page, queued=req.arg("queued") if req.arg("queued") in ACTIONS else "")
        if m := _FLOW_PAGE.fullmatch(path):
            try:
                key = FlowKey(decode(_unquote(m.group(2))), decode(_unquote(m.group(3))))
            except ValueError as exc:  # InvalidName, or percent-escapes that are not UTF-8
                return self._message(404, req, "Not found", f"not a flow's address: {exc}")
            page = flow_page(self.service, self.reader, m.group(1), key, (req.arg("from"), req.arg("to")))
            if page is None:
                return self._message(404, req, "Not found", self.service.why_not(m.group(1)))
            return self._render(200, "flow.html", req, flow=page, in_sync=State.IN_SYNC.value)
        if path == "/logout" or ((m := _ACTION.fullmatch(path)) and m.group(2) in ACTIONS):
            return self._message(HTTPStatus.METHOD_NOT_ALLOWED, req, "Use the button",
                                 "This address changes something, so it takes a POST from the page's form.")
        return self._message(404, req, "Not found", f"no such page: {path[:200]}")

    # -- POST ------------------------------------------------------------------------------

    def _post(self, path: str, headers: Mapping[str, str], body: bytes) -> Page:
        req = Request(path, {}, headers)
        if not self.allowed_host(headers) or cross_site(headers):
            return self._message(HTTPStatus.FORBIDDEN, req, "Refused", "Requests from another site are refused.")
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20) if _is_form(headers) else {}
        given = {k: v[0] for k, v in form.items()}
        if path == "/login":
            return self._login(req, given)
        session = self.sessions.get(cookie_of(headers))
        if path == "/logout":
            if session is not None and Sessions.csrf_ok(session, given.get("csrf", "")):
                self.sessions.logout(session.id)
            return self._redirect("/", ("Set-Cookie", self.sessions.clear_cookie()))
        m = _ACTION.fullmatch(path)
        if m is None or m.group(2) not in ACTIONS:
            return self._message(404, req, "Not found", f"no such action: {path[:200]}")
        env, action = m.group(1), m.group(2)
        refused = self._refusal(headers, session, given)
        if refused:
            return self._message(HTTPStatus.UNAUTHORIZED if "log in" in refused else HTTPStatus.FORBIDDEN, req,
                                 "Refused", refused, back=env_url(env))
        try:
            done = ACTIONS[action][1](self.service, env, given)
        except ValueError as exc:  # a flow selector that names nothing valid
            return self._message(HTTPStatus.BAD_REQUEST, req, "Refused", str(exc), back=env_url(env))
        if not done:
            return self._message(404, req, "Not found", self.service.why_not(env))
        return self._redirect(f"{env_url(env)}?queued={action}")

    def _refusal(self, headers: Mapping[str, str], session: Session | None, form: Mapping[str, str]) -> str:
        """Why an action is refused ('' when it is allowed)."""
        if not self.sessions.enabled:
            return "No API token is configured (RECONCILER_API_TOKEN), so nobody can act from this page."
        if headers.get("Authorization"):
            return "" if self.sessions.bearer_ok(headers["Authorization"]) else "Wrong bearer token."
        if session is None:
            return "Actions need the API token: log in first."
        if not Sessions.csrf_ok(session, form.get("csrf", "")):
            return "The form's CSRF token is missing or wrong: reload the page and try again."
        return ""

    def _login(self, req: Request, form: Mapping[str, str]) -> Page:
        target = _local(form.get("next", ""))
        session = self.sessions.login(form.get("token", "")) if self.sessions.enabled else None
        if session is None:
            return self._render(HTTPStatus.UNAUTHORIZED, "login.html", req, next=target, wrong=True)
        return self._redirect(target, ("Set-Cookie", self.sessions.set_cookie(session)))


def _is_form(headers: Mapping[str, str]) -> bool:
    return headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def _unquote(segment: str) -> str:
    return unquote(segment, errors="strict")


def _local(target: str) -> str:
    """A redirect target on this server only (``/…``, never ``//host`` or ``/\\host``)."""
    ok = re.fullmatch(r"/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*", target or "")
    return target if ok else "/"
