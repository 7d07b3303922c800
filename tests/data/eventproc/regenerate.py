"""Regenerate the event-processing goldens from the code (never run by the tests).

    .venv/bin/python tests/data/eventproc/regenerate.py

writes, for every example under manifests/examples/event-processing/:

- tests/data/eventproc/<example>.sql: the rendering with the example
  parameters of params.json and no secrets (so secrets are <redacted>);
- tests/data/eventproc/large-payments-secured.with-secrets.sql: that example
  rendered with the example secrets too;
- manifests/examples/event-processing/invalid/<example>.expected: one line per
  issue that rules.check_renderable reports.

Review the diff (git diff) before committing it: the goldens are the contract.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from reconciler.eventproc.render import render  # noqa: E402
from reconciler.eventproc.rules import check_renderable  # noqa: E402

EXAMPLES = ROOT / "manifests" / "examples" / "event-processing"
GOLDEN = Path(__file__).resolve().parent
WITH_SECRETS = "large-payments-secured"


def main() -> None:
    env = json.loads((EXAMPLES / "params.json").read_text(encoding="utf-8"))
    for path in sorted(EXAMPLES.glob("*.json")):
        if path.name == "params.json":
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        (GOLDEN / f"{path.stem}.sql").write_text(render(doc, params=env["params"]), encoding="utf-8")
        if path.stem == WITH_SECRETS:
            (GOLDEN / f"{path.stem}.with-secrets.sql").write_text(
                render(doc, params=env["params"], secrets=env["secrets"]), encoding="utf-8")
    for path in sorted((EXAMPLES / "invalid").glob("*.json")):
        issues = check_renderable(json.loads(path.read_text(encoding="utf-8")))
        path.with_suffix(".expected").write_text("".join(f"{i}\n" for i in issues), encoding="utf-8")
    print(f"goldens written under {GOLDEN} and {EXAMPLES / 'invalid'}")


if __name__ == "__main__":
    main()
