"""What a fresh ``reconciler sync`` of a 1% change from git takes shortcuts with, attacked (issue 15, C8).

- the kept reads after a sync keep the marker's side as the tip's when the marker moved to the tip's tree:
  a marker moved by hand, a branch force-pushed to an older commit, a kept file cut short, all give
  the answer of an engine that keeps nothing;
- the re-render map is read at C speed when every row has its shape, row by row (the odd ones left out)
  when not, nothing from a file cut short, and written in the same format;
- the directory driver hashes a file instead of parsing it only when its bytes are exactly the
  canonical bytes of the flow looked for: other formatting of the same flow, another flow, or a file
  swapped for another after the scan are parsed and answered as they are;
- the plan's steps stay in key order whatever order the sides list their keys in.

Real git (the git CLI and pygit2), real folders, the real command line.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import orjson

from reconciler.canonical import Rules, blob_id, canonical_bytes
from reconciler.config import load_config
from reconciler.drivers.directory.driver import DirectoryDriver
from reconciler.drivers.directory.fs import FileSystem
from reconciler.drivers.directory.write import Writer
from reconciler.engine import Engine
from reconciler.flows import FlowKey, Identity
from reconciler.gitstore import GitStore
from reconciler.plan import Policy, plan
from reconciler.rerender import _load, _write
from tests.conftest import Workspace, flow

N = 8
RULES = Rules.of(["/exportedAt"])


def _setup(ws: Workspace) -> Path:
    ws.add_env("production", drift="restore", prune=True)
    ws.init_repo()
    clone = ws.clone()
    ws.git("checkout", "-q", "-b", "env/production", cwd=clone)
    for i in range(N):
        _put(clone, i, "v1")
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "flows", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    ws.cli("sync", "production", check=True)
    return clone


def _put(clone: Path, i: int, mark: str) -> None:
    folder = clone / "flows" / f"f{i}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1.0.json").write_text(json.dumps(flow(f"f{i}", mark=mark), indent=2) + "\n")


def _push_change(ws: Workspace, clone: Path, which: range, mark: str) -> str:
    for i in which:
        _put(clone, i, mark)
    ws.git("commit", "-qam", mark, cwd=clone)
    ws.git("push", "-qf", "origin", "env/production", cwd=clone)
    return ws.git("rev-parse", "HEAD", cwd=clone).strip()


def _kept(ws: Workspace) -> dict:
    raw = (ws.repo / "reconciler" / "index" / "production" / "desired").read_bytes()
    return orjson.loads(raw.partition(b"\n")[2])


def _plan(ws: Workspace, keep: bool) -> list[tuple]:
    config = load_config(ws.config)
    engine = Engine(config, store=GitStore.from_config(config.repository), keep_reads=keep)
    try:
        out = engine.sync("production", dry_run=True)
    finally:
        engine.close()
    return [(s.key, s.action, s.base, s.desired, s.live) for s in out.plan.steps]


def test_after_a_sync_the_kept_marker_side_is_the_tips_and_a_marker_moved_by_hand_is_read_again(ws: Workspace) -> None:
    clone = _setup(ws)
    first = ws.git("rev-parse", "HEAD", cwd=clone).strip()
    _push_change(ws, clone, range(2), "v2")
    ws.cli("sync", "production", check=True)
    kept = _kept(ws)
    assert kept["base"] == "desired", "the marker moved to the tip's tree: one side kept"
    assert len(kept["desired"]["rows"]) == N
    assert _plan(ws, True) == _plan(ws, False)
    # the marker moved by hand to the first commit: the kept side is not its tree
    ws.git("update-ref", "refs/reconciler/applied/production", first, cwd=ws.repo)
    truth = _plan(ws, False)
    assert _plan(ws, True) == truth
    assert sum(1 for s in truth if s[1].value == "adopt" or s[2] != s[3]) >= 2  # the two flows differ from the base


def test_a_force_pushed_branch_and_a_kept_file_cut_short_give_the_answer_of_no_cache(ws: Workspace) -> None:
    clone = _setup(ws)
    first = ws.git("rev-parse", "HEAD", cwd=clone).strip()
    _push_change(ws, clone, range(3), "v2")
    ws.cli("sync", "production", check=True)
    ws.git("reset", "-q", "--hard", first, cwd=clone)
    _push_change(ws, clone, range(5, 7), "v3")  # force-pushed over the synced commit
    assert _plan(ws, True) == _plan(ws, False)
    path = ws.repo / "reconciler" / "index" / "production" / "desired"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert _plan(ws, True) == _plan(ws, False)
    ws.cli("sync", "production", check=True)
    live = ws.live("production")
    assert {k: d["mark"] for k, d in live.items()} == {
        (f"f{i}", "1.0"): ("v3" if i in (5, 6) else "v1") for i in range(N)}
    assert _plan(ws, True) == _plan(ws, False)


def test_the_rerender_map_is_read_row_by_row_when_a_row_is_odd_and_not_at_all_when_cut_short(ws: Workspace) -> None:
    _setup(ws)
    store = GitStore(ws.repo, author_name="t", author_email="t@localhost", create=False)
    good = _load(store, "production")
    assert len(good) == N and all(isinstance(k, FlowKey) for k in good)
    path = store.local_path("rendered-production.json")
    assert json.loads(path.read_bytes()) == [[[k.name, k.version], v] for k, v in good.items()]  # the format kept
    rows = [[["a", "1"], "id-a"], [["b"], "id-b"], [["c", "1"], 5], "junk", [["d", "2"], "id-d"], [["e", 1], "id-e"],
            [["a", "1"], "id-a2"]]
    path.write_bytes(json.dumps(rows).encode())
    assert _load(store, "production") == {FlowKey("a", "1"): "id-a2", FlowKey("d", "2"): "id-d"}
    _write(store, "production", good)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 7])  # cut short: not JSON, nothing taken from it
    assert _load(store, "production") == {}
    path.write_bytes(b"{}")
    assert _load(store, "production") == {}


def _driver_with(tmp: Path, doc: dict) -> tuple[DirectoryDriver, Path, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "f@1.0.json"
    path.write_text(json.dumps(doc, indent=4))
    time.sleep(1.1)  # not racy (changed within a second of a read): the second export does not read it again
    driver = DirectoryDriver(tmp, Identity(), RULES)
    driver.export()
    live = driver.export()
    assert not driver._scan.fresh  # nothing read by the last export: load() reads the file
    return driver, path, live.flows[FlowKey("f", "1.0")].oid


def test_the_directory_driver_hashes_only_exactly_canonical_bytes_of_the_flow_looked_for(tmp_path: Path) -> None:
    doc = flow("f", exportedAt="2026-01-01", steps=[{"id": "a"}])
    driver, path, oid = _driver_with(tmp_path / "env", doc)
    key = FlowKey("f", "1.0")
    canon = canonical_bytes(json.dumps(doc).encode(), RULES)
    assert blob_id(canon) == oid
    for raw in (canon,  # exactly the canonical bytes: hashed
                json.dumps({**doc, "exportedAt": "2030-05-05"}, indent=1).encode()):  # other form, same flow: parsed
        path.write_bytes(raw)
        got = driver.load(key)
        assert got is not None and got.oid == oid and got.data == canon
    other = {**doc, "steps": [{"id": "b"}]}
    path.write_bytes(canonical_bytes(json.dumps(other).encode(), RULES))  # another flow's canonical bytes
    got = driver.load(key)
    assert got is not None and got.oid != oid and got.oid == blob_id(path.read_bytes())
    path.write_bytes(canonical_bytes(json.dumps(flow("g")).encode(), RULES))  # another flow (another name)
    assert driver.load(key) is None


def test_the_writer_check_hashes_only_what_it_looks_for(tmp_path: Path) -> None:
    folder = tmp_path / "env"
    folder.mkdir()
    writer = Writer(folder, FileSystem(), Identity(), RULES, set())
    doc = flow("f", exportedAt="x")
    canon = canonical_bytes(json.dumps(doc).encode(), RULES)
    path = folder / "f@1.0.json"
    path.write_bytes(canon)
    assert writer.current(str(path), blob_id(canon)) == blob_id(canon)
    path.write_bytes(json.dumps({**doc, "exportedAt": "y"}, indent=3).encode())  # same flow, other bytes
    assert writer.current(str(path), blob_id(canon)) == blob_id(canon)
    path.write_bytes(canonical_bytes(json.dumps({**doc, "more": 1}).encode(), RULES))  # edited meanwhile
    assert writer.current(str(path), blob_id(canon)) == blob_id(path.read_bytes()) != blob_id(canon)
    path.write_bytes(b"{not json")
    assert writer.current(str(path), blob_id(canon)) == "invalid"
    path.unlink()
    assert writer.current(str(path), blob_id(canon)) is None


def test_a_sync_whose_live_file_was_edited_after_the_scan_saves_what_it_overwrites(ws: Workspace) -> None:
    """The whole path: a live flow edited in the folder (drift) and a change in git; the drift save holds
    the live edit, parsed (its bytes are not canonical), and the folder then holds git's version."""
    clone = _setup(ws)
    live_file = next(ws.env_dir("production").glob("f1@*.json"))
    live_file.write_text(json.dumps(flow("f1", mark="edited live"), indent=4))
    _push_change(ws, clone, range(1), "v2")
    ws.cli("sync", "production", check=True)
    saved = json.loads(ws.git("show", "drift/production:flows/f1/1.0.json", cwd=ws.repo))
    assert saved["mark"] == "edited live"
    assert {k: d["mark"] for k, d in ws.live("production").items()}[("f0", "1.0")] == "v2"
    assert {k: d["mark"] for k, d in ws.live("production").items()}[("f1", "1.0")] == "v1"


def test_the_plan_is_in_key_order_whatever_order_the_sides_list_their_keys_in() -> None:
    rng = random.Random(15)
    keys = [FlowKey(f"n{rng.randrange(50)}", f"{rng.randrange(3)}.0") for _ in range(200)]
    keys = list(dict.fromkeys(keys))
    base = {k: f"a{i % 7}" for i, k in enumerate(keys)}
    desired = {k: v if i % 5 else "d" for i, (k, v) in enumerate(base.items()) if i % 11}
    live = {k: v if i % 3 else "l" for i, (k, v) in enumerate(base.items()) if i % 13}
    live[FlowKey("zz-new", "1")] = "x"
    invalid = {keys[4]: "bad"}
    want = None
    for _ in range(5):
        sides = [dict(rng.sample(list(m.items()), len(m))) for m in (base, desired, live)]
        got = plan(*sides, Policy("restore", True, True), invalid=invalid).steps
        assert [s.key for s in got] == sorted(set(base) | set(desired) | set(live) | set(invalid))
        assert want is None or got == want
        want = got


def test_the_rerender_map_written_without_reading_it_is_what_reading_it_would_give(ws: Workspace) -> None:
    """A CLI run whose steps are all done or in sync writes the map without reading it: the map is then
    exactly what the read-then-merge path makes of the map on disk, whatever that holds (stale rows,
    another process's rows, a log beside it); a step that keeps its old entry takes the read path."""
    from reconciler import rerender
    from reconciler.plan import Action, Plan, State, Step

    _setup(ws)
    store = GitStore(ws.repo, author_name="t", author_email="t@localhost", create=False)
    rng = random.Random(8)
    keys = [FlowKey(f"k{i}", "1") for i in range(40)]

    def step(k: FlowKey, action: Action, live: str | None, desired: str | None) -> Step:
        return Step(k, action, State.PENDING if action is not Action.NONE else State.IN_SYNC, "r", "b", desired, live)

    for trial in range(12):
        on_disk = {k: f"old{rng.randrange(3)}" for k in rng.sample(keys, 25)}
        on_disk[FlowKey("gone", "1")] = "stale"
        rerender._CACHE.clear()
        rerender._LAST.clear()
        _write(store, "production", on_disk)
        if trial % 3 == 0:  # another process wrote it since: this process's memory of it is stale
            store.local_path("rendered-production.json").write_bytes(
                json.dumps([[["k1", "1"], "theirs"]]).encode())
        before = _load(store, "production")
        actions = [Action.NONE, Action.IMPORT, Action.ADOPT, Action.ADVANCE]
        if trial % 4 == 3:
            actions.append(Action.REPORT)  # keeps what was remembered of it: the map is read
        steps = tuple(step(k, rng.choice(actions), rng.choice([None, f"l{i}"]), f"d{i}") for i, k in enumerate(keys))
        done = {s.key for s in steps if s.action not in (Action.NONE, Action.REPORT) and rng.random() < 0.9}
        p = Plan(steps)
        want = rerender._now(steps, done, before)
        rerender._CACHE.clear()
        rerender._LAST.clear()
        rerender.remember(store, "production", p, done)
        assert _load(store, "production") == want, trial  # as this process remembers it
        rerender._CACHE.clear()
        assert _load(store, "production") == want, trial  # as the next process reads it
        rerender.remember(store, "production", p, done)  # again: nothing new, still the same map
        rerender._CACHE.clear()
        assert _load(store, "production") == want, trial
