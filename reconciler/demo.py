"""``reconciler demo``: a ready demo (a bare repository and two folder environments) and the service on it.

Written into ``--dir`` (default ``./demo``) the first time and reused after;
the printed instructions run as printed, from any folder (they name this very
``reconciler`` by its absolute path).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from reconciler.config import load_config
from reconciler.runner import run_service

__all__ = ["write_demo", "demo_main", "self_command", "DEMO_HELP"]

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
    acceptance = store.tip("env/acceptance")
    if store.tip("env/production") is None and acceptance is not None:
        # Production starts as a copy of acceptance, as if a first merge request was merged.
        store.create_branch("env/production", acceptance, "demo: production starts as acceptance")
    return config_path


DEMO_HELP = """
flow-reconciler demo is running at {{url}}  (Ctrl-C stops it)

  status page:  {{url}}/   (open it in a browser: it updates itself as you try what follows;
                log in with the token in {folder}/api-token to sync from the page)

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
