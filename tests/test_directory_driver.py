"""The directory driver on real folders: atomic writes, nothing outside, bad files left alone."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.canonical import Rules, blob_id, canonical_bytes
from reconciler.drivers import Change, Recoverable, Watchable
from reconciler.drivers.directory import DirectoryDriver, FileSystem
from reconciler.drivers.directory.hidden import ASIDE, RECOVERED, SWAP, TMP, Hidden, hidden_name
from reconciler.errors import RetryableError
from reconciler.flows import FlowKey
from tests.conftest import flow

RULES = Rules.of(["/exportedAt"])
K = FlowKey("orders", "1.0")


def canon(doc) -> bytes:
    return canonical_bytes(json.dumps(doc).encode(), RULES)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "env"
    d.mkdir()
    return d


class Seam(FileSystem):
    """The real file system with test hooks: ``before[op](*args)`` runs before operation ``op``
    (it may raise, as the file system would), ``after[op](*args)`` after it; ``calls`` lists every
    hooked call as ``(op, *args)``."""

    def __init__(self) -> None:
        self.before: dict[str, Callable[..., None]] = {}
        self.after: dict[str, Callable[..., None]] = {}
        self.calls: list[tuple[str, ...]] = []

    def _hooked(self, op: str, call: Callable, *args):
        self.calls.append((op, *map(str, args)))
        if op in self.before:
            self.before[op](*args)
        got = call(*args)
        if op in self.after:
            self.after[op](*args)
        return got

    def read(self, path):
        return self._hooked("read", super().read, path)

    def scandir(self, path):
        return self._hooked("scandir", super().scandir, path)

    def exchange(self, a, b):
        return self._hooked("exchange", super().exchange, a, b)

    def link(self, src, dst):
        return self._hooked("link", super().link, src, dst)

    def rename(self, src, dst):
        return self._hooked("rename", super().rename, src, dst)

    def ops(self, op: str) -> list[tuple[str, ...]]:
        return [c[1:] for c in self.calls if c[0] == op]


def einval(*args) -> None:
    raise OSError(errno.EINVAL, "Invalid argument")


def no_exchange() -> Seam:
    """A file system without renameat2(RENAME_EXCHANGE) (EINVAL, as on NFS): the move-aside write."""
    seam = Seam()
    seam.before["exchange"] = einval
    return seam


@pytest.fixture(params=["swap", "move-aside"])
def protocol(request) -> str:
    """Both ways a file is replaced: swapped (where the file system can) and moved aside."""
    return request.param


@pytest.fixture
def fs(protocol: str) -> Seam:
    return Seam() if protocol == "swap" else no_exchange()


def save(path: Path, doc) -> None:
    """An editor's save: write a temporary file, rename it over the flow's file."""
    tmp = path.with_name(path.name + ".editor-tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def test_identity_comes_from_the_document_not_the_file_name(folder: Path) -> None:
    """Any *.json file name works; hidden files and other extensions are ignored."""
    (folder / "my export (3).json").write_text(json.dumps(flow("orders")))
    (folder / ".hidden.json").write_text(json.dumps(flow("hidden")))
    (folder / "notes.txt").write_text("x")
    live = DirectoryDriver(folder, rules=RULES).export()
    assert list(live.flows) == [K] and live.complete


def test_a_new_flow_never_replaces_an_existing_file(folder: Path) -> None:
    """If <name>@<version>.json is taken by something else, another name is chosen."""
    squatter = folder / "orders@1.0.json"
    squatter.write_text("not a flow")
    d = DirectoryDriver(folder, rules=RULES)
    d.export()
    assert d.apply([Change(K, canon(flow("orders")), None)]) == {}
    assert squatter.read_text() == "not a flow"
    assert json.loads((folder / "orders@1.0-2.json").read_text())["name"] == "orders"


def test_writes_leave_no_temporary_files(folder: Path) -> None:
    """Atomic writes: only the flow file remains, readable by others."""
    d = DirectoryDriver(folder, rules=RULES)
    d.export()
    d.apply([Change(K, canon(flow("orders")), None)])
    d.apply([Change(K, canon(flow("orders", retries=1)), d.export().flows[K].oid)])
    assert [p.name for p in folder.iterdir()] == ["orders@1.0.json"]
    assert oct((folder / "orders@1.0.json").stat().st_mode & 0o777) == "0o644"


def test_symlinks_are_reported_and_never_followed(folder: Path, tmp_path: Path) -> None:
    """A symlink to a flow outside the folder is skipped; the outside file is never written."""
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(flow("orders")))
    os.symlink(outside, folder / "link.json")
    d = DirectoryDriver(folder, rules=RULES)
    live = d.export()
    assert live.flows == {} and not live.complete
    assert "symlink" in live.problems[0].message
    d.apply([Change(K, canon(flow("orders", hacked=True)), None)])
    assert "hacked" not in outside.read_text()


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe{}", b"[1, 2]", b'{"name": "x"}', b'{"name": {}, "version": 1}'])
def test_bad_files_are_reported_with_their_path_and_left_alone(folder: Path, content: bytes) -> None:
    """Invalid JSON, non-UTF-8, non-objects, missing or odd identity: reported, not touched."""
    bad = folder / "bad.json"
    bad.write_bytes(content)
    live = DirectoryDriver(folder, rules=RULES).export()
    assert live.flows == {}
    assert live.problems[0].where == str(bad)
    assert bad.read_bytes() == content


def test_a_delete_is_refused_when_the_file_changed_since_it_was_read(folder: Path) -> None:
    """The expected live content is a precondition of every overwrite and delete."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES)
    seen = d.export().flows[K].oid
    (folder / "o.json").write_text(json.dumps(flow("orders", edited=True)))
    failed = d.apply([Change(K, None, seen)])
    assert "changed since it was read" in failed[K]
    assert json.loads((folder / "o.json").read_text())["edited"] is True


def test_a_missing_folder_is_an_error_naming_it_and_is_never_created(tmp_path: Path) -> None:
    """A folder that is not there (a typo, a volume not mounted) is never read as an empty environment."""
    d = DirectoryDriver(tmp_path / "new" / "env", rules=RULES)
    with pytest.raises(RetryableError, match=r"new/env does not exist; nothing was read or changed"):
        d.export()
    with pytest.raises(RetryableError, match="does not exist"):
        d.apply([Change(K, canon(flow("orders")), None)])
    assert not (tmp_path / "new").exists()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "env").write_text("a file")
    with pytest.raises(RetryableError, match="is not a folder"):
        d.export()


def test_an_edit_after_an_export_is_seen_by_the_next_one(folder: Path) -> None:
    """The next export patches its last result with the files whose signature changed."""
    for i in range(5):
        (folder / f"f{i}.json").write_text(json.dumps(flow(f"f{i}")))
    d = DirectoryDriver(folder, rules=RULES)
    first = d.export()
    (folder / "f3.json").write_text(json.dumps(flow("f3", retries=9)))
    second = d.export()
    assert second.flows[FlowKey("f3", "1.0")].oid != first.flows[FlowKey("f3", "1.0")].oid
    assert {k: f.oid for k, f in second.flows.items() if k.name != "f3"} == {
        k: f.oid for k, f in first.flows.items() if k.name != "f3"}


def test_a_same_size_rewrite_within_the_same_second_is_still_seen(folder: Path) -> None:
    """Recently modified ("racy") files are re-read even when their signature looks unchanged."""
    path = folder / "o.json"
    path.write_text(json.dumps(flow("orders", tag="aaaa")))
    d = DirectoryDriver(folder, rules=RULES)
    d.export()
    st = path.stat()
    path.write_text(json.dumps(flow("orders", tag="bbbb")))  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    live = d.export()
    assert live.flows[K].oid == blob_id(canon(flow("orders", tag="bbbb")))
    assert d.load(K).data == canon(flow("orders", tag="bbbb"))


def test_a_duplicate_that_appears_after_an_export_is_reported(folder: Path) -> None:
    """A change that creates a duplicate falls back to a full read, which reports it."""
    (folder / "a.json").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES)
    d.export()
    (folder / "b.json").write_text(json.dumps(flow("orders", copy=True)))
    live = d.export()
    assert K in live.invalid and K not in live.flows


def test_trusting_the_watch_still_rereads_what_the_driver_wrote(folder: Path, fs: Seam) -> None:
    """trust_watch() skips the stat pass, but never the files the last apply touched."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    assert d.apply([Change(K, canon(flow("orders", retries=2)), seen)]) == {}
    d.watched_by(lambda: frozenset())
    d.trust_watch()
    assert d.export().flows[K].oid == DirectoryDriver(folder, rules=RULES).export().flows[K].oid


def test_trusting_the_watch_spares_the_next_export_listing_the_folder(folder: Path) -> None:
    """After trust_watch() the next export reuses the last result without listing the folder;
    the one after it lists the folder again."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    fs = Seam()
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    d.watched_by(lambda: frozenset())
    first = d.export()
    listed = len(fs.ops("scandir"))
    d.trust_watch()
    assert d.export().oids() == first.oids() and len(fs.ops("scandir")) == listed
    d.export()
    assert len(fs.ops("scandir")) == listed + 1


def test_the_files_a_watch_reports_as_flow_files_are_those_the_export_reads(folder: Path) -> None:
    """is_flow_file() is true exactly for what the export reads (*.json, not hidden), in the folder
    watch_paths() names; the driver declares both capabilities."""
    names = ["a.json", "my export (3).json", ".hidden.json", "notes.txt", "a.json.tmp", "b.JSON",
             f".reconciler-1-2-abcdef-{'0' * 12}.o.json.aside"]
    for i, name in enumerate(names):
        (folder / name).write_text(json.dumps(flow(f"f{i}")))
    d = DirectoryDriver(folder, rules=RULES)
    read = {os.path.basename(w) for w in d.export().where.values()}
    assert {n for n in names if d.is_flow_file(folder / n)} == read == {"a.json", "my export (3).json"}
    assert d.watch_paths() == (folder,)
    assert isinstance(d, Watchable) and isinstance(d, Recoverable)


def test_a_version_left_aside_by_a_crash_is_put_back_under_its_name(folder: Path) -> None:
    """kill -9 between moving the old file aside and linking the new one: the flow returns."""
    (folder / ".reconciler-99-3.o.json.aside").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES)
    d.recover()
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]
    assert list(d.export().flows) == [K]


def test_a_version_left_aside_next_to_a_newer_file_is_kept_and_reported(folder: Path) -> None:
    """Crash after the new file was linked: the old one is kept beside it (a duplicate to resolve)."""
    (folder / "o.json").write_text(json.dumps(flow("orders", retries=2)))
    (folder / ".reconciler-99-3.o.json.aside").write_text(json.dumps(flow("orders")))
    (folder / ".reconciler-99-4.p.json.aside").write_bytes((folder / "o.json").read_bytes().replace(b"orders", b"pay"))
    (folder / "p.json").write_bytes((folder / ".reconciler-99-4.p.json.aside").read_bytes())
    d = DirectoryDriver(folder, rules=RULES)
    d.recover()
    assert sorted(p.name for p in folder.iterdir()) == ["o-kept-2.json", "o.json", "p.json"]
    assert json.loads((folder / "o-kept-2.json").read_text()) == flow("orders")
    assert K in d.export().invalid  # both files hold orders@1.0: reported, nothing dropped


def test_a_crashed_runs_files_seen_later_are_recovered_by_the_next_run(folder: Path) -> None:
    """Another process killed mid-write: the next scan notices, the next run recovers."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES)
    d.recover()
    d.export()
    os.rename(folder / "o.json", folder / ".reconciler-7-1.o.json.aside")
    (folder / ".reconciler-7-2.tmp").write_text("half a fl")
    assert K not in d.export().flows
    d.recover()
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]
    assert K in d.export().flows


def test_a_failed_link_puts_the_old_file_back(folder: Path) -> None:
    """No space for the new directory entry (ENOSPC on link): the old file is back under its name."""
    fs = no_exchange()
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid

    def link(src, dst):
        if str(src).endswith((".tmp", ".swap")):  # the new version, not the old one going back
            raise OSError(errno.ENOSPC, "No space left on device")

    fs.before["link"] = link
    failed = d.apply([Change(K, canon(flow("orders", retries=3)), seen)])
    assert "No space left on device" in failed[K]
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]
    assert json.loads((folder / "o.json").read_text()) == flow("orders")


def test_an_edit_written_in_place_during_a_delete_is_kept_and_the_delete_reported_failed(folder: Path) -> None:
    """An editor writing through a file it opened earlier, just after the driver's check: not deleted."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    fs = Seam()
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    calls = []

    def read(path):
        calls.append(path)
        if len(calls) == 1:  # the guard has read the moved file: the editor writes into it now
            with open(path, "w") as f:
                json.dump(flow("orders", note="written in place"), f)

    fs.after["read"] = read
    failed = d.apply([Change(K, None, seen)])
    assert "edited during the write" in failed[K]
    assert json.loads((folder / "o.json").read_text())["note"] == "written in place"
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


def test_a_write_that_finished_before_a_crash_drops_the_saved_old_version(folder: Path) -> None:
    """kill -9 after the new file was linked: the aside holds what the plan expected (saved to
    drift/<env> before the write), so recovery drops it instead of making a duplicate."""
    old = canon(flow("orders"))
    (folder / f".reconciler-9-1-abcdef-{blob_id(old)[:12]}.o.json.aside").write_bytes(old)
    (folder / "o.json").write_text(json.dumps(flow("orders", retries=2)))
    d = DirectoryDriver(folder, rules=RULES)
    d.recover()
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]
    assert d.export().flows[K].oid == blob_id(canon(flow("orders", retries=2)))


def test_a_long_non_ascii_file_name_can_still_be_updated(folder: Path, fs: Seam) -> None:
    """The hidden name of the old version is bounded in bytes, not characters."""
    name = "é" * 115 + ".json"  # 235 bytes
    (folder / name).write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    assert d.apply([Change(K, canon(flow("orders", retries=4)), seen)]) == {}
    assert json.loads((folder / name).read_text())["retries"] == 4
    assert [p.name for p in folder.iterdir()] == [name]


def test_a_folder_swapped_in_for_a_flow_file_is_put_back(folder: Path, fs: Seam) -> None:
    """A directory at the flow's name when the write comes: refused, and the directory stays where it was."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    (folder / "o.json").unlink()
    (folder / "o.json").mkdir()
    (folder / "o.json" / "inside.txt").write_text("keep me")
    failed = d.apply([Change(K, canon(flow("orders", retries=5)), seen)])
    assert K in failed
    assert (folder / "o.json" / "inside.txt").read_text() == "keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


# -- the swap write (renameat2 RENAME_EXCHANGE) --------------------------------------------------


def test_a_replaced_file_never_disappears_where_names_can_be_swapped(folder: Path, protocol: str, fs: Seam) -> None:
    """A program listing the folder during a write always finds the flow (swap); the move-aside
    write, where the file system cannot swap, leaves the name absent for a moment."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    present = []
    # the driver's reads mid-write, between the two halves of the replacement
    fs.before["read"] = lambda path: present.append(os.path.exists(folder / "o.json"))
    assert d.apply([Change(K, canon(flow("orders", retries=7)), seen)]) == {}
    assert json.loads((folder / "o.json").read_text())["retries"] == 7
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]
    assert present and all(present) == (protocol == "swap"), present


def save_around_the_swap(folder: Path, before=None, after=None) -> Seam:
    """A file system on which an editor saves o.json just before the driver's first swap and/or
    just after it."""
    fs = Seam()

    def at_the_first_swap(doc):
        def hook(a: str, b: str) -> None:
            if doc is not None and len(fs.ops("exchange")) == 1:
                save(folder / "o.json", doc)
        return hook

    fs.before["exchange"], fs.after["exchange"] = at_the_first_swap(before), at_the_first_swap(after)
    return fs


def test_a_save_just_before_the_swap_is_swapped_back_under_its_name(folder: Path) -> None:
    """The save wins: it is at its name again, the write is refused (the next run re-plans)."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    fs = save_around_the_swap(folder, before=flow("orders", note="saved just now"))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    failed = d.apply([Change(K, canon(flow("orders", retries=7)), seen)])
    assert "changed since it was read" in failed[K]
    assert len(fs.ops("exchange")) == 2  # swapped in, swapped back
    assert json.loads((folder / "o.json").read_text())["note"] == "saved just now"
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


def test_a_save_just_before_the_swap_is_back_under_its_name_before_it_is_looked_at(folder: Path) -> None:
    """The only moment the name shows our version while a save is hidden under a .swap name is a read
    and a byte compare: the save is swapped back before it is parsed (an editor that reads the file in
    that moment and saves later would overwrite the save; a parse of a large flow took milliseconds)."""
    big = flow("orders", steps=[{"id": f"s{i}", "type": "map", "config": {"expr": "x" * 50}} for i in range(2000)])
    (folder / "o.json").write_text(json.dumps(big, indent=2))  # not canonical bytes: the plan's version needs a parse
    fs = save_around_the_swap(folder, before={**big, "note": "saved just now"})
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    hidden_when_parsed = []
    decoded = d._write.decoded

    def watched(path, raw, expect=None):
        hidden_when_parsed.append(sorted(p.name for p in folder.iterdir() if p.name.endswith(".swap")))
        return decoded(path, raw, expect)

    d._write.decoded = watched
    failed = d.apply([Change(K, canon(flow("orders", retries=7)), seen)])
    assert "changed since it was read" in failed[K]
    assert json.loads((folder / "o.json").read_text())["note"] == "saved just now"
    assert len(hidden_when_parsed) == 2, hidden_when_parsed  # the check before the swap, the message after it
    assert hidden_when_parsed == [[], []]  # never while the save was under the .swap name
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


def test_a_file_no_longer_what_the_plan_saw_is_not_swapped_at_all(folder: Path) -> None:
    """Checked before the swap: a save made after the plan read the folder is refused without ever
    showing the new version under the flow's name."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    fs = Seam()
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    save(folder / "o.json", flow("orders", note="saved after the plan"))
    failed = d.apply([Change(K, canon(flow("orders", retries=7)), seen)])
    assert "changed since it was read" in failed[K]
    assert fs.ops("exchange") == []
    assert json.loads((folder / "o.json").read_text())["note"] == "saved after the plan"
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


def test_two_saves_around_the_swap_are_both_kept(folder: Path) -> None:
    """A save before the swap and another right after it: the newer one keeps the name, the
    earlier one is kept beside it (reported as a duplicate); the new version is not written."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    fs = save_around_the_swap(folder, before=flow("orders", note="first"), after=flow("orders", note="second"))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    failed = d.apply([Change(K, canon(flow("orders", retries=7)), seen)])
    assert "saved twice" in failed[K]
    assert json.loads((folder / "o.json").read_text())["note"] == "second"
    assert json.loads((folder / "o-kept-2.json").read_text())["note"] == "first"
    assert sorted(p.name for p in folder.iterdir()) == ["o-kept-2.json", "o.json"]
    assert K in d.export().invalid


def test_a_save_right_after_the_swap_wins(folder: Path) -> None:
    """A save replacing the new version once it is in: it stays, the write counts as done."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    d = DirectoryDriver(folder, rules=RULES, fs=save_around_the_swap(folder, after=flow("orders", note="after")))
    seen = d.export().flows[K].oid
    assert d.apply([Change(K, canon(flow("orders", retries=7)), seen)]) == {}
    assert json.loads((folder / "o.json").read_text())["note"] == "after"
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


OLD, NEW = canon(flow("orders")), canon(flow("orders", retries=2))
FIRST, SECOND = (json.dumps(flow("orders", note=n)).encode() for n in ("first", "second"))


@pytest.mark.parametrize("at_name, swapped_out, after", [
    # kill -9 before the swap: our unused version is dropped
    (OLD, NEW, {"o.json": OLD}),
    # after the swap, before the check: the old version the plan saw (on drift/<env>) is dropped
    (NEW, OLD, {"o.json": NEW}),
    # after the swap took a save's place: the save is swapped back, our version goes (re-planned)
    (NEW, FIRST, {"o.json": FIRST}),
    # the name holds yet another save: the swapped-out one is kept beside it, nothing dropped
    (SECOND, FIRST, {"o.json": SECOND, "o-kept-2.json": FIRST}),
], ids=["before-the-swap", "after-the-swap", "a-save-swapped-out", "next-to-a-newer-save"])
def test_a_crash_during_a_swap_write_is_sorted_out_by_the_next_run(folder: Path, at_name, swapped_out, after) -> None:
    (folder / "o.json").write_bytes(at_name)
    name = f".reconciler-9-1-abcdef-{blob_id(OLD)[:12]}-{blob_id(NEW)[:12]}.o.json.swap"
    (folder / name).write_bytes(swapped_out)
    DirectoryDriver(folder, rules=RULES).recover()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == after


def test_without_swap_support_the_driver_falls_back_once_and_stays_there(folder: Path) -> None:
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    fs = no_exchange()
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    for n in (1, 2):
        assert d.apply([Change(K, canon(flow("orders", retries=n)), d.export().flows[K].oid)]) == {}
        assert json.loads((folder / "o.json").read_text())["retries"] == n
    calls = fs.ops("exchange")
    assert len(calls) == 1 and calls[0][0].endswith(".swap")
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


def test_an_interrupt_after_swapping_out_a_save_loses_nothing(folder: Path) -> None:
    """Ctrl-C (or any exception) while the swapped-out save is being checked: the hidden file is
    not cleaned up as a temporary file; the next run puts the save back under its name."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    fs = save_around_the_swap(folder, before=flow("orders", note="saved just now"))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid

    def interrupted(path):
        if str(path).endswith(".swap"):
            raise KeyboardInterrupt

    fs.before["read"] = interrupted
    with pytest.raises(KeyboardInterrupt):
        d.apply([Change(K, canon(flow("orders", retries=7)), seen)])
    DirectoryDriver(folder, rules=RULES).recover()
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]
    assert json.loads((folder / "o.json").read_text())["note"] == "saved just now"


def test_a_save_that_cannot_be_put_back_stays_hidden_until_it_can(folder: Path) -> None:
    """Two saves around the swap and no room to keep the earlier one beside the newer: it stays
    hidden (never deleted), and the next run with room puts it beside the newer one."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    fs = save_around_the_swap(folder, before=flow("orders", note="first"), after=flow("orders", note="second"))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid

    def no_room(src, dst):
        if "-kept-" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")

    fs.before["link"] = fs.before["rename"] = no_room
    failed = d.apply([Change(K, canon(flow("orders", retries=7)), seen)])
    assert K in failed
    hidden = [p for p in folder.iterdir() if p.name != "o.json"]
    assert [json.loads(p.read_text())["note"] for p in hidden] == ["first"], hidden
    DirectoryDriver(folder, rules=RULES).recover()
    assert json.loads((folder / "o.json").read_text())["note"] == "second"
    assert json.loads((folder / "o-kept-2.json").read_text())["note"] == "first"


def test_a_newer_save_with_the_same_bytes_as_ours_is_still_a_save(folder: Path) -> None:
    """Ours is our file, not just our bytes: a save of identical content after the swap keeps the
    name; the earlier save is kept beside it."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    new = canon(flow("orders", retries=7))
    fs = save_around_the_swap(folder, before=flow("orders", note="first"), after=json.loads(new))
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    seen = d.export().flows[K].oid
    failed = d.apply([Change(K, new, seen)])
    assert "saved twice" in failed[K]
    assert json.loads((folder / "o.json").read_text()) == json.loads(new)
    assert json.loads((folder / "o-kept-2.json").read_text())["note"] == "first"


def test_a_hidden_second_name_of_a_flow_file_is_dropped_not_duplicated(folder: Path) -> None:
    """A crash between linking a file back and removing its hidden name: one file, not two."""
    (folder / "o.json").write_text(json.dumps(flow("orders", note="saved")))
    os.link(folder / "o.json", folder / f".reconciler-9-1-abcdef-{'0' * 12}-{'1' * 12}.o.json.swap")
    os.link(folder / "o.json", folder / ".reconciler-9-2.o.json.aside")
    DirectoryDriver(folder, rules=RULES).recover()
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


def test_without_swap_support_a_batch_tries_once(folder: Path) -> None:
    """The first EINVAL switches the folder to the move-aside write for the rest of the batch."""
    keys = [FlowKey(f"f{i}", "1") for i in range(3)]
    for k in keys:
        (folder / f"{k.name}.json").write_text(json.dumps(flow(k.name, "1")))
    fs = no_exchange()
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    live = d.export()
    changes = [Change(k, canon(flow(k.name, "1", retries=1)), live.flows[k].oid) for k in keys]
    assert d.apply(changes) == {}
    assert len(fs.ops("exchange")) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["f0.json", "f1.json", "f2.json"]


def test_a_partly_written_temporary_file_is_removed_not_restored(folder: Path) -> None:
    """kill -9 while the batch's temporary files are written: they hold nothing to keep."""
    (folder / "o.json").write_text(json.dumps(flow("orders")))
    (folder / ".reconciler-9-1.tmp").write_text('{\n  "name"')
    DirectoryDriver(folder, rules=RULES).recover()
    assert sorted(p.name for p in folder.iterdir()) == ["o.json"]


# -- the names of the hidden files ------------------------------------------------------------------


@pytest.mark.parametrize("kind, expect, new", [(TMP, "", ""), (ASIDE, "a" * 12, ""), (SWAP, "a" * 12, "b" * 12)])
def test_a_hidden_name_reads_back_as_what_a_recovery_needs(kind: str, expect: str, new: str) -> None:
    """Kind, flow file, and the 12-digit prefixes of what the plan saw and of our bytes."""
    name = hidden_name(kind, 7, name="" if kind == TMP else "o.json", expect="a" * 40, new="b" * 40)
    assert name.startswith(".reconciler-") and name.endswith(kind) and not name.endswith(".json")
    assert Hidden.decode(name) == Hidden(kind, RECOVERED if kind == TMP else "o.json", expect, new)


def test_a_hidden_name_too_long_for_the_flow_files_name_goes_back_as_recovered() -> None:
    """The flow file's name is left out when the whole would not fit (255 bytes)."""
    name = hidden_name(ASIDE, 1, name="é" * 120 + ".json", expect="a" * 40)
    assert len(os.fsencode(name)) < 255
    assert Hidden.decode(name) == Hidden(ASIDE, RECOVERED, "a" * 12)


@pytest.mark.parametrize("name, hidden", [
    (".reconciler-99-3.o.json.aside", Hidden(ASIDE, "o.json")),  # an older spelling: no expect
    (".reconciler-99-3.aside", Hidden(ASIDE, RECOVERED)),
    (".reconciler-9-1-abcdef-short.o.json.aside", Hidden(ASIDE, "o.json")),
    (".reconciler-9-1-abcdef-aaaaaaaaaaaa.o.json.swap", Hidden(SWAP, "o.json")),  # one part short
    (".reconciler-9-1-abcdef-aaaaaaaaaaaa..hidden.json.aside", Hidden(ASIDE, RECOVERED, "a" * 12)),
    ("o.json", None), (".reconciler-1-2.json", None), (".editor.tmp", None),
])
def test_a_hidden_name_is_read_without_trusting_it(name: str, hidden: Hidden | None) -> None:
    """Older spellings, damaged names and other files: nothing is made up, nothing leaves the folder."""
    assert Hidden.decode(name) == hidden
