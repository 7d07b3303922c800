"""The subcommands: each ``cmd_*`` takes the parsed arguments and the config and returns the exit code.

What a command prints comes from :mod:`reconciler.rendering`; errors are raised
as :class:`~reconciler.errors.ReconcilerError` and printed by :func:`reconciler.cli.main`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TYPE_CHECKING, Any

from reconciler.errors import ReconcilerError
from reconciler.names import InvalidName, flow_path
from reconciler.plan import Action
from reconciler.rendering import counts_line, steps_lines, trailer_lines

from .common import Progress as _Progress, emit as _emit, engine as _engine
from .common import exit_for as _exit_for, finished as _finished, print_json as _print_json, render as _render
from .parser import EXIT_ERROR, EXIT_HELD, EXIT_OK, EXIT_PENDING, UsageError

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = ["COMMANDS"]


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    progress = _Progress(not args.no_progress)
    try:
        from reconciler.engine import Engine

        out = Engine.for_export(config, args.env).export(args.env, progress=progress,
                                                         allow_mass_delete=args.allow_mass_delete)
    finally:
        progress.close()
    _finished()
    if args.json:
        _print_json(out.as_dict())
        return _exit_for(out)
    branch = config.env(args.env).branch_name
    if out.migrated is not None:
        from .migrate import migrated_lines

        print("\n".join(migrated_lines(out.migrated)))
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
    pending = [s for s in out.plan.notable if s.action in (Action.IMPORT, Action.DELETE, Action.BLOCKED)]
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
        raise UsageError(f"{'--status' if args.status else '--format markdown'} needs --against REF")
    progress = _Progress(not args.no_progress)
    try:
        out = _engine(config).sync(args.env, dry_run=True, progress=progress)
    finally:
        progress.close()
    _finished()
    _render(args, out)
    if out.errors:
        return EXIT_ERROR
    return EXIT_PENDING if any(s.action != Action.NONE for s in out.plan.notable) else EXIT_OK


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    if not args.dry_run and (refusal := _window_refusal(args, config)) is not None:
        print(refusal, file=sys.stderr)
        return EXIT_HELD
    progress = _Progress(not args.no_progress)
    try:
        out = _engine(config).sync(args.env, dry_run=args.dry_run, progress=progress,
                                   allow_mass_delete=args.allow_mass_delete)
    finally:
        progress.close()
    _finished()
    _render(args, out)
    code = _exit_for(out)
    return EXIT_HELD if code == EXIT_OK and out.held and not args.dry_run else code


def _window_state(env) -> dict[str, Any] | None:
    """A closed sync window for ``status``: why, and when it opens (None: open, or no windows)."""
    if not env.sync_windows():
        return None
    import datetime as _dt

    from reconciler.windows import verdict  # here: most environments have no window

    v = verdict(env.sync_windows(), _dt.datetime.now(_dt.timezone.utc))
    if v.allowed:
        return None
    return {"open": False, "why": v.why, "opens": v.opens.isoformat(timespec="seconds") if v.opens else None,
            "manual": v.manual_allowed}


def _window_refusal(args: argparse.Namespace, config: Config) -> str | None:
    """Why a sync may not run now (the environment's sync windows are closed), with what to do; None: go on."""
    env = config.env(args.env)
    windows = env.sync_windows()
    if not windows:
        return None
    import datetime as _dt

    from reconciler.windows import verdict  # here: most environments have no window

    v = verdict(windows, _dt.datetime.now(_dt.timezone.utc))
    if v.allowed or (args.force and v.manual_allowed):
        return None
    opens = f"; they open {v.opens.isoformat(timespec='seconds')}" if v.opens is not None else \
        "; they do not open within a year"
    if v.manual_allowed:
        how = f"`reconciler sync {env.name} --force` syncs now (the windows allow manual syncs)"
    else:
        how = ("no manual sync is allowed now (the windows keeping it closed say manual = false); wait, "
               "or change [[environment.window]] in the config")
    return f"reconciler sync: refused: {env.name} is {v.why}{opens}\n  {how}"


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
                "held": out.held,
                "window": _window_state(env),
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
        if r["held"]:
            print(f"  {r['held']}")
        if r["window"]:
            print(f"  sync window closed: {r['window']['why']}" +
                  (f"; it opens {r['window']['opens']}" if r["window"]["opens"] else ""))
        if r["refused"]:
            print(f"  ! a sync would refuse: {r['refused']}")
        for p in r["problems"]:
            print(f"  ! {p['where']}{':' + p['pointer'] if p['pointer'] else ''}: {p['message']}")
    return worst


def cmd_history(args: argparse.Namespace, config: Config) -> int:
    env = config.env(args.env)
    engine = _engine(config)
    ref = f"drift/{env.name}" if args.drift else env.branch_name
    if "" in (args.name, args.version):  # an empty argument ("$NAME" unset) named the whole branch
        raise UsageError("the flow NAME and VERSION may not be empty (omit them for the whole branch)")
    if engine.store.tip(ref) is None:  # a branch that is not there has no history, it is not an empty one
        how = (f"nothing of {env.name}'s live state has been saved yet (a restore, prune or conflict saves it there)"
               if args.drift else f"check `branch` of environment {env.name} in the config, or run "
               f"`reconciler export {env.name}` to create it")
        raise ReconcilerError(f"{ref} does not exist in {engine.store.path}: {how}")
    path = None
    if args.name is not None:
        try:
            if args.version is not None:
                path = flow_path(env.folder, args.name, args.version)
            else:
                path = flow_path(env.folder, args.name, "x").rsplit("/", 1)[0]
        except InvalidName as exc:
            raise ReconcilerError(f"invalid flow name: {exc}") from exc
    # A flow's history is its JSON's and its sidecar folder's (a change of code touches only the folder).
    paths = (path, path.removesuffix(".json")) if path and path.endswith(".json") else path
    commits = engine.store.history(ref, paths, limit=args.limit)
    if path is not None and not commits:  # a typo'd name or version: say so, with what is there
        known = ", ".join(sorted(str(k) for k in engine.store.flows_at(engine.store.tip(ref), env.folder).flows)[:10])
        raise ReconcilerError(f"no commit of {ref} ever held {path}: no flow {args.name!r}"
                              f"{' version ' + repr(args.version) if args.version else ''} in {env.name}'s history"
                              f" (flows at its tip: {known or 'none'})")
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
        raise UsageError("give --branch B or paths, not both")
    if args.branch == "" or "" in args.paths:  # an unset "$BRANCH": it checked every branch (or the working folder)
        raise UsageError("an empty --branch or PATH names nothing: give a branch, tag or commit, or flow files")
    unstarted: list[str] = []  # environments' branches not there: not checked, said so
    if args.paths:
        results = [validate_paths(config, args.paths)]
    else:
        store = _engine(config).store
        remote = Remote.fetched(store, config.repository) if args.branch else None
        results = ([validate_branch(config, store, args.branch, prefer_remote=remote is not None)] if args.branch
                   else validate_environments(config, store))
        if not args.branch:
            unstarted = [e.branch_name for e in config.environments
                         if e.branch_name not in {r.target for r in results}]
            if not results:  # nothing at all to check: a wrong repository, never "0 problems"
                raise ReconcilerError(f"no environment's branch is in {config.repository.path} "
                                      f"({', '.join(dict.fromkeys(unstarted))}): nothing was validated. Check "
                                      "[repository] path in the config, or start a branch with `reconciler export ENV`")
    if args.json:
        _print_json({"ok": all(r.ok for r in results), "results": [r.as_dict() for r in results],
                     **({"not_checked": list(dict.fromkeys(unstarted))} if unstarted else {})})
    else:
        for branch in dict.fromkeys(unstarted):
            names = ", ".join(e.name for e in config.environments if e.branch_name == branch)
            print(f"not checked: {branch} ({names}) does not exist yet; `reconciler export "
                  f"{names.split(', ')[0]}` starts it", file=sys.stderr)
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


def _later(module: str, name: str) -> Any:
    """The command ``name`` of ``module``, imported when it runs: a command's process imports its own
    command's module, not every other's (``promote``, ``render``, ``migrate``… are not on export's path)."""
    def command(args: argparse.Namespace, config: Config) -> int:
        from importlib import import_module

        return getattr(import_module(module, __package__), name)(args, config)

    command.__name__ = command.__qualname__ = name
    return command


cmd_promote, cmd_rollback = _later(".branches", "cmd_promote"), _later(".branches", "cmd_rollback")
cmd_suspend, cmd_resume = _later(".branches", "cmd_suspend"), _later(".branches", "cmd_resume")
cmd_render, cmd_migrate = _later(".render", "cmd_render"), _later(".migrate", "cmd_migrate")

COMMANDS = {
    "run": cmd_run, "healthcheck": cmd_healthcheck, "export": cmd_export, "plan": cmd_plan, "sync": cmd_sync, "status": cmd_status,
    "history": cmd_history, "validate": cmd_validate, "promote": cmd_promote, "rollback": cmd_rollback,
    "render": cmd_render, "suspend": cmd_suspend, "resume": cmd_resume, "migrate": cmd_migrate,
}
