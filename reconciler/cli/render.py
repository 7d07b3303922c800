"""``reconciler render``: event-processing flows as Flink SQL (see :mod:`reconciler.eventproc`)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from reconciler.errors import ReconcilerError
from reconciler.names import flow_path

from .common import engine as _engine, json_text
from .parser import EXIT_ERROR, EXIT_OK, UsageError

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = ["cmd_render"]


def cmd_render(args: argparse.Namespace, config: Config) -> int:
    """``reconciler render``: event-processing flows as Flink SQL (see :mod:`reconciler.eventproc`)."""
    from pathlib import Path

    from reconciler.canonical import InvalidJSON, parse_json
    from reconciler.flows import looks_like_sql, sql_export
    from reconciler.gitform import stored_doc, working_tree_flow
    from reconciler.sidecars import StoredFlow
    from reconciler.eventproc import RenderRefused, render
    from reconciler.names import encode
    from reconciler.promote import parse_selector

    if bool(args.paths) == bool(args.branch):
        raise UsageError("give flow files or --branch B (one of them)")
    env = config.env(args.env) if args.env else None
    params: Any = dict(env.params) if env is not None else _KeptParams()
    secrets = env.load_secrets() if env is not None and env.driver == "flink-sql" else None
    sources: list[tuple[str, StoredFlow]] = []
    if args.paths:
        for p in args.paths:
            try:
                sources.append((p, working_tree_flow(Path(p))))
            except OSError as exc:
                raise ReconcilerError(f"{p}: cannot read: {exc.strerror}") from exc
    else:
        store = _engine(config).store
        folder = env.folder if env is not None else "flows"
        tree = store.flows_at(store.resolve(args.branch), folder)
        if tree.missing is not None:  # never "nothing to render"
            raise ReconcilerError(f"{args.branch} has no {folder}/ folder of flows ({tree.missing}); check the branch"
                                  + ("" if env is not None else ", or give --env ENV for an environment's folder"))
        sources = [(f"{args.branch}:{flow_path(folder, k.name, k.version)}", store.flow_files(oid))
                   for k, oid in sorted(tree.flows.items())]
    selectors = [parse_selector(f) for f in args.flow]
    out_dir = Path(args.output) if args.output else None
    if out_dir is not None and not out_dir.is_dir():
        raise UsageError(f"--output {out_dir}: no such folder")
    failed = rendered = 0
    chosen: set[tuple[object, str]] = set()  # (name, version) of every event-processing flow seen
    for where, stored in sources:
        try:
            doc, _, problems = stored_doc(stored, where=where)  # the split form: its sidecars (SQL) joined
        except InvalidJSON as exc:
            sql = where.endswith(".sql") or looks_like_sql(stored.json)
            print(f"{where}: {sql_export('this file') if sql else exc}", file=sys.stderr)
            failed += 1
            continue
        if problems:
            for p in problems:
                print(p, file=sys.stderr)
            failed += 1
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "event-processing":
            if args.paths:
                print(f"{where}: not an event-processing flow (\"kind\": \"event-processing\"); nothing to render",
                      file=sys.stderr)
                failed += 1
            continue
        key = f"{doc.get('name')}@{doc.get('version')}"
        chosen.add((doc.get("name"), str(doc.get("version"))))
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
            print(json_text({"flow": key, "file": where, "sql": sql}))
        else:
            sys.stdout.write(sql)
    missed = [str(s) for s in selectors if not any(s.name == n and s.version in (None, v) for n, v in chosen)]
    if missed:  # a typo'd --flow rendered nothing and exited 0
        print(f"no event-processing flow {', '.join(repr(m) for m in missed)} in "
              f"{args.branch or ', '.join(args.paths)}", file=sys.stderr)
        failed += 1
    if not rendered and not failed:
        print("no event-processing flow to render", file=sys.stderr)
    if isinstance(params, _KeptParams) and params.kept:
        print(f"note: parameters left as placeholders ({', '.join(sorted(params.kept))}): a preview, which Flink "
              "cannot run; --env ENV substitutes that environment's values", file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


class _KeptParams(dict):
    """Without an environment every parameter stays its placeholder (a preview, like ``<redacted>``)."""

    def __contains__(self, name: object) -> bool:
        return True

    def __init__(self) -> None:
        super().__init__()
        self.kept: set[str] = set()

    def __missing__(self, name: str) -> str:
        self.kept.add(name)
        return "${param:" + name + "}"
