"""Write the n8n sample files under tests/data/n8n/ from a real n8n.

``python -m bench.n8n_samples [--out tests/data/n8n]``

For each case: ``<case>.sent.json`` (the workflow as written by hand, as git
would hold it) and ``<case>.live.json`` (what ``GET /api/v1/workflows/{id}``
answers right after ``POST``-ing it): golden pairs for the normalisation the
driver needs. Some cases add ``<case>.put.json`` (the GET after a ``PUT`` of the
same sent document: what a second write changes) or the raw listing pages.
Server-made values (ids, timestamps, versionIds) are left as n8n made them.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.n8n_workflows import workflow  # noqa: E402
from tests.n8nkit import N8N_VERSION, N8n, n8n_command  # noqa: E402

MANUAL = {"name": "Start", "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1, "position": [0, 0], "parameters": {}}


def _dump(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_samples(n8n: N8n, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    cred = n8n._ok(n8n.api("POST", "/credentials", {
        "name": "Orders API token", "type": "httpHeaderAuth", "data": {"name": "X-Token", "value": "not-a-secret"},
    }), "POST /credentials")

    def case(name: str, sent: dict[str, Any], *, put: bool = False, activate: bool = False) -> dict[str, Any]:
        _dump(out / f"{name}.sent.json", sent)
        made = n8n.create(copy.deepcopy(sent))
        if activate:
            n8n._ok(n8n.api("POST", f"/workflows/{made['id']}/activate"), "activate")
        live = n8n.get(made["id"])
        _dump(out / f"{name}.live.json", live)
        written.extend([f"{name}.sent.json", f"{name}.live.json"])
        if put:
            n8n.update(made["id"], copy.deepcopy(sent))
            _dump(out / f"{name}.put.json", n8n.get(made["id"]))
            written.append(f"{name}.put.json")
        return live

    case("webhook-credential", workflow(0, credential=(cred["id"], "Orders API token")), put=True)
    case("schedule-timezone", workflow(3, credential=(cred["id"], "Orders API token")), put=True)
    case("credential-missing", {**workflow(5, credential=("missingCred00001", "Billing API token")),
                                "name": "orders with a credential this instance lacks"})
    case("credential-by-name", {**workflow(7, credential=(None, "Orders API token")),
                                "name": "orders naming its credential only"})
    case("manual-minimal", {"name": "Bestellungen / 注文 ✓", "nodes": [dict(MANUAL)], "connections": {},
                            "settings": {}})
    case("active-schedule", {**workflow(9, credential=(cred["id"], "Orders API token")),
                             "name": "active hourly orders"}, activate=True)
    case("node-ids-given", {"name": "node ids written by hand",
                            "nodes": [{**MANUAL, "id": "8e0c2ec1-0f5b-4e0e-9a4f-3d1f6a1f0001"},
                                      {"id": "8e0c2ec1-0f5b-4e0e-9a4f-3d1f6a1f0002", "name": "Done",
                                       "type": "n8n-nodes-base.noOp", "typeVersion": 1, "position": [220, 0],
                                       "parameters": {}}],
                            "connections": {"Start": {"main": [[{"node": "Done", "type": "main", "index": 0}]]}},
                            "settings": {"executionOrder": "v1", "callerPolicy": "workflowsFromSameOwner"}}, put=True)

    first = n8n._ok(n8n.api("GET", "/workflows", query={"limit": 4}), "GET /workflows")
    _dump(out / "list-page-1.json", first)
    second = n8n._ok(n8n.api("GET", "/workflows", query={"limit": 4, "cursor": first["nextCursor"]}), "page 2")
    _dump(out / "list-page-2.json", second)
    written += ["list-page-1.json", "list-page-2.json"]

    # n8n's own export of one workflow (what import:workflow reads)
    with tempfile.TemporaryDirectory() as tmp:
        wid = first["data"][0]["id"]
        proc = n8n.cli("export:workflow", f"--id={wid}", "--pretty", f"--output={tmp}/one.json")
        if proc.returncode != 0:
            raise RuntimeError(f"export:workflow failed: {proc.stdout[-1000:]} {proc.stderr[-1000:]}")
        _dump(out / "cli-export.json", json.loads(Path(tmp, "one.json").read_text()))
        written.append("cli-export.json")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests/data/n8n")
    args = parser.parse_args(argv)
    # SIGTERM (and SIGINT, which a background job ignores) unwind like ^C, so the
    # `finally` blocks stop the n8n this started.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.default_int_handler)
    command = n8n_command()
    if command is None:
        print("no n8n: eval \"$(bash .ci/install-n8n)\" first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="n8n-samples-") as tmp:
        n8n = N8n(command, Path(tmp))
        try:
            n8n.start().setup()
            files = write_samples(n8n, args.out)
        finally:
            n8n.stop()
    print(f"n8n {N8N_VERSION}: wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
