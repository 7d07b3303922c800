"""``reconciler run``: start the service and its HTTP surface, keep them up, stop them cleanly.

The credentials of the HTTP surface are read (and refused when they are
placeholders or too short) before anything starts; the listen address is
``--listen``, else ``$RECONCILER_LISTEN``, else ``[server] listen``. SIGTERM and
SIGINT stop new work, let the reconcile in flight finish (within
``[server] shutdown_grace``) and exit 0.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

from reconciler.config import Config, parse_listen
from reconciler.errors import StallError
from reconciler.logsetup import get_logger
from reconciler.redaction import Redactor
from reconciler.server import HttpServer
from reconciler.service import Service
from reconciler.shard import shard_from_environment

__all__ = ["run_service", "listen_address", "MIN_SECRET_LENGTH"]

log = get_logger("reconciler.runner")


MIN_SECRET_LENGTH = 16


def _secret(path: Path | None, env_var: str) -> str | None:
    """A credential of the HTTP surface, from its file or its environment variable; a placeholder
    left from the deployment templates or a short value refuses to start the service."""
    where = str(path) if path is not None else f"${env_var}"
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise StallError(f"cannot read {path}: {exc.strerror}") from exc
    else:
        value = (os.environ.get(env_var) or "").strip() or None
    if value is None:
        return None
    if value.upper().startswith("REPLACE-ME") or value.upper() in ("CHANGEME", "CHANGE-ME", "SECRET", "TOKEN"):
        raise StallError(f"{where} holds a placeholder, not a secret: set a real value, e.g. "
                         "`openssl rand -hex 32` (deploy/README.md shows how)")
    if len(value) < MIN_SECRET_LENGTH:
        raise StallError(f"{where} is too short ({len(value)} characters; at least {MIN_SECRET_LENGTH}): "
                         "generate one with `openssl rand -hex 32`")
    return value


def listen_address(config: Config, listen: str | None) -> tuple[str, int]:
    """Where the service listens: --listen, else $RECONCILER_LISTEN, else [server] listen."""
    return parse_listen(listen or os.environ.get("RECONCILER_LISTEN") or config.server.listen)


def run_service(config: Config, *, listen: str | None = None, shard: str | None = None, ready_message: str | None = None,
                redactor: Redactor | None = None) -> int:
    try:
        host, port = listen_address(config, listen)
        chosen = shard_from_environment(shard, os.environ, socket.gethostname())
    except ValueError as exc:
        raise StallError(str(exc)) from exc
    service = Service(
        config,
        shard=chosen,
        api_token=_secret(config.server.token_file, "RECONCILER_API_TOKEN"),
        webhook_secret=_secret(config.server.webhook_secret_file, "RECONCILER_WEBHOOK_SECRET"),
        redactor=redactor,
    )
    try:
        http = HttpServer(service, host, port, config.server.max_body, config.server.request_timeout)
    except OSError as exc:
        raise StallError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    stop = threading.Event()
    got: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        got.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    http.start()
    service.start()
    bound_host, bound_port = http.address
    log.info("listening", url=f"http://{bound_host}:{bound_port}", environments=sorted(service.workers), shard=str(chosen))
    if ready_message:
        print(ready_message.format(url=f"http://{bound_host}:{bound_port}"), flush=True)
    while not stop.wait(0.5):
        pass
    log.info("stopping", signal=signal.Signals(got[0]).name if got else None, grace=config.server.shutdown_grace)
    clean = service.stop()
    http.stop()
    if not clean:
        log.warning("a reconcile was still running after the grace period; the next start resumes it")
    return 0
