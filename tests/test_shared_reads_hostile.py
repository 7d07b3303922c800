"""Hostile cases of the shared kept reads (reconciler.readindex.recall_shared): what acceptance derived
must not be taken by production where a secret's value differs now, even through one shared secrets
folder (the same settings, the same paths: only the file's content moved)."""

from __future__ import annotations

import json

from reconciler.plan import Action
from tests.conftest import Workspace, flow
from tests.test_shared_reads import N, plan_of, steps


def test_a_secret_file_changed_since_acceptance_kept_its_reads_is_rendered_anew(ws: Workspace) -> None:
    secrets = ws.root / "secrets"
    secrets.mkdir()
    (secrets / "TOKEN").write_text("first-secret-value-1")
    extra = 'ignore = ["/exportedAt"]\nsecrets_dir = "secrets"\nsecret_fields = ["/password"]\n'
    ws.config.write_text(
        '[repository]\npath = "state/flows.git"\n\n'
        f'[[environment]]\nname = "acc"\ndriver = "directory"\npath = "envs/acc"\ndrift = "adopt"\n{extra}\n'
        f'[[environment]]\nname = "prod"\ndriver = "directory"\npath = "envs/prod"\ndrift = "restore"\n{extra}\n')
    for d in ("acc", "prod"):
        (ws.root / "envs" / d).mkdir(parents=True)
    for i in range(N):
        ws.put("acc", f"f{i}.json", flow(f"f{i}", password="first-secret-value-1"))
    ws.cli("export", "acc", check=True)
    assert "${secret:TOKEN}" in ws.git("show", "env/acc:flows/f0/1.0.json", cwd=ws.repo)
    out, reads = plan_of(ws, "acc")
    assert reads == N and out.states["in_sync"] == N
    (secrets / "TOKEN").write_text("other-secret-value-2")  # same name, same length, same folder
    ws.git("branch", "-f", "env/prod", "env/acc", cwd=ws.repo)
    out, reads = plan_of(ws, "prod")
    truth, _ = plan_of(ws, "prod", keep=False)
    assert reads == N and steps(out) == steps(truth)
    assert {s.action for s in out.plan.steps} == {Action.IMPORT}
    engine_out = ws.cli("sync", "prod")
    assert engine_out.returncode == 0, engine_out.stdout + engine_out.stderr
    docs = [json.loads(p.read_text()) for p in (ws.root / "envs" / "prod").glob("*.json")]
    assert len(docs) == N and {d["password"] for d in docs} == {"other-secret-value-2"}
