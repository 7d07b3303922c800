"""The clean record: a cold ``plan ENV`` / ``export ENV`` that finds nothing changed answers without the engine.

``git status`` answers in tens of milliseconds because it trusts its stat index. A
fresh ``reconciler plan`` imports the engine, pydantic, pygit2 and structlog
(~0.3 s) before it reads anything. So after a full ``plan ENV`` or ``export ENV``
of a directory environment whose answer was "nothing to do", the full path
(:mod:`.fastrecord`) keeps a *clean record* beside the repository, never in its
history: ``<gitdir>/reconciler/index/<env>/clean-<command>-<mode>``. It holds
everything that answer depends on, and the exact text and exit code printed:

- this code (the fingerprint the caches use) and this interpreter;
- the config file (its path as named, its bytes, and the real path of its folder,
  which its relative paths are relative to) and the JSON Schema file of the
  environment (bytes);
- the stat of the object store's folders and pack files (objects deleted since are
  the full path's error, never "in sync");
- every ref of the repository (branches, the applied marker, drift saves,
  quarantine, suspension, the drivers' memory: ``refs/reconciler/...``) and
  ``HEAD``, read as files (loose refs, else ``packed-refs``), never with pygit2;
- the full lstat listing of the environment's folder (every file and directory:
  name, mode, inode, size, mtime_ns, ctime_ns) and of every environment's
  ``secrets_dir``, and the ``<prefix>NAME`` secret variables of every
  environment and ``HOME`` (salted digest: they render flows and mask output).

:func:`answer` runs right after the command line is parsed, for exactly the
shapes it knows (``plan ENV`` / ``export ENV``, default, ``-q`` or ``--json``, no
other option, no log level that prints info). It takes the environment's lock as
the full path does (held elsewhere: the full path, which says its answer may be
stale), and prints the record's text only when every input is what the record
says. Anything else (no record, another version or fingerprint, a checksum that
does not match, an unreadable file, a symlink in the folder, a symbolic or
half-written ref, a clock earlier than the record) means the full path, silently.

The racy rule is git's: the record is written only when every entry of the
listings is older than the full run's start by :data:`MARGIN` (timestamps are
the kernel's coarse clock; 2 s also covers filesystems with 2-second times), so
an edit after the record changes a ctime the record does not hold. What is
compared by content (config, schema, refs) needs no such rule. Nothing is
written by this module: it only reads, and prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from typing import Any

from reconciler.codeprint import fingerprint_now as code_fingerprint

__all__ = ["answer", "shape", "code_fingerprint", "listing", "refs_state", "record_path", "read_record",
           "FORMAT", "MARGIN", "KIND"]

KIND = "clean"
FORMAT = 1
MARGIN = 2_000_000_000  # ns: an entry newer than the run's start minus this is not vouched for
_MAGIC = b"reconciler-cache"


def shape(args: Any) -> tuple[str, str, str] | None:
    """(command, env, mode) for the argument shapes a record may answer, else None."""
    d = vars(args)
    if d.get("command") not in ("plan", "export") or d.get("verbose") or d.get("log_level") not in (None, "warning",
                                                                                                    "error"):
        return None
    env = d.get("env")
    if not isinstance(env, str) or not env or not all(c.isalnum() or c in "._-" for c in env) or env in (".", ".."):
        return None
    known = {"config", "log_level", "log_format", "verbose", "no_progress", "command", "env", "quiet", "json"}
    if d["command"] == "plan":
        if d.get("against") is not None or d.get("status") or d.get("format") not in (None, "text", "json"):
            return None
        known |= {"against", "status", "format"}
        fmt = "json" if d.get("json") or d.get("format") == "json" else "text"
    else:
        if d.get("allow_mass_delete"):
            return None
        known |= {"allow_mass_delete"}
        fmt = "json" if d.get("json") else "text"
    if set(d) - known:
        return None
    mode = "json" if fmt == "json" else ("quiet" if d.get("quiet") else "default")
    return d["command"], env, mode


def listing(root: str) -> tuple[str, int] | None:
    """A digest of the full lstat listing under ``root`` (itself included) and its newest mtime or ctime;
    None when it holds anything a stat cannot vouch for (a symlink, a special file, a write's hidden file).
    In the order the folder lists (an unchanged folder lists the same; another order only costs a full path)."""
    from array import array

    h = hashlib.sha256()
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        return None
    stack = [(root, st)]
    newest = 0
    is_dir, is_reg = stat.S_ISDIR, stat.S_ISREG
    while stack:
        path, dst = stack.pop()
        with os.scandir(path) as it:
            entries = [(e, e.stat(follow_symlinks=False)) for e in it]
        nums = [dst.st_mode, dst.st_ino, dst.st_dev, dst.st_mtime_ns, dst.st_ctime_ns]
        for e, s in entries:
            mode = s.st_mode
            if is_dir(mode):
                stack.append((e.path, s))
            elif not is_reg(mode):
                return None
            nums += (mode, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
        names = [e.name for e, _ in entries]
        if any(n.startswith(".reconciler-") for n in names):  # a crashed write's files: the full path sorts them
            return None
        vals = array("Q", nums)  # a negative time (before 1970) raises: the full path
        newest = max(newest, max(vals[3::5]), max(vals[4::5]))
        h.update(f"{path}\0{len(names)}\0".encode(errors="surrogateescape"))
        h.update("\0".join(names).encode(errors="surrogateescape"))
        h.update(b"\0")
        h.update(vals.tobytes())
    return h.hexdigest(), newest


def refs_state(gitdir: str) -> tuple[str, dict[str, str], list[tuple[str, int, int, int]]] | None:
    """(digest, ref -> id, stat of each ref file) of every ref and HEAD, read as files; None for anything
    unusual: a ref being written (``.lock``), a symbolic ref other than HEAD, reftable, a linked worktree,
    a symlinked folder under ``refs/``."""
    if os.path.exists(os.path.join(gitdir, "reftable")) or os.path.exists(os.path.join(gitdir, "commondir")):
        return None
    refs: dict[str, str] = {}
    stats: list[tuple[str, int, int, int]] = []
    packed = os.path.join(gitdir, "packed-refs")
    try:
        with open(packed, "rb") as f:
            data = f.read()
            st = os.fstat(f.fileno())
        stats.append(("packed-refs", st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
        for line in data.decode().splitlines():
            if not line or line[0] in "#^":
                continue
            oid, _, name = line.partition(" ")
            refs[name] = oid
    except FileNotFoundError:
        pass
    base = os.path.join(gitdir, "refs")
    for dirpath, dirnames, filenames in os.walk(base):
        if any(os.path.islink(os.path.join(dirpath, d)) for d in dirnames):
            return None  # git follows a symlinked folder of refs; this walk would not look inside
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(".lock"):
                return None
            full = os.path.join(dirpath, fn)
            with open(full, "rb") as f:
                value = f.read().decode().strip()
                st = os.fstat(f.fileno())
            if len(value) not in (40, 64) or not all(c in "0123456789abcdef" for c in value):
                return None
            name = os.path.relpath(full, gitdir).replace(os.sep, "/")
            refs[name] = value
            stats.append((name, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
    extra = []
    for name in ("HEAD", "shallow", "info/grafts", "objects/info/alternates"):
        try:
            with open(os.path.join(gitdir, name), "rb") as f:
                extra.append((name, f.read().decode()))
        except FileNotFoundError:
            extra.append((name, None))
    digest = hashlib.sha256(json.dumps([sorted(refs.items()), extra, objects_state(gitdir)]).encode()).hexdigest()
    return digest, refs, stats


def objects_state(gitdir: str) -> list[list[Any]]:
    """The stat of the object store's folders and pack files: objects deleted since (a broken copy, a
    clean-up by hand) are the full path's error, never "in sync" from a record."""
    out: list[list[Any]] = []
    for sub in ("", "pack"):
        with os.scandir(os.path.join(gitdir, "objects", sub)) as it:
            for e in sorted(it, key=lambda e: e.name):
                st = e.stat(follow_symlinks=False)
                out.append([sub, e.name, st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return out


def secret_digest(prefixes: list[str], salt: str) -> str:
    """A salted digest of the secret variables of these prefixes (and ``HOME``, which config paths expand)."""
    items = sorted((k, v) for k, v in os.environ.items() if any(p and k.startswith(p) for p in prefixes))
    return hashlib.sha256(json.dumps([salt, items, os.environ.get("HOME")]).encode()).hexdigest()


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def config_path(args: Any) -> str:
    """The config file's absolute path, found as :func:`reconciler.config.find_config` finds it: joined to
    the working folder, never normalised (``link/../reconciler.toml`` opens the file beside the link's
    target, not the one beside the link, which is what a lexical ``os.path.abspath`` would name)."""
    p = getattr(args, "config", None) or os.environ.get("RECONCILER_CONFIG") or "reconciler.toml"
    return p if os.path.isabs(p) else os.path.join(os.getcwd(), p)


def config_base(cfg: str) -> str:
    """The folder the config's relative paths are relative to, as ``load_config`` resolves it (its
    folder's real path: a symlink on the way pointed elsewhere makes the same bytes name other places)."""
    return os.path.realpath(os.path.dirname(cfg))


def gitdir_of(repo_path: str) -> str | None:
    """The git dir pygit2 opens for the configured repository path (None: none there, or a ``.git`` file)."""
    if os.path.isfile(os.path.join(repo_path, "HEAD")):
        return repo_path
    dotgit = os.path.join(repo_path, ".git")
    return dotgit if os.path.isdir(dotgit) else None


def record_path(gitdir: str, command: str, env: str, mode: str) -> str:
    return os.path.join(gitdir, "reconciler", "index", env, f"{KIND}-{command}-{mode}")


def read_record(path: str) -> dict[str, Any] | None:
    """The record's body, or None: missing, another kind or format, truncated or corrupt."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    head, sep, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 4 or parts[0] != _MAGIC or parts[1] != KIND.encode() or parts[2] != str(FORMAT).encode():
        return None
    if hashlib.sha256(body).hexdigest().encode() != parts[3]:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _repo_path(cfg: str) -> str | None:
    """The repository path the config names: only a guess to find the record (the record names the
    config bytes it holds for, and was made from them). A plain ``path = "..."`` in ``[repository]`` is
    read by a line scan (tomllib costs ~10 ms of imports); anything else by tomllib."""
    with open(cfg, "rb") as f:
        data = f.read()
    p = _scan_repo_path(data.decode("utf-8"))
    if p is None:
        import tomllib

        repo = tomllib.loads(data.decode("utf-8")).get("repository", {})
        p = repo.get("path", "state/flows.git") if isinstance(repo, dict) else None
        if not isinstance(p, str):
            return None
    p = os.path.expanduser(p)
    return p if os.path.isabs(p) else os.path.join(config_base(cfg), p)


def _scan_repo_path(text: str) -> str | None:
    table, found = None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            table = line
            continue
        if table == "[repository]" and line.startswith("path") and line[4:].lstrip().startswith("="):
            value = line[4:].lstrip()[1:].strip()
            if len(value) < 2 or value[0] not in "\"'" or value[-1] != value[0] or "\\" in value \
                    or value[0] in value[1:-1] or found is not None:
                return None
            found = value[1:-1]
        elif "repository" in line.split("=")[0]:  # a dotted key or an inline table: tomllib
            return None
    return found if found is not None else ("state/flows.git" if "[repository" not in text else None)


def answer(args: Any) -> int | None:
    """Print the recorded answer and return its exit code, or None: the full path runs (and, for a
    shape a record may answer, :mod:`.fastrecord` is told to keep one when the answer is clean)."""
    started, mono = time.time_ns(), time.monotonic_ns()
    got = shape(args)
    if got is None:
        return None
    try:
        found = _answer(args, got, started)
    except Exception:  # anything unreadable or unexpected: the full path, which says what is wrong
        found = None
    if found is None:
        from .fastrecord import prepare

        prepare(args, got, started, mono)
        return None
    sys.stdout.write(found[0])  # outside the try: a failed write is this answer's, never the full path's
    sys.stdout.flush()  # printed again after part of the record's text
    return found[1]


def _answer(args: Any, got: tuple[str, str, str], started: int) -> tuple[str, int] | None:
    command, env, mode = got
    cfg = config_path(args)
    repo_path = _repo_path(cfg)
    gitdir = gitdir_of(repo_path) if repo_path else None
    if gitdir is None:
        return None
    rec = read_record(record_path(gitdir, command, env, mode))
    if rec is None or rec.get("shape") != [command, env, mode] or rec.get("config") != cfg \
            or rec.get("gitdir") != gitdir or started < rec.get("written_ns", 1 << 62) \
            or rec.get("base") != config_base(cfg):
        return None
    if rec.get("python") != [sys.version, sys.executable] or file_digest(cfg) != rec.get("config_sha256"):
        return None
    import fcntl

    fd = os.open(rec["lock"], os.O_RDWR)  # the full path's lock: held elsewhere, it says "may be stale"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if not _inputs_match(rec):
            return None
        out = rec["stdout"]
        exit_code = rec["exit"]
        if not isinstance(out, str) or not isinstance(exit_code, int):
            return None
        return out, exit_code
    finally:
        os.close(fd)


def _inputs_match(rec: dict[str, Any]) -> bool:
    for path, sha in rec["files"]:
        if file_digest(path) != sha:
            return False
    refs = refs_state(rec["gitdir"])
    if refs is None or refs[0] != rec["refs"]:
        return False
    if secret_digest(rec["secret_prefixes"], rec["salt"]) != rec["secrets"]:
        return False
    for configured, root, want in rec["listings"]:
        if os.path.realpath(configured) != root:  # a symlink on the way now points elsewhere
            return False
        got = listing(root)
        if got is None or got[0] != want:
            return False
    return rec.get("fingerprint") == code_fingerprint()
