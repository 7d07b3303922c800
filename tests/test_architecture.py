"""Architecture checks anyone can run: the pure core does no I/O, pygit2 stays behind its adapter,
no import circle, modules small enough to read, and no port discovered with getattr/hasattr.

They read the source (ast), so they hold for every code path, not only the ones a test runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reconciler"

#: the pure core: decisions and data, no I/O, no clock
PURE = ["canonical", "names", "flows", "plan", "pointers", "secretrule", "templating", "semdiff", "readcache", "quarantine",
        "codefields", "sidecars", "codediff", "layout", "kinds", "drivers.node_red.code",
        "shard", "webhook", "eventproc.model", "eventproc.expr", "eventproc.graph", "eventproc.fields",
        "eventproc.rules", "eventproc.render", "eventproc.sqltext"]
#: modules that do I/O, or read the clock (an import of any of them is I/O)
IO = {"pygit2", "http", "urllib", "socket", "ssl", "os", "io", "time", "subprocess", "shutil", "pathlib", "tempfile",
      "threading", "fcntl", "glob", "watchfiles", "apscheduler", "prometheus_client", "sqlite3", "requests",
      "selenium", "asyncio", "datetime"}
#: where pygit2 may be imported: the git adapter and the remote
PYGIT2 = ("gitstore", "remote")
#: modules allowed past ~400 lines, and why
LONG = {
    # module -> why it stays whole
    "engine": "the reconcile pipeline (read, plan, apply) and the commands built on it, read top to bottom; "
              "what each step needs already lives beside it (readcache, readindex, apply, migrate; quarantine stays pure)",
}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts) or "__init__"] = path
    return out


def imports(path: Path, *, toplevel_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) of a file; relative imports resolved to ``reconciler.…`` names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(PACKAGE).with_suffix("")
    package = ["reconciler", *rel.parts[:-1]]
    found = []
    nodes = tree.body if toplevel_only else list(ast.walk(tree))
    for node in nodes:
        if toplevel_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            found += [(f"{name}.{a.name}", node.lineno) for a in node.names]
    return found


@pytest.mark.parametrize("module", PURE)
def test_a_pure_core_module_imports_no_io(module: str) -> None:
    """No pygit2, http, os, time, files, threads or sockets in the pure core."""
    path = modules()[module]
    bad = [(name, line) for name, line in imports(path) if name.split(".")[0] in IO]
    assert bad == [], f"reconciler/{module}: imports I/O: {bad}"


def test_only_the_git_adapter_and_the_remote_import_pygit2() -> None:
    offenders = sorted(m for m, path in modules().items()
                       if not m.startswith(PYGIT2) and any(n.split(".")[0] == "pygit2" for n, _ in imports(path)))
    assert offenders == []


def test_there_is_no_import_circle() -> None:
    """Module-level imports between reconciler modules form no cycle (TYPE_CHECKING imports aside)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for imported, _ in imports(path, toplevel_only=True):
            if imported.startswith("reconciler."):
                target = imported.removeprefix("reconciler.")
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    deps.add(target)
        graph[name] = deps
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_every_module_is_small_enough_to_read_in_one_sitting() -> None:
    long = {m: n for m, p in modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES and m not in LONG}
    assert long == {}, f"over {MAX_LINES} lines (split them, or say why in LONG): {long}"


def test_every_module_says_what_it_owns() -> None:
    missing = [m for m, p in modules().items() if ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) is None]
    assert missing == []


@pytest.mark.parametrize("module", ["engine", "apply", "worker", "service", "triggers", "readcache"])
def test_no_driver_ability_is_discovered_with_getattr_or_hasattr(module: str) -> None:
    """The port is declared (Driver and capability Protocols, checked with isinstance)."""
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    calls = [n.lineno for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr")]
    assert calls == [], f"reconciler/{module}.py lines {calls}"
