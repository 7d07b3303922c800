"""The ``reconciler`` command line.

Exit codes are part of the contract (scripts branch on them):

====  ==========================================================
0     done / in sync / ``validate`` found nothing
1     an error: invalid flow, unreadable file, unreachable platform, bad config,
      a ``validate`` problem, a merge that conflicts, a promotion refused by the secret scan
2     ``plan``: changes are pending (``plan --against``: merging would change the environment)
3     ``sync``/``export``: conflicts were left for a person to resolve
4     ``sync``: held back, nothing changed: outside the sync windows (refused before
      reading), or the environment is suspended (planned only)
64    usage error (unknown command or option)
====  ==========================================================
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .parser import EXIT_CONFLICT, EXIT_ERROR, EXIT_HELD, EXIT_OK, EXIT_PENDING, EXIT_USAGE, UsageError, build_parser

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_PENDING", "EXIT_CONFLICT", "EXIT_HELD", "EXIT_USAGE"]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)  # --help and --version end here, before the heavy imports
    if argv is None and args.command in ("plan", "export"):  # a clean record answers before any heavy import
        from .fast import answer

        if (code := answer(args)) is not None:
            return code
    service = args.command in ("run", "demo")
    one_shot = argv is None and not service  # this process is the command (not a test or a caller's thread)
    if one_shot:
        _one_shot_gc()
        from reconciler.classcode import install

        install()  # the dataclasses' compiled methods from the last process (reconciler/classcode.py)
    from reconciler.errors import ConfigError, ReconcilerError
    from reconciler.logsetup import setup_logging
    from reconciler.redaction import RedactingStream, Redactor

    from .commands import COMMANDS
    from .common import emit_error as _emit_error, print_json as _print_json

    if one_shot:
        gc.freeze()  # what the imports made lives as long as this process: never walked by a collection
    # Known secret values are masked in everything this process prints or logs (the last guard:
    # messages name secrets, never quote them, but a flow may be *named* after a password).
    args.redactor = redactor = Redactor()
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout, sys.stderr = RedactingStream(sys.stdout, redactor), RedactingStream(sys.stderr, redactor)
    setup_logging(args.log_level or ("info" if args.verbose or service else "warning"), args.log_format,
                  redactor=redactor)
    if args.command == "schema":
        from reconciler.config import config_json_schema

        _print_json(config_json_schema())
        return EXIT_OK
    if args.command == "demo":
        from reconciler.demo import demo_main

        try:
            return demo_main(args.dir, args.listen, not args.no_run)
        except ReconcilerError as exc:
            _emit_error(args, str(exc), [str(p) for p in getattr(exc, "problems", [])])
            return EXIT_ERROR
    try:
        config = _load_config(args, cached=one_shot)
        _check_names(args, config)
        for env in config.environments:
            redactor.add(env.load_secrets(strict=False).values())
        from .fastrecord import run as _recorded

        return _recorded(args, config, COMMANDS[args.command])
    except UsageError as exc:
        print(f"reconciler {args.command}: error: {exc}", file=sys.stderr)
        if getattr(args, "json", False) or getattr(args, "format", None) == "json":
            _print_json({"error": f"reconciler {args.command}: {exc}", "details": [], "usage": True})
        return EXIT_USAGE
    except ConfigError as exc:
        _emit_error(args, "invalid configuration", [str(p) for p in exc.problems])
        return EXIT_ERROR
    except ReconcilerError as exc:
        _emit_error(args, str(exc), [])
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing is half-done (each step is atomic), the next run goes on from here",
              file=sys.stderr)
        return 130


def _one_shot_gc() -> None:
    """A command (not the service) is one pass over up to 100,000 flows, then the process exits. The
    cyclic collector's defaults (a collection every 700 new objects, each walking all young ones, and
    full ones walking every object of ~400 imported modules) took ~20% of a no-change ``plan``'s CPU
    at 10,000 flows. Collections stay on, rarer; reference counting frees what these runs drop, as before.
    Only for the process the command is (``main()`` without arguments): a caller's process keeps its own."""
    gc.set_threshold(50_000, 20, 20)


def _check_names(args: argparse.Namespace, config: "Config") -> None:
    """An environment named on the command line that the config does not have is a usage error."""
    known = [e.name for e in config.environments]
    for attr in ("env", "source", "target"):
        name = getattr(args, attr, None)
        if name is not None and name not in known:
            raise UsageError(f"no environment named {name!r} in {config.source} (known: {', '.join(known)})")


def _load_config(args: argparse.Namespace, *, cached: bool = False) -> "Config":
    """``cached``: this process is the command (see ``_main``): the config validated by the last process on
    the same file is loaded instead of validated again (:mod:`reconciler.configcache`)."""
    from reconciler.configbase import find_config  # pydantic-free: a config from its cache imports no pydantic

    path = find_config(args.config)
    if args.command in ("validate", "render") and args.paths and not args.config and not os.environ.get("RECONCILER_CONFIG") and not path.exists():
        # A merge-request job may have flows but no config: check (or render) what needs none.
        if args.command == "validate":
            print("reconciler: no reconciler.toml; checking syntax, paths, identity and the default schema only",
                  file=sys.stderr)
        from reconciler.config import Config

        return Config()
    if cached:
        from reconciler.configcache import load_config_cached

        return load_config_cached(path)
    from reconciler.config import load_config

    return load_config(path)
