"""``reconciler run`` and ``reconciler demo``: start the service and keep it up.

SIGTERM and SIGINT stop new work, let the reconcile in flight finish (within
``[server] shutdown_grace``) and exit 0.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import threading
from pathlib import Path

import structlog

from reconciler.config import Config, load_config, parse_listen
from reconciler.errors import StallError
from reconciler.http import HttpServer
from reconciler.redaction import Redactor
from reconciler.service import Service
from reconciler.shard import shard_from_environment

__all__ = ["run_service", "write_demo"]

log = structlog.get_logger("reconciler.daemon")


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


# -- the demo ------------------------------------------------------------------------------

_DEMO_CONFIG = """\
# flow-reconciler demo: a local bare repository and two directory environments.
[repository]
path = "state/flows.git"

[server]
listen = "127.0.0.1:9420"
token_file = "api-token"          # bearer token for POST /api/v1/environments/<env>/sync

[[environment]]
name = "acceptance"
driver = "directory"
path = "envs/acceptance"
drift = "adopt"                   # edits made in acceptance are committed to env/acceptance
ignore = ["/exportedAt"]
interval = 30

[[environment]]
name = "production"
driver = "directory"
path = "envs/production"
drift = "restore"                 # edits made in production are saved to drift/production, then undone
prune = true
ignore = ["/exportedAt"]
interval = 30
"""

_DEMO_FLOWS = {
    "orders.json": {
        "name": "orders", "version": "1.0", "exportedAt": "2026-11-23T10:00:00Z",
        "steps": [
            {"id": "in", "type": "http-in", "config": {"path": "/orders", "method": "POST"}},
            {"id": "enrich", "type": "transform", "config": {"expr": "payload.total * 1.21"}},
            {"id": "out", "type": "kafka-out", "config": {"topic": "orders"}},
        ],
    },
    "billing.json": {
        "name": "billing", "version": "2", "exportedAt": "2026-11-23T10:00:00Z",
        "steps": [
            {"id": "cron", "type": "schedule", "config": {"cron": "0 2 * * *"}},
            {"id": "run", "type": "sql", "config": {"query": "select * from invoices where due < now()"}},
        ],
    },
    "customer-sync.json": {
        "name": "customer sync", "version": "1.0", "exportedAt": "2026-11-23T10:00:00Z",
        "steps": [{"id": "poll", "type": "http-poll", "config": {"url": "https://crm.example.com/api/customers"}}],
    },
}


def write_demo(folder: Path) -> Path:
    """Create (or reuse) a ready demo in ``folder``; returns its config path."""
    from reconciler.engine import Engine

    import orjson

    config_path = folder / "reconciler.toml"
    if not config_path.exists():
        (folder / "envs" / "acceptance").mkdir(parents=True, exist_ok=True)
        (folder / "envs" / "production").mkdir(parents=True, exist_ok=True)
        for name, doc in _DEMO_FLOWS.items():
            (folder / "envs" / "acceptance" / name).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        token = folder / "api-token"
        token.write_text(secrets.token_urlsafe(24) + "\n")
        token.chmod(0o600)
        config_path.write_text(_DEMO_CONFIG)
    config = load_config(config_path)
    engine = Engine(config, create_repository=True)
    engine.export("acceptance")
    store = engine.store
    if store.tip("env/production") is None and store.tip("env/acceptance") is not None:
        # Production starts as a copy of acceptance, as if a first merge request was merged.
        store.repo.references.create("refs/heads/env/production", store.repo.references["refs/heads/env/acceptance"].target)
    return config_path


DEMO_HELP = """
flow-reconciler demo is running at {{url}}  (Ctrl-C stops it)

  folder:       {folder}
  repository:   {folder}/state/flows.git   (branches env/acceptance, env/production)
  environments: {folder}/envs/acceptance (drift: adopt), {folder}/envs/production (drift: restore)

Try, in another terminal:

  # 1. a change pushed to git lands in production within a second
  git clone -q -b env/production {folder}/state/flows.git work
  sed -i 's/"topic": "orders"/"topic": "orders-v2"/' work/flows/orders/1.0.json
  git -C work -c user.name=you -c user.email=you@example.com commit -qam "orders: new topic"
  git -C work push -q
  sleep 1; grep orders-v2 {folder}/envs/production/orders@1.0.json

  # 2. an edit made directly in production is saved to drift/production and undone
  sed -i 's/1.21/9.99/' {folder}/envs/production/orders@1.0.json
  sleep 1; grep expr {folder}/envs/production/orders@1.0.json
  git -C {folder}/state/flows.git show drift/production:flows/orders/1.0.json | grep 9.99

  # 3. status and metrics
  curl -s {{url}}/api/v1/status
  curl -s {{url}}/metrics | grep reconciler_flows
  {exe} --config {folder}/reconciler.toml status
"""


def self_command() -> str:
    """How to run this very ``reconciler`` again from any folder, as printed instructions must
    (the venv's script by its absolute path, or ``python -m reconciler`` with this interpreter)."""
    import shlex
    import shutil

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0) == "reconciler" and os.path.isfile(argv0):
        return shlex.quote(os.path.abspath(argv0))
    if argv0.endswith(("__main__.py", "-m")) or not argv0:
        return f"{shlex.quote(sys.executable)} -m reconciler"
    found = shutil.which("reconciler")
    return shlex.quote(found) if found else f"{shlex.quote(sys.executable)} -m reconciler"


def demo_main(folder: str, listen: str | None, run: bool) -> int:
    path = write_demo(Path(folder).resolve())
    config = load_config(path)
    exe = self_command()
    if not run:
        print(f"demo written to {path.parent}; start it with: {exe} --config {path} run")
        return 0
    shown = os.path.relpath(path.parent) if not os.path.relpath(path.parent).startswith("..") else str(path.parent)
    return run_service(config, listen=listen, ready_message=DEMO_HELP.format(folder=shown, exe=exe))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(demo_main("demo", None, True))
