"""The subcommands: each ``cmd_*`` takes the parsed arguments and the config and returns the exit code.

What a command prints comes from :mod:`reconciler.rendering`; errors are raised
as :class:`~reconciler.errors.ReconcilerError` and printed by :func:`reconciler.cli.main`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
from typing import Any

from reconciler.config import Config
from reconciler.engine import Engine, Outcome, RunResult
from reconciler.errors import ReconcilerError
from reconciler.names import InvalidName, flow_path
from reconciler.plan import Action
from reconciler.rendering import counts_line, outcome_lines, steps_lines, trailer_lines

from .parser import EXIT_CONFLICT, EXIT_ERROR, EXIT_OK, EXIT_PENDING, EXIT_USAGE, UsageError

__all__ = ["COMMANDS"]


def _finished() -> None:
    """The work is done and recorded: a Ctrl-C while the result prints must not say "interrupted"."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass  # not the main thread (tests calling main() from a thread)


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
    if fmt == "markdown" or args.status:
        print(f"reconciler plan: error: {'--status' if args.status else '--format markdown'} needs --against REF",
              file=sys.stderr)
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
    if args.status:
        from reconciler.notify import post_plan_status

        lines, posted = post_plan_status(config, review, seen=args.redactor.add)
        print("\n".join(lines), file=sys.stderr)
        if not posted:
            return EXIT_ERROR
    if review.errors:
        return EXIT_ERROR
    return EXIT_PENDING if review.pending else EXIT_OK


def cmd_validate(args: argparse.Namespace, config: Config) -> int:
    from reconciler.remote import Remote
    from reconciler.validate import validate_branch, validate_environments, validate_paths

    if args.branch and args.paths:
        print("reconciler validate: error: give --branch B or paths, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.paths:
        results = [validate_paths(config, args.paths)]
    else:
        store = _engine(config).store
        remote = Remote.fetched(store, config.repository) if args.branch else None
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


def _emit_error(args: argparse.Namespace, message: str, details: list[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "details": details}))
    print(f"reconciler: error: {message}", file=sys.stderr)
    for d in details:
        print(f"  {d}", file=sys.stderr)


def cmd_render(args: argparse.Namespace, config: Config) -> int:
    """``reconciler render``: event-processing flows as Flink SQL (see :mod:`reconciler.eventproc`)."""
    from pathlib import Path

    from reconciler.canonical import InvalidJSON, parse_json
    from reconciler.eventproc import RenderRefused, render
    from reconciler.names import encode
    from reconciler.promote import parse_selector

    if bool(args.paths) == bool(args.branch):
        raise UsageError("give flow files or --branch B (one of them)")
    env = config.env(args.env) if args.env else None
    params: Any = dict(env.params) if env is not None else _KeptParams()
    secrets = env.load_secrets() if env is not None and env.driver == "flink-sql" else None
    sources: list[tuple[str, bytes]] = []
    if args.paths:
        for p in args.paths:
            try:
                sources.append((p, Path(p).read_bytes()))
            except OSError as exc:
                raise ReconcilerError(f"{p}: cannot read: {exc.strerror}") from exc
    else:
        store = _engine(config).store
        folder = env.folder if env is not None else "flows"
        tree = store.flows_at(store.resolve(args.branch), folder)
        sources = [(f"{args.branch}:{flow_path(folder, k.name, k.version)}", store.read_blob(oid))
                   for k, oid in sorted(tree.flows.items())]
    selectors = [parse_selector(f) for f in args.flow]
    out_dir = Path(args.output) if args.output else None
    if out_dir is not None and not out_dir.is_dir():
        raise UsageError(f"--output {out_dir}: no such folder")
    failed = rendered = 0
    for where, raw in sources:
        try:
            doc = parse_json(raw)
        except InvalidJSON as exc:
            print(f"{where}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "event-processing":
            if args.paths:
                print(f"{where}: not an event-processing flow (\"kind\": \"event-processing\"); nothing to render",
                      file=sys.stderr)
                failed += 1
            continue
        key = f"{doc.get('name')}@{doc.get('version')}"
        if selectors and not any(s.name == doc.get("name") and s.version in (None, str(doc.get("version")))
                                 for s in selectors):
            continue
        try:
            sql = render(doc, params=params, secrets=secrets)
        except RenderRefused as exc:
            for issue in exc.issues:
                print(issue.format(where), file=sys.stderr)
            failed += 1
            continue
        rendered += 1
        if out_dir is not None:
            target = out_dir / f"{encode(str(doc['name']))}@{encode(str(doc['version']))}.sql"
            target.write_text(sql, encoding="utf-8")
            print(f"{key}: {target}")
        elif args.format == "json":
            print(json.dumps({"flow": key, "file": where, "sql": sql}, ensure_ascii=False))
        else:
            sys.stdout.write(sql)
    if not rendered and not failed:
        print("no event-processing flow to render", file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


class _KeptParams(dict):
    """Without an environment every parameter stays its placeholder (a preview, like ``<redacted>``)."""

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> str:
        return "${param:" + name + "}"


COMMANDS["render"] = cmd_render
