"""The subcommands that write to the environments' branches and state refs rather than to an
environment: ``promote``, ``rollback``, ``suspend``, ``resume``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import argparse
import sys

from .common import emit_error as _emit_error, engine as _engine, print_json as _print_json
from .parser import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = ["cmd_promote", "cmd_rollback", "cmd_suspend", "cmd_resume"]


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
    from reconciler.rollback import rollback

    out = rollback(config, _engine(config).store, args.env, args.to, _selectors(args),
                   allow_mass_delete=args.allow_mass_delete)
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


def cmd_suspend(args: argparse.Namespace, config: Config) -> int:
    return _suspension(args, config, suspend=True)


def cmd_resume(args: argparse.Namespace, config: Config) -> int:
    return _suspension(args, config, suspend=False)


def _not_in_git_yet(config: Config, store: Any, name: str, flows: list[str]) -> None:
    """A note (stderr; the hold stands) for each selector no flow on the branch matches: a typo, or a flow
    held before a merge brings it (which is why it is not an error)."""
    from reconciler.promote import parse_selector

    env = config.env(name)
    tip = store.tip(env.branch_name)
    keys = list(store.flows_at(tip, env.folder).flows) if tip is not None else []
    for text in flows:
        selector = parse_selector(text)
        if not any(selector.matches(k) for k in keys):
            names = ", ".join(sorted({k.name for k in keys})[:10]) or "none"
            print(f"note: no flow {selector} on {env.branch_name} (its flows: {names}); it is held when it arrives. "
                  f"A typo? `reconciler resume {name} --flow {selector}` undoes it", file=sys.stderr)


def _suspension(args: argparse.Namespace, config: Config, *, suspend: bool) -> int:
    import getpass
    import socket

    from reconciler import holding

    who = args.by if getattr(args, "by", None) else f"{getpass.getuser()}@{socket.gethostname()}"
    store = _engine(config).store
    changed = holding.change(config, store, args.env, args.flow, suspend=suspend, by=who,
                             reason=getattr(args, "reason", None) or "")
    if suspend and args.flow:
        _not_in_git_yet(config, store, args.env, args.flow)
    after, env = changed.after, changed.env
    if args.json:
        _print_json(changed.as_dict())
        return EXIT_OK
    if not changed.changed:
        print(f"{env}: nothing to change ({'already suspended' if suspend else 'not suspended'})")
    if not after:
        print(f"{env}: not suspended; the next sync applies what is pending"
              + (" (a running service does it now)" if changed.changed else ""))
    elif after.environment is not None:
        print(f"{env}: {after.environment.describe()}")
    for flow, hold in sorted(after.flows.items()):
        print(f"  {flow}: {hold.describe()}")
    if changed.pushed:
        print(f"  pushed to {config.repository.remote} (every replica sees it)")
    return EXIT_OK
