"""Realistic n8n workflows, written as a person (or git) would hold them, for tests and benchmarks.

``workflow(i)`` is a small workflow of the kinds people build (a webhook or a
schedule trigger, Set, If, HTTP Request, Code with JavaScript, and a node using a
credential by reference), varied by ``i`` so no two are the same. They carry no
node ids, no ``webhookId`` and no server fields: what n8n adds to them on create
is what the research in the issue measures. ``export_file(wf, id)`` is the same
workflow in the shape ``n8n import:workflow --separate`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["workflow", "workflows", "credential_ref", "export_file", "write_import_dir", "CREDENTIAL_TYPE"]

CREDENTIAL_TYPE = "httpHeaderAuth"


def credential_ref(cred_id: str | None, name: str) -> dict[str, Any]:
    """How a node names the credential it uses: ``{type: {id, name}}``."""
    return {CREDENTIAL_TYPE: {"id": cred_id, "name": name}}


def workflow(i: int, *, credential: tuple[str | None, str] = ("bench-cred-0001", "Orders API token")) -> dict[str, Any]:
    """Workflow number ``i``: trigger -> Set -> If -> (HTTP Request with a credential | Code)."""
    webhook = i % 2 == 0
    trigger: dict[str, Any]
    if webhook:
        trigger = {
            "name": "Order received", "type": "n8n-nodes-base.webhook", "typeVersion": 2, "position": [0, 0],
            "parameters": {"httpMethod": "POST", "path": f"orders-{i:05d}", "responseMode": "onReceived", "options": {}},
        }
    else:
        trigger = {
            "name": "Every hour", "type": "n8n-nodes-base.scheduleTrigger", "typeVersion": 1.2, "position": [0, 0],
            "parameters": {"rule": {"interval": [{"field": "minutes", "minutesInterval": 5 + i % 55}]}},
        }
    nodes = [
        trigger,
        {"name": "Normalise", "type": "n8n-nodes-base.set", "typeVersion": 3.4, "position": [220, 0],
         "parameters": {"assignments": {"assignments": [
             {"id": f"as-{i}-1", "name": "orderId", "value": "={{ $json.body?.id ?? $json.id }}", "type": "string"},
             {"id": f"as-{i}-2", "name": "total", "value": f"={{{{ ($json.body?.total ?? 0) * {1 + i % 7} }}}}",
              "type": "number"},
             {"id": f"as-{i}-3", "name": "source", "value": f"bench-{i:05d}", "type": "string"},
         ]}, "options": {}}},
        {"name": "Big order?", "type": "n8n-nodes-base.if", "typeVersion": 2.2, "position": [440, 0],
         "parameters": {"conditions": {
             "options": {"caseSensitive": True, "leftValue": "", "typeValidation": "strict", "version": 2},
             "conditions": [{"id": f"cond-{i}", "leftValue": "={{ $json.total }}", "rightValue": 100 + i,
                             "operator": {"type": "number", "operation": "gt"}}],
             "combinator": "and"}, "options": {}}},
        {"name": "Notify ERP", "type": "n8n-nodes-base.httpRequest", "typeVersion": 4.2, "position": [660, -100],
         "parameters": {"method": "POST", "url": f"https://erp.example.com/api/orders/{i}",
                        "authentication": "genericCredentialType", "genericAuthType": CREDENTIAL_TYPE,
                        "sendBody": True, "specifyBody": "json",
                        "jsonBody": "={{ JSON.stringify({id: $json.orderId, total: $json.total}) }}", "options": {}},
         "credentials": credential_ref(*credential)},
        {"name": "Tag small order", "type": "n8n-nodes-base.code", "typeVersion": 2, "position": [660, 100],
         "parameters": {"jsCode": (
             "// small orders get a tag and a timestamp\n"
             "for (const item of $input.all()) {\n"
             f"  item.json.tag = 'small-{i % 5}';\n"
             "  item.json.checkedAt = new Date().toISOString();\n"
             "}\n"
             "return $input.all();\n")}},
    ]
    first = trigger["name"]
    connections = {
        first: {"main": [[{"node": "Normalise", "type": "main", "index": 0}]]},
        "Normalise": {"main": [[{"node": "Big order?", "type": "main", "index": 0}]]},
        "Big order?": {"main": [[{"node": "Notify ERP", "type": "main", "index": 0}],
                                [{"node": "Tag small order", "type": "main", "index": 0}]]},
    }
    return {
        "name": f"bench orders {i:05d}",
        "nodes": nodes,
        "connections": connections,
        "settings": {"executionOrder": "v1", **({"timezone": "Europe/Amsterdam"} if i % 3 == 0 else {})},
    }


def workflows(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [workflow(i, **kw) for i in range(n)]


def export_file(wf: dict[str, Any], workflow_id: str) -> dict[str, Any]:
    """The workflow as ``n8n export:workflow --separate`` writes it (what ``import:workflow`` reads back).

    The CLI import takes the id from the file (and so replaces a workflow with the
    same id); without one it makes a new workflow, like the API does.
    """
    return {**wf, "id": workflow_id, "active": False}


def write_import_dir(folder: Path, wfs: list[dict[str, Any]], ids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for wf, wid in zip(wfs, ids):
        (folder / f"{wid}.json").write_text(json.dumps(export_file(wf, wid), indent=2))
    return folder
