"""Hostile input: every case gets a clear error, bounded time and memory, nothing written outside its place.

The README's reliability table lists these cases; some are also covered
closer to their module (canonical JSON, names, the HTTP surface).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.config import parse_config
from reconciler.errors import ConfigError
from reconciler.webhook import PushEvent, WebhookInvalid, WebhookRefused, authenticate, parse_push
from tests.conftest import Workspace, flow


@pytest.fixture
def prod(ws: Workspace) -> Workspace:
    ws.add_env("acceptance", drift="adopt")
    ws.add_env("production", drift="restore", prune=True)
    return ws


def push_raw(ws: Workspace, files: dict[str, bytes]) -> None:
    """Commit raw files to env/production with the git CLI, as a user would."""
    work = ws.root / "raw"
    if not work.exists():
        ws.git("init", "-q", "-b", "env/production", str(work))
    for rel, data in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    ws.git("add", "-A", cwd=work)
    ws.git("commit", "-q", "-m", "hostile", cwd=work)
    if not ws.repo.exists():
        ws.git("init", "-q", "--bare", str(ws.repo))  # the server's repository
    ws.git("push", "-q", "-f", str(ws.repo), "env/production", cwd=work)


def test_a_fifo_in_an_environment_folder_is_skipped_without_blocking(prod: Workspace) -> None:
    """Special files are reported and never opened (opening a FIFO would hang)."""
    os.mkfifo(prod.env_dir("acceptance") / "pipe.json")
    prod.put("acceptance", "ok.json", flow("ok"))
    started = time.monotonic()
    out = prod.cli("export", "acceptance")
    assert time.monotonic() - started < 30
    assert out.returncode == 1 and "not a regular file" in out.stderr
    assert "flows/ok/1.0.json" in prod.git("ls-tree", "-r", "--name-only", "env/acceptance", cwd=prod.repo)


def test_a_100_mb_file_in_a_folder_is_refused_unread(prod: Workspace) -> None:
    """Larger than the limit: reported by size, never read into memory."""
    big = prod.env_dir("acceptance") / "huge.json"
    with open(big, "wb") as f:
        f.truncate(100 * 1024 * 1024)
    out = prod.cli("export", "acceptance")
    assert out.returncode == 1 and "larger than the" in out.stderr and "huge.json" in out.stderr


def test_a_100_mb_flow_in_git_is_refused_before_it_is_read(prod: Workspace) -> None:
    """The blob's size is checked from its header; the flow is invalid with a clear message."""
    body = b'{"name": "huge", "version": "1", "pad": "' + b"x" * (100 * 1024 * 1024) + b'"}'
    push_raw(prod, {"flows/huge/1.json": body})
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "larger than the" in out.stderr and "flows/huge/1.json" in out.stderr
    assert list(prod.env_dir("production").iterdir()) == []


def test_nesting_10000_levels_deep_is_an_invalid_flow_not_a_crash(prod: Workspace) -> None:
    """In git and in a folder: a clear error, the other flows still sync."""
    deep = b'{"name": "deep", "version": "1", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    push_raw(prod, {"flows/deep/1.json": deep, "flows/fine/1.json": json.dumps(flow("fine", "1")).encode()})
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "nested deeper than" in out.stderr
    assert set(prod.live("production")) == {("fine", "1")}
    (prod.env_dir("acceptance") / "deep.json").write_bytes(deep)
    out = prod.cli("export", "acceptance")
    assert out.returncode == 1 and "nested deeper than" in out.stderr


def test_non_utf8_bytes_in_git_are_an_invalid_flow(prod: Workspace) -> None:
    """Latin-1 bytes are refused with the file named."""
    push_raw(prod, {"flows/latin/1.json": b'{"name": "latin", "version": "1", "x": "caf\xe9"}'})
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "flows/latin/1.json" in out.stderr and "UTF-8" in out.stderr


def test_duplicate_keys_keep_the_last_value_as_javascript_does(prod: Workspace) -> None:
    """Documented behaviour: the canonical form keeps the last of duplicate keys."""
    prod.put("acceptance", "dup.json", '{"name": "dup", "version": "1", "x": 1, "x": 2}')
    prod.cli("export", "acceptance", check=True)
    assert json.loads(prod.git("show", "env/acceptance:flows/dup/1.json", cwd=prod.repo))["x"] == 2


def test_huge_numbers_are_kept_exactly_or_refused_never_rounded(prod: Workspace) -> None:
    """2**200 survives export and sync digit for digit; 1e400 is refused."""
    prod.put("acceptance", "big.json", '{"name": "big", "version": "1", "n": %d}' % 2**200)
    prod.put("acceptance", "inf.json", '{"name": "inf", "version": "1", "n": 1e400}')
    out = prod.cli("export", "acceptance")
    assert out.returncode == 1 and "inf.json" in out.stderr
    assert str(2**200) in prod.git("show", "env/acceptance:flows/big/1.json", cwd=prod.repo)


@pytest.mark.parametrize("name", ["a/b", "../../escape", "nul\x00byte", "Orders", "orders", "оrders", "ｏrders", "..", "."])
def test_hostile_names_stay_inside_their_folders(prod: Workspace, name: str) -> None:
    """Slashes, dot segments, NUL, case and unicode look-alikes: distinct, encoded, inside flows/."""
    prod.put("acceptance", "x.json", flow(name, "1"))
    prod.cli("export", "acceptance", check=True)
    paths = prod.git("ls-tree", "-r", "--name-only", "env/acceptance", cwd=prod.repo).split("\n")
    assert len([p for p in paths if p]) == 1
    path = paths[0]
    assert path.startswith("flows/") and path.count("/") == 2 and "\x00" not in path
    prod.git("update-ref", "refs/heads/env/production", "refs/heads/env/acceptance", cwd=prod.repo)
    prod.cli("sync", "production", check=True)
    assert [json.loads(p.read_text())["name"] for p in prod.env_dir("production").iterdir()] == [name]
    assert sorted(p.name for p in prod.root.iterdir()) == sorted(["envs", "reconciler.toml", "state", "raw"][:3])


def test_a_stale_ref_lock_is_named_in_the_error_and_nothing_is_lost(prod: Workspace) -> None:
    """A .lock left by a crashed git process: a clear error saying which file, the edit stays in the folder."""
    prod.put("acceptance", "o.json", flow("orders"))
    prod.cli("export", "acceptance", check=True)
    lock = prod.repo / "refs" / "heads" / "env" / "acceptance.lock"
    lock.write_text("")
    prod.put("acceptance", "o.json", flow("orders", edited=True))
    out = prod.cli("sync", "acceptance")
    assert out.returncode == 1 and "acceptance.lock exists" in out.stderr
    assert json.loads((prod.env_dir("acceptance") / "o.json").read_text())["edited"] is True
    lock.unlink()
    assert prod.cli("sync", "acceptance").returncode == 0
    assert '"edited": true' in prod.git("show", "env/acceptance:flows/orders/1.0.json", cwd=prod.repo)


@pytest.mark.parametrize("ref", ["heads/env/acceptance", "reconciler/applied/acceptance"])
def test_a_ref_lock_older_than_stale_lock_after_is_removed_and_the_sync_goes_on(prod: Workspace, ref: str) -> None:
    """kill -9 during a ref update: an old .lock no longer stalls the environment; a logged warning names it."""
    prod.put("acceptance", "o.json", flow("orders"))
    prod.cli("export", "acceptance", check=True)
    lock = prod.repo / "refs" / f"{ref}.lock"
    lock.write_text("0" * 40 + "\n")
    old = time.time() - 61
    os.utime(lock, (old, old))
    prod.put("acceptance", "o.json", flow("orders", edited=True))
    out = prod.cli("sync", "acceptance")
    assert out.returncode == 0, out.stderr
    assert "removed a stale ref lock" in out.stderr and f"{ref}.lock" in out.stderr
    assert not lock.exists()
    assert '"edited": true' in prod.git("show", "env/acceptance:flows/orders/1.0.json", cwd=prod.repo)
    assert prod.git("rev-parse", f"refs/{ref}", cwd=prod.repo) == prod.git("rev-parse", "env/acceptance", cwd=prod.repo)


_toml_values = st.recursive(
    st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False), st.booleans()),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["repository", "server", "environment", "x"]),
                       st.one_of(_toml_values, st.lists(st.dictionaries(
                           st.sampled_from(["name", "driver", "path", "drift", "prune", "ignore", "branch", "params",
                                            "sort", "schema", "interval", "url"]),
                           _toml_values, max_size=6), max_size=3)), max_size=4))
def test_any_config_document_loads_or_gives_config_errors(tmp_path: Path, raw: dict) -> None:
    """Fuzzed config documents never raise anything but ConfigError."""
    try:
        parse_config(dict(raw), base=tmp_path)
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["X-Hub-Signature-256", "X-Gitlab-Token", "X-GitHub-Event", "X-Other"]),
                       st.text(max_size=80), max_size=4),
       st.binary(max_size=300))
def test_any_webhook_request_is_refused_rejected_or_understood(headers: dict, body: bytes) -> None:
    """Fuzzed webhook headers and bodies raise only the two webhook errors."""
    try:
        provider = authenticate(headers, body, "secret")
        assert isinstance(parse_push(provider, headers, body), PushEvent)
    except (WebhookRefused, WebhookInvalid):
        pass
