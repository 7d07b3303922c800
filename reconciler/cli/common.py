"""What every subcommand shares: the engine, progress on a terminal, printing results and errors."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

from reconciler.engine import Engine, Outcome, RunResult
from reconciler.rendering import outcome_lines

from .parser import EXIT_CONFLICT, EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = ["finished", "Progress", "engine", "render", "emit", "exit_for", "print_json", "json_text", "emit_error"]


def finished() -> None:
    """The work is done and recorded: a Ctrl-C while the result prints must not say "interrupted"."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass  # not the main thread (tests calling main() from a thread)


class Progress:
    """A one-line counter on a terminal's stderr; silent when piped."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.shown = False

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if not self.enabled or (total is not None and total < 50):
            return
        of = f"/{total}" if total else ""
        sys.stderr.write(f"\r{phase}: {done}{of} flows ")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def engine(config: Config) -> Engine:
    """The engine every command but ``export`` runs on (``Engine.for_export``): it never creates the repository."""
    return Engine(config)


def render(args: argparse.Namespace, out: Outcome) -> None:
    if args.json:
        print_json(out.as_dict())
        return
    emit(outcome_lines(out, quiet=getattr(args, "quiet", False)))


def emit(lines: tuple[list[str], list[str]]) -> None:
    out, err = lines
    for line in out:
        print(line)
    for line in err:
        print(line, file=sys.stderr)


def exit_for(out: Outcome) -> int:
    return {RunResult.OK: EXIT_OK, RunResult.CONFLICT: EXIT_CONFLICT}.get(out.result, EXIT_ERROR)


def json_text(obj: Any, **how: Any) -> str:
    """``obj`` as JSON that is valid UTF-8 whatever it holds: a name git or the folder gave as bytes that
    are not UTF-8 reaches here as lone surrogates, which would print as bytes no JSON reader decodes;
    then the whole text is ASCII with ``\\uXXXX`` escapes instead."""
    text = json.dumps(obj, ensure_ascii=False, default=str, **how)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, ensure_ascii=True, default=str, **how)
    return text


def print_json(obj: Any) -> None:
    print(json_text(obj, indent=2))


def emit_error(args: argparse.Namespace, message: str, details: list[str]) -> None:
    if getattr(args, "json", False):
        print(json_text({"error": message, "details": details}))
    print(f"reconciler: error: {message}", file=sys.stderr)
    for d in details:
        print(f"  {d}", file=sys.stderr)
