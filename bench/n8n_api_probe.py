"""What n8n's public API does, asked of a real n8n: a transcript of requests and answers.

``python -m bench.n8n_api_probe [--out FILE]``

Starts an empty n8n (tests/n8nkit.py), sends the requests an HTTP driver would
send (and the ones it must not), and writes every exchange as JSON lines:
``{"probe": ..., "method": ..., "path": ..., "body": ..., "status": ..., "answer": ...}``
(long answers are cut). Rerun it against a new n8n pin to see what moved. The
API key never appears: requests are recorded without headers.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.n8n_workflows import workflow  # noqa: E402
from tests.n8nkit import N8n, n8n_command  # noqa: E402

MANUAL = {"name": "Start", "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1, "position": [0, 0], "parameters": {}}


def minimal(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "nodes": [dict(MANUAL)], "connections": {}, "settings": {}, **extra}


class Recorder:
    def __init__(self, n8n: N8n, out):
        self.n8n, self.out = n8n, out

    def __call__(self, probe: str, method: str, path: str, body: Any = None, *, query: dict | None = None,
                 raw: bytes | None = None, cut: int = 4000) -> Any:
        t0 = time.perf_counter()
        answer = self.n8n.api(method, path, body, query=query, raw=raw)
        ms = round((time.perf_counter() - t0) * 1000, 1)
        shown = json.dumps(answer.body, ensure_ascii=False)
        sent = json.dumps(body, ensure_ascii=False)
        if raw is not None:
            body = f"<{len(raw)} raw bytes>"
        elif len(sent) > cut:
            body = f"<{len(sent)} bytes of JSON> " + sent[:200] + "...<cut>"
        rec = {"probe": probe, "method": method, "path": path + (f"?{query}" if query else ""),
               "body": body, "status": answer.status, "ms": ms,
               "answer": answer.body if len(shown) <= cut else shown[:cut] + "...<cut>"}
        self.out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.out.flush()
        return answer

    def note(self, probe: str, **facts: Any) -> None:
        self.out.write(json.dumps({"probe": probe, "note": facts}, ensure_ascii=False) + "\n")
        self.out.flush()


def changed_fields(sent: Any, got: Any, at: str = "") -> list[str]:
    """Pointers where ``got`` differs from ``sent`` (added, removed or changed)."""
    if isinstance(sent, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(sent) | set(got)):
            p = f"{at}/{k}"
            if k not in sent:
                out.append(f"+{p}={json.dumps(got[k])[:80]}")
            elif k not in got:
                out.append(f"-{p}")
            else:
                out.extend(changed_fields(sent[k], got[k], p))
        return out
    if isinstance(sent, list) and isinstance(got, list) and len(sent) == len(got):
        return [c for i, (a, b) in enumerate(zip(sent, got)) for c in changed_fields(a, b, f"{at}/{i}")]
    return [] if sent == got else [f"~{at}: {json.dumps(sent)[:60]} -> {json.dumps(got)[:60]}"]


def probe(n8n: N8n, rec: Recorder) -> None:
    # -- listing and pagination
    rec("list: empty", "GET", "/workflows")
    ids = [rec("list: seed", "POST", "/workflows", minimal(f"page {i:03d}")).body["id"] for i in range(7)]
    rec.note("list: ids as created", ids=ids)
    first = rec("list: limit=3", "GET", "/workflows", query={"limit": 3})
    cursor = first.body["nextCursor"]
    import base64
    rec.note("list: cursor decoded", cursor=cursor, decoded=base64.b64decode(cursor).decode())
    second = rec("list: next page", "GET", "/workflows", query={"limit": 3, "cursor": cursor})
    rec("list: last page", "GET", "/workflows", query={"cursor": second.body["nextCursor"]})
    rec("list: limit=0", "GET", "/workflows", query={"limit": 0}, cut=300)
    rec("list: limit=251", "GET", "/workflows", query={"limit": 251}, cut=300)
    rec("list: limit=abc", "GET", "/workflows", query={"limit": "abc"}, cut=300)
    rec("list: bad cursor", "GET", "/workflows", query={"cursor": "not-a-cursor"}, cut=300)
    rec("list: unknown param", "GET", "/workflows", query={"override": "true"}, cut=300)
    rec("list: name filter (substring?)", "GET", "/workflows", query={"name": "age 00"}, cut=600)
    rec("list: excludePinnedData", "GET", "/workflows", query={"limit": 1, "excludePinnedData": True})
    # a delete between pages: offset pagination skips an item
    p1 = n8n.api("GET", "/workflows", query={"limit": 3}).body
    n8n.delete(p1["data"][0]["id"])
    p2 = n8n.api("GET", "/workflows", query={"limit": 3, "cursor": p1["nextCursor"]}).body
    rest = n8n.api("GET", "/workflows", query={"limit": 3, "cursor": p2["nextCursor"]}).body if p2["nextCursor"] else {"data": []}
    seen = [w["name"] for w in p1["data"] + p2["data"] + rest["data"]]
    rec.note("list: a delete between page 1 and 2", listed=seen, still_there=[w["name"] for w in n8n.workflows()])
    n8n.reset()

    # -- create: what is accepted, what comes back
    sent = workflow(0)
    made = rec("create: realistic webhook workflow", "POST", "/workflows", sent)
    got = rec("get: the same", "GET", f"/workflows/{made.body['id']}")
    rec.note("create: fields changed between sent and GET", changed=changed_fields(sent, got.body))
    sent1 = workflow(1)
    made1 = n8n.create(sent1)
    rec.note("create: schedule workflow, changed", changed=changed_fields(sent1, n8n.get(made1["id"])))
    listed = n8n.workflows()
    rec.note("list: item keys", keys=sorted(listed[0]), same_as_get=[w == n8n.get(w["id"]) for w in listed])
    rec.note("list item -> GET of the same workflow", changed=changed_fields(listed[0], n8n.get(listed[0]["id"])))
    rec.note("get: keys", keys=sorted(got.body))
    for field, value in [("active", False), ("id", "abc123"), ("tags", []), ("tags", [{"name": "x"}]),
                         ("staticData", {"lastId": 1}), ("staticData", None), ("pinData", {}), ("meta", {}),
                         ("versionId", "v1"), ("createdAt", "2020-01-01T00:00:00.000Z"),
                         ("updatedAt", "2020-01-01T00:00:00.000Z"), ("shared", []), ("description", "hi"),
                         ("isArchived", False), ("triggerCount", 0), ("activeVersion", None), ("override", True),
                         ("unknownField", 1)]:
        rec(f"create: with {field}={json.dumps(value)}", "POST", "/workflows", minimal(f"extra {field}", **{field: value}),
            cut=600)
    rec("create: settings with unknown key", "POST", "/workflows",
        {**minimal("s1"), "settings": {"executionOrder": "v1", "bogus": 1}}, cut=600)
    rec("create: settings with callerPolicy any", "POST", "/workflows",
        {**minimal("s2"), "settings": {"callerPolicy": "any"}}, cut=1500)
    rec("create: node with unknown key", "POST", "/workflows",
        {**minimal("n1"), "nodes": [{**MANUAL, "color": "red"}]}, cut=600)
    rec("create: node with id", "POST", "/workflows",
        {**minimal("n2"), "nodes": [{**MANUAL, "id": "11111111-2222-3333-4444-555555555555"}]}, cut=1500)
    rec("create: node id not a uuid", "POST", "/workflows",
        {**minimal("n2b"), "nodes": [{**MANUAL, "id": "start"}]}, cut=1500)
    rec("create: node without name", "POST", "/workflows",
        {**minimal("n3"), "nodes": [{k: v for k, v in MANUAL.items() if k != "name"}]}, cut=600)
    rec("create: node without type", "POST", "/workflows",
        {**minimal("n4"), "nodes": [{k: v for k, v in MANUAL.items() if k != "type"}]}, cut=600)
    rec("create: node without typeVersion/position/parameters", "POST", "/workflows",
        {**minimal("n5"), "nodes": [{"name": "Start", "type": MANUAL["type"]}]}, cut=1500)
    rec("create: unknown node type", "POST", "/workflows",
        {**minimal("n6"), "nodes": [{**MANUAL, "type": "n8n-nodes-base.doesNotExist"}]}, cut=600)
    rec("create: two nodes with one name", "POST", "/workflows",
        {**minimal("n7"), "nodes": [dict(MANUAL), {**MANUAL, "position": [200, 0]}]}, cut=1500)
    rec("create: connection to a missing node", "POST", "/workflows",
        {**minimal("c1"), "connections": {"Start": {"main": [[{"node": "Ghost", "type": "main", "index": 0}]]}}},
        cut=1500)
    rec("create: connection from a missing node", "POST", "/workflows",
        {**minimal("c2"), "connections": {"Ghost": {"main": [[{"node": "Start", "type": "main", "index": 0}]]}}},
        cut=1500)
    rec("create: connections not an object", "POST", "/workflows", {**minimal("c3"), "connections": []}, cut=600)
    rec("create: no name", "POST", "/workflows", {k: v for k, v in minimal("x").items() if k != "name"}, cut=600)
    rec("create: empty name", "POST", "/workflows", minimal(""), cut=600)
    rec("create: name of 128 chars", "POST", "/workflows", minimal("n" * 128), cut=300)
    rec("create: name of 129 chars", "POST", "/workflows", minimal("n" * 129), cut=600)
    rec("create: duplicate name 1", "POST", "/workflows", minimal("twice"), cut=300)
    rec("create: duplicate name 2", "POST", "/workflows", minimal("twice"), cut=300)
    rec.note("list: name=twice", found=[w["id"] for w in n8n.workflows(name="twice")])
    uni = rec("create: unicode name", "POST", "/workflows", minimal("Bestellungen / 注文 🚀 ../x"), cut=300)
    rec("get: unicode name back", "GET", f"/workflows/{uni.body['id']}", cut=300)
    rec("create: no nodes", "POST", "/workflows", {**minimal("e"), "nodes": []}, cut=300)
    rec("create: not JSON", "POST", "/workflows", raw=b"{not json", cut=600)
    rec("create: a JSON array", "POST", "/workflows", [minimal("arr")], cut=600)
    for mib in (15, 17):
        blob = "x" * (mib * 1024 * 1024)
        big = {**minimal(f"big {mib} MiB"), "nodes": [{**MANUAL, "notes": blob}]}
        rec(f"create: body of ~{mib} MiB", "POST", "/workflows", big, cut=300)
    rec("get: unknown id", "GET", "/workflows/doesnotexist", cut=300)

    # -- update
    base = n8n.create(minimal("upd"))
    wid = base["id"]
    body = {k: base[k] for k in ("name", "nodes", "connections", "settings")}
    same = rec("put: same content", "PUT", f"/workflows/{wid}", body, cut=1500)
    rec.note("put: same content", versionId_changed=same.body.get("versionId") != base["versionId"],
             updatedAt_changed=same.body.get("updatedAt") != base["updatedAt"])
    renamed = rec("put: renamed", "PUT", f"/workflows/{wid}", {**body, "name": "upd renamed"}, cut=1500)
    rec.note("put: renamed", id_kept=renamed.body.get("id") == wid,
             versionId_changed=renamed.body.get("versionId") != base["versionId"],
             updatedAt_changed=renamed.body.get("updatedAt") != base["updatedAt"],
             versionCounter=[base.get("versionCounter"), renamed.body.get("versionCounter")])
    no_ids = {**body, "nodes": [{k: v for k, v in n.items() if k != "id"} for n in body["nodes"]]}
    again = rec("put: nodes without ids", "PUT", f"/workflows/{wid}", no_ids, cut=1500)
    rec.note("put: nodes without ids", node_ids=[base["nodes"][0]["id"], again.body["nodes"][0].get("id")])
    rec("put: settings without callerPolicy (merged or replaced?)", "PUT", f"/workflows/{wid}",
        {**body, "settings": {"executionOrder": "v1"}}, cut=1500)
    rec("put: settings {} after timezone", "PUT", f"/workflows/{wid}", {**body, "settings": {"timezone": "UTC"}}, cut=300)
    rec("put: settings {} (timezone gone?)", "PUT", f"/workflows/{wid}", {**body, "settings": {}}, cut=1500)
    rec("put: timezone DEFAULT (n8n's way to drop a setting)", "PUT", f"/workflows/{wid}",
        {**body, "settings": {"timezone": "DEFAULT"}}, cut=1500)
    rec("put: saveManualExecutions DEFAULT", "PUT", f"/workflows/{wid}",
        {**body, "settings": {"saveManualExecutions": "DEFAULT"}}, cut=600)
    for missing in ("name", "nodes", "connections", "settings"):
        rec(f"put: without {missing}", "PUT", f"/workflows/{wid}", {k: v for k, v in body.items() if k != missing},
            cut=600)
    rec("put: with versionId", "PUT", f"/workflows/{wid}", {**body, "versionId": base["versionId"]}, cut=600)
    rec("put: with id", "PUT", f"/workflows/{wid}", {**body, "id": wid}, cut=600)
    rec("put: with active", "PUT", f"/workflows/{wid}", {**body, "active": True}, cut=600)
    rec("put: staticData", "PUT", f"/workflows/{wid}", {**body, "staticData": {"lastId": 7}}, cut=1500)
    rec("put: staticData omitted (kept?)", "PUT", f"/workflows/{wid}", body, cut=1500)
    rec("put: unknown id", "PUT", "/workflows/doesnotexist", body, cut=600)
    rec("put: name clash with another workflow", "PUT", f"/workflows/{wid}", {**body, "name": "twice"}, cut=600)
    rec("get: history version", "GET", f"/workflows/{wid}/{base['versionId']}", cut=1500)
    rec("get: history unknown version", "GET", f"/workflows/{wid}/nope", cut=300)

    # -- activation
    manual = n8n.create(minimal("manual only"))
    rec("activate: manual trigger only", "POST", f"/workflows/{manual['id']}/activate", cut=600)
    sched = n8n.create({**workflow(3), "name": "schedule to activate"})
    act = rec("activate: schedule trigger", "POST", f"/workflows/{sched['id']}/activate", cut=2500)
    rec.note("activate", active=act.body.get("active"), activeVersionId=act.body.get("activeVersionId"),
             versionId=act.body.get("versionId"))
    rec("activate: again", "POST", f"/workflows/{sched['id']}/activate", cut=600)
    sbody = {k: sched[k] for k in ("name", "nodes", "connections", "settings")}
    upd = rec("put: an active workflow", "PUT", f"/workflows/{sched['id']}", {**sbody, "name": "schedule renamed"},
              cut=600)
    g = n8n.get(sched["id"])
    rec.note("put: an active workflow, after", active=g["active"], versionId=g["versionId"],
             activeVersionId=g.get("activeVersionId"), activeVersion_versionId=(g.get("activeVersion") or {}).get("versionId"))
    rec("list: active=true", "GET", "/workflows", query={"active": True}, cut=400)
    rec("deactivate", "POST", f"/workflows/{sched['id']}/deactivate", cut=600)
    rec("deactivate: again", "POST", f"/workflows/{sched['id']}/deactivate", cut=600)
    wh = n8n.create({**workflow(4), "name": "webhook to activate"})
    rec("activate: webhook with a missing credential", "POST", f"/workflows/{wh['id']}/activate", cut=600)

    # -- tags
    t1 = rec("tags: create", "POST", "/tags", {"name": "production"})
    rec("tags: create duplicate", "POST", "/tags", {"name": "production"}, cut=600)
    rec("tags: list", "GET", "/tags")
    before = n8n.get(wid)
    rec("workflow tags: put", "PUT", f"/workflows/{wid}/tags", [{"id": t1.body["id"]}])
    rec("workflow tags: get", "GET", f"/workflows/{wid}/tags")
    after = n8n.get(wid)
    rec.note("workflow tags: does tagging change the workflow", versionId_changed=before["versionId"] != after["versionId"],
             updatedAt_changed=before["updatedAt"] != after["updatedAt"], tags=after.get("tags"))
    rec("workflow tags: unknown tag id", "PUT", f"/workflows/{wid}/tags", [{"id": "nope"}], cut=600)
    rec("list: tags=production", "GET", "/workflows", query={"tags": "production"}, cut=400)

    # -- credentials
    rec("credentials: list", "GET", "/credentials", cut=600)
    rec("credentials: schema httpHeaderAuth", "GET", "/credentials/schema/httpHeaderAuth", cut=2000)
    cred = rec("credentials: create", "POST", "/credentials",
               {"name": "Orders API token", "type": "httpHeaderAuth", "data": {"name": "X-Token", "value": "s3cret"}})
    cid = cred.body["id"]
    for label, ref in [
        ("existing id, right name", (cid, "Orders API token")),
        ("existing id, wrong name", (cid, "Some other name")),
        ("missing id, name of a unique existing one", ("doesnotexist1", "Orders API token")),
        ("missing id, missing name", ("doesnotexist2", "Nobody has this")),
        ("id null, existing name", (None, "Orders API token")),
        ("id null, missing name", (None, "Nobody has this")),
    ]:
        wf = workflow(10, credential=ref)
        wf["name"] = f"cred: {label}"
        made = rec(f"credentials ref on create: {label}", "POST", "/workflows", wf, cut=200)
        if made.ok:
            node = next(n for n in n8n.get(made.body["id"])["nodes"] if n["name"] == "Notify ERP")
            rec.note(f"credentials ref on create: {label}", sent=ref, stored=node.get("credentials"))
    rec("credentials: create same name again", "POST", "/credentials",
        {"name": "Orders API token", "type": "httpHeaderAuth", "data": {"name": "X-Token", "value": "other"}}, cut=600)
    wf = workflow(11, credential=("doesnotexist3", "Orders API token"))
    wf["name"] = "cred: missing id, name shared by two"
    made = n8n.create(wf)
    node = next(n for n in n8n.get(made["id"])["nodes"] if n["name"] == "Notify ERP")
    rec.note("credentials ref on create: missing id, name shared by two", stored=node.get("credentials"))
    listed = n8n.rest("GET", "/rest/credentials")
    rec.note("credentials: internal GET /rest/credentials (owner's cookie, not the API key)",
             items=[{k: c.get(k) for k in ("id", "name", "type")} for c in listed["data"]],
             keys=sorted(listed["data"][0]) if listed["data"] else [])
    rec("credentials: delete one in use", "DELETE", f"/credentials/{cid}", cut=600)
    node = next(n for n in n8n.get(made["id"])["nodes"] if n["name"] == "Notify ERP")
    rec.note("credentials: a workflow after its credential was deleted", stored=node.get("credentials"))

    # -- conditional requests and archived workflows
    plain = n8n.create(minimal("etag"))
    got = n8n.api("GET", f"/workflows/{plain['id']}")
    etag = got.headers.get("ETag")
    rec.note("get: ETag header", etag=etag)
    again = n8n._send("GET", f"/api/v1/workflows/{plain['id']}",
                      headers={"X-N8N-API-KEY": n8n.api_key, "If-None-Match": etag or "*"})
    rec.note("get: If-None-Match with that ETag", status=again.status)
    pbody = {k: plain[k] for k in ("name", "nodes", "connections", "settings")}
    stale = n8n._send("PUT", f"/api/v1/workflows/{plain['id']}", {**pbody, "name": "etag renamed"},
                      headers={"X-N8N-API-KEY": n8n.api_key, "If-Match": '"certainly-stale"'})
    rec.note("put: If-Match with a stale tag", status=stale.status, name=(stale.body or {}).get("name"))
    arch = n8n.create(minimal("archived in the UI"))
    n8n.rest("POST", f"/rest/workflows/{arch['id']}/archive")
    rec("list: an archived workflow", "GET", "/workflows", query={"name": "archived in the UI"}, cut=700)
    abody = {k: arch[k] for k in ("name", "nodes", "connections", "settings")}
    rec("put: an archived workflow", "PUT", f"/workflows/{arch['id']}", {**abody, "name": "archived, renamed"}, cut=700)
    rec("activate: an archived workflow", "POST", f"/workflows/{arch['id']}/activate", cut=700)

    # -- delete
    victim = n8n.create(minimal("to delete"))
    rec("delete", "DELETE", f"/workflows/{victim['id']}", cut=1500)
    rec("delete: again", "DELETE", f"/workflows/{victim['id']}", cut=300)
    rec("get: deleted", "GET", f"/workflows/{victim['id']}", cut=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("n8n-api-probe.jsonl"))
    args = parser.parse_args(argv)
    # SIGTERM (and SIGINT, which a background job ignores) unwind like ^C, so the
    # `finally` blocks stop the n8n this started.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.default_int_handler)
    command = n8n_command()
    if command is None:
        print("no n8n: eval \"$(bash .ci/install-n8n)\" first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="n8n-probe-") as tmp:
        n8n = N8n(command, Path(tmp))
        try:
            n8n.start().setup()
            with open(args.out, "w") as out:
                probe(n8n, Recorder(n8n, out))
        finally:
            n8n.stop()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
