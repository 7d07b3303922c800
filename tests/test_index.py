"""The directory driver's stat index kept across processes never gives a wrong answer.

Every test uses real files; a new ``DirectoryDriver`` on the same index file plays the next
process. The racy rule depends on the clock, so the drivers take an injected one: ``later``
(ten seconds ahead) makes the files look old enough to be trusted from their signatures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.canonical import Rules
from reconciler.drivers.directory import DirectoryDriver, FileSystem
from reconciler.flows import FlowKey

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES = Rules.of(["/exportedAt"])


class Counting(FileSystem):
    """The real file system, counting the files read."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def read(self, path):  # type: ignore[override]
        self.reads.append(os.path.basename(path))
        return super().read(path)


def later(seconds: float = 10.0):
    return lambda: time.time_ns() + int(seconds * 1e9)


def doc(name: str, payload: str = "aaaa") -> bytes:
    return json.dumps({"name": name, "version": "1.0", "payload": payload, "exportedAt": "x"}).encode()


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    f = tmp_path / "env"
    f.mkdir()
    for i in range(5):
        (f / f"flow{i}.json").write_bytes(doc(f"flow{i}"))
    return f


@pytest.fixture()
def index(tmp_path: Path) -> Path:
    return tmp_path / "git" / "reconciler" / "index" / "env" / "live"


def driver(folder: Path, index: Path, clock=None, rules: Rules = RULES) -> tuple[DirectoryDriver, Counting]:
    fs = Counting()
    d = DirectoryDriver(folder, rules=rules, fs=fs, clock=clock)
    d.keep_index(index)
    return d, fs


def ids(d: DirectoryDriver) -> dict[FlowKey, str]:
    return dict(d.export().oids())


def truth(folder: Path) -> dict[FlowKey, str]:
    """What a driver without any index reads."""
    return dict(DirectoryDriver(folder, rules=RULES).export().oids())


def test_a_fresh_process_reads_no_file_when_nothing_changed(folder: Path, index: Path) -> None:
    """The second process stats every file and reads none."""
    first, fs1 = driver(folder, index, later())
    assert ids(first) == truth(folder) and len(fs1.reads) == 5
    second, fs2 = driver(folder, index, later())
    assert ids(second) == truth(folder)
    assert fs2.reads == []


def test_only_the_changed_file_is_read_again(folder: Path, index: Path) -> None:
    driver(folder, index, later())[0].export()
    (folder / "flow3.json").write_bytes(doc("flow3", "changed, and longer"))
    (folder / "flow0.json").unlink()
    (folder / "new.json").write_bytes(doc("new"))
    d, fs = driver(folder, index, later())
    assert ids(d) == truth(folder)
    assert sorted(fs.reads) == ["flow3.json", "new.json"]


def test_an_edit_in_the_same_second_with_the_same_size_and_mtime_is_seen(folder: Path, index: Path) -> None:
    """Racy: a file read within a second of its change is never trusted from its signature."""
    path = folder / "flow1.json"
    driver(folder, index)[0].export()  # the real clock: every file was written just now
    st = path.stat()
    path.write_bytes(doc("flow1", "bbbb"))  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    d, _ = driver(folder, index)
    assert ids(d) == truth(folder)
    assert d.load(FlowKey("flow1", "1.0")).data is not None and b"bbbb" in d.load(FlowKey("flow1", "1.0")).data


def test_a_file_replaced_by_one_with_the_same_size_and_mtime_is_seen(folder: Path, index: Path, tmp_path: Path) -> None:
    """Trusted entries still compare ctime and inode: a rename over the file changes them."""
    driver(folder, index, later())[0].export()
    path = folder / "flow2.json"
    st = path.stat()
    other = tmp_path / "other.json"
    other.write_bytes(doc("flow2", "cccc"))
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    d, fs = driver(folder, index, later())
    assert ids(d) == truth(folder)
    assert fs.reads == ["flow2.json"]


def test_a_clock_earlier_than_the_index_means_reading_everything(folder: Path, index: Path) -> None:
    driver(folder, index, later(3600))[0].export()  # written "in an hour"
    d, fs = driver(folder, index, later(10))  # the clock went back
    assert ids(d) == truth(folder)
    assert len(fs.reads) == 5


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "foreign-format", "garbage", "missing"])
def test_a_damaged_foreign_or_missing_index_means_reading_everything(folder: Path, index: Path, damage: str) -> None:
    driver(folder, index, later())[0].export()
    raw = index.read_bytes()
    if damage == "truncate":
        index.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        at = len(raw) - 40
        index.write_bytes(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:])
    elif damage == "empty":
        index.write_bytes(b"")
    elif damage == "foreign-format":
        head, _, body = raw.partition(b"\n")
        parts = head.split(b" ")
        index.write_bytes(b" ".join([parts[0], parts[1], b"999", parts[3]]) + b"\n" + body)
    elif damage == "garbage":
        index.write_bytes(os.urandom(300))
    else:
        index.unlink()
    (folder / "flow4.json").write_bytes(doc("flow4", "changed meanwhile"))
    d, fs = driver(folder, index, later())
    assert ids(d) == truth(folder)
    assert len(fs.reads) == 5


def _rewrite(index: Path, change) -> None:
    """Rewrite the index's body with ``change(body)`` and a valid checksum (a well-formed file of our own
    kind whose columns are wrong: what only the column checks can catch)."""
    from reconciler.localcache import read_cache, write_cache

    head = index.read_bytes().partition(b"\n")[0]
    body = json.loads(index.read_bytes().partition(b"\n")[2])
    fingerprint = body.pop("fingerprint")
    change(body)
    write_cache(index, head.split(b" ")[1].decode(), fingerprint, body)
    assert read_cache(index, head.split(b" ")[1].decode(), fingerprint) is not None


@pytest.mark.parametrize("damage", ["short sigs", "long keys", "missing oid", "bool in a sig", "float in a sig",
                                    "int name", "null oid", "not a list", "a name twice", "no column"])
def test_an_index_with_damaged_columns_means_reading_everything(folder: Path, index: Path, damage: str) -> None:
    """The columns are checked whole (lengths and types); anything off means a full read, never a shifted entry."""
    driver(folder, index, later())[0].export()

    def change(body: dict) -> None:
        if damage == "short sigs":
            body["sigs"].pop()
        elif damage == "long keys":
            body["keys"] += ["x", "1.0"]
        elif damage == "missing oid":
            body["oids"].pop()
        elif damage == "bool in a sig":
            body["sigs"][0] = True
        elif damage == "float in a sig":
            body["sigs"][1] = float(body["sigs"][1])
        elif damage == "int name":
            body["names"][0] = 7
        elif damage == "null oid":
            body["oids"][2] = None
        elif damage == "not a list":
            body["names"] = dict.fromkeys(body["names"], 1)
        elif damage == "a name twice":
            body["names"][1] = body["names"][0]
        else:
            del body["keys"]

    _rewrite(index, change)
    (folder / "flow4.json").write_bytes(doc("flow4", "changed meanwhile"))
    d, fs = driver(folder, index, later())
    assert ids(d) == truth(folder)
    assert len(fs.reads) == 5


def test_a_racy_entry_found_in_an_index_is_not_trusted(folder: Path, index: Path) -> None:
    """Racy entries are never saved; one written there all the same (another writer, a bug) is read again."""
    driver(folder, index, later())[0].export()
    names = json.loads(index.read_bytes().partition(b"\n")[2])["names"]
    at = names.index("flow2.json")

    def change(body: dict) -> None:
        body["sigs"][5 * at + 1] = body["written_at"]  # modified "when the index was written"

    _rewrite(index, change)
    d, fs = driver(folder, index, later())
    assert ids(d) == truth(folder) and fs.reads == ["flow2.json"]


def test_two_files_holding_one_flow_are_reported_from_the_index_too(folder: Path, index: Path) -> None:
    """A duplicate is found the same way whether both files were read or both came from the index."""
    (folder / "copy.json").write_bytes(doc("flow1"))
    first = driver(folder, index, later())[0].export()
    d, fs = driver(folder, index, later())
    second = d.export()
    assert fs.reads == []
    key = FlowKey("flow1", "1.0")
    assert key in first.invalid and key in second.invalid and key not in second.flows
    assert [p.message for p in second.problems] == [p.message for p in first.problems] != []
    assert dict(second.oids()) == dict(first.oids())


def test_a_fresh_process_reads_the_same_flows_and_paths_as_a_full_read(folder: Path, index: Path) -> None:
    """What the index path builds (flows, where each lives) is what reading every file builds."""
    (folder / "notes.txt").write_text("not a flow")
    (folder / ".hidden.json").write_bytes(doc("hidden"))
    driver(folder, index, later())[0].export()
    d, fs = driver(folder, index, later())
    live = d.export()
    full = DirectoryDriver(folder, rules=RULES).export()
    assert fs.reads == []
    assert live.where == full.where and dict(live.oids()) == dict(full.oids())
    assert all(f.data is None and f == type(f)(f.key, None, f.oid) for f in live.flows.values())


def test_light_flows_are_the_dataclass_s_own_instances() -> None:
    from reconciler.flows import CanonicalFlow, light_flows

    keys = [FlowKey("a", "1"), FlowKey("b", "2")]
    made = light_flows(keys, ["x" * 40, "y" * 40])
    assert made == [CanonicalFlow(keys[0], None, "x" * 40), CanonicalFlow(keys[1], None, "y" * 40)]
    assert [hash(f) for f in made] == [hash(CanonicalFlow(k, None, o)) for k, o in zip(keys, ["x" * 40, "y" * 40])]
    assert made[0].light() is made[0]
    with pytest.raises(Exception):
        made[0].oid = "z"  # still frozen
    with pytest.raises(ValueError):
        light_flows(keys, ["x"])


def test_other_rules_do_not_use_the_index(folder: Path, index: Path) -> None:
    """Canonical ids depend on the environment's rules: an index made with others is not used."""
    driver(folder, index, later())[0].export()
    d, fs = driver(folder, index, later(), rules=Rules.of(["/exportedAt", "/payload"]))
    assert ids(d) == dict(DirectoryDriver(folder, rules=Rules.of(["/exportedAt", "/payload"])).export().oids())
    assert len(fs.reads) == 5


def test_another_folder_with_the_same_file_names_does_not_use_the_index(folder: Path, index: Path, tmp_path: Path) -> None:
    driver(folder, index, later())[0].export()
    other = tmp_path / "other-env"
    other.mkdir()
    for i in range(5):
        (other / f"flow{i}.json").write_bytes(doc(f"flow{i}", "dddd"))
    d, fs = driver(other, index, later())
    assert ids(d) == truth(other) and len(fs.reads) == 5


def test_invalid_files_are_never_recorded(folder: Path, index: Path) -> None:
    (folder / "broken.json").write_bytes(b"{not json")
    driver(folder, index, later())[0].export()
    d, fs = driver(folder, index, later())
    live = d.export()
    assert fs.reads == ["broken.json"] and any("broken.json" in p.where for p in live.problems)


def test_the_index_is_private_and_never_inside_the_folder(folder: Path, index: Path) -> None:
    driver(folder, index, later())[0].export()
    assert index.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in folder.iterdir()) == [f"flow{i}.json" for i in range(5)]


_WORKER = """
import os, sys, time
from reconciler.canonical import Rules
from reconciler.drivers.directory import DirectoryDriver
folder, index, rounds, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# The clock runs ahead so entries are recorded at once (the racy rule is what it defeats, so every
# rewrite changes the file's size: the signature must move whatever the timestamps say).
clock = lambda: time.time_ns() + 10 ** 10
for i in range(rounds):
    if tag == "writer":  # changes one file (a whole new file renamed over it), then exports
        with open(f"{folder}/.tmp", "w") as f:
            f.write('{"name": "flow%d", "version": "1.0", "payload": "%s"}' % (i % 5, "x" * (i + 1)))
        os.replace(f"{folder}/.tmp", f"{folder}/flow{i % 5}.json")
    d = DirectoryDriver(folder, rules=Rules.of(["/exportedAt"]), clock=clock)
    d.keep_index(index)
    live = d.export()
    assert len(live.flows) == 5 and not live.problems, live.problems
"""


def test_two_processes_exporting_at_once_leave_an_index_that_is_never_wrong(folder: Path, index: Path) -> None:
    """Each writes a whole index by rename; whichever lands last, a later process reads the truth."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(folder), str(index), "40", tag], env=env,
                              stderr=subprocess.PIPE, text=True) for tag in ("writer", "reader")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    d, _ = driver(folder, index, later())
    assert ids(d) == truth(folder)
    assert index.read_bytes().startswith(b"reconciler-cache directory-index ")
    assert not [p for p in index.parent.iterdir() if p.name.endswith(".tmp")]
