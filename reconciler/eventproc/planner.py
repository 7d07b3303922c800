"""Rendered SQL checked by Flink 1.20's own planner, many scripts in one JVM.

The jars come from the ``apache-flink-libraries`` distribution (the ``flink``
extra: ``pip install -e '.[flink]'``), which puts them in ``pyflink/lib`` of
site-packages. No Kafka connector jar can be had, so the Java sources beside
this module (``flink/*.java``: stub ``kafka``/``upsert-kafka`` factories with
the real options, metadata, watermark push-down and changelog modes, and the
``PlannerCheck`` main) are compiled with ``javac`` once into a cache folder
keyed by a hash of the sources and the Flink version:
``$XDG_CACHE_HOME/flow-reconciler/flink-stub/<hash>`` (``~/.cache`` without
``XDG_CACHE_HOME``), or a folder passed in.

:func:`check_scripts` writes the scripts to a temporary folder, runs one JVM
over all of them, and returns one :class:`Result` per script with Flink's own
message when the planner refuses it. This module is an adapter: it runs
processes and touches files; the renderer never imports it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ReconcilerError, StallError

__all__ = ["Result", "FlinkUnavailable", "PlannerError", "flink_lib", "flink_version", "stub_classes",
           "check_scripts", "DISTRIBUTION"]

DISTRIBUTION = "apache-flink-libraries"
MAIN = "dev.flowreconciler.flinkstub.PlannerCheck"
FACTORIES = ("dev.flowreconciler.flinkstub.StubKafkaFactory", "dev.flowreconciler.flinkstub.StubUpsertKafkaFactory")
SOURCES = Path(__file__).resolve().parent / "flink"
# A quick start matters more than peak speed for a few hundred short plans.
JVM_OPTIONS = ("-Xss8m", "-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


@dataclass(frozen=True)
class Result:
    """The planner's verdict on one script.

    ``statement`` (0-based) and ``line`` (1-based, in the script) say which
    statement failed; ``error`` is Flink's message (its exception class first),
    ``cause`` the root cause's when it adds something.
    """

    ok: bool
    error: str = ""
    cause: str = ""
    statement: int = -1
    line: int = 0

    def __str__(self) -> str:
        if self.ok:
            return "ok"
        where = f"statement {self.statement + 1} (line {self.line})" if self.statement >= 0 else "script"
        return f"{where}: {self.error}" + (f"\ncaused by: {self.cause}" if self.cause else "")


class FlinkUnavailable(StallError):
    """Flink's jars or a JDK are missing: install the flink extra, or java/javac."""


class PlannerError(ReconcilerError):
    """The planner JVM failed as a whole (it crashed, or ran out of time)."""


def flink_lib() -> Path:
    """The folder of Flink's jars from the installed ``apache-flink-libraries``."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FlinkUnavailable(f"{DISTRIBUTION} is not installed: pip install -e '.[flink]' "
                               f"(or bash .ci/install-flink)") from exc
    lib = Path(str(dist.locate_file("pyflink/lib")))
    if not any(lib.glob("flink-table-planner-loader-*.jar")):
        raise FlinkUnavailable(f"{DISTRIBUTION} {dist.version} has no Flink planner jar in {lib}")
    return lib


def flink_version() -> str:
    return importlib.metadata.version(DISTRIBUTION)


def _classpath(lib: Path) -> list[Path]:
    # log4j stays out: without it SLF4J falls back to its no-op logger and the JVM is quiet.
    return sorted(p for p in lib.glob("*.jar") if not p.name.startswith("log4j"))


def _tool(name: str, given: str | None) -> str:
    path = given or shutil.which(name)
    if not path:
        raise FlinkUnavailable(f"{name} is not on PATH: install a JDK (17 or newer), e.g. apt-get install openjdk-17-jdk-headless")
    return path


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flow-reconciler" / "flink-stub"


def stub_classes(cache_dir: Path | None = None, *, javac: str | None = None) -> Path:
    """The compiled stub (classes and its service file), compiled on first use."""
    lib = flink_lib()
    sources = sorted(SOURCES.glob("*.java"))
    h = hashlib.sha256(flink_version().encode())
    for src in sources:
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    root = (cache_dir or _default_cache())
    target = root / h.hexdigest()[:20]
    if (target / "COMPLETE").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="compile-", dir=root))
    try:
        cp = os.pathsep.join(str(p) for p in _classpath(lib))
        proc = subprocess.run([_tool("javac", javac), "-nowarn", "-encoding", "UTF-8", "-d", str(work), "-cp", cp,
                               *map(str, sources)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise PlannerError(f"javac failed on the stub connector:\n{proc.stderr.strip()}")
        services = work / "META-INF" / "services"
        services.mkdir(parents=True)
        (services / "org.apache.flink.table.factories.Factory").write_text("\n".join(FACTORIES) + "\n")
        (work / "COMPLETE").write_text(flink_version() + "\n")
        try:
            work.rename(target)  # atomic: a concurrent compile of the same sources loses the race harmlessly
        except OSError:
            if not (target / "COMPLETE").is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def check_scripts(scripts: Sequence[str], *, cache_dir: Path | None = None, java: str | None = None,
                  javac: str | None = None, timeout: float = 900.0) -> list[Result]:
    """Plan every script in one JVM; one :class:`Result` per script, in order."""
    if not scripts:
        return []
    classes = stub_classes(cache_dir, javac=javac)
    cp = os.pathsep.join([str(classes), *(str(p) for p in _classpath(flink_lib()))])
    with tempfile.TemporaryDirectory(prefix="flink-plan-") as tmp:
        folder = Path(tmp)
        paths = []
        for i, script in enumerate(scripts):
            path = folder / f"{i:05d}.sql"
            path.write_text(script, encoding="utf-8")
            paths.append(str(path))
        (folder / "list.txt").write_text("\n".join(paths) + "\n", encoding="utf-8")
        out = folder / "results.jsonl"
        try:
            proc = subprocess.run([_tool("java", java), *JVM_OPTIONS, "-cp", cp, MAIN, str(folder / "list.txt"),
                                   str(out)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:  # subprocess.run has killed the JVM
            raise PlannerError(f"the Flink planner did not finish {len(scripts)} scripts in {timeout:.0f} s") from exc
        lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
        if proc.returncode != 0 or len(lines) != len(scripts):
            raise PlannerError(f"the Flink planner JVM failed (exit {proc.returncode}) after {len(lines)} of "
                               f"{len(scripts)} scripts:\n{proc.stderr.strip()[-4000:]}")
    results = []
    for line in lines:
        row = json.loads(line)
        results.append(Result(ok=row["ok"], error=_trim(row.get("error", "")), cause=_trim(row.get("cause", "")),
                              statement=row.get("statement", -1), line=row.get("line", 0)))
    return results


def _trim(message: str) -> str:
    """Flink's message without the parser's list of a hundred expected tokens."""
    head, sep, _ = message.partition("\nWas expecting one of:")
    return head + ("\n(Flink lists the tokens it expected)" if sep else "")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reconciler.eventproc.planner FILE.sql...``: plan each script, print Flink's verdict.
    Exit 0 when Flink accepts every script, 1 when it refuses one, 2 when it cannot run."""
    import sys

    files = list(sys.argv[1:] if argv is None else argv)
    if not files:
        print("usage: python -m reconciler.eventproc.planner FILE.sql...", file=sys.stderr)
        return 2
    try:
        scripts = [Path(f).read_text(encoding="utf-8") for f in files]
        results = check_scripts(scripts)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read a script: {exc}", file=sys.stderr)
        return 2
    except ReconcilerError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for name, result in zip(files, results):
        print(f"{name}: {result}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
