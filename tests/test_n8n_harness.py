"""The n8n harness itself (tests/n8nkit.py) against a real n8n: it starts, holds a
key the public API takes, and what is created through that API lists back."""

from __future__ import annotations

from tests.n8nkit import N8n, n8n, n8n_instance  # noqa: F401  (fixtures)

HELLO = {
    "name": "harness: hello",
    "nodes": [
        {"name": "Every hour", "type": "n8n-nodes-base.scheduleTrigger", "typeVersion": 1.2, "position": [0, 0],
         "parameters": {"rule": {"interval": [{"field": "hours"}]}}},
        {"name": "Greet", "type": "n8n-nodes-base.set", "typeVersion": 3.4, "position": [220, 0],
         "parameters": {"assignments": {"assignments": [
             {"id": "a1", "name": "greeting", "value": "hello", "type": "string"}]}, "options": {}}},
    ],
    "connections": {"Every hour": {"main": [[{"node": "Greet", "type": "main", "index": 0}]]}},
    "settings": {"executionOrder": "v1"},
}


def test_a_workflow_created_through_the_public_api_lists_back(n8n: N8n) -> None:
    """A workflow POSTed to /api/v1/workflows is in the listing, with the id n8n gave it."""
    assert n8n.workflows() == []
    created = n8n.create(HELLO)
    listed = n8n.workflows()
    assert [(w["id"], w["name"]) for w in listed] == [(created["id"], HELLO["name"])]
    assert [n["name"] for n in listed[0]["nodes"]] == ["Every hour", "Greet"]
    assert listed[0]["connections"] == HELLO["connections"]


def test_the_public_api_refuses_a_request_without_the_key(n8n: N8n) -> None:
    """The key is what lets a request in: without it, 401."""
    answer = n8n.api("GET", "/workflows", key="")
    assert answer.status == 401, answer
