"""The dataclass code kept between command line processes (reconciler.classcode): it may cost a compile,
never give a method other than the one ``@dataclass`` compiles.

Each case runs real processes (a fresh interpreter each, as the command line is) against a real folder:
the first compiles and keeps, the next finds; a truncated, corrupt, foreign, planted or stale file,
a changed class and two processes at once all end with the classes ``@dataclass`` makes without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: defines classes (with or without the cache), prints what they do and how many methods were compiled
PROBE = r'''
import dataclasses, json, pickle, sys
from dataclasses import dataclass, field
import reconciler.classcode as cc
folder, use, extra = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
if use:
    assert cc.install(__import__("pathlib").Path(folder))

@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int = 0
    tags: tuple = ()

@dataclass(order=True)
class Box:
    name: str
    items: list = field(default_factory=list)
    hidden: int = field(default=7, repr=False, compare=False)

@dataclass(frozen=True, kw_only=True)
class Opt:
    a: int
    b: "str" = "b"

ns = {"dataclass": dataclass}
exec(extra, ns)  # a class the case changes between processes
Changed = ns["Changed"]

p, q = Point(1, 2, ("t",)), Point(1, 2, ("t",))
try:
    p.x = 5
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
b = Box("n", [1]); b2 = Box("n", [1], hidden=9)
out = {
    "repr": [repr(p), repr(b), repr(Opt(a=1)), repr(Changed(1))],
    "eq": [p == q, b == b2, Box("a") < Box("b"), hash(p) == hash(q), Opt(a=1) == Opt(a=1, b="b")],
    "frozen": frozen,
    "fields": [[f.name for f in dataclasses.fields(c)] for c in (Point, Box, Opt, Changed)],
    "replace": repr(dataclasses.replace(p, y=9)),
    "pickle": pickle.loads(pickle.dumps(p)) == p and pickle.loads(pickle.dumps(b)) == b,
    "changed": repr(Changed(3)),
    "annotations": [repr(c.__init__.__annotations__) for c in (Point, Box, Opt, Changed)],
    "defaults": [repr(c.__init__.__defaults__) for c in (Point, Box, Changed)],
    "kwdefaults": repr(Opt.__init__.__kwdefaults__),
    "code": [[getattr(c, m).__code__.co_code.hex() for m in ("__init__", "__repr__", "__eq__")] for c in (Point, Box, Opt)],
    "new": cc._store.new if use else None,
    "found": len(cc._store.known) - cc._store.new if use else None,
}
print(json.dumps(out))
'''

CHANGED_A = "@dataclass\nclass Changed:\n    a: int\n"
CHANGED_B = "@dataclass\nclass Changed:\n    a: int\n    b: int = 2\n"


def run(folder: Path, use: bool = True, extra: str = CHANGED_A) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(folder), "1" if use else "0", extra], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def behaviour(out: dict) -> dict:
    return {k: v for k, v in out.items() if k not in ("new", "found")}


def the_file(folder: Path) -> Path:
    files = list(folder.glob("dataclasses-*.code"))
    assert len(files) == 1, files
    return files[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "code"


def test_the_next_process_takes_every_method_from_the_file_and_gets_the_same_classes(folder: Path) -> None:
    plain = run(folder, use=False)
    first = run(folder)
    assert first["new"] > 0 and first["found"] == 0
    assert the_file(folder).stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700
    second = run(folder)
    assert second["new"] == 0 and second["found"] >= first["new"]
    assert behaviour(first) == behaviour(plain) == behaviour(second)
    assert plain["frozen"] is True and plain["eq"] == [True, True, True, True, True]
    assert "'return': None" in plain["annotations"][0]  # evaluated, as dataclasses makes it (no __future__ leak)


def test_every_kept_code_object_is_what_compiling_its_source_gives(folder: Path) -> None:
    """The real table of the package's classes, after a process that imported the command path."""
    code = ("import reconciler.classcode as cc, pathlib, sys\nassert cc.install(pathlib.Path(sys.argv[1]))\n"
            "import reconciler.cli.commands, reconciler.engine, reconciler.config, reconciler.drivers.directory.driver")
    subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO_ROOT, check=True, timeout=60)
    from reconciler import classcode

    table = classcode._read(the_file(folder), classcode.python_key().encode())
    assert len(table) > 100
    for source, kept in table.items():
        assert kept == compile(source, "<string>", "exec", dont_inherit=True), source


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty", "garbage", "foreign python", "other format",
                                    "not a table"])
def test_a_damaged_or_foreign_file_is_ignored_and_replaced(folder: Path, damage: str) -> None:
    from reconciler import classcode

    plain = run(folder, use=False)
    run(folder)
    file = the_file(folder)
    raw = file.read_bytes()
    head, _, body = raw.partition(b"\n")
    magic, key, _sum = head.split(b" ")
    import hashlib
    import marshal

    def signed(k: bytes, b: bytes, m: bytes = magic) -> bytes:
        return b" ".join((m, k, hashlib.sha256(b).hexdigest().encode())) + b"\n" + b

    file.write_bytes({
        "truncated": raw[: len(raw) // 2],
        "corrupt": raw[:-40] + bytes(40),
        "empty": b"",
        "garbage": os.urandom(500),
        "foreign python": signed(b"3.99|other".hex().encode(), body),
        "other format": signed(key, body, b"reconciler-classcode-v0"),
        "not a table": signed(key, marshal.dumps([1, 2, 3])),
    }[damage])
    again = run(folder)
    assert again["found"] == 0 and again["new"] > 0, damage
    assert behaviour(again) == behaviour(plain)
    # kept anew, whole: the process after it finds everything
    assert classcode._read(file, classcode.python_key().encode())
    assert run(folder)["new"] == 0


def test_a_file_or_folder_others_may_write_is_not_loaded(folder: Path) -> None:
    """Code is loaded from it: planted or left writable by another user, it is ignored (like a .pyc one would not trust)."""
    run(folder)
    file = the_file(folder)
    file.chmod(0o666)
    assert run(folder)["found"] == 0
    file.chmod(0o600)
    assert run(folder)["found"] > 0
    folder.chmod(0o777)
    try:
        before = file.read_bytes()
        assert run(folder, extra=CHANGED_B)["found"] == 0
        assert file.read_bytes() == before  # nor is anything kept in such a folder
    finally:
        folder.chmod(0o700)


def test_a_changed_class_is_compiled_anew_and_both_versions_are_kept(folder: Path) -> None:
    before = run(folder, extra=CHANGED_A)
    after = run(folder, extra=CHANGED_B)
    assert after["changed"] == "Changed(a=3, b=2)" and before["changed"] == "Changed(a=3)"
    assert after["new"] > 0 and after["found"] > 0  # the unchanged classes from the file, the changed one compiled
    assert behaviour(after) == behaviour(run(folder, use=False, extra=CHANGED_B))
    assert run(folder, extra=CHANGED_A)["new"] == 0 and run(folder, extra=CHANGED_B)["new"] == 0


def test_two_processes_at_once_leave_a_whole_file(folder: Path) -> None:
    plain = run(folder, use=False)
    extras = [f"@dataclass\nclass Changed:\n    a: int\n    n{i}: int = {i}\n" for i in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", PROBE, str(folder), "1", e], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True) for e in extras]
    outs = [json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [o["changed"] for o in outs] == [f"Changed(a=3, n{i}={i})" for i in range(6)]
    assert list(folder.glob(".*.tmp")) == []  # no temporary file left behind
    later = run(folder)
    assert later["found"] > 0 and behaviour(later) == behaviour(plain)


def test_it_is_installed_once_and_never_over_something_else() -> None:
    code = ("import dataclasses, reconciler.classcode as cc, pathlib, tempfile\n"
            "d = pathlib.Path(tempfile.mkdtemp())\n"
            "dataclasses.exec = lambda *a: exec(*a)\n"
            "assert cc.install(d) is False and cc._store is None\n"
            "del dataclasses.exec\n"
            "assert cc.install(d) is True and cc.install(d) is True and dataclasses.exec is cc._exec\n"
            "cc.uninstall()\n"
            "assert 'exec' not in vars(dataclasses) and cc._store is None\n"
            "@dataclasses.dataclass\nclass A:\n    x: int\n"
            "assert A(1) == A(1)\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_only_the_command_lines_own_process_installs_it(tmp_path: Path, monkeypatch) -> None:
    """``main()`` as the console script calls it (its cold export keeps the file; the next process finds
    everything), not ``main(argv)`` in a caller's process."""
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "envs" / "a").mkdir(parents=True)
    (tmp_path / "reconciler.toml").write_text('[[environment]]\nname = "a"\ndriver = "directory"\npath = "envs/a"\n')

    def export(i: int, argv: bool = False) -> dict:
        (tmp_path / "envs" / "a" / "one.json").write_text(json.dumps({"name": "one", "version": "1", "steps": [i]}))
        call = "main(['export', 'a', '-q'])" if argv else "main()"
        code = ("import sys, json\nsys.argv = ['reconciler', 'export', 'a', '-q']\nfrom reconciler.cli import main\n"
                f"rc = {call}\nimport reconciler.classcode as cc\n"
                "print(json.dumps([rc, cc._store is not None, cc._store and cc._store.new]))")
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.splitlines()[-1])

    assert export(0, argv=True) == [0, False, None]
    assert not (tmp_path / "cache" / "code").exists()
    rc, installed, new = export(1)
    assert rc == 0 and installed and new > 0
    assert export(2) == [0, True, 0]


def test_past_its_size_only_what_the_process_used_is_kept(tmp_path: Path, monkeypatch) -> None:
    from reconciler import classcode

    file = tmp_path / "code" / "dataclasses-x.code"
    store = classcode._Store(file)
    for i in range(6):
        store.code(f"def f{i}():\n return {i}\n")
    store.save()
    monkeypatch.setattr(classcode, "MAX_ENTRIES", 4)
    later = classcode._Store(file)
    assert len(later.known) == 6 and later.new == 0
    later.code("def f0():\n return 0\n")  # found
    later.code("def g():\n return 'g'\n")  # new
    later.save()
    kept = classcode._read(file, classcode.python_key().encode())
    assert sorted(kept) == ["def f0():\n return 0\n", "def g():\n return 'g'\n"]
    ns: dict = {}
    exec(kept["def g():\n return 'g'\n"], {}, ns)
    assert ns["g"]() == "g"


def test_without_a_home_folder_nothing_is_installed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "RECONCILER_CACHE_DIR")}
    code = ("import os, pwd, reconciler.classcode as cc\n"
            "os.path.expanduser = lambda p: p  # as when neither HOME nor the password database name one\n"
            "print(cc.install(), cc._store is None)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "True"], proc.stderr
    assert list(tmp_path.iterdir()) == []
