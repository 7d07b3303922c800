"""``reconciler migrate ENV``: move the environment's branch to the form it writes (sidecar files for
code, or single JSON files) in one commit that changes how git holds the flows, not what they are."""

from __future__ import annotations

from typing import TYPE_CHECKING

import argparse
import sys

from .common import engine as _engine, print_json as _print_json
from .parser import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = ["cmd_migrate", "migrated_lines"]


def migrated_lines(m) -> list[str]:
    """What a migration did, for humans (``export`` prints it too)."""
    form = "the split form (code as sidecar files)" if m.form == "split" else "single JSON files"
    n = len(m.moved)
    if not n:
        return [f"{m.env}: nothing to migrate; every flow of {m.branch} is already stored as {form}"]
    verb = "would move" if m.dry_run else "moved"
    head = f"{m.env}: {verb} {n} flow{'s' * (n != 1)} of {m.branch} to {form}"
    if m.commit:
        head += f" in {m.commit} (their content is unchanged)"
    return [head, *(f"  {k}" for k in m.moved)]


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    from reconciler.migrate import migrate

    engine = _engine(config)
    with engine.store.lock(args.env, required=not args.dry_run):
        m = migrate(config, engine.store, args.env, dry_run=args.dry_run)
    if args.json:
        _print_json(m.as_dict())
    else:
        print("\n".join(migrated_lines(m)))
        for p in m.problems:
            print(f"  ! {p}", file=sys.stderr)
    return EXIT_ERROR if m.problems else EXIT_OK
