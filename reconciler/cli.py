"""The ``reconciler`` command line.

Exit codes are part of the contract (scripts branch on them):

====  ==========================================================
0     done / in sync / ``validate`` found nothing
1     an error: invalid flow, unreadable file, unreachable platform, bad config,
      a ``validate`` problem, a merge that conflicts, a promotion refused by the secret scan
2     ``plan``: changes are pending (``plan --against``: merging would change the environment)
3     ``sync``/``export``: conflicts were left for a person to resolve
64    usage error (unknown command or option)
====  ==========================================================
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from reconciler import __version__
from reconciler.config import Config, config_json_schema, find_config, load_config
from reconciler.engine import Engine, Outcome, RunResult
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.logsetup import setup_logging
from reconciler.redaction import RedactingStream, Redactor
from reconciler.names import InvalidName, flow_path
from reconciler.plan import Action
from reconciler.rendering import counts_line, outcome_lines, steps_lines, trailer_lines

__all__ = ["main", "EXIT_OK", "EXIT_ERROR", "EXIT_PENDING", "EXIT_CONFLICT", "EXIT_USAGE"]

EXIT_OK, EXIT_ERROR, EXIT_PENDING, EXIT_CONFLICT, EXIT_USAGE = 0, 1, 2, 3, 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2, which means "pending" here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


class UsageError(Exception):
    """A command line that names something that is not there (exit 64)."""


def _add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options. They are accepted before and after the subcommand, as in git,
    kubectl and terraform: the subcommand's copies default to SUPPRESS, so a value given
    before the subcommand is not overwritten by the subcommand's default."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    g = p.add_argument_group("global options (before or after the command)")
    g.add_argument("--config", "-c", metavar="PATH", default=default(None),
                   help="config file (default $RECONCILER_CONFIG, else ./reconciler.toml)")
    g.add_argument("--log-level", default=default(None), choices=["debug", "info", "warning", "error"],
                   help="log level (default warning; info with -v)")
    g.add_argument("--log-format", default=default("auto"), choices=["auto", "json", "console"],
                   help="log format on stderr (default: console on a terminal, JSON otherwise)")
    g.add_argument("-v", "--verbose", action="store_true", default=default(False),
                   help="log every action (same as --log-level info)")
    g.add_argument("--no-progress", action="store_true", default=default(False),
                   help="never show progress, even on a terminal")


_EXITS = {
    "export": "0 exported or nothing to export · 1 error · 3 conflicts left",
    "plan": "0 in sync · 2 changes pending · 1 error (invalid flows, a refused mass deletion)",
    "validate": "0 no problems · 1 problems found",
    "promote": "0 done or nothing to promote · 1 error",
    "rollback": "0 done or nothing to roll back · 1 error",
    "sync": "0 done · 1 error · 3 conflicts left",
    "status": "0 · 1 an environment has an error",
    "history": "0 · 1 error",
    "schema": "0",
    "run": "0 stopped by SIGTERM/SIGINT · 1 cannot start",
    "healthcheck": "0 the service answers · 1 it does not",
    "demo": "as run",
}


def _sub(sub, name: str, summary: str, description: str):
    s = sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
                       epilog=f"exit codes: {_EXITS[name]} · 64 usage error",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(s, top=False)
    return s


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="reconciler", description="GitOps reconciler for flows: git is the system of record.",
                epilog="Run `reconciler COMMAND --help` for a command's options and exit codes.")
    _add_common(p, top=True)
    p.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    s = _sub(sub, "export", "commit the environment's live flows to its branch",
             "Creates the repository and the branch on the first export. Changes pushed to git and not yet\n"
             "synced are left alone (an export never undoes a push).")
    s.add_argument("env")
    s.add_argument("--allow-mass-delete", action="store_true",
                   help="commit deletions of more flows than max_delete allows (or of every flow)")
    s.add_argument("-q", "--quiet", action="store_true", help="only the summary line and errors")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "plan", "show what a sync would do (changes nothing)",
             "Exit 2 when changes are pending. With --against REF: what merging REF into the environment's\n"
             "branch would do, with a semantic diff per flow.")
    s.add_argument("env")
    s.add_argument("--against", metavar="REF", help="plan the merge of REF (a branch, tag or commit) into the environment's branch")
    s.add_argument("--format", choices=["text", "json", "markdown"], default=None,
                   help="output format (markdown: a merge-request comment; needs --against)")
    s.add_argument("-q", "--quiet", action="store_true", help="only the summary line and errors")
    s.add_argument("--json", action="store_true", help="machine-readable output (same as --format json)")

    s = _sub(sub, "validate", "check flow files: syntax, path/identity, schema, placeholders, secrets",
             "Checks a branch of the repository (--branch, no checkout needed), flow files or folders of a\n"
             "working tree, or every environment's branch. One line `file:pointer: message` per problem.")
    s.add_argument("paths", nargs="*", metavar="PATH", help="flow files or folders in a working tree")
    s.add_argument("--branch", "-b", metavar="B", help="check a branch of the repository instead (no checkout needed)")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "promote", "prepare a branch promote/FROM-to-TO/<id> with FROM's versions of flows",
             "The branch starts at TO's branch and holds FROM's versions: review it as a merge request.")
    s.add_argument("source", metavar="FROM")
    s.add_argument("target", metavar="TO")
    s.add_argument("--flow", action="append", default=[], metavar="NAME[@VERSION]", help="promote only this flow (repeatable; default: all)")
    s.add_argument("--as", dest="rename", metavar="NAME@VERSION", help="write the one --flow under this name and version")
    s.add_argument("--push", action="store_true", help="push the branch to [repository] remote")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "rollback", "commit to the environment's branch its flows as they were at REV",
             "A new commit (history is kept); the next sync applies it.")
    s.add_argument("env")
    s.add_argument("--to", required=True, metavar="REV", help="a commit, tag or revision (env/production~2)")
    s.add_argument("--flow", action="append", default=[], metavar="NAME[@VERSION]", help="roll back only this flow (repeatable; default: all)")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "sync", "reconcile the environment with its branch now",
             "Imports what changed in git, handles drift per the environment's policy, never overwrites a\n"
             "conflict. A run that would delete more than max_delete flows stops before changing anything.")
    s.add_argument("env")
    s.add_argument("--dry-run", action="store_true", help="plan only, change nothing")
    s.add_argument("--allow-mass-delete", action="store_true",
                   help="carry out deletions of more flows than max_delete allows (or of every flow)")
    s.add_argument("-q", "--quiet", action="store_true", help="only the summary line and errors")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "status", "per environment: branch tip, applied marker, flow counts",
             "Read-only; never waits for a running service (the answer then says it may be stale).")
    s.add_argument("env", nargs="?")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "history", "commits of an environment's branch, or of one flow",
             "Newest first, as git log: id, date, author, subject.")
    s.add_argument("env")
    s.add_argument("name", nargs="?")
    s.add_argument("version", nargs="?")
    s.add_argument("--drift", action="store_true", help="show drift/<env> (live versions saved before overwriting)")
    s.add_argument("-n", "--limit", type=int, default=None, help="at most this many commits")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    _sub(sub, "schema", "print the JSON Schema of the config file", "Editors can use it to check reconciler.toml.")

    s = _sub(sub, "run", "run the service: keep every environment in sync",
             "Watches the repository and the environments, checks for drift every interval, serves\n"
             "/healthz, /readyz, /metrics and the API on --listen.")
    s.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (default: the config's [server] listen, 127.0.0.1:9420)")
    s.add_argument("--shard", metavar="I/N", help="own only environments whose hash mod N is I (or $RECONCILER_SHARD)")

    s = _sub(sub, "healthcheck", "ask the running service on this machine whether it is alive (or ready)",
             "For container health checks: the address is the one `run` would listen on (--listen, else\n"
             "$RECONCILER_LISTEN, else [server] listen); 0.0.0.0 and :: are asked on the loopback.")
    s.add_argument("--listen", metavar="HOST:PORT", help="the service's address (default: as `run` would choose)")
    s.add_argument("--ready", action="store_true", help="ask /readyz (every environment reconciled once) instead of /healthz")
    s.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")

    s = _sub(sub, "demo", "write a ready demo (repository + two folder environments) and run the service on it",
             "The demo lives in --dir (default ./demo); running it again reuses it.")
    s.add_argument("--dir", default="demo", help="folder of the demo (default ./demo; reused if it exists)")
    s.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (default 127.0.0.1:9420)")
    s.add_argument("--no-run", action="store_true", help="only write the demo")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    service = args.command in ("run", "demo")
    # Known secret values are masked in everything this process prints or logs (the last guard:
    # messages name secrets, never quote them, but a flow may be *named* after a password).
    args.redactor = redactor = Redactor()
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout, sys.stderr = RedactingStream(sys.stdout, redactor), RedactingStream(sys.stderr, redactor)
    setup_logging(args.log_level or ("info" if args.verbose or service else "warning"), args.log_format,
                  redactor=redactor)
    if args.command == "schema":
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
        config = _load_config(args)
        _check_names(args, config)
        for env in config.environments:
            redactor.add(env.load_secrets(strict=False).values())
        return COMMANDS[args.command](args, config)
    except UsageError as exc:
        print(f"reconciler {args.command}: error: {exc}", file=sys.stderr)
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


def _check_names(args: argparse.Namespace, config: Config) -> None:
    """An environment named on the command line that the config does not have is a usage error."""
    known = [e.name for e in config.environments]
    for attr in ("env", "source", "target"):
        name = getattr(args, attr, None)
        if name is not None and name not in known:
            raise UsageError(f"no environment named {name!r} in {config.source} (known: {', '.join(known)})")


def _load_config(args: argparse.Namespace) -> Config:
    path = find_config(args.config)
    if args.command == "validate" and args.paths and not args.config and not os.environ.get("RECONCILER_CONFIG") and not path.exists():
        # A merge-request job may have flows but no config: check what needs none.
        print("reconciler: no reconciler.toml; checking syntax, paths, identity and the default schema only",
              file=sys.stderr)
        return Config()
    return load_config(path)


def _finished() -> None:
    """The work is done and recorded: a Ctrl-C while the result prints must not say "interrupted"."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass  # not the main thread (tests calling main() from a thread)


def _emit_error(args: argparse.Namespace, message: str, details: list[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "details": details}))
    print(f"reconciler: error: {message}", file=sys.stderr)
    for d in details:
        print(f"  {d}", file=sys.stderr)


# -- progress ---------------------------------------------------------------------


class _Progress:
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


# -- commands ---------------------------------------------------------------------


def _engine(config: Config, *, create: bool = False) -> Engine:
    return Engine(config, create_repository=create)


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    progress = _Progress(not args.no_progress)
    try:
        out = _engine(config, create=True).export(args.env, progress=progress, allow_mass_delete=args.allow_mass_delete)
    finally:
        progress.close()
    _finished()
    if args.json:
        _print_json(out.as_dict())
        return _exit_for(out)
    branch = config.env(args.env).branch_name
    invalid = out.states["invalid"]
    bad = f"; {invalid} flow{'s' * (invalid != 1)} could not be read (below)" if invalid else ""
    if out.commit:
        print(f"{args.env}: exported to {branch} as {out.commit}{bad}")
    elif invalid or out.problems:
        print(f"{args.env}: nothing exported{bad}")
    else:
        print(f"{args.env}: nothing to export; {branch} already holds the environment's flows")
    if not args.quiet:
        _emit((steps_lines(out, only={Action.ADOPT}, verb="exported"), []))
    pending = [s for s in out.plan.steps if s.action in (Action.IMPORT, Action.DELETE, Action.BLOCKED)]
    if pending:
        print(f"  {len(pending)} change(s) in git are not applied yet; run `reconciler sync {args.env}`")
    _emit(trailer_lines(out))
    return _exit_for(out)


def cmd_plan(args: argparse.Namespace, config: Config) -> int:
    fmt = "json" if args.json else (args.format or "text")
    args.json = fmt == "json"  # errors are JSON too
    if args.against is not None:
        return cmd_plan_against(args, config, fmt)
    if fmt == "markdown":
        print("reconciler plan: error: --format markdown needs --against REF", file=sys.stderr)
        return EXIT_USAGE
    progress = _Progress(not args.no_progress)
    try:
        out = _engine(config).sync(args.env, dry_run=True, progress=progress)
    finally:
        progress.close()
    _finished()
    _render(args, out)
    if out.errors:
        return EXIT_ERROR
    return EXIT_PENDING if any(s.action != Action.NONE for s in out.plan.steps) else EXIT_OK


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    progress = _Progress(not args.no_progress)
    try:
        out = _engine(config).sync(args.env, dry_run=args.dry_run, progress=progress,
                                   allow_mass_delete=args.allow_mass_delete)
    finally:
        progress.close()
    _finished()
    _render(args, out)
    return _exit_for(out)


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    names = [args.env] if args.env else [e.name for e in config.environments]
    engine = None
    rows: list[dict[str, Any]] = []
    worst = EXIT_OK
    for name in names:
        env = config.env(name)
        try:
            engine = engine or _engine(config)
            out = engine.sync(name, dry_run=True)
        except ReconcilerError as exc:
            rows.append({"environment": name, "branch": env.branch_name, "error": str(exc)})
            worst = EXIT_ERROR
            continue
        rows.append(
            {
                "environment": name,
                "branch": env.branch_name,
                "branch_tip": out.tip,
                "applied": out.marker,
                "drift": env.drift,
                "counts": out.states,
                "problems": [p.as_dict() for p in out.problems],
                "refused": out.refused,
                "stale": out.stale,
                "error": None,
            }
        )
        if out.errors:
            worst = EXIT_ERROR
    _finished()
    if args.json:
        _print_json({"environments": rows})
        return worst
    for r in rows:
        if r.get("error"):
            print(f"{r['environment']:<14} error: {r['error']}")
            continue
        tip = r["branch_tip"][:12] if r["branch_tip"] else "(no branch)"
        applied = r["applied"][:12] if r["applied"] else "(never)"
        print(f"{r['environment']:<14} {r['branch']}@{tip}  applied {applied}  {counts_line(r['counts'])}")
        if r["stale"]:
            print("  (another process is reconciling this environment right now: this may already be out of date)")
        if r["refused"]:
            print(f"  ! a sync would refuse: {r['refused']}")
        for p in r["problems"]:
            print(f"  ! {p['where']}{':' + p['pointer'] if p['pointer'] else ''}: {p['message']}")
    return worst


def cmd_history(args: argparse.Namespace, config: Config) -> int:
    env = config.env(args.env)
    engine = _engine(config)
    ref = f"drift/{env.name}" if args.drift else env.branch_name
    path = None
    if args.name:
        try:
            if args.version:
                path = flow_path(env.folder, args.name, args.version)
            else:
                path = flow_path(env.folder, args.name, "x").rsplit("/", 1)[0]
        except InvalidName as exc:
            raise ReconcilerError(f"invalid flow name: {exc}") from exc
    commits = engine.store.history(ref, path, limit=args.limit)
    if args.json:
        _print_json({"environment": env.name, "ref": ref, "path": path, "commits": [c.as_dict() for c in commits]})
        return EXIT_OK
    if not commits:
        print(f"no commits on {ref}" + (f" touching {path}" if path else ""))
    for c in commits:
        when = dt.datetime.fromtimestamp(c.time, dt.timezone(dt.timedelta(minutes=c.offset))).isoformat(timespec="seconds")
        print(f"{c.id[:12]}  {when}  {c.author} <{c.email}>  {c.message.splitlines()[0] if c.message else ''}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from reconciler.runner import run_service

    return run_service(config, listen=args.listen, shard=args.shard, redactor=args.redactor)


def cmd_healthcheck(args: argparse.Namespace, config: Config) -> int:
    import urllib.error
    import urllib.request

    from reconciler.runner import listen_address
    from reconciler.server import HEALTH_PATH, READY_PATH

    try:
        host, port = listen_address(config, args.listen)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{READY_PATH if args.ready else HEALTH_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            print(f"{url}: {resp.status}")
            return EXIT_OK
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code} {exc.read()[:300].decode('utf-8', 'replace').strip()}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"{url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
    return EXIT_ERROR


def cmd_plan_against(args: argparse.Namespace, config: Config, fmt: str) -> int:
    from reconciler.rendering import review_markdown, review_text
    from reconciler.review import plan_against

    review = plan_against(_engine(config), args.env, args.against)
    if fmt == "json":
        _print_json(review.as_dict())
    elif fmt == "markdown":
        sys.stdout.write(review_markdown(review))
    else:
        print("\n".join(review_text(review)))
    if review.conflicts:
        print(f"reconciler: error: merging {args.against} into {review.branch} conflicts in "
              f"{len(review.conflicts)} file(s)", file=sys.stderr)
    if review.errors:
        return EXIT_ERROR
    return EXIT_PENDING if review.pending else EXIT_OK


def cmd_validate(args: argparse.Namespace, config: Config) -> int:
    from reconciler.review import fetch_remote
    from reconciler.validate import validate_branch, validate_environments, validate_paths

    if args.branch and args.paths:
        print("reconciler validate: error: give --branch B or paths, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.paths:
        results = [validate_paths(config, args.paths)]
    else:
        store = _engine(config).store
        remote = fetch_remote(config, store) if args.branch else None
        results = ([validate_branch(config, store, args.branch, prefer_remote=remote is not None)] if args.branch
                   else validate_environments(config, store))
    if args.json:
        _print_json({"ok": all(r.ok for r in results), "results": [r.as_dict() for r in results]})
    else:
        for r in results:
            for f in r.findings:
                print(f)
        n_files, n_problems = sum(r.files for r in results), sum(len(r.findings) for r in results)
        targets = ", ".join(r.target for r in results) or "no branch"
        envs = sorted({e for r in results for e in r.environments})
        against = f" against {', '.join(envs)}" if envs else ""
        print(f"{n_problems} problem{'s' * (n_problems != 1)} in {n_files} flow file{'s' * (n_files != 1)} "
              f"({targets}){against}", file=sys.stderr)
    return EXIT_OK if all(r.ok for r in results) else EXIT_ERROR


def _selectors(args: argparse.Namespace):
    from reconciler.promote import parse_selector

    return [parse_selector(f) for f in args.flow]


def cmd_promote(args: argparse.Namespace, config: Config) -> int:
    from reconciler.promote import SecretScanRefused, parse_selector, promote

    rename = parse_selector(args.rename, need_version=True) if args.rename else None
    store = _engine(config).store
    try:
        out = promote(config, store, args.source, args.target, _selectors(args), rename=rename, push=args.push)
    except SecretScanRefused as exc:
        _emit_error(args, str(exc), [str(p) for p in exc.problems])
        return EXIT_ERROR
    if args.json:
        _print_json(out.as_dict())
        return EXIT_OK
    if out.branch is None:
        print(f"{out.target}: nothing to promote; {out.target_branch} already holds {out.source}'s versions")
        return EXIT_OK
    made = "already prepared as" if out.reused else "created"
    print(f"{out.target}: {made} {out.branch} ({out.commit[:12]}) from {out.target_branch}"
          f"{' at ' + out.base[:12] if out.base else ''} with {out.source}'s versions ({out.source_commit[:12]})")
    renames = {new: old for old, new in out.renamed}
    for word, keys in (("add", out.added), ("change", out.changed), ("remove", out.removed)):
        for k in keys:
            print(f"  {word:<7} {k}" + (f"  (as {renames[k]} in {out.source})" if k in renames else ""))
    repo = config.repository
    if out.pushed_to:
        print(f"pushed {out.branch} to {out.pushed_to}; open a merge request from {out.branch} into {out.target_branch}")
    else:
        if args.push:
            print("  (--push: no [repository] remote is configured; the branch is in the local repository)", file=sys.stderr)
        where = repo.remote or "<your git server>"
        print("Next: review it as a merge request, then merge it:")
        print(f"  git -C {repo.path} push {where} {out.branch}")
        print(f"  open a merge request from {out.branch} into {out.target_branch}; CI runs:")
        print(f"    reconciler validate --branch {out.branch}")
        print(f"    reconciler plan {out.target} --against {out.branch} --format markdown")
        print(f"  or merge it with git in a clone of {repo.remote or repo.path}:")
        print(f"    git fetch origin && git checkout {out.target_branch} && git merge origin/{out.branch} && git push origin {out.target_branch}")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace, config: Config) -> int:
    from reconciler.promote import rollback

    out = rollback(config, _engine(config).store, args.env, args.to, _selectors(args))
    if args.json:
        _print_json(out.as_dict())
        return EXIT_OK
    subject = f' ("{out.to_subject}")' if out.to_subject else ""
    if out.commit is None:
        print(f"{out.env}: nothing to roll back; the flows of {out.branch} already are as at {out.to[:12]}{subject}")
        return EXIT_OK
    print(f"{out.env}: rolled back to {out.to[:12]}{subject}: committed {out.commit} on {out.branch}")
    for k in out.restored:
        print(f"  restore  {k}")
    for k in out.removed:
        print(f"  remove   {k}")
    if not out.in_history:
        print(f"  note: {out.to[:12]} is not in the history of {out.branch}", file=sys.stderr)
    print(f"the next sync applies it: `reconciler sync {out.env}` (a running service does it by itself)")
    return EXIT_OK


COMMANDS = {
    "run": cmd_run, "healthcheck": cmd_healthcheck, "export": cmd_export, "plan": cmd_plan, "sync": cmd_sync, "status": cmd_status,
    "history": cmd_history, "validate": cmd_validate, "promote": cmd_promote, "rollback": cmd_rollback,
}


# -- rendering ---------------------------------------------------------------------

def _render(args: argparse.Namespace, out: Outcome) -> None:
    if args.json:
        _print_json(out.as_dict())
        return
    _emit(outcome_lines(out, quiet=getattr(args, "quiet", False)))


def _emit(lines: tuple[list[str], list[str]]) -> None:
    out, err = lines
    for line in out:
        print(line)
    for line in err:
        print(line, file=sys.stderr)


def _exit_for(out: Outcome) -> int:
    return {RunResult.OK: EXIT_OK, RunResult.CONFLICT: EXIT_CONFLICT}.get(out.result, EXIT_ERROR)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
