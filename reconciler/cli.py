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
import sys
from collections.abc import Sequence
from typing import Any

from reconciler import __version__
from reconciler.config import Config, config_json_schema, find_config, load_config
from reconciler.engine import Engine, Outcome
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.logsetup import setup_logging
from reconciler.names import InvalidName, flow_path
from reconciler.plan import Action

__all__ = ["main", "EXIT_OK", "EXIT_ERROR", "EXIT_PENDING", "EXIT_CONFLICT", "EXIT_USAGE"]

EXIT_OK, EXIT_ERROR, EXIT_PENDING, EXIT_CONFLICT, EXIT_USAGE = 0, 1, 2, 3, 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2, which means "pending" here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", metavar="PATH", help="config file (default $RECONCILER_CONFIG or ./reconciler.toml)")
    common.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"], help="log level (default warning; info with -v)")
    common.add_argument("--log-format", default="auto", choices=["auto", "json", "console"], help="log format on stderr (default: console on a terminal, JSON otherwise)")
    common.add_argument("-v", "--verbose", action="store_true", help="log every action (same as --log-level info)")
    common.add_argument("--no-progress", action="store_true", help="never show progress, even on a terminal")

    p = _Parser(prog="reconciler", description="GitOps reconciler for flows: git is the system of record.", parents=[common])
    p.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("export", parents=[common], help="commit the environment's live flows to its branch")
    s.add_argument("env")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("plan", parents=[common], help="show what a sync would do (changes nothing); exit 2 if changes are pending")
    s.add_argument("env")
    s.add_argument("--against", metavar="REF", help="plan the merge of REF (a branch, tag or commit) into the environment's branch")
    s.add_argument("--format", choices=["text", "json", "markdown"], default=None,
                   help="output format (markdown: a merge-request comment; needs --against)")
    s.add_argument("--json", action="store_true", help="machine-readable output (same as --format json)")

    s = sub.add_parser("validate", parents=[common], help="check flow files: syntax, path/identity, schema, placeholders, secrets")
    s.add_argument("paths", nargs="*", metavar="PATH", help="flow files or folders in a working tree")
    s.add_argument("--branch", "-b", metavar="B", help="check a branch of the repository instead (no checkout needed)")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("promote", parents=[common], help="prepare a branch promote/FROM-to-TO/<id> with FROM's versions of flows, for a merge request")
    s.add_argument("source", metavar="FROM")
    s.add_argument("target", metavar="TO")
    s.add_argument("--flow", action="append", default=[], metavar="NAME[@VERSION]", help="promote only this flow (repeatable; default: all)")
    s.add_argument("--as", dest="rename", metavar="NAME@VERSION", help="write the one --flow under this name and version")
    s.add_argument("--push", action="store_true", help="push the branch to [repository] remote")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("rollback", parents=[common], help="commit to the environment's branch its flows as they were at REV")
    s.add_argument("env")
    s.add_argument("--to", required=True, metavar="REV", help="a commit, tag or revision (env/production~2)")
    s.add_argument("--flow", action="append", default=[], metavar="NAME[@VERSION]", help="roll back only this flow (repeatable; default: all)")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("sync", parents=[common], help="reconcile the environment with its branch now")
    s.add_argument("env")
    s.add_argument("--dry-run", action="store_true", help="plan only, change nothing")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("status", parents=[common], help="per environment: branch tip, applied marker, flow counts")
    s.add_argument("env", nargs="?")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("history", parents=[common], help="commits of an environment's branch, or of one flow")
    s.add_argument("env")
    s.add_argument("name", nargs="?")
    s.add_argument("version", nargs="?")
    s.add_argument("--drift", action="store_true", help="show drift/<env> (live versions saved before overwriting)")
    s.add_argument("-n", "--limit", type=int, default=None, help="at most this many commits")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("schema", parents=[common], help="print the JSON Schema of the config file")

    s = sub.add_parser("run", parents=[common], help="run the service: keep every environment in sync")
    s.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (default: the config's [server] listen, 127.0.0.1:9420)")
    s.add_argument("--shard", metavar="I/N", help="own only environments whose hash mod N is I (or $RECONCILER_SHARD)")

    s = sub.add_parser("demo", parents=[common], help="write a ready demo (repository + two folder environments) and run the service on it")
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
    setup_logging(args.log_level or ("info" if args.verbose or service else "warning"), args.log_format)
    if args.command == "schema":
        _print_json(config_json_schema())
        return EXIT_OK
    if args.command == "demo":
        from reconciler.daemon import demo_main

        try:
            return demo_main(args.dir, args.listen, not args.no_run)
        except ReconcilerError as exc:
            _emit_error(args, str(exc), [str(p) for p in getattr(exc, "problems", [])])
            return EXIT_ERROR
    try:
        config = _load_config(args)
        return COMMANDS[args.command](args, config)
    except ConfigError as exc:
        _emit_error(args, "invalid configuration", [str(p) for p in exc.problems])
        return EXIT_ERROR
    except ReconcilerError as exc:
        _emit_error(args, str(exc), [])
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _load_config(args: argparse.Namespace) -> Config:
    path = find_config(args.config)
    if args.command == "validate" and args.paths and not args.config and not os.environ.get("RECONCILER_CONFIG") and not path.exists():
        # A merge-request job may have flows but no config: check what needs none.
        print("reconciler: no reconciler.toml; checking syntax, paths, identity and the default schema only",
              file=sys.stderr)
        return Config()
    return load_config(path)


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


def _engine(config: Config) -> Engine:
    return Engine(config)


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    progress = _Progress(not args.no_progress)
    try:
        out = _engine(config).export(args.env, progress=progress)
    finally:
        progress.close()
    if args.json:
        _print_json(out.as_dict())
    else:
        if out.commit:
            print(f"{args.env}: exported to {config.env(args.env).branch_name} as {out.commit}")
        else:
            print(f"{args.env}: nothing to export; {config.env(args.env).branch_name} already holds the environment's flows")
        _print_steps(out, only={Action.ADOPT}, verb="exported", failed_only=False)
        pending = [s for s in out.plan.steps if s.action in (Action.IMPORT, Action.DELETE, Action.BLOCKED)]
        if pending:
            print(f"  {len(pending)} change(s) in git are not applied yet; run `reconciler sync {args.env}`")
        _print_conflicts_and_problems(out)
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
    _render(args, out)
    if out.errors:
        return EXIT_ERROR
    return EXIT_PENDING if any(s.action != Action.NONE for s in out.plan.steps) else EXIT_OK


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    progress = _Progress(not args.no_progress)
    try:
        out = _engine(config).sync(args.env, dry_run=args.dry_run, progress=progress)
    finally:
        progress.close()
    _render(args, out)
    return _exit_for(out)


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    names = [args.env] if args.env else [e.name for e in config.environments]
    engine = _engine(config)
    rows: list[dict[str, Any]] = []
    worst = EXIT_OK
    for name in names:
        env = config.env(name)
        try:
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
                "error": None,
            }
        )
        if out.errors:
            worst = EXIT_ERROR
    if args.json:
        _print_json({"environments": rows})
        return worst
    for r in rows:
        if r.get("error"):
            print(f"{r['environment']:<14} error: {r['error']}")
            continue
        c = r["counts"]
        tip = (r["branch_tip"] or "(no branch yet)")[:12]
        applied = (r["applied"] or "(never)")[:12]
        print(
            f"{r['environment']:<14} {r['branch']}@{tip}  applied {applied}  "
            f"in sync {c['in_sync']} · pending {c['pending']} · drifted {c['drifted']} · "
            f"conflict {c['conflict']} · invalid {c['invalid']}"
        )
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
    from reconciler.daemon import run_service

    return run_service(config, listen=args.listen, shard=args.shard)


def cmd_plan_against(args: argparse.Namespace, config: Config, fmt: str) -> int:
    from reconciler.review import plan_against, render_review_markdown, render_review_text

    review = plan_against(_engine(config), args.env, args.against)
    if fmt == "json":
        _print_json(review.as_dict())
    elif fmt == "markdown":
        sys.stdout.write(render_review_markdown(review))
    else:
        print("\n".join(render_review_text(review)))
    if review.conflicts:
        print(f"reconciler: error: merging {args.against} into {review.branch} conflicts in "
              f"{len(review.conflicts)} file(s)", file=sys.stderr)
    if review.errors:
        return EXIT_ERROR
    return EXIT_PENDING if review.pending else EXIT_OK


def cmd_validate(args: argparse.Namespace, config: Config) -> int:
    from reconciler.review import fetch_remote, validate_branch, validate_environments, validate_paths

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
    print(f"{out.target}: created {out.branch} ({out.commit[:12]}) from {out.target_branch}"
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
    "run": cmd_run, "export": cmd_export, "plan": cmd_plan, "sync": cmd_sync, "status": cmd_status,
    "history": cmd_history, "validate": cmd_validate, "promote": cmd_promote, "rollback": cmd_rollback,
}


# -- rendering ---------------------------------------------------------------------

_VERBS = {
    Action.IMPORT: "import",
    Action.DELETE: "delete",
    Action.ADOPT: "adopt",
    Action.ADVANCE: "agree",
    Action.REPORT: "drifted",
    Action.BLOCKED: "blocked",
    Action.CONFLICT: "CONFLICT",
    Action.INVALID: "INVALID",
    Action.UNKNOWN: "unknown",
}


def _render(args: argparse.Namespace, out: Outcome) -> None:
    if args.json:
        _print_json(out.as_dict())
        return
    c = out.states
    mode = "plan" if out.dry_run else "sync"
    print(
        f"{out.env} ({mode}): in sync {c['in_sync']} · pending {c['pending']} · drifted {c['drifted']} · "
        f"conflict {c['conflict']} · invalid {c['invalid']}"
    )
    done = {s.key for s in out.done}
    for s in out.plan.steps:
        if s.action in (Action.NONE, Action.CONFLICT, Action.INVALID):
            continue
        mark = ""
        if not out.dry_run and s.action in (Action.IMPORT, Action.DELETE, Action.ADOPT, Action.ADVANCE):
            mark = " ✓" if s.key in done else " ✗ " + out.failed.get(s.key, "not done")
        print(f"  {_VERBS[s.action]:<8} {s.key}  {s.reason}{mark}")
    if out.drift_commit:
        print(f"  live versions saved to drift/{out.env} as {out.drift_commit[:12]}")
    if out.commit:
        print(f"  committed to the branch as {out.commit[:12]}")
    _print_conflicts_and_problems(out)


def _print_steps(out: Outcome, only: set[Action], verb: str, failed_only: bool) -> None:
    done = {s.key for s in out.done}
    for s in out.plan.steps:
        if s.action in only and (not failed_only or s.key not in done):
            status = verb if s.key in done else f"not {verb}: {out.failed.get(s.key, '')}"
            print(f"  {status:<10} {s.key}  {s.reason}")


def _print_conflicts_and_problems(out: Outcome) -> None:
    for s in out.plan.steps:
        if s.action == Action.CONFLICT:
            print(f"  CONFLICT {s.key}: {s.reason}")
    for key, why in out.failed.items():
        if not any(st.key == key for st in out.plan.steps if st.action != Action.NONE):
            print(f"  ✗ {key}: {why}")
    for p in out.problems:
        print(f"  ! {p}", file=sys.stderr)
    for s in out.plan.steps:
        if s.action == Action.INVALID and not any(p.flow == str(s.key) for p in out.problems):
            print(f"  ! {s.key}: {s.reason}", file=sys.stderr)


def _exit_for(out: Outcome) -> int:
    if out.errors or any(s.action == Action.INVALID for s in out.plan.steps):
        return EXIT_ERROR
    if out.conflicts:
        return EXIT_CONFLICT
    return EXIT_OK


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
