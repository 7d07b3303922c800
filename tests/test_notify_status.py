"""Commit statuses (pure): which event sets which state, each forge's names and request, the worst of a run."""

from __future__ import annotations

import pytest

from reconciler.events import Event
from reconciler.notify import ForgeNotify, ForgeSink, forge_request, forge_state, slack_text, status_of

SHA, SHA2 = "a" * 40, "b" * 40


def event(kind: str, *, commit: str | None = SHA, result: str = "ok", message: str = "m", at: str = "t1",
          flows: tuple = (), env: str = "production", **kw) -> Event:
    return Event(kind, env, commit, result, message, at, flows, link="https://r.example.com/environments/production",
                 **kw)


@pytest.mark.parametrize("kind, flows, state", [
    ("pending", (), "running"),
    ("suspended", (), "pending"),
    ("applied", (("a@1", "import"),), "success"),
    ("invalid", (("a@1", "invalid"),), "failure"),
    ("conflict", (("a@1", "conflict"),), "failure"),
    ("unhealthy", (("a@1", "unhealthy"),), "failure"),
    ("failed", (("a@1", "failed"),), "failure"),  # the platform refused a flow of the commit
    ("failed", (), "error"),  # the run failed before it could judge the commit
    ("drift", (("a@1", "import"),), None),
    ("restored", (("a@1", "restored"),), None),
    ("resumed", (), None),
])
def test_each_kind_of_event_sets_its_state_or_none(kind: str, flows: tuple, state: str | None) -> None:
    got = status_of(event(kind, flows=flows))
    assert (got.state if got else None) == state
    if got:
        assert got.context == "flow-reconciler/production" and got.sha == SHA
        assert got.target_url == "https://r.example.com/environments/production"


def test_an_event_without_a_commit_sets_no_status() -> None:
    assert status_of(event("failed", commit=None)) is None


@pytest.mark.parametrize("neutral, github, gitlab, gitea", [
    ("running", "pending", "running", "pending"),
    ("pending", "pending", "pending", "pending"),
    ("success", "success", "success", "success"),
    ("failure", "failure", "failed", "failure"),
    ("error", "error", "failed", "error"),
    ("canceled", "error", "canceled", "warning"),
])
def test_each_forge_gets_its_own_state_names(neutral: str, github: str, gitlab: str, gitea: str) -> None:
    assert [forge_state(f, neutral) for f in ("github", "gitlab", "gitea")] == [github, gitlab, gitea]


def test_the_requests_have_each_forges_shape() -> None:
    """GitHub/Gitea: /repos/{owner}/{repo}/statuses/{sha} with context; GitLab: /projects/{id}/statuses/{sha} with
    name and ref, the project path URL-encoded."""
    st = status_of(event("applied", extra={"ref": "env/production"}))
    method, path, body, headers = forge_request("github", "acme/flows", st)
    assert (method, path) == ("POST", f"/repos/acme/flows/statuses/{SHA}")
    assert body == {"state": "success", "context": "flow-reconciler/production", "description": "m",
                    "target_url": "https://r.example.com/environments/production"}
    assert headers["X-GitHub-Api-Version"] == "2022-11-28"
    _, path, body, _ = forge_request("gitlab", "platform/flows", st)
    assert path == f"/projects/platform%2Fflows/statuses/{SHA}"
    assert body == {"state": "success", "name": "flow-reconciler/production", "description": "m",
                    "ref": "env/production", "target_url": "https://r.example.com/environments/production"}
    _, path, body, headers = forge_request("gitea", "platform/flows", status_of(event("invalid", flows=(("a@1", "x"),))))
    assert path == f"/repos/platform/flows/statuses/{SHA}" and body["state"] == "failure" and headers == {}


def test_a_description_fits_githubs_140_characters() -> None:
    st = status_of(event("invalid", message="x " * 200, flows=(("a@1", "invalid"),)))
    assert len(st.description) == 140 and st.description.endswith("…")


def sink() -> ForgeSink:
    return ForgeSink(ForgeNotify(type="github", repository="acme/flows", token_env="T"))


def test_within_one_run_the_worst_state_wins() -> None:
    """A conflict and the marker moved in the same run: failure, and the run's success is not posted over it."""
    s = sink()
    assert [d.payload.state for d in s.deliveries(event("pending"))] == ["running"]
    assert [d.payload.state for d in s.deliveries(event("conflict", at="t2", flows=(("a@1", "conflict"),)))] == ["failure"]
    assert s.deliveries(event("applied", at="t2")) == []
    assert [d.payload.state for d in s.deliveries(event("applied", at="t3"))] == ["success"]  # a later run


def test_a_commit_still_running_when_a_newer_one_starts_is_canceled() -> None:
    s = sink()
    s.deliveries(event("pending"))
    out = s.deliveries(event("pending", commit=SHA2))
    assert [(d.payload.sha, d.payload.state) for d in out] == [(SHA, "canceled"), (SHA2, "running")]
    assert "superseded by bbbbbbbbbbbb" in out[0].payload.description
    s.deliveries(event("applied", commit=SHA2))
    assert [d.payload.state for d in s.deliveries(event("pending", commit=SHA))] == ["running"]  # nothing open


def test_environments_have_their_own_context_and_memory() -> None:
    s = sink()
    s.deliveries(event("pending"))
    out = s.deliveries(event("pending", commit=SHA2, env="acceptance"))
    assert [(d.payload.context, d.payload.state) for d in out] == [("flow-reconciler/acceptance", "running")]


def test_the_slack_text_is_short_and_escaped() -> None:
    flows = tuple((f"f{i}@1", "import") for i in range(8))
    text = slack_text(event("applied", message="production holds <aaaa> & more", flows=flows))
    lines = text.splitlines()
    assert lines[0] == ":white_check_mark: *production* applied `aaaaaaaaaaaa`: production holds &lt;aaaa&gt; &amp; more"
    assert lines[1].endswith("f4@1 (import) and 3 more")
    assert lines[2] == "<https://r.example.com/environments/production|status of production>"
