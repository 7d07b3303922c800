"""The example merge-request pipelines under deploy/ci/ run, as written, on a real promotion.

The jobs' shell scripts are run by bash in a workspace (the CI variables set
as GitLab and GitHub set them), with the real ``reconciler`` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import Workspace, git_env
from tests.promokit import ACC_API, ACC_PW, VALUES, orders, promote_branch, setup_two
from tests.test_notify_fakes import FakeForge, OpenAPI, github_openapi  # noqa: F401

CI = Path(__file__).resolve().parent.parent / "deploy" / "ci"


@pytest.fixture(scope="module")
def promotion(tmp_path_factory) -> tuple[Workspace, str]:
    ws = setup_two(Workspace(tmp_path_factory.mktemp("ci")))
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=3))
    ws.cli("export", "acceptance", check=True)
    ws.cli("promote", "acceptance", "production", check=True)
    return ws, promote_branch(ws)


def run(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = git_env(cwd)
    full["PATH"] = os.path.dirname(sys.executable) + os.pathsep + full["PATH"]
    full.pop("RECONCILER_CONFIG", None)
    full.update(env)
    return subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=120)


def gitlab() -> dict:
    return yaml.safe_load((CI / "gitlab-ci.yml").read_text())


def github() -> dict:
    return yaml.safe_load((CI / "github-actions.yml").read_text())


def step(job: dict, name: str) -> dict:
    return next(s for s in job["steps"] if s.get("name") == name)


def test_the_gitlab_jobs_run_only_for_merge_requests_into_an_environment_branch() -> None:
    """validate and plan extend the rule; the plan is kept as an artifact even when the job fails."""
    doc = gitlab()
    rule = doc[".reconciler"]["rules"][0]["if"]
    assert "merge_request_event" in rule and "^env" in rule
    assert doc["validate"]["extends"] == doc["plan"]["extends"] == ".reconciler"
    assert doc["plan"]["artifacts"] == {"when": "always", "expose_as": "reconciler plan", "paths": ["plan.md"]}


def test_the_gitlab_validate_job_passes_on_a_good_checkout(promotion) -> None:
    """`reconciler validate flows/` in the merge request's checkout, with the config from a File variable."""
    ws, branch = promotion
    checkout = ws.clone(branch, name="gitlab-checkout")
    out = run("\n".join(gitlab()["validate"]["script"]), checkout, RECONCILER_CONFIG=str(ws.config))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_gitlab_plan_job_writes_the_markdown_plan_and_passes(promotion) -> None:
    """Exit 2 (the merge changes production) passes the job; plan.md is the comment."""
    ws, branch = promotion
    job_dir = ws.root / "gitlab-job"
    job_dir.mkdir()
    out = run("\n".join(gitlab()["plan"]["script"]), job_dir, RECONCILER_CONFIG=str(ws.config),
              CI_MERGE_REQUEST_TARGET_BRANCH_NAME="env/production", CI_MERGE_REQUEST_SOURCE_BRANCH_NAME=branch)
    assert out.returncode == 0, out.stdout + out.stderr
    md = (job_dir / "plan.md").read_text()
    assert "| <code>orders@1.0</code> | changed | **import** |" in md and "+ /retries: 3" in md
    assert not any(v in md for v in VALUES)


def test_the_gitlab_plan_job_fails_when_the_source_does_not_merge(promotion) -> None:
    """Exit 1 fails the job (here: a source branch that does not exist)."""
    ws, _ = promotion
    out = run("\n".join(gitlab()["plan"]["script"]), ws.root, RECONCILER_CONFIG=str(ws.config),
              CI_MERGE_REQUEST_TARGET_BRANCH_NAME="env/production", CI_MERGE_REQUEST_SOURCE_BRANCH_NAME="gone")
    assert out.returncode != 0


def github_runner(ws: Workspace, name: str) -> tuple[str, Path]:
    """The config as a secret's text (absolute paths: the job runs elsewhere) and a fresh RUNNER_TEMP."""
    config = ws.config.read_text()
    for rel in ("state/", "envs/", "secrets/"):
        config = config.replace(f'"{rel}', f'"{ws.root}/{rel}')
    runner = ws.root / name
    runner.mkdir()
    return config, runner


def test_the_github_plan_step_writes_the_job_summary_and_passes(promotion) -> None:
    """The config comes from a secret's text; the branch names from the environment, not the script."""
    ws, branch = promotion
    config, runner = github_runner(ws, "runner")
    plan = step(github()["jobs"]["plan"], "plan the merge")
    assert "${{" not in plan["run"]
    out = run(plan["run"], runner, RECONCILER_TOML=config, RUNNER_TEMP=str(runner), TARGET="env/production",
              SOURCE=branch, GITHUB_STEP_SUMMARY=str(runner / "summary.md"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (runner / "summary.md").read_text() == (runner / "plan.md").read_text()
    assert "**import**" in (runner / "plan.md").read_text()


def test_the_github_workflow_runs_on_pull_requests_into_environment_branches() -> None:
    """pull_request into env/**; the comment job only for pull requests from the repository itself."""
    doc = github()
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on == {"pull_request": {"branches": ["env/**"]}}
    assert doc["permissions"] == {"contents": "read"}
    assert doc["jobs"]["comment"]["permissions"] == {"pull-requests": "write"}
    assert "head.repo.full_name == github.repository" in doc["jobs"]["comment"]["if"]


STATUS_TOKEN = "ci-status-t0ken-0123456789abcdef"


def with_forge(config: str, forge: FakeForge, token_env: str) -> str:
    """A CI config: the service's tables and a [[notify]] table for --status."""
    return config + (f'\n[[notify]]\ntype = "{forge.kind}"\napi = "{forge.api}"\nrepository = "{forge.repository}"\n'
                     f'token_env = "{token_env}"\n')


def head(ws: Workspace, branch: str) -> str:
    return ws.git("rev-parse", branch, cwd=ws.repo).strip()


def gitlab_plan_with_status(ws: Workspace, branch: str, name: str, token: str) -> tuple[subprocess.CompletedProcess[str],
                                                                                      FakeForge, Path]:
    """The GitLab plan job in its own folder, with a [[notify]] gitlab table for a fake GitLab and ``token``."""
    job_dir = ws.root / name
    job_dir.mkdir()
    with FakeForge("gitlab", STATUS_TOKEN, "platform/flows") as gl:
        config = ws.root / f"{name}.toml"
        config.write_text(with_forge(ws.config.read_text(), gl, "RECONCILER_STATUS_TOKEN"))
        out = run("\n".join(gitlab()["plan"]["script"]), job_dir, RECONCILER_CONFIG=str(config),
                  RECONCILER_STATUS_TOKEN=token, CI_MERGE_REQUEST_TARGET_BRANCH_NAME="env/production",
                  CI_MERGE_REQUEST_SOURCE_BRANCH_NAME=branch)
    return out, gl, job_dir


def test_the_gitlab_plan_job_sets_the_commit_status_on_the_merge_requests_head(promotion) -> None:
    """--status: success as flow-reconciler/production on the source branch's head, with the project token."""
    ws, branch = promotion
    out, gl, job_dir = gitlab_plan_with_status(ws, branch, "gitlab-status-job", STATUS_TOKEN)
    assert out.returncode == 0, out.stdout + out.stderr
    sha = head(ws, branch)
    assert gl.states(sha, "flow-reconciler/production") == ["success"]
    (request,) = gl.requests
    assert request.path == f"/api/v4/projects/platform%2Fflows/statuses/{sha}"
    assert request.headers["private-token"] == STATUS_TOKEN
    assert request.json["ref"] == branch and "production would import 1 flow(s)" in request.json["description"]
    assert f"commit status success (flow-reconciler/production) on {sha[:12]}" in out.stderr
    assert STATUS_TOKEN not in out.stdout + out.stderr + (job_dir / "plan.md").read_text()


def test_the_github_plan_step_sets_the_commit_status_as_githubs_api_describes_it(promotion,
                                                                                  github_openapi: OpenAPI) -> None:  # noqa: F811
    """The job's token (GITHUB_TOKEN, with statuses: write) sets success on the pull request's head commit."""
    ws, branch = promotion
    config, runner = github_runner(ws, "runner-status")
    job = github()["jobs"]["plan"]
    assert job["permissions"] == {"contents": "read", "statuses": "write"}
    plan = step(job, "plan the merge")
    assert plan["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    with FakeForge("github", STATUS_TOKEN, "example/flows", openapi=github_openapi) as gh:
        out = run(plan["run"], runner, RECONCILER_TOML=with_forge(config, gh, "GITHUB_TOKEN"), GITHUB_TOKEN=STATUS_TOKEN,
                  RUNNER_TEMP=str(runner), TARGET="env/production", SOURCE=branch,
                  GITHUB_STEP_SUMMARY=str(runner / "summary.md"))
        assert out.returncode == 0, out.stdout + out.stderr
        assert gh.states(head(ws, branch), "flow-reconciler/production") == ["success"]
        assert gh.invalid == []


def test_a_plan_job_whose_status_cannot_be_set_fails(promotion) -> None:
    """A token the forge refuses: exit 1, naming the variable, not its value; the plan is written all the same."""
    ws, branch = promotion
    out, _, job_dir = gitlab_plan_with_status(ws, branch, "gitlab-refused-job", "not-the-t0ken-0123456789")
    assert out.returncode != 0
    assert "$RECONCILER_STATUS_TOKEN" in out.stderr and "not-the-t0ken" not in out.stderr
    assert "**import**" in (job_dir / "plan.md").read_text()
