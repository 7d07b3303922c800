"""Keeping the clean record (:mod:`.fast`) after a full ``plan ENV`` / ``export ENV`` that found nothing to do.

:func:`prepare` runs before the config is read (when :func:`.fast.answer` did
not answer a shape a record may answer): it notes the time, the code's
fingerprint and the config's bytes, and puts a tee under ``sys.stdout`` and
``sys.stderr`` (under the redacting stream: it sees what is printed). :func:`run`
wraps the command: it snapshots every input before the command and again after,
and keeps a record only when

- the environment is a directory one, without sync windows, in a repository
  without a remote, neither quarantined nor suspended;
- the command printed exactly its "nothing to do" answer (``plan``: the counts
  line with nothing pending, drifted, conflicting or invalid; ``export``:
  "nothing to export"; ``--json``: an outcome with no step, problem, refusal,
  hold, commit or staleness), nothing on stderr (progress on a terminal aside)
  and exited 0;
- what is compared by content (config, schema, refs, variables) is the same
  before and after the command (nothing moved while it ran: an export that
  wrote anything is not recorded), and no entry of the listings taken after it
  is newer than the start minus :data:`.fast.MARGIN` (git's racy rule: an entry
  changed since the start, a file edited or added, removed or renamed in a
  folder, has a newer ctime, so the listing after is the one the run read);
- the code and the interpreter did not change during the run, and the wall clock did
  not go back during it (compared with the monotonic clock: an edit made after a
  step back has a ctime the racy rule would take for one before the start).

Otherwise the record of that shape is deleted (it held for inputs that are not
the ones seen now). Writes are atomic (a unique temporary file renamed over the
record, 0600), as :mod:`reconciler.localcache`'s: two processes leave one whole
record or the other, each true of the inputs it names. A failure to write
(read-only repository) only costs the next process the full path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from typing import Any, Callable

from reconciler.redaction import PassThrough

from . import fast

__all__ = ["prepare", "run"]

_pending: "_Pending | None" = None


class _Tee(PassThrough):
    """A text stream passing everything on to ``inner`` and keeping a copy."""

    def __init__(self, inner: Any, progress: bool = False):
        self._inner, self._progress = inner, progress
        self.parts: list[str] = []
        self.bypassed = False

    def write(self, text: str) -> int:
        if not (self._progress and text.startswith("\r")):  # the progress line, erased before the answer
            self.parts.append(text)
        return self._inner.write(text)

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._inner.errors

    @property
    def buffer(self) -> Any:
        self.bypassed = True  # bytes written past the copy: nothing is recorded
        return self._inner.buffer

    def text(self) -> str:
        return "".join(self.parts)


class _Pending:
    def __init__(self, shape: tuple[str, str, str], started: int, mono: int):
        self.shape, self.started = shape, started
        self.mono = mono  # the monotonic clock read with ``started``: see _stepped_back
        self.fingerprint = fast.code_fingerprint()
        self.out, self.err = _Tee(sys.stdout), _Tee(sys.stderr, progress=True)


def prepare(args: Any, shape: tuple[str, str, str], started: int, mono: int) -> None:
    """Get ready to keep a record of this run (any failure: no record, the run goes on unchanged).
    ``started``, ``mono``: the wall and monotonic clocks read together at the process's start."""
    global _pending
    try:
        p = _Pending(shape, started, mono)
        p.config = fast.config_path(args)
        p.config_sha = fast.file_digest(p.config)
        p.base = fast.config_base(p.config)
        p.config_stat = _stat(p.config)
    except Exception:
        return
    sys.stdout, sys.stderr = p.out, p.err
    _pending = p


def run(args: Any, config: Any, command: Callable[[Any, Any], int]) -> int:
    """``command(args, config)``, and the record kept (or deleted) after it."""
    p = _pending
    if p is None:
        return command(args, config)
    try:
        where = _where(p, config)
        before = _inputs(p, where, listings=False) if where is not None else None
    except Exception:
        where = before = None
    kept = False
    try:
        code = command(args, config)
        try:
            kept = before is not None and _keep(p, where, before, code)
        except Exception:
            kept = False
        return code
    finally:
        if not kept and where is not None:
            try:
                os.unlink(where["record"])
            except OSError:
                pass


def _where(p: _Pending, config: Any) -> dict[str, Any] | None:
    """What the record depends on, from the config; None when no record may answer for it."""
    command, name, mode = p.shape
    env = config.env(name)
    if env.driver != "directory" or env.windows or config.repository.remote:
        return None
    repo_path = str(config.repository.path)
    gitdir = fast.gitdir_of(repo_path)
    if gitdir is None:
        return None
    roots = [str(env.path)] + [str(e.secrets_dir) for e in config.environments if e.secrets_dir is not None]
    return {
        "env": env, "gitdir": gitdir, "roots": roots,
        "files": [p.config] + ([str(env.schema_)] if env.schema_ is not None else []),
        "prefixes": sorted({e.secrets_env_prefix for e in config.environments}),
        "lock": os.path.join(repo_path, "reconciler-locks", f"{name}.lock"),
        "record": fast.record_path(gitdir, command, name, mode),
    }


def _inputs(p: _Pending, where: dict[str, Any], *, listings: bool = True) -> dict[str, Any] | None:
    """The inputs as they are now (``listings``: the folders' too; without, what only content compares)."""
    found = []
    for root in where["roots"] if listings else ():
        real = os.path.realpath(root)
        got = fast.listing(real)
        if got is None:
            return None
        found.append((root, real, got[0], got[1]))
    refs = fast.refs_state(where["gitdir"])
    if refs is None:
        return None
    return {
        "files": [(f, fast.file_digest(f), _stat(f)) for f in where["files"]],
        "listings": found, "refs": refs, "reals": [os.path.realpath(r) for r in where["roots"]],
        "secrets": sorted((k, v) for k, v in os.environ.items() if any(k.startswith(x) for x in where["prefixes"] if x)),
        "home": os.environ.get("HOME"),
    }


def _stat(path: str) -> tuple[int, int, int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _keep(p: _Pending, where: dict[str, Any], before: dict[str, Any], code: int) -> bool:
    command, name, mode = p.shape
    out, err = p.out.text(), p.err.text()
    if code != 0 or err or p.out.bypassed or not _clean(command, mode, where["env"], out):
        return False
    after = _inputs(p, where)
    if after is None or {**after, "listings": []} != before or fast.code_fingerprint() != p.fingerprint:
        return False
    if after["files"][0][1:] != (p.config_sha, p.config_stat) or fast.config_base(p.config) != p.base:
        return False  # the config read is the one noted first, its relative paths relative to the same folder
    refs = after["refs"][1]
    if any(f"refs/reconciler/{kind}/{name}" in refs for kind in ("quarantine", "suspend")):
        return False
    if max(newest for *_, newest in after["listings"]) >= p.started - fast.MARGIN or _stepped_back(p):
        return False  # racy: an edit after this record could keep every stat the record holds
    salt = os.urandom(16).hex()  # what secrets.token_hex(16) is, without importing secrets (random, base64)
    body = {
        "shape": [command, name, mode], "config": p.config, "config_sha256": p.config_sha, "base": p.base,
        "gitdir": where["gitdir"], "lock": where["lock"], "written_ns": p.started,
        "python": [sys.version, sys.executable], "fingerprint": p.fingerprint,
        "files": [[f, sha] for f, sha, _ in after["files"]],
        "refs": after["refs"][0],
        "secret_prefixes": where["prefixes"], "salt": salt, "secrets": fast.secret_digest(where["prefixes"], salt),
        "listings": [[root, real, digest] for root, real, digest, _ in after["listings"]],
        "stdout": out, "exit": code,
    }
    return _write(where["record"], body)


def _stepped_back(p: _Pending) -> bool:
    """Whether the wall clock went back during the run (NTP, a person): an edit made then has a ctime
    older than the start, which the racy rule takes for one the run saw."""
    wall = time.time_ns() - p.started
    mono = time.monotonic_ns() - p.mono
    return wall < mono - 50_000_000  # 50 ms: the two clocks read a few microseconds apart, never that much


_COUNTS = r"in sync \d+ · pending 0 · drifted 0 · conflict 0 · invalid 0"


def _clean(command: str, mode: str, env: Any, out: str) -> bool:
    """Whether ``out`` is exactly the command's "nothing to do" answer."""
    if mode == "json":
        try:
            doc = json.loads(out)
        except ValueError:
            return False
        counts = doc.get("counts") or {}
        return (doc.get("environment") == env.name and doc.get("result") == "ok" and doc.get("steps") == []
                and doc.get("problems") == [] and doc.get("refused") is None and doc.get("stale") is False
                and doc.get("held") is None and doc.get("commit") is None and doc.get("drift_commit") is None
                and doc.get("migrated") is None and doc.get("quarantined") == {}
                and set(counts) >= {"pending", "drifted", "conflict", "invalid"}
                and all(v == 0 for k, v in counts.items() if k != "in_sync"))
    if command == "plan":
        return re.fullmatch(rf"{re.escape(env.name)} \(plan\): {_COUNTS}\n", out) is not None
    return out == f"{env.name}: nothing to export; {env.branch_name} already holds the environment's flows\n"


def _write(path: str, body: dict[str, Any]) -> bool:
    data = json.dumps(body, ensure_ascii=False).encode()
    head = b" ".join((b"reconciler-cache", fast.KIND.encode(), str(fast.FORMAT).encode(),
                      hashlib.sha256(data).hexdigest().encode()))
    from pathlib import Path

    from reconciler.localcache import replace_private

    try:
        replace_private(Path(path), head + b"\n" + data)
    except OSError:
        return False
    return True
