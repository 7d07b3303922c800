"""What one environment derived from git, reused by another with the same derivation, never gives a
wrong answer (:func:`reconciler.readindex.recall_shared`).

Promotion is ``git branch -f env/prod env/acc``: production's first read finds nothing kept of its own,
and starts from what acceptance kept when both derive alike. Environments that render, read or check
flows differently (parameters, secrets, ignored fields, identity, schema, folder) must read every blob
themselves. Git is real (the CLI's export, the git CLI's branch), a new :class:`Engine` is the next
process, and every answer is compared with one from an engine that keeps and reuses nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.engine import Engine
from reconciler.flows import FlowKey
from reconciler.gitstore import GitStore
from reconciler.localcache import write_cache
from reconciler.plan import Action
from tests.conftest import Workspace, flow

N = 5


class Counting(GitStore):
    """The real store, counting the blobs read."""

    reads: int = 0

    def read_blob(self, oid: str) -> bytes:
        self.reads += 1
        return super().read_blob(oid)


def configure(ws: Workspace, acc: str = "", prod: str = "") -> None:
    def ignore(extra: str) -> str:
        return extra if "ignore =" in extra else 'ignore = ["/exportedAt"]\n' + extra

    ws.config.write_text(
        '[repository]\npath = "state/flows.git"\n\n'
        '[[environment]]\nname = "acc"\ndriver = "directory"\npath = "envs/acc"\ndrift = "adopt"\n'
        f'{ignore(acc)}\n'
        '[[environment]]\nname = "prod"\ndriver = "directory"\npath = "envs/prod"\ndrift = "restore"\nprune = true\n'
        f'{ignore(prod)}\n')


def fresh(ws: Workspace, keep: bool = True) -> tuple[Engine, Counting]:
    config = load_config(ws.config)
    store = Counting.from_config(config.repository)
    return Engine(config, store=store, keep_reads=keep), store


def plan_of(ws: Workspace, env: str, keep: bool = True):
    engine, store = fresh(ws, keep)
    try:
        return engine.sync(env, dry_run=True), store.reads
    finally:
        engine.close()


def steps(out) -> list[tuple]:
    return [(s.key, s.action, s.desired, s.base, s.live) for s in out.plan.steps]


def promoted(ws: Workspace, acc: str = "", prod: str = "", docs=None) -> Workspace:
    """acc exported and planned once (its reads kept), then its branch promoted to prod's."""
    configure(ws, acc, prod)
    for d in ("acc", "prod"):
        (ws.root / "envs" / d).mkdir(parents=True, exist_ok=True)
    api = acc.split('"')[1] if "API" in acc else "/none"  # live flows hold the rendered value: the export templatizes it
    for i, doc in enumerate(docs or [flow(f"f{i}", url=f"{api}/{i}" if i == 0 else f"/{i}") for i in range(N)]):
        ws.put("acc", f"f{i}.json", doc)
    ws.cli("export", "acc", check=True)
    out, reads = plan_of(ws, "acc")
    assert reads == N and out.states["in_sync"] == N
    ws.git("branch", "-f", "env/prod", "env/acc", cwd=ws.repo)
    return ws


def test_promotion_reads_no_blob_where_acceptance_derived_them_alike(ws: Workspace) -> None:
    promoted(ws, 'params = { API = "https://x.example.com" }', 'params = { API = "https://x.example.com" }')
    out, reads = plan_of(ws, "prod")
    assert reads == 0
    truth, truth_reads = plan_of(ws, "prod", keep=False)
    assert truth_reads == N and steps(out) == steps(truth)
    assert {s.action for s in out.plan.steps} == {Action.IMPORT}
    # a real sync from it writes what git holds, and production keeps its own reads after it
    engine, _ = fresh(ws)
    assert not engine.sync("prod").failed
    engine.close()
    assert (ws.repo / "reconciler" / "index" / "prod" / "desired").is_file()
    out, reads = plan_of(ws, "prod")
    assert reads == 0 and out.states["in_sync"] == N
    assert json.loads((ws.root / "envs" / "prod" / "f0@1.0.json").read_text())["url"] \
        == "https://x.example.com/0"


@pytest.mark.parametrize("acc, prod", [
    ('params = { API = "https://acc.example.com" }', 'params = { API = "https://prod.example.com" }'),
    ('params = { API = "https://x.example.com" }', 'params = { API = "https://x.example.com" }\nsecret_allow = ["/x"]'),
    ('params = { API = "https://x.example.com" }', 'params = { API = "https://x.example.com" }\n'
                                                   'ignore = ["/exportedAt", "/retries"]'),
    ('params = { API = "https://x.example.com" }', 'params = { API = "https://x.example.com" }\nlayout = "ignore"'),
], ids=["other parameter value", "other secret rules", "other ignored fields", "other layout"])
def test_an_environment_deriving_otherwise_reads_every_blob_itself(ws: Workspace, acc: str, prod: str) -> None:
    """The same blob (a placeholder, a field one side ignores) derives to another flow there: nothing
    acceptance kept is taken, and the answer is a full read's."""
    docs = [flow(f"f{i}", url=acc.split('"')[1] + f"/{i}", retries=i) for i in range(N)]
    promoted(ws, acc, prod, docs)
    out, reads = plan_of(ws, "prod")
    truth, _ = plan_of(ws, "prod", keep=False)
    assert reads == N and steps(out) == steps(truth)
    acc_out, _ = plan_of(ws, "acc")
    if "prod.example.com" in prod or "/retries" in prod:
        f0 = FlowKey("f0", "1.0")
        assert next(s.desired for s in out.plan.steps if s.key == f0) != \
            next(s.desired for s in acc_out.plan.steps if s.key == f0)


def test_another_schema_path_reads_every_blob_itself(ws: Workspace) -> None:
    schema = ws.root / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["name", "version", "owner"]}))
    promoted(ws, "", 'schema = "schema.json"')
    out, reads = plan_of(ws, "prod")
    assert reads == N
    assert {s.action for s in out.plan.steps} == {Action.INVALID}  # acceptance's flows have no owner


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other derivation", "missing"])
def test_a_damaged_or_foreign_shared_read_means_reading_everything_and_the_same_answer(ws: Workspace,
                                                                                        damage: str) -> None:
    promoted(ws)
    kept = ws.repo / "reconciler" / "index" / "acc" / "desired"
    raw = kept.read_bytes()
    if damage == "truncate":
        kept.write_bytes(raw[:-20])
    elif damage == "garbage":
        kept.write_bytes(os.urandom(300))
    elif damage == "other derivation":  # whole and checksummed, made for another derivation
        body = json.loads(raw.split(b"\n", 1)[1])
        fp = body.pop("fingerprint")
        body["derivation"] = "0" * 64
        write_cache(kept, "engine-reads", fp, body)
    else:
        kept.unlink()
    out, reads = plan_of(ws, "prod")
    truth, _ = plan_of(ws, "prod", keep=False)
    assert reads == N and steps(out) == steps(truth)


def test_a_flow_invalid_in_acceptance_is_read_again_and_reported_for_production(ws: Workspace) -> None:
    """Problems are never kept: production reads that blob itself and reports it where it reads it."""
    promoted(ws)
    clone = ws.clone("env/acc")
    (clone / "flows" / "f2" / "1.0.json").write_text('{"name": "f2", "version": "1.0", ')
    ws.git("commit", "-qam", "break f2", cwd=clone)
    ws.git("push", "-q", "origin", "env/acc", cwd=clone)
    plan_of(ws, "acc")  # acceptance keeps its read of the new tip (without f2)
    ws.git("branch", "-f", "env/prod", "env/acc", cwd=ws.repo)
    out, reads = plan_of(ws, "prod")
    assert reads == 1
    step = next(s for s in out.plan.steps if s.key == FlowKey("f2", "1.0"))
    assert step.action == Action.INVALID
    assert any("env/prod:flows/f2/1.0.json" in p.where for p in out.problems)
    truth, _ = plan_of(ws, "prod", keep=False)
    assert steps(out) == steps(truth)


def test_a_blob_changed_since_acceptance_read_is_read_again(ws: Workspace) -> None:
    """Production's tip is acceptance's plus a change: the shared derivation is patched, the changed
    blob read (a tree-to-tree diff from acceptance's tree)."""
    promoted(ws)
    clone = ws.clone("env/prod")
    path = clone / "flows" / "f3" / "1.0.json"
    doc = json.loads(path.read_text())
    doc["retries"] = 9
    path.write_text(json.dumps(doc))
    ws.git("commit", "-qam", "f3 in prod only", cwd=clone)
    ws.git("push", "-q", "origin", "env/prod", cwd=clone)
    out, reads = plan_of(ws, "prod")
    truth, _ = plan_of(ws, "prod", keep=False)
    assert reads == 1 and steps(out) == steps(truth)


def test_the_shared_read_is_found_by_its_head(ws: Workspace) -> None:
    """The derivation fingerprint is in the first bytes of the file (others are skipped unread)."""
    promoted(ws)
    head = (ws.repo / "reconciler" / "index" / "acc" / "desired").read_bytes()[:512]
    assert b'"derivation":"' in head


@pytest.mark.parametrize("acc", [
    "", 'params = { API = "https://x.example.com" }\nsecret_allow = ["/x"]\nlayout = "ignore"\ninterval = 300',
    'ignore = ["/exportedAt", "/retries"]\nmax_delete = 3\n[[environment.window]]\nkind = "deny"\nschedule = "* * * * *"\nduration = "1d"\nmanual = true',
], ids=["defaults", "params, secret rules, layout, interval", "ignored fields, windows, max_delete"])
def test_the_derivation_settings_are_the_models_own_dump(ws: Workspace, acc: str) -> None:
    """What the derivation fingerprint hashes of an environment's settings (taken from the JSON a cached
    config brings along) is, field for field, pydantic's dump without the settings that do not derive."""
    from reconciler.configcache import load_config_cached
    from reconciler.readindex import _LOCATION_ONLY, _NOT_DERIVING, deriving_settings

    configure(ws, acc)
    for config in (load_config(ws.config), load_config_cached(ws.config, ws.root / "cache"),
                   load_config_cached(ws.config, ws.root / "cache")):  # validated, kept, then from the cache
        for env in config.environments:
            exclude = set(_NOT_DERIVING) | _LOCATION_ONLY.get(env.driver, frozenset())
            ours = json.loads(deriving_settings(env))
            assert ours == json.loads(env.model_dump_json(exclude=exclude))
            assert "name" not in ours and "path" not in ours and "drift" not in ours and ours
            assert list(ours) == list(json.loads(env.model_dump_json(exclude=exclude)))  # the same order
