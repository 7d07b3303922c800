"""The 1% export's C-speed paths give exactly what the one-by-one paths give (issue 15, fourth pass).

Each fast path is compared with the path it short-cuts, on real directories and real git repositories:
the flows of a folder tree the store edited itself (learned, not read) against a fresh store's full read;
the directory driver's bulk rebuild against its one-by-one rebuild (and a driver without any index) in the
hostile cases (same size and mtime, edits in the same second, clock backwards, a truncated or foreign
index, duplicates, a file that is not a regular file, two processes); the index's columns against the
entry-by-entry loop; the plan against the table row by row; the re-render map read whole against row by row.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.canonical import Rules
from reconciler.drivers.directory import DirectoryDriver, FileSystem
from reconciler.drivers.directory import scan as scanmod
from reconciler.drivers.directory.index import RACY_NS, StatIndex, is_racy
from reconciler.flows import CanonicalFlow, FlowKey, Identity
from reconciler.gitstore import GitStore
from reconciler.plan import Action, Plan, Policy, State, Step, _decide, plan
from reconciler.sidecars import StoredFlow
from reconciler import rerender
from tests.conftest import git_env

RULES = Rules.of(["/exportedAt"])


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, env=git_env(path.parent), check=True,
                          capture_output=True).stdout.decode()


def flow(name: str, payload: str = "x") -> bytes:
    return json.dumps({"name": name, "version": "1", "payload": payload}, sort_keys=True).encode() + b"\n"


# -- the store learns the flows of the folder tree it edited ------------------------------------------------


def fresh_read(store: GitStore, commit: str, folder: str = "flows"):
    return GitStore(store.path, author_name="x", author_email="y").flows_at(commit, folder)


@pytest.mark.parametrize("folder", ["flows", "deep/er/flows"])
def test_a_commit_of_an_edited_folder_is_known_exactly_as_a_full_read_finds_it(tmp_path: Path, folder: str) -> None:
    store = GitStore(tmp_path / "repo.git", author_name="Bot", author_email="bot@example.com")
    rnd = random.Random(5)
    keys = [FlowKey(f"flow {i} é/x", "1") for i in range(40)]
    tip = store.commit_changes("env/a", None, folder, {k: flow(k.name) for k in keys}, "all\n")
    assert tip is not None
    store.flows_at(tip, folder)  # read once: the next edits start from a known folder

    def no_read(*args):
        raise AssertionError("a learned folder is not read")

    store._read_changed = store._read_flows = no_read  # type: ignore[method-assign]
    for r in range(6):
        changes: dict[FlowKey, bytes | StoredFlow | None] = {}
        for k in rnd.sample(keys, 6):
            changes[k] = rnd.choice([None, flow(k.name, f"r{r}"), StoredFlow(flow(k.name), {"a.js": f"{r}".encode()})])
        changes[FlowKey(f"new {r}", "2")] = flow(f"new {r}")  # an addition, in the middle of git's order
        tip = store.commit_changes("env/a", tip, folder, changes, f"round {r}\n") or tip
        learned = store.flows_at(tip, folder)
        full = fresh_read(store, tip, folder)
        assert dict(learned.flows) == dict(full.flows) and learned.tree == full.tree
        assert not full.problems and not full.bad
        keys = sorted(full.flows)
    git(store.path, "fsck", "--strict")


def test_a_folder_with_a_problem_is_not_learned_but_read(tmp_path: Path) -> None:
    """A stray file in the folder: the edited tree is not taken from the old one (a full read reports it)."""
    store = GitStore(tmp_path / "repo.git", author_name="Bot", author_email="bot@example.com")
    a, b = FlowKey("a", "1"), FlowKey("b", "1")
    c1 = store.commit_changes("env/a", None, "flows", {a: flow("a")}, "one\n")
    assert c1 is not None
    # a stray file at flows/README (not a flow path), committed with the git CLI in a clone
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "-b", "env/a", str(store.path), str(clone)], env=git_env(tmp_path),
                   check=True)
    (clone / "flows" / "README").write_text("hello\n")
    subprocess.run(["git", "add", "-A"], cwd=clone, env=git_env(tmp_path), check=True)
    subprocess.run(["git", "commit", "-qm", "stray"], cwd=clone, env=git_env(tmp_path), check=True)
    subprocess.run(["git", "push", "-q", "origin", "env/a"], cwd=clone, env=git_env(tmp_path), check=True)
    c2 = store.tip("env/a")
    assert c2 is not None and c2 != c1
    before = store.flows_at(c2, "flows")
    assert before.problems
    c3 = store.commit_changes("env/a", c2, "flows", {b: flow("b")}, "two\n")
    assert c3 is not None
    after = store.flows_at(c3, "flows")
    full = fresh_read(store, c3)
    assert dict(after.flows) == dict(full.flows) == {a: after.flows[a], b: after.flows[b]}
    assert after.problems and [p.where for p in after.problems] == [p.where for p in full.problems]


def test_the_marker_tree_edit_is_learned_too(tmp_path: Path) -> None:
    """``tree_with`` + ``commit`` without a ref (the applied marker's commit): learned as a full read finds it."""
    store = GitStore(tmp_path / "repo.git", author_name="Bot", author_email="bot@example.com")
    keys = [FlowKey(f"f{i}", "1") for i in range(10)]
    tip = store.commit_changes("env/a", None, "flows", {k: flow(k.name) for k in keys}, "all\n")
    assert tip is not None
    at_tip = store.flows_at(tip, "flows")
    edits = {keys[1]: None, keys[2]: at_tip.flows[keys[3]], FlowKey("zz", "9"): at_tip.flows[keys[4]]}
    marker = store.commit(None, tip, store.tree_with(tip, "flows", edits), "marker\n")
    store._read_changed = store._read_flows = None  # type: ignore[assignment]  # learned: never called
    assert dict(store.flows_at(marker, "flows").flows) == dict(fresh_read(store, marker).flows)


# -- the directory driver's bulk rebuild -------------------------------------------------------------------------


def later(seconds: float = 10.0):
    return lambda: time.time_ns() + int(seconds * 1e9)


def make_folder(root: Path, n: int = 30) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"flow{i:03d}.json").write_bytes(flow(f"flow{i:03d}"))
    return root


def truth(folder: Path):
    """What a driver without any index reads."""
    return DirectoryDriver(folder, rules=RULES).export()


def both_paths(folder: Path, index: Path, clock) -> tuple[object, object]:
    """The export of a fresh process with the index, by the bulk rebuild and by the one-by-one rebuild
    (each in its own fresh driver, both from the same index file)."""
    got = []
    for bulk in (True, False):
        d = DirectoryDriver(folder, rules=RULES, clock=clock)
        d.keep_index(index)
        d.save_index_later()  # both read the same index: neither writes it
        if not bulk:
            d._scan._rebuild_bulk = lambda *a, **k: None  # type: ignore[method-assign]
        got.append(d.export())
    return got[0], got[1]


def same_live(a, b) -> bool:
    return (dict(a.oids()) == dict(b.oids()) and dict(a.where) == dict(b.where) and list(a.flows) == list(b.flows)
            and sorted(map(str, a.problems)) == sorted(map(str, b.problems)) and dict(a.invalid) == dict(b.invalid)
            and a.complete == b.complete)


def prime(folder: Path, index: Path) -> None:
    d = DirectoryDriver(folder, rules=RULES, clock=later())
    d.keep_index(index)
    d.export()


def test_bulk_and_one_by_one_rebuilds_agree_through_hostile_edits(tmp_path: Path) -> None:
    folder, index = make_folder(tmp_path / "env"), tmp_path / "git" / "live"
    prime(folder, index)
    edits = [
        lambda: (folder / "flow001.json").write_bytes(flow("flow001", "y")),  # same size, same second
        lambda: _same_size_and_mtime(folder / "flow002.json", flow("flow002", "z")),
        lambda: (folder / "flow003.json").unlink(),
        lambda: (folder / "added.json").write_bytes(flow("added")),
        lambda: (folder / "dup.json").write_bytes(flow("flow004")),  # a second file holding flow004
        lambda: (folder / "dup.json").unlink(),
        lambda: (folder / "bad.json").write_bytes(b"{not json"),
        lambda: (folder / "bad.json").unlink(),
        lambda: (folder / "dir.json").mkdir(),  # not a regular file
        lambda: (folder / "dir.json").rmdir(),
        lambda: os.symlink(folder / "flow005.json", folder / "link.json"),
        lambda: (folder / "link.json").unlink(),
        lambda: (folder / ".hidden.json").write_bytes(flow("hidden")),  # hidden: never read
    ]
    for edit in edits:
        edit()
        for clock in (later(), time.time_ns, later(-3600)):  # racy edits; a clock gone back: the index is ignored
            bulk, each = both_paths(folder, index, clock)
            assert same_live(bulk, each) and same_live(bulk, truth(folder)), edit
        prime(folder, index)


def _same_size_and_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # only ctime (and here not the inode) tells


def test_the_bulk_path_is_taken_and_reads_only_the_changed_files(tmp_path: Path) -> None:
    folder, index = make_folder(tmp_path / "env"), tmp_path / "git" / "live"
    prime(folder, index)
    (folder / "flow010.json").write_bytes(flow("flow010", "new"))
    reads: list[str] = []

    class Counting(FileSystem):
        def read(self, path):  # type: ignore[override]
            reads.append(os.path.basename(path))
            return super().read(path)

    d = DirectoryDriver(folder, rules=RULES, clock=later(), fs=Counting())
    d.keep_index(index)
    taken = []
    bulk = d._scan._rebuild_bulk
    d._scan._rebuild_bulk = lambda *a: taken.append(got := bulk(*a)) or got  # type: ignore[method-assign]
    d._scan._from_columns = lambda *a: None  # type: ignore[method-assign]  # not the index's snapshot: a rebuild
    assert same_live(d.export(), truth(folder))
    assert taken and taken[0] is not None and reads == ["flow010.json"]


@pytest.mark.parametrize("damage", ["truncated", "foreign", "garbage", "empty"])
def test_a_damaged_index_means_a_full_read_on_the_bulk_path(tmp_path: Path, damage: str) -> None:
    folder, index = make_folder(tmp_path / "env"), tmp_path / "git" / "live"
    prime(folder, index)
    (folder / "flow007.json").write_bytes(flow("flow007", "q"))
    raw = index.read_bytes()
    index.write_bytes({"truncated": raw[: len(raw) // 2], "foreign": raw.replace(b"directory-index", b"directory-indey", 1),
                       "garbage": os.urandom(len(raw)), "empty": b""}[damage])
    bulk, each = both_paths(folder, index, later())
    assert same_live(bulk, each) and same_live(bulk, truth(folder))


def test_two_processes_exporting_at_once_leave_an_index_that_tells_the_truth(tmp_path: Path) -> None:
    folder, index = make_folder(tmp_path / "env", 200), tmp_path / "git" / "live"
    code = ("import sys, time; from reconciler.canonical import Rules; "
            "from reconciler.drivers.directory import DirectoryDriver\n"
            "for i in range(5):\n"
            "    d = DirectoryDriver(sys.argv[1], rules=Rules.of(['/exportedAt']), clock=lambda: time.time_ns() + 10**10)\n"
            "    d.keep_index(sys.argv[2]); d.export()\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(folder), str(index)], env=env) for _ in range(2)]
    for i in range(0, 200, 7):  # edits while they run
        (folder / f"flow{i:03d}.json").write_bytes(flow(f"flow{i:03d}", "during"))
    assert all(p.wait() == 0 for p in procs)
    time.sleep(0.01)
    bulk, each = both_paths(folder, index, later())
    assert same_live(bulk, each) and same_live(bulk, truth(folder))


def test_a_file_that_vanishes_between_the_listing_and_its_stat_is_an_error_in_its_place(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "env", 3)
    got = FileSystem().lstat_each(folder, ["flow000.json", "gone.json", "flow002.json"])
    assert isinstance(got[0], os.stat_result) and isinstance(got[2], os.stat_result)
    assert isinstance(got[1], FileNotFoundError)
    assert got[0].st_ino == os.lstat(folder / "flow000.json").st_ino


# -- the index's columns ---------------------------------------------------------------------------------------


def test_the_index_columns_are_those_of_the_entry_by_entry_loop(tmp_path: Path) -> None:
    """Racy entries and problems are left out exactly as the loop left them out."""
    from reconciler.errors import Problem

    now = time.time_ns()
    rnd = random.Random(3)
    cache: dict = {}
    for i in range(300):
        age = rnd.choice([10 * RACY_NS, RACY_NS + 1, RACY_NS, 0, -RACY_NS])  # old, at the edge, racy, future
        sig = (0o100644, now - age, now - rnd.choice([10 * RACY_NS, age]), 100 + i, i)
        got = Problem(f"p{i}", "bad") if i % 37 == 0 else CanonicalFlow(FlowKey(f"n{i}", "1"), None, f"{i:040x}")
        cache[f"f{i}.json"] = (sig, got)
    path = tmp_path / "live"
    idx = StatIndex(path, tmp_path, Identity(), RULES)
    idx.save(cache, now)
    doc = json.loads(path.read_bytes().partition(b"\n")[2])
    want = {"names": [], "sigs": [], "keys": [], "oids": []}
    for name, (sig, got) in cache.items():
        if isinstance(got, CanonicalFlow) and not is_racy(sig, now):
            want["names"].append(name)
            want["sigs"].extend(sig)
            want["keys"].extend(got.key)
            want["oids"].append(got.oid)
    assert {k: doc[k] for k in want} == want and want["names"]
    clean = {n: e for n, e in cache.items() if n in set(want["names"])}
    idx.save(clean, now)  # the all-clean case (the C-speed columns without the filter)
    doc = json.loads(path.read_bytes().partition(b"\n")[2])
    assert {k: doc[k] for k in want} == want


# -- the plan's in-sync keys at C speed ------------------------------------------------------------------------


def reference_plan(base, desired, live, policy, invalid=None, live_complete=True) -> Plan:
    """The table row by row (the loop the plan had before its C-speed common case)."""
    invalid = invalid or {}
    out = []
    for k in sorted(set(base) | set(desired) | set(live) | set(invalid)):
        a, d, l = base.get(k), desired.get(k), live.get(k)  # noqa: E741
        if a == d == l and a is not None and k not in invalid:
            out.append(Step(k, Action.NONE, State.IN_SYNC, "in sync", a, d, l))
        else:
            out.append(_decide(k, a, d, l, policy, invalid.get(k), live_complete))
    return Plan(tuple(out))


@pytest.mark.parametrize("seed", range(12))
def test_the_plan_is_the_table_row_by_row(seed: int) -> None:
    rnd = random.Random(seed)
    keys = [FlowKey(rnd.choice(["a", "B", "é", "a b", "z"]) + str(i), rnd.choice(["1", "2", ""])) for i in range(300)]
    rnd.shuffle(keys)
    sides = []
    for _ in range(3):
        side = {}
        for k in keys:
            r = rnd.random()
            if r < 0.8:
                side[k] = f"{hash(k) & 0xffff:040x}"
            elif r < 0.9:
                side[k] = rnd.choice(["1" * 40, "2" * 40])
        sides.append(dict(sorted(side.items())) if seed % 2 else side)
    invalid = {k: "why" for k in rnd.sample(keys, 10)} if seed % 3 else {}
    invalid[FlowKey("only-invalid", "1")] = "no side has it"
    for policy in (Policy(drift="adopt", prune=True, override=True), Policy(drift="restore", prune=False, override=False),
                   Policy(drift="report")):
        for complete in (True, False):
            got = plan(*sides, policy, invalid=invalid, live_complete=complete)
            assert got.steps == reference_plan(*sides, policy, invalid, complete).steps


# -- the re-render map read whole --------------------------------------------------------------------------------


def test_the_rerender_map_read_whole_is_the_map_read_row_by_row(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "repo.git", author_name="Bot", author_email="bot@example.com")
    path = store.local_path("rendered-e.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [[[f"n{i} é", "1"], f"{i:040x}"] for i in range(50)]
    cases = {
        "clean": rows,
        "a key twice (the last one wins)": rows + [[["n3 é", "1"], "f" * 40]],
        "a bad row among good ones": rows[:10] + [[["x"], "y"], [["a", "b"], 5], "row"] + rows[10:],
        "a name that is not a string": rows + [[[1, "1"], "a" * 40]],
        "not a list": {"a": 1},
        "empty": [],
    }
    for what, body in cases.items():
        path.write_bytes(json.dumps(body).encode())
        rerender._CACHE.clear()
        got = rerender._load(store, "e")
        want = {}
        if isinstance(body, list):
            for r in body:
                if isinstance(r, list) and len(r) == 2 and isinstance(r[1], str) and isinstance(r[0], list) \
                        and len(r[0]) == 2 and all(isinstance(x, str) for x in r[0]):
                    want[FlowKey(*r[0])] = r[1]
        assert got == want, what
        assert all(type(k) is FlowKey for k in got), what


def test_the_rerender_map_written_with_orjson_reads_back_the_same(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "repo.git", author_name="Bot", author_email="bot@example.com")
    now = {FlowKey(f"n{i} é \u2028 \x01 \"q\"", str(i)): f"{i:040x}" for i in range(100)}
    rerender._write(store, "e", now)
    rerender._CACHE.clear()
    assert rerender._load(store, "e") == now
    assert json.loads(store.local_path("rendered-e.json").read_bytes()) == [[[k.name, k.version], v] for k, v in now.items()]


def test_scan_lists_hidden_files_out_and_sql_in(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "env", 2)
    (folder / ".reconciler-1-2.tmp").write_bytes(b"x")
    (folder / ".h.json").write_bytes(flow("h"))
    (folder / "q.sql").write_bytes(b"SELECT 1;")
    (folder / "notes.txt").write_bytes(b"x")
    d = DirectoryDriver(folder, rules=RULES)
    got = d._scan._scan()
    assert sorted(got) == ["flow000.json", "flow001.json", "q.sql"]
    assert scanmod.is_flow_name("q.sql") and not scanmod.is_flow_name(".h.json")


# -- tree objects parsed at C speed -----------------------------------------------------------------------------


def test_a_tree_parsed_at_c_speed_is_the_tree_parsed_entry_by_entry(tmp_path: Path) -> None:
    from reconciler.gitstore.packwriter import tree_bytes
    from reconciler.gitstore.writing import _parse_tree, _parse_tree_each

    rnd = random.Random(9)
    entries = [(rnd.choice([0o40000, 0o100644, 0o100755, 0o120000, 0o160000]), f"n{i} é\n{'x' * rnd.randrange(3)}",
                os.urandom(20)) for i in range(500)]
    entries.append((0o100644, "fake", (b"\0 100644 x\0" + b"\0" * 20)[:20]))  # an id that looks like an entry
    data = tree_bytes(entries)
    assert _parse_tree(data) == _parse_tree_each(data) and len(_parse_tree(data)) == len(entries)
    odd = [b"040000 old-style\0" + b"\1" * 20, b"100644 \0" + b"\2" * 20, b"",  # a zero-padded mode, an empty name
           b"-3", b"1006", b"100644 \xff\xfe\0" + b"\3" * 20]  # trailing bytes, not UTF-8
    for case in [data + o for o in odd] + [data[:-3]]:  # and truncated
        try:
            want: object = _parse_tree_each(case)
        except (ValueError, UnicodeDecodeError) as exc:
            want = type(exc)
        try:
            got: object = _parse_tree(case)
        except (ValueError, UnicodeDecodeError) as exc:
            got = type(exc)
        assert got == want


def test_the_form_record_names_at_c_speed_are_the_names_of_one_key_at_a_time() -> None:
    from reconciler.migrate import _FIRST, _NAME_FORMAT, _SECOND, _name

    keys = [FlowKey("a", "1"), FlowKey("{}:{0}\0x", "{v}"), FlowKey("é\u2028 ", ""), FlowKey("", "0"), FlowKey("3:a", "b")]
    got = list(map(_NAME_FORMAT, map(len, map(_FIRST, keys)), map(_FIRST, keys), map(_SECOND, keys)))
    assert got == [_name(k) for k in keys] and len(set(got)) == len(keys)
