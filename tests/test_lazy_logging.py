"""The lazy logger (reconciler.logsetup.get_logger): an event at an enabled level comes out exactly as
structlog configured the old way writes it (fields, order, JSON and console forms, redaction, context,
tracebacks); an event below the level imports nothing, so a quiet command never imports structlog."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import flow

SECRET = "s3cret-value-0123456789"

# Both ways emit the same events from the same lines (tracebacks name them); only the set-up differs.
PROBE = f'''
import sys


def emit(log, bound):
    log.debug("dropped at info", a=1)
    with bound(environment="acceptance"):
        log.info("hello", count=3, token="{SECRET}", path="/tmp/x")
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("failed", step="divide")
        with bound(environment="nested"):  # one key at a time: the order of several is Python's hashes'
            log.warning("inner", flows=["a", "b"])
    log.error("after", n=None)
    log.info("with {SECRET} in the event")


from reconciler.redaction import Redactor

redactor = Redactor(["{SECRET}"])
level, fmt, how = sys.argv[1:4]
if how == "lazy":
    from reconciler.logsetup import bound_contextvars, get_logger, setup_logging

    setup_logging(level, fmt, redactor=redactor)
    emit(get_logger("reconciler.probe"), bound_contextvars)
else:  # what setup_logging did before it was lazy
    import logging

    import structlog

    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor.processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    emit(structlog.get_logger("reconciler.probe"), structlog.contextvars.bound_contextvars)
print(" ".join(m for m in ("structlog", "asyncio") if m in sys.modules))
'''


def run_probe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60, check=True)


def without_times(stderr: str, fmt: str) -> list[object]:
    if fmt == "json":
        lines = [json.loads(line) for line in stderr.splitlines()]
        for line in lines:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line.pop("timestamp"))
        return [list(line.items()) for line in lines]  # the fields' order too
    return [re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ", "", line) for line in stderr.splitlines()]


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_events_come_out_as_structlog_configured_eagerly_writes_them(tmp_path: Path, level: str, fmt: str) -> None:
    lazy, eager = run_probe(tmp_path, level, fmt, "lazy"), run_probe(tmp_path, level, fmt, "eager")
    assert without_times(lazy.stderr, fmt) == without_times(eager.stderr, fmt)
    assert lazy.stderr and SECRET not in lazy.stderr
    if level in ("debug", "info"):
        assert "ZeroDivisionError" in lazy.stderr and "acceptance" in lazy.stderr
    if level == "debug":
        assert "dropped at info" in lazy.stderr
    assert lazy.stdout.split() == ["structlog", "asyncio"]  # an error is always emitted: structlog then


def test_below_the_level_nothing_is_imported(tmp_path: Path) -> None:
    code = """
import sys
from reconciler.logsetup import bound_contextvars, get_logger, setup_logging
setup_logging("warning", "json")
log = get_logger("reconciler.probe")
with bound_contextvars(environment="acceptance"):
    log.debug("no")
    log.info("no", x=1)
print(" ".join(m for m in ("structlog", "asyncio") if m in sys.modules) or "none")
log.warning("yes", x=2)
print(" ".join(m for m in ("structlog", "asyncio") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split("\n")[:2] == ["none", "structlog asyncio"]
    [line] = proc.stderr.splitlines()
    event = json.loads(line)
    assert (event["event"], event["x"], event["level"]) == ("yes", 2, "warning") and "environment" not in event


def test_a_quiet_command_imports_no_structlog(ws) -> None:
    ws.add_env("acceptance")
    ws.put("acceptance", "a.json", flow("a"))
    assert ws.cli("export", "acceptance", "-q").returncode == 0
    code = ("import sys; from reconciler.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, ' '.join(m for m in ('structlog', 'asyncio') if m in sys.modules) or 'none')")
    for args in (["plan", "acceptance", "-q"], ["export", "acceptance", "-q"], ["sync", "acceptance", "-q"]):
        proc = subprocess.run([sys.executable, "-c", code, "--config", str(ws.config), *args], cwd=ws.root,
                              capture_output=True, text=True, timeout=120)
        assert proc.stdout.split("\n")[-2].split(" ", 1) == ["0", "none"], (args, proc.stdout, proc.stderr)
    # at debug level the same command logs (its kept reads, damaged here, are not used), so structlog is there
    for kept in (ws.repo / "reconciler" / "index" / "acceptance").iterdir():
        kept.write_bytes(b"damaged")
    proc = subprocess.run([sys.executable, "-c", code, "--config", str(ws.config), "plan", "acceptance",
                           "--log-level", "debug", "--log-format", "json"], cwd=ws.root, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.split("\n")[-2] == "0 structlog asyncio"
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert events and all(e["level"] == "debug" and "timestamp" in e for e in events)


def test_a_later_configuration_of_structlog_is_kept(tmp_path: Path) -> None:
    """A test's capture_logs entered after setup_logging (structlog not imported yet) sees the events."""
    code = """
import json
from reconciler.logsetup import get_logger, setup_logging
setup_logging("warning", "json")
log = get_logger("reconciler.probe")
import structlog.testing
with structlog.testing.capture_logs() as logs:
    log.info("below the level")
    log.warning("seen", x=1)
print(json.dumps(logs))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(proc.stdout) == [{"x": 1, "event": "seen", "log_level": "warning"}]


def test_threads_emitting_the_first_events_at_once_all_get_the_configured_form() -> None:
    """The service's threads: none writes through structlog's defaults (stdout) before it is configured."""
    code = """
import threading
from reconciler.logsetup import get_logger, setup_logging
setup_logging("info", "json")
log = get_logger("reconciler.probe")
go = threading.Barrier(8)
def emit(i):
    go.wait()
    log.debug("dropped", i=i)
    log.info("first", i=i)
threads = [threading.Thread(target=emit, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout == ""
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert sorted(e["i"] for e in events) == list(range(8)) and {e["event"] for e in events} == {"first"}


def test_only_logsetup_imports_structlog() -> None:
    """Every module logs through get_logger: an event of a module that used structlog directly would
    miss what bound_contextvars binds (the environment of the engine's run) and import structlog early."""
    root = Path(__file__).resolve().parent.parent / "reconciler"
    direct = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                    if p.name != "logsetup.py" and re.search(r"^\s*(import structlog|from structlog)", p.read_text(), re.M))
    assert direct == []
