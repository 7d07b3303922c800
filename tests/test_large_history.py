"""A very large history (10,000+ commits with merges, built by `git fast-import`).

Syncs, exports and `history` must give the same answers as on a short history
and as the `git` CLI; their cost is measured in bench/deep_history.py, not here.
"""

from __future__ import annotations

import json

import pytest

from bench.deep_history import flow_path, write_history
from tests.conftest import Workspace

COMMITS, FLOWS = 10_000, 100


@pytest.fixture(scope="module")
def deep(tmp_path_factory) -> tuple[Workspace, dict[int, int]]:
    ws = Workspace(tmp_path_factory.mktemp("deep"))
    ws.add_env("production", drift="adopt")
    ws.git("init", "-q", "--bare", "-b", "main", str(ws.repo))
    last = write_history(ws.repo, "env/production", COMMITS, FLOWS)
    return ws, last


def test_a_sync_from_a_deep_history_imports_the_tip(deep) -> None:
    ws, last = deep
    assert int(ws.git("rev-list", "--count", "env/production", cwd=ws.repo)) > COMMITS  # merges add commits
    ws.cli("sync", "production", check=True)
    live = ws.live("production")
    assert {name: doc["rev"] for (name, _), doc in live.items()} == {f"flow-{i:04d}": rev for i, rev in last.items()}
    out = json.loads(ws.cli("status", "production", "--json", check=True).stdout)
    assert out["environments"][0]["counts"]["in_sync"] == FLOWS


def test_history_of_a_deep_branch_matches_git_log(deep) -> None:
    ws, _ = deep
    newest = json.loads(ws.cli("history", "production", "-n", "10", "--json", check=True).stdout)["commits"]
    assert [c["id"] for c in newest] == ws.git("log", "-n", "10", "--format=%H", "env/production", cwd=ws.repo).split()
    path = flow_path(7)
    ours = json.loads(ws.cli("history", "production", "flow-0007", "1.0", "--json", check=True).stdout)["commits"]
    theirs = ws.git("log", "--format=%H", "env/production", "--", path, cwd=ws.repo).split()
    assert len(ours) > COMMITS // FLOWS // 2
    assert [c["id"] for c in ours] == theirs


def test_an_export_on_top_of_a_deep_history_is_one_more_commit(deep) -> None:
    ws, _ = deep
    ws.cli("sync", "production", check=True)
    before = ws.git("rev-parse", "env/production", cwd=ws.repo).strip()
    f = ws.env_dir("production") / "flow-0003@1.0.json"
    doc = json.loads(f.read_text())
    doc["rev"] = -1
    f.write_text(json.dumps(doc))
    ws.cli("export", "production", check=True)
    assert ws.git("rev-parse", "env/production^", cwd=ws.repo).strip() == before
    assert ws.git("diff", "--name-only", before, "env/production", cwd=ws.repo).split() == [flow_path(3)]
