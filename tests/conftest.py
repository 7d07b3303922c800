"""Shared fixtures: a workspace with a config, environment folders and a bare
repository, and the `git` CLI playing the user who clones, edits and pushes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """The CLI and service subprocesses (several hundred a run) import this checkout's package.

    - ``PYTHONPATH`` starts with this checkout, so they run the code under test, as this process
      does, also where the virtualenv's editable install points at another checkout (a worktree
      sharing a venv ran the other checkout's CLI).
    - Under ``PYTHONDONTWRITEBYTECODE`` every one of them compiled the package's ~80 modules from
      source again (~0.2 s of CPU each time); its bytecode is written once here instead (into the
      ignored ``__pycache__`` folders, where Python reads it even with that variable set).
    - ``RECONCILER_CACHE_DIR`` is a folder of this session: the command lines' config cache
      (:mod:`reconciler.configcache`) is exercised by every one of them, and leaves nothing in the home folder.
    """
    import tempfile

    os.environ["RECONCILER_CACHE_DIR"] = tempfile.mkdtemp(prefix="reconciler-tests-cache-")
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, paths)])
    if sys.dont_write_bytecode:
        import compileall

        compileall.compile_dir(REPO_ROOT / "reconciler", quiet=2)


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_AUTHOR_NAME="Ada User",
        GIT_AUTHOR_EMAIL="ada@example.com",
        GIT_COMMITTER_NAME="Ada User",
        GIT_COMMITTER_EMAIL="ada@example.com",
    )
    return env


def flow_files(folder: Path) -> list[Path]:
    """The files the directory driver reads as flows: ``*.json``, not hidden (pathlib's glob,
    unlike a shell's, matches hidden files such as the driver's own temporary ones)."""
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def flow(name: str, version: str = "1.0", **fields: Any) -> dict[str, Any]:
    """A small realistic flow export."""
    doc: dict[str, Any] = {
        "name": name,
        "version": version,
        "exportedAt": "2026-11-23T10:00:00Z",
        "steps": [
            {"id": "s1", "type": "http-in", "config": {"url": f"/{name}", "method": "POST"}},
            {"id": "s2", "type": "transform", "config": {"expr": "payload.total * 1.2"}},
        ],
    }
    doc.update(fields)
    return doc


@dataclass
class Workspace:
    root: Path
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "reconciler.toml"

    @property
    def repo(self) -> Path:
        return self.root / "state" / "flows.git"

    def env_dir(self, env: str) -> Path:
        return self.root / "envs" / env

    def add_env(self, name: str, **settings: Any) -> Path:
        settings.setdefault("drift", "report")
        settings.setdefault("ignore", ["/exportedAt"])
        self.envs[name] = settings
        self.env_dir(name).mkdir(parents=True, exist_ok=True)
        self.write_config()
        return self.env_dir(name)

    def write_config(self, extra: str = "") -> None:
        lines = ['[repository]', 'path = "state/flows.git"', ""]
        for name, s in self.envs.items():
            lines += ["[[environment]]", f'name = "{name}"', 'driver = "directory"', f'path = "envs/{name}"']
            for k, v in s.items():
                lines.append(f"{k} = {json.dumps(v)}")
            lines.append("")
        self.config.write_text("\n".join(lines) + extra)

    def put(self, env: str, filename: str, doc: Any) -> Path:
        path = self.env_dir(env) / filename
        path.write_text(json.dumps(doc, indent=4) if not isinstance(doc, str) else doc)
        return path

    def live(self, env: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Flows in an environment folder, by (name, version)."""
        out = {}
        for p in flow_files(self.env_dir(env)):
            try:
                doc = json.loads(p.read_text())
            except FileNotFoundError:
                continue  # replaced by a running service between the listing and the read
            out[(doc["name"], str(doc["version"]))] = doc
        return out

    def cli(self, *args: str, check: bool | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real command line in a subprocess, as a user would."""
        env = dict(os.environ, RECONCILER_CONFIG=str(self.config))
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert proc.returncode == 0, f"{args} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=cwd or self.root, env=git_env(self.root), capture_output=True, text=True, timeout=60
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def init_repo(self) -> Path:
        """The bare repository, as a git server would hold it (nothing creates it but an export)."""
        if not self.repo.exists():
            self.git("init", "-q", "--bare", "-b", "main", str(self.repo))
        return self.repo

    def branch(self, new: str, start: str) -> None:
        """Create a branch in the bare repository (as a push would)."""
        self.git("branch", new, start, cwd=self.repo)

    def clone(self, branch: str | None = None, name: str = "clone") -> Path:
        dest = self.root / name
        args = ["clone", "-q", str(self.repo), str(dest)]
        if branch:
            args[2:2] = ["-b", branch]
        self.git(*args)
        return dest


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture(autouse=True)
def _fresh_logging():
    """A test calling ``main()`` binds structlog to its captured stderr; later tests must not log into it."""
    yield
    import structlog

    from reconciler import logsetup

    structlog.reset_defaults()
    logsetup.reset()
