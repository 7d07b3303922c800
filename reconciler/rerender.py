"""Drift that is only a changed parameter or secret: told apart from an edit, and deployed.

A password rotated in the secret store, or a parameter given a new value,
changes what git's version renders to while git itself is unchanged: the
applied marker and the branch agree (A = D) and the live flow differs (L != D),
which the three-way table reads as drift. Nobody edited the environment when

- the live flow is exactly what this machine last wrote for it (the ids of the
  rendered versions in the environment are kept per environment in the git dir,
  ``<gitdir>/reconciler/local/rendered-<env>.json``, and what changed since it
  was last written whole in ``rendered-<env>.log`` beside it: never in its
  history or on the remote, since such an id is a hash over the secret values), or
- the live flow with its placeholders put back (and what the platform never
  returns taken from git: :class:`~reconciler.drivers.WriteOnly`) is git's version.

Then the new values are deployed whatever the drift policy, and no live edit is
undone. Anything else stays drift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bisect
import functools
import json
import operator
from pathlib import Path

import orjson

from reconciler.apply import NotForGit, live_git_form
from reconciler.canonical import InvalidJSON, canonicalize
from reconciler.drivers import Driver, Rendering, WriteOnly
from reconciler.errors import ReconcilerError
from reconciler.flows import FlowKey
from reconciler.gitform import git_doc, stored_doc
from reconciler.gitstore import GitStore
from reconciler.outcome import Snapshot
from reconciler.plan import RERENDERED, Action, Plan, Policy, State, Step

if TYPE_CHECKING:
    from reconciler.envconfig import EnvironmentConfig

__all__ = ["rerendered", "REASON", "remember", "keep"]

REASON = RERENDERED


def rerendered(driver: Driver, store: GitStore, env: EnvironmentConfig, snap: Snapshot, p: Plan, policy: Policy,
               seen: dict[tuple, bool]) -> Plan:
    """``p`` with each such drifted step turned into an import (``seen`` remembers the answers)."""
    candidates = [s for s in p.notable if s.state == State.DRIFTED and s.base == s.desired and s.live is not None
                  and s.desired is not None and s.key in snap.tip_blobs]
    if not candidates:
        return p
    fingerprint = snap.templating.fingerprint()
    # a driver that presents git's flows in its own form (Rendering) compares ids of that form: not skipped
    identity = not snap.templating.active and not isinstance(driver, (WriteOnly, Rendering))
    written = _load(store, env.name)
    changed: dict[FlowKey, Step] = {}
    for step in candidates:
        blob = snap.tip_blobs[step.key]
        memo = (step.key, step.live, blob, fingerprint)
        if written.get(step.key) == step.live:
            seen[memo] = True
        if memo not in seen and identity and _stored_is_rendered(store, blob):
            seen[memo] = False  # see _stored_is_rendered: git's version is the live one only when L = D
        if memo not in seen:
            try:
                seen[memo] = _same_as_git(driver, store, env, snap, step.key, blob)
            except (NotForGit, ReconcilerError, InvalidJSON, ValueError):
                seen[memo] = False
        if seen[memo]:
            if policy.override:
                changed[step.key] = step._replace(action=Action.IMPORT, state=State.PENDING, reason=REASON)
            else:
                changed[step.key] = step._replace(action=Action.BLOCKED, state=State.PENDING,
                                                  reason=f"{REASON}; not deployed: override is off here")
    if len(seen) > 4 * len(snap.tip_blobs) + 64:
        seen.clear()
    return Plan(tuple(changed.get(s.key, s) for s in p.steps)) if changed else p


def _same_as_git(driver: Driver, store: GitStore, env: EnvironmentConfig, snap: Snapshot, key: FlowKey,
                 entry: str) -> bool:
    """Is the live flow, in git's language, git's version (whole documents: code sidecars joined)?"""
    where = f"{snap.branch}:{key}"
    live, _, problems = stored_doc(live_git_form(driver, store, env, snap, key), where=where, flow=str(key))
    if problems:
        return False
    return canonicalize(live, env.rules) == canonicalize(git_doc(store, entry, where=where, flow=str(key)), env.rules)


def _stored_is_rendered(store: GitStore, entry: str) -> bool:
    """In an environment with no parameter and no secret and a driver without write-only fields that
    compares git's flows as they are (not :class:`~reconciler.drivers.Rendering`), is
    git's version at ``entry`` provably its own rendering (no ``${`` and no ``\\u`` escape that could
    spell one, :meth:`~reconciler.templating.Templating.renderer`)? Then :func:`_same_as_git` cannot
    be true of a drifted flow: nothing is put back into the live flow and nothing is taken from git
    (no placeholder, no write-only field), so it compares the canonical live document with git's,
    which is its rendering here, and the ids the plan compares (L != D) are the blob ids of those
    same canonical documents. Unreadable: False (the full check decides)."""
    try:
        stored = store.flow_files(entry)
    except ReconcilerError:
        return False
    raw = stored.text()
    return b"${" not in raw and b"\\u" not in raw


def _name(env: str) -> str:
    return f"rendered-{env}.json"


def _log_name(env: str) -> str:
    return f"rendered-{env}.log"


# what was last read or written of each map, with its files' (mtime, size, inode): a service reads
# its own map once, not at every run (10,000 flows: ~20 ms of JSON per run)
_CACHE: dict[str, tuple[tuple[object, object], dict[FlowKey, str]]] = {}


# log -> the map's (mtime, size, inode) the log this process started extends: it appends only to
# its own logs, so a line torn by a crash of another process is always the last line of its log
_LOGS: dict[str, tuple[int, int, int]] = {}
# map -> the steps, done keys and map of the last remember() (the next one looks at the steps that changed)
_LAST: dict[str, tuple[tuple, frozenset, dict]] = {}
_KEY = operator.attrgetter("key")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _stamps(store: GitStore, env: str) -> tuple[object, object]:
    return _stamp(store.local_path(_name(env))), _stamp(store.local_path(_log_name(env)))


def _key(r: object) -> FlowKey | None:
    if isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r):
        return FlowKey(*r)
    return None


def _load(store: GitStore, env: str) -> dict[FlowKey, str]:
    """The map (flow -> id of what was written) as kept: ``[[[name, version], id], ...]`` in the
    map's file, then the changes appended to its log since it was last written whole: a first line
    naming the map's file it extends (``{"map": [mtime_ns, size, inode]}``: a log beside another
    map is not used), then one JSON array of ``[[name, version], id or null]`` a line (a torn last
    line is the end)."""
    path = str(store.local_path(_name(env)))
    stamps = _stamps(store, env)
    cached = _CACHE.get(path)
    if stamps[0] is not None and cached is not None and cached[0] == stamps:
        return cached[1]
    raw = store.read_local(_name(env))
    try:
        got = orjson.loads(raw) if raw else []  # its errors are ValueErrors; ~2x json's speed on 10,000 rows
    except ValueError:
        got = []
    out: dict[FlowKey, str] = _rows(got) if isinstance(got, list) else {}
    if isinstance(got, list) and len(out) != len(got):
        out = {}
        for r in got:
            if isinstance(r, list) and len(r) == 2 and isinstance(r[1], str) and (k := _key(r[0])) is not None:
                out[k] = r[1]
    lines = (store.read_local(_log_name(env)) or b"").splitlines()
    try:
        head = json.loads(lines[0]) if lines else None
    except ValueError:
        head = None
    if not (isinstance(head, dict) and stamps[0] is not None and head.get("map") == list(stamps[0])):
        lines = []  # no log, or one left beside another map (written whole since by another process)
    for line in lines[1:]:
        try:
            changes = json.loads(line)
        except ValueError:
            break  # a line torn by a crash: what it said was not done yet
        if not isinstance(changes, list):
            break
        for r in changes:
            if isinstance(r, list) and len(r) == 2 and (k := _key(r[0])) is not None:
                if isinstance(r[1], str):
                    out[k] = r[1]
                elif r[1] is None:
                    out.pop(k, None)
    if stamps[0] is not None:
        _CACHE[path] = (stamps, out)
    return out


def _rows(got: list) -> dict[FlowKey, str]:
    """The map's rows checked whole and made a dict at C speed (10,000 flows: ~3 ms, not ~20); {} when
    any row is not ``[[name, version], id]`` or a key comes twice (then read row by row)."""
    if not got or set(map(type, got)) != {list} or set(map(len, got)) != {2}:
        return {}
    keys, ids = zip(*got)
    if set(map(type, keys)) != {list} or set(map(len, keys)) != {2} or set(map(type, ids)) != {str}:
        return {}
    names, versions = zip(*keys)
    if set(map(type, names)) | set(map(type, versions)) != {str}:
        return {}
    return dict(zip(map(_new_key, zip(names, versions)), ids))


_new_key = functools.partial(tuple.__new__, FlowKey)


def remember(store: GitStore, env: str, plan: Plan, done: frozenset[FlowKey] | set[FlowKey], *,
             later: bool = False) -> None:
    """After a run: the id of each flow the environment now holds as rendered from git (in sync,
    imported by this run, or adopted into git by it); other flows keep what was remembered of them
    while they are live. ``later`` (the service): only the changes are appended to the map's log,
    and :func:`keep` writes the map whole when the service is idle; a crash before costs nothing,
    the log is the map's."""
    path = str(store.local_path(_name(env)))
    if not later and _independent(plan.notable, done):
        # Every entry follows from this plan alone (no flow keeps what was remembered of it): the map is
        # not read (10,000 rows: ~18 ms), only written, unless this process knows it holds exactly that.
        now = _now(plan.steps, done, {})
        cached, stamps = _CACHE.get(path), _stamps(store, env)
        _LAST[path] = (plan.steps, frozenset(done), now)
        if cached is None or cached[1] != now or cached[0] != stamps or stamps[0] is None:
            _write(store, env, now)
        return
    before = _load(store, env)
    last = _LAST.get(path)
    steps = plan.steps
    redo = _redo(steps, done, last) if last is not None and last[2] is before else None
    if redo is None:
        now = _now(steps, done, before)
    else:  # the other flows' entries are what the last run remembered of the same steps
        now = dict(before)
        for s in redo:
            now.pop(s.key, None)
        now.update(_now(redo, done, before))
    _LAST[path] = (steps, frozenset(done), now)
    if before == now:
        _LAST[path] = (steps, frozenset(done), before)
        return
    stamps, log = _stamps(store, env), str(store.local_path(_log_name(env)))
    if later and stamps[0] is not None and (stamps[1] is None or _LOGS.get(log) == stamps[0]):
        got = before.get
        changes = [[[k.name, k.version], v] for k, v in now.items() if got(k) != v]
        changes += [[[k.name, k.version], None] for k in before.keys() - now.keys()]
        line = json.dumps(changes, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if stamps[1] is None:  # a new log: first, which map it extends
            line = json.dumps({"map": list(stamps[0])}).encode() + b"\n" + line
            _LOGS[log] = stamps[0]
        if _append_log(store, env, line):
            _CACHE[str(store.local_path(_name(env)))] = (_stamps(store, env), now)
            return
    _write(store, env, now)


def _independent(notable: tuple[Step, ...], done) -> bool:
    """Whether :func:`_now` takes nothing from the map before for these steps (the other steps are in
    sync with nothing to do: their entry is their live id): each is done, or not live."""
    imp, kept = Action.IMPORT, (Action.ADOPT, Action.ADVANCE)
    for s in notable:
        if s.action is Action.NONE or s.live is None:
            continue
        if s.key in done and ((s.action is imp and s.desired is not None) or s.action in kept):
            continue
        return False
    return True


def _redo(steps: tuple[Step, ...], done, last: tuple[tuple, frozenset, dict]) -> list[Step] | None:
    """The steps whose entry may differ from what the last remember() made of ``last``'s steps: those
    that are not the same objects at the same place (a replan keeps the steps it did not decide
    again) and those of flows done now or then; None when the steps do not line up (look at all)."""
    old, old_done = last[0], last[1]
    if len(old) != len(steps):
        return None
    redo = {}
    for i, (s, o) in enumerate(zip(steps, old)):
        if s is not o:
            if s.key != o.key:
                return None
            redo[i] = s
    for k in (*done, *old_done):
        i = bisect.bisect_left(steps, k, key=_KEY)  # the steps are in key order
        if i >= len(steps) or steps[i].key != k:
            return None
        redo[i] = steps[i]
    return list(redo.values())


def _now(steps, done, before: dict[FlowKey, str]) -> dict[FlowKey, str]:
    """The map for these steps: what each flow the environment holds was rendered to."""
    now: dict[FlowKey, str] = {}
    none, imp, kept = Action.NONE, Action.IMPORT, (Action.ADOPT, Action.ADVANCE)
    for s in steps:
        a, k = s.action, s.key
        if a is none:
            if s.live is not None:
                now[k] = s.live
        elif a is imp and k in done and s.desired is not None:
            now[k] = s.desired
        elif a in kept and k in done and s.live is not None:
            now[k] = s.live  # git now holds the live flow: it is what git renders to here
        elif s.live is not None and k in before:
            now[k] = before[k]
    return now


def keep(store: GitStore, env: str) -> None:
    """Write the map whole and drop its log (the service calls it when idle, holding the lock)."""
    if _stamp(store.local_path(_log_name(env))) is not None:
        _write(store, env, _load(store, env))


def _append_log(store: GitStore, env: str, line: bytes) -> bool:
    try:
        with open(store.local_path(_log_name(env)), "ab") as f:
            f.write(line)
        return True
    except OSError:
        return False


def _write(store: GitStore, env: str, now: dict[FlowKey, str]) -> None:
    """The map written whole (by rename), then its log dropped: a crash between the two replays
    the log over the map it is already in, which changes nothing."""
    try:  # [[[name, version], id], ...]: keys as plain tuples, which orjson writes as arrays (~8x json's speed)
        data = orjson.dumps(list(zip(map(tuple, now.keys()), now.values())))
    except orjson.JSONEncodeError:  # a name orjson refuses (a lone surrogate): as json writes it
        data = json.dumps(list(now.items()), separators=(",", ":"), ensure_ascii=False).encode()
    store.write_local(_name(env), data)
    try:
        store.local_path(_log_name(env)).unlink(missing_ok=True)
    except OSError:
        pass
    stamps = _stamps(store, env)
    if stamps[0] is not None:
        _CACHE[str(store.local_path(_name(env)))] = (stamps, now)
