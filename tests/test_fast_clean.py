"""The clean record (reconciler.cli.fast): a cold no-change ``plan ENV`` / ``export ENV`` answered without the engine.

Real processes, real git repositories (the git CLI as the user) and real folders. Each test
checks two things: whether the answer came from the record (the process imported none of
pydantic, pygit2, structlog, the engine) and that the answer is the full path's, byte for byte.
The record vouches only for entries older than its run's start by fast.MARGIN (git's racy
rule), so the tests wait that long after their last write before the run that records.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.cli import fast
from tests.conftest import Workspace, flow, git_env

HEAVY = ("pydantic", "pygit2", "structlog", "reconciler.engine", "reconciler.config")
PROBE = (
    "import json, sys\n"
    "from reconciler.cli import main\n"
    "code = main()\n"
    "sys.stdout.flush()\n"
    f"sys.stderr.write('\\nLOADED ' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]) + '\\n')\n"
    "sys.exit(code)\n"
)


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[bytes]):
        err = proc.stderr.decode()
        head, _, tail = err.rpartition("\nLOADED ")
        self.stdout, self.code, self.stderr = proc.stdout, proc.returncode, head
        self.loaded = json.loads(tail)

    @property
    def fast(self) -> bool:
        return self.loaded == []


def run(ws: Workspace, *args: str, extra_env: dict[str, str] | None = None, prefix: str = "") -> Run:
    env = dict(os.environ, RECONCILER_CONFIG=str(ws.config), **(extra_env or {}))
    proc = subprocess.run([sys.executable, "-c", prefix + PROBE, *args], cwd=ws.root, env=env, capture_output=True,
                          timeout=120)
    return Run(proc)


def settle() -> None:
    """Let every entry written so far become older than the racy margin."""
    time.sleep(fast.MARGIN / 1e9 + 0.2)


def record_file(ws: Workspace, command: str = "plan", mode: str = "default") -> Path:
    return ws.repo / "reconciler" / "index" / "acceptance" / f"clean-{command}-{mode}"


@pytest.fixture
def clean(ws: Workspace) -> Workspace:
    """acceptance exported (3 flows), settled: the next plan/export records its clean answer."""
    ws.add_env("acceptance", drift="adopt")
    for i in range(3):
        ws.put("acceptance", f"f{i}.json", flow(f"flow{i}", "1.0"))
    assert ws.cli("export", "acceptance").returncode == 0
    settle()
    return ws


def recorded(ws: Workspace, *args: str) -> Run:
    """The full answer, recorded; then the same command answered from the record, checked identical."""
    full = run(ws, *args)
    assert not full.fast
    again = run(ws, *args)
    assert again.fast, f"not answered from the record: {again.loaded} {again.stderr}"
    assert (again.stdout, again.code, again.stderr) == (full.stdout, full.code, full.stderr)
    return full


@pytest.mark.parametrize("args", [("plan", "acceptance"), ("plan", "acceptance", "-q"), ("plan", "acceptance", "--json"),
                                  ("export", "acceptance"), ("export", "acceptance", "-q"),
                                  ("export", "acceptance", "--json")])
def test_the_recorded_answer_is_the_full_answer_byte_for_byte(clean: Workspace, args: tuple[str, ...]) -> None:
    full = recorded(clean, *args)
    assert full.code == 0
    if "--json" in args:
        assert json.loads(full.stdout)["steps"] == []
    else:
        assert full.stdout.startswith(b"acceptance")


def test_only_the_shapes_it_knows_and_no_info_logging(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    for args in (("plan", "acceptance", "-v"), ("plan", "acceptance", "--log-level", "info"),
                 ("plan", "acceptance", "--against", "env/acceptance"), ("status",), ("sync", "acceptance", "--dry-run")):
        assert not run(clean, *args).fast, args


def assert_full_and_right(ws: Workspace, *args: str, code: int | None = None) -> Run:
    """The next run takes the full path; its answer is the one a run without any record gives."""
    got = run(ws, *args)
    assert not got.fast
    for f in record_file(ws).parent.glob("clean-*"):
        f.unlink()
    ref = run(ws, *args)
    assert (got.stdout, got.code) == (ref.stdout, ref.code)
    if code is not None:
        assert got.code == code, got.stdout
    return got


def test_a_flow_edited_with_the_same_size_and_mtime_is_seen(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    path = clean.env_dir("acceptance") / "f1.json"
    st = path.stat()
    text = path.read_text()
    edited = text.replace("payload.total * 1.2", "payload.total * 1.3")
    assert len(edited) == len(text)
    path.write_text(edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back: only the ctime tells
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    got = assert_full_and_right(clean, "plan", "acceptance", code=2)
    assert b"drifted 1" in got.stdout


def test_a_flow_replaced_by_another_file_with_the_same_stat_is_seen(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance", "-q")
    path = clean.env_dir("acceptance") / "f2.json"
    st = path.stat()
    new = path.with_name("new.tmp")
    new.write_text(path.read_text().replace("payload.total * 1.2", "payload.total * 9.9"))
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)  # another inode under the same name
    assert_full_and_right(clean, "plan", "acceptance", "-q", code=2)


@pytest.mark.parametrize("change", ["add", "remove", "rename", "mkdir"])
def test_the_folder_changed_is_seen(clean: Workspace, change: str) -> None:
    recorded(clean, "plan", "acceptance")
    folder = clean.env_dir("acceptance")
    if change == "add":
        clean.put("acceptance", "f9.json", flow("flow9", "1.0"))
    elif change == "remove":
        (folder / "f0.json").unlink()
    elif change == "rename":
        (folder / "f0.json").rename(folder / "g0.json")
    else:
        (folder / "sub").mkdir()
    got = assert_full_and_right(clean, "plan", "acceptance")
    if change in ("add", "remove"):
        assert got.code == 2


def test_the_config_edited_with_the_same_size_is_seen(clean: Workspace) -> None:
    recorded(clean, "export", "acceptance")
    text = clean.config.read_text()
    edited = text.replace('"/exportedAt"', '"/exportedAx"')
    assert len(edited) == len(text) and edited != text
    st = clean.config.stat()
    clean.config.write_text(edited)
    os.utime(clean.config, ns=(st.st_atime_ns, st.st_mtime_ns))
    got = assert_full_and_right(clean, "plan", "acceptance")
    assert got.code == 2  # exportedAt is no longer ignored: every flow differs
    assert not run(clean, "export", "acceptance").fast


def test_the_branch_moved_by_a_push_from_a_clone_is_seen(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    recorded(clean, "export", "acceptance", "-q")
    clone = clean.clone("env/acceptance")
    target = next((clone / "flows").rglob("*.json"))
    target.write_text(target.read_text().replace("payload.total * 1.2", "payload.total * 2.0"))
    clean.git("commit", "-q", "-am", "edit in git", cwd=clone)
    clean.git("push", "-q", "origin", "env/acceptance", cwd=clone)
    assert_full_and_right(clean, "plan", "acceptance", code=2)
    got = run(clean, "export", "acceptance", "-q")
    assert not got.fast and b"not applied yet" in got.stdout


def test_the_applied_marker_moved_is_seen(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance", "--json")
    empty = clean.git("commit-tree", "-m", "x", "4b825dc642cb6eb9a060e54bf8d69288fbee4904", cwd=clean.repo).strip()
    clean.git("update-ref", "refs/reconciler/applied/acceptance", empty, cwd=clean.repo)
    assert_full_and_right(clean, "plan", "acceptance", "--json")


def test_packed_refs_are_read_and_a_pack_changes_nothing(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    clean.git("pack-refs", "--all", cwd=clean.repo)
    assert not (clean.repo / "refs" / "heads" / "env" / "acceptance").exists()
    assert run(clean, "plan", "acceptance").fast  # the same refs, packed
    tip = clean.git("rev-parse", "env/acceptance", cwd=clean.repo).strip()
    parent = clean.git("commit-tree", "-m", "moved", f"{tip}^{{tree}}", "-p", tip, cwd=clean.repo).strip()
    packed = (clean.repo / "packed-refs").read_text().replace(f"{tip} refs/heads/env/acceptance",
                                                              f"{parent} refs/heads/env/acceptance")
    (clean.repo / "packed-refs").write_text(packed)
    assert not run(clean, "plan", "acceptance").fast


@pytest.mark.parametrize("state", ["suspend", "quarantine"])
def test_suspension_and_quarantine_are_seen(clean: Workspace, state: str) -> None:
    recorded(clean, "plan", "acceptance")
    if state == "suspend":
        assert clean.cli("suspend", "acceptance").returncode == 0
    else:  # as the engine writes it: a ref holding the state
        tip = clean.git("rev-parse", "env/acceptance", cwd=clean.repo).strip()
        clean.git("update-ref", "refs/reconciler/quarantine/acceptance", tip, cwd=clean.repo)
    assert not run(clean, "plan", "acceptance").fast
    if state == "suspend":
        settle()
        run(clean, "plan", "acceptance")
        assert not run(clean, "plan", "acceptance").fast  # never recorded while suspended


def test_other_code_is_not_trusted(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    other = "import reconciler\nreconciler.__version__ = '99.0'\n"
    got = run(clean, "plan", "acceptance", prefix=other)
    assert not got.fast and got.code == 0


def test_the_fingerprint_is_the_caches_own() -> None:
    from reconciler.localcache import code_fingerprint

    assert fast.code_fingerprint() == code_fingerprint()


def _rewrite(path: Path, mutate) -> None:
    head, _, body = path.read_bytes().partition(b"\n")
    doc = json.loads(body)
    mutate(doc)
    data = json.dumps(doc).encode()
    parts = head.split(b" ")
    path.write_bytes(b" ".join([*parts[:3], hashlib.sha256(data).hexdigest().encode()]) + b"\n" + data)


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "foreign-format", "empty", "clock-backwards",
                                    "other-output", "not-json"])
def test_a_damaged_record_means_the_full_path(clean: Workspace, damage: str) -> None:
    recorded(clean, "plan", "acceptance")
    path = record_file(clean)
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "corrupt":
        path.write_bytes(raw.replace(b"in sync 3", b"in sync 4"))  # the checksum no longer matches
    elif damage == "foreign-format":
        path.write_bytes(raw.replace(b"reconciler-cache clean 1 ", b"reconciler-cache clean 2 ", 1))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "clock-backwards":  # the record says it was written after now
        _rewrite(path, lambda d: d.update(written_ns=time.time_ns() + 3600 * 10**9))
    elif damage == "other-output":  # a well-formed record of other inputs (another config's bytes)
        _rewrite(path, lambda d: d.update(config_sha256="0" * 64, stdout="lies\n"))
    else:
        path.write_bytes(b"reconciler-cache clean 1 " + hashlib.sha256(b"{").hexdigest().encode() + b"\n{")
    got = run(clean, "plan", "acceptance")
    assert not got.fast and got.code == 0 and got.stdout.startswith(b"acceptance (plan): in sync 3")


def test_a_file_newer_than_the_margin_is_not_vouched_for(clean: Workspace) -> None:
    path = clean.env_dir("acceptance") / "f0.json"
    path.write_text(path.read_text())  # just written: racy
    run(clean, "plan", "acceptance")
    assert not record_file(clean).exists()
    assert not run(clean, "plan", "acceptance").fast


def test_a_mtime_in_the_future_is_never_vouched_for(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    path = clean.env_dir("acceptance") / "f0.json"
    future = time.time_ns() + 86400 * 10**9
    os.utime(path, ns=(future, future))
    assert not run(clean, "plan", "acceptance").fast
    assert not record_file(clean).exists()  # newest entry is not older than the run: nothing recorded
    assert not run(clean, "plan", "acceptance").fast


def test_a_secret_variable_that_masks_the_output_is_seen(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    got = run(clean, "plan", "acceptance", extra_env={"RECONCILER_SECRET_TOKEN": "acceptance"})
    assert not got.fast and b"acceptance (plan)" not in got.stdout  # masked by the full path


def test_a_lock_held_elsewhere_means_the_full_path_and_its_stale_note(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    fd = os.open(clean.repo / "reconciler-locks" / "acceptance.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        got = run(clean, "plan", "acceptance")
    finally:
        os.close(fd)
    assert not got.fast and b"another process is reconciling" in got.stdout
    assert not record_file(clean).exists()  # that answer is not recorded, and the old record went


def test_two_processes_at_once(clean: Workspace) -> None:
    """Recorders and readers at once: every answer is the full one (a run that found the lock taken
    says so and records nothing), and what is left is a whole record or none."""
    full = recorded(clean, "plan", "acceptance")
    stale = full.stdout + b"  (another process is reconciling this environment right now: this plan may already be out of date)\n"
    for round in range(2):  # with no record (four recorders), then with one (readers and recorders)
        if round == 0:
            record_file(clean).unlink()
        results: list[Run] = []

        def go() -> None:
            results.append(run(clean, "plan", "acceptance"))

        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.code == 0 and (r.stdout == full.stdout or (r.stdout == stale and not r.fast)) for r in results)
        assert not record_file(clean).exists() or fast.read_record(str(record_file(clean))) is not None
        if not record_file(clean).exists():
            run(clean, "plan", "acceptance")
    assert run(clean, "plan", "acceptance").fast


def test_an_export_that_commits_is_not_recorded_and_the_next_plan_is_full(clean: Workspace) -> None:
    recorded(clean, "plan", "acceptance")
    recorded(clean, "export", "acceptance")
    clean.put("acceptance", "f7.json", flow("flow7", "1.0"))
    got = run(clean, "export", "acceptance")
    assert not got.fast and b"exported to env/acceptance" in got.stdout
    assert not record_file(clean, "export").exists()
    assert not run(clean, "plan", "acceptance").fast


def test_not_for_a_repository_with_a_remote(clean: Workspace, tmp_path: Path) -> None:
    recorded(clean, "plan", "acceptance")
    server = tmp_path / "server.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(clean.repo), str(server)], check=True, env=git_env(tmp_path))
    text = clean.config.read_text().replace('path = "state/flows.git"',
                                            f'path = "state/flows.git"\nremote = "{server}"')
    clean.config.write_text(text)
    settle()
    run(clean, "plan", "acceptance")
    assert not run(clean, "plan", "acceptance").fast


@pytest.mark.parametrize("text", [
    '[repository]\npath = "state/flows.git"\n',
    "[repository]\npath = 'elsewhere/r.git'\n[[environment]]\nname = \"a\"\n",
    '[repository]\npath = "x.git" # a comment\n',
    'repository.path = "dotted.git"\n',
    'repository = { path = "inline.git" }\n',
    '[repository]\nauthor_name = "me"\n',
    '[[environment]]\nname = "a"\n',
    '[repository] # the store\npath = "c.git"\n',
])
def test_the_repository_path_is_the_one_toml_reads(tmp_path: Path, text: str) -> None:
    import tomllib

    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(text)
    want = tomllib.loads(text).get("repository", {}).get("path", "state/flows.git")
    assert fast._repo_path(str(cfg)) == os.path.join(os.path.realpath(tmp_path), want)


def test_a_secret_file_added_is_seen(ws: Workspace) -> None:
    secrets = ws.root / "secrets"
    secrets.mkdir()
    (secrets / "TOKEN").write_text("not-in-the-output")
    ws.add_env("acceptance", drift="adopt", secrets_dir="secrets")
    ws.put("acceptance", "f0.json", flow("flow0", "1.0"))
    assert ws.cli("export", "acceptance").returncode == 0
    settle()
    recorded(ws, "plan", "acceptance")
    (secrets / "OTHER").write_text("acceptance")  # now a secret the output must mask
    got = run(ws, "plan", "acceptance")
    assert not got.fast and b"acceptance (plan)" not in got.stdout
