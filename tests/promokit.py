"""Two environments with their own endpoint and database password, for the promotion tests.

Acceptance (drift adopt) and production (drift restore, prune) differ in a
parameter (``API``) and a secret (``DB_PASSWORD``, a file in a per-environment
secrets folder). ``setup_two`` exports acceptance, creates ``env/production``
from ``env/acceptance`` with the git CLI and syncs production.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Workspace

ACC_API, PROD_API = "https://api.acc.example.com", "https://api.prod.example.com"
ACC_PW, PROD_PW = "acc-pa55w0rd", "pr0d-pa55w0rd"
VALUES = (ACC_API, PROD_API, ACC_PW, PROD_PW)


def orders(api: str, password: str, **extra: Any) -> dict[str, Any]:
    """The orders flow as the platform exports it (real values, not placeholders)."""
    return {"name": "orders", "version": "1.0", "exportedAt": "2026-11-23T10:00:00Z",
            "steps": [{"id": "in", "type": "http-in", "config": {"url": f"{api}/orders"}},
                      {"id": "db", "type": "sql", "config": {"user": "app", "password": password}}], **extra}


def billing(**extra: Any) -> dict[str, Any]:
    return {"name": "billing", "version": "2",
            "steps": [{"id": "run", "type": "cron", "config": {"every": "1h"}}], **extra}


def write_config(ws: Workspace, acceptance: str = "", production: str = "", repository: str = "") -> None:
    ws.config.write_text(f"""[repository]
path = "state/flows.git"
{repository}

[[environment]]
name = "acceptance"
driver = "directory"
path = "envs/acceptance"
drift = "adopt"
ignore = ["/exportedAt"]
secrets_dir = "secrets/acceptance"
secrets_env_prefix = ""
{acceptance}
[environment.params]
API = "{ACC_API}"

[[environment]]
name = "production"
driver = "directory"
path = "envs/production"
drift = "restore"
prune = true
ignore = ["/exportedAt"]
secrets_dir = "secrets/production"
secrets_env_prefix = ""
{production}
[environment.params]
API = "{PROD_API}"
""")


def setup_two(ws: Workspace, **config: str) -> Workspace:
    for name, pw in (("acceptance", ACC_PW), ("production", PROD_PW)):
        (ws.root / "secrets" / name).mkdir(parents=True, exist_ok=True)
        (ws.root / "secrets" / name / "DB_PASSWORD").write_text(pw + "\n")
        ws.env_dir(name).mkdir(parents=True, exist_ok=True)
    write_config(ws, **config)
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW))
    ws.put("acceptance", "billing.json", billing())
    ws.cli("export", "acceptance", check=True)
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    ws.cli("sync", "production", check=True)
    return ws


def everything_in_git(ws: Workspace) -> str:
    """Every file of every ref of the repository, concatenated."""
    refs = ws.git("for-each-ref", "--format=%(refname)", cwd=ws.repo).split()
    out = []
    for ref in refs:
        for path in ws.git("ls-tree", "-r", "--name-only", ref, cwd=ws.repo).splitlines():
            out.append(ws.git("show", f"{ref}:{path}", cwd=ws.repo))
    return "\n".join(out)


def commit_in_clone(ws: Workspace, clone: Path, files: dict[str, Any], message: str, push: str | None = None) -> None:
    """Write files (dicts as JSON, None deletes) in a clone, commit, and push to ``push``."""
    for rel, doc in files.items():
        path = clone / rel
        if doc is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2, sort_keys=True) + "\n")
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-q", "-m", message, cwd=clone)
    if push:
        ws.git("push", "-q", "origin", f"HEAD:{push}", cwd=clone)


def promote_branch(ws: Workspace) -> str:
    """The only promote/* branch of the repository."""
    (branch,) = ws.git("for-each-ref", "--format=%(refname:short)", "refs/heads/promote/", cwd=ws.repo).split()
    return branch
