"""The pure planner: one flow key at a time from the table in
``tests/data/plan_cases.json``, then properties of whole plans."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.flows import FlowKey
from reconciler.plan import Action, Plan, Policy, State, Step, plan

CASES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "data" / "plan_cases.json").read_text())
KEY = FlowKey("orders", "1.0")


def one(value: str | None, key: FlowKey = KEY) -> dict[FlowKey, str]:
    """The mapping for one key: absent is the empty mapping."""
    return {} if value is None else {key: value}


def plan_case(case: dict[str, Any]) -> Plan:
    return plan(
        one(case["base"]),
        one(case["desired"]),
        one(case["live"]),
        Policy(**case["policy"]),
        invalid={KEY: case["invalid"]} if "invalid" in case else None,
        live_complete=case.get("live_complete", True),
    )


def assert_step_matches(step: Step, case: dict[str, Any]) -> None:
    expect = case["expect"]
    assert (step.action.value, step.state.value, step.next_base) == (
        expect["action"],
        expect["state"],
        expect["next_base"],
    ), f"{case['id']}: {step.reason}"
    assert (step.base, step.desired, step.live) == (case["base"], case["desired"], case["live"])


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_each_row_of_the_table_decides_as_written(case: dict[str, Any]) -> None:
    """Each case of the three-way table gives its action, state and next base."""
    result = plan_case(case)
    assert [s.key for s in result.steps] == [KEY]
    assert_step_matches(result.steps[0], case)


def test_the_table_covers_every_action_and_state() -> None:
    """The case table exercises every action and every state at least once."""
    assert {c["expect"]["action"] for c in CASES} == {a.value for a in Action}
    # quarantined and suspended are not the table's: the engine holds steps back into them afterwards
    # (quarantine.hold_back, suspension.hold_back; tests/test_engine_unit.py, tests/test_suspend.py)
    assert {c["expect"]["state"] for c in CASES} == {s.value for s in State} - {"quarantined", "suspended"}


def _combined() -> list[tuple[dict[str, Any], Plan, dict[FlowKey, dict[str, Any]]]]:
    """Table cases grouped by policy and completeness, each group planned in
    one call with one key per case."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in CASES:
        groups[json.dumps([case["policy"], case.get("live_complete", True)], sort_keys=True)].append(case)
    out = []
    for group in groups.values():
        base: dict[FlowKey, str] = {}
        desired: dict[FlowKey, str] = {}
        live: dict[FlowKey, str] = {}
        invalid: dict[FlowKey, str] = {}
        by_key: dict[FlowKey, dict[str, Any]] = {}
        for i, case in enumerate(group):
            key = FlowKey(f"flow-{i:02d}", "1")
            by_key[key] = case
            base.update(one(case["base"], key))
            desired.update(one(case["desired"], key))
            live.update(one(case["live"], key))
            if "invalid" in case:
                invalid[key] = case["invalid"]
        result = plan(
            base,
            desired,
            live,
            Policy(**group[0]["policy"]),
            invalid=invalid,
            live_complete=group[0].get("live_complete", True),
        )
        out.append((group[0], result, by_key))
    return out


def test_many_keys_in_one_plan_are_decided_independently() -> None:
    """Planning several flows at once gives each the step it gets on its own."""
    groups = _combined()
    assert any(len(by_key) > 3 for _, _, by_key in groups)
    for _, result, by_key in groups:
        assert {s.key for s in result.steps} == set(by_key)
        for step in result.steps:
            assert_step_matches(step, by_key[step.key])


def test_the_plan_is_sorted_by_key_and_deterministic() -> None:
    """The same inputs in any insertion order give the same plan, sorted by key."""
    keys = [FlowKey(n, v) for n in ("zeta", "alpha", "Mid", "alpha-2") for v in ("2", "1", "10")]
    values = ["x", "y", "z"]
    rng = random.Random(7)
    base = {k: rng.choice(values) for k in keys if rng.random() < 0.7}
    desired = {k: rng.choice(values) for k in keys if rng.random() < 0.7}
    live = {k: rng.choice(values) for k in keys if rng.random() < 0.7}
    policy = Policy(drift="restore", prune=True, override=True)

    first = plan(base, desired, live, policy)
    for _ in range(5):
        shuffled = [dict(rng.sample(list(m.items()), len(m))) for m in (base, desired, live)]
        assert plan(*shuffled, policy) == first
    step_keys = [s.key for s in first.steps]
    assert step_keys == sorted(set(base) | set(desired) | set(live))


def test_counts_sum_to_the_number_of_keys() -> None:
    """Plan.counts() names every state and adds up to one per flow key."""
    for _, result, by_key in _combined():
        counts = result.counts()
        assert set(counts) == {s.value for s in State}
        assert sum(counts.values()) == len(by_key)
        assert counts == {s.value: Counter(c["expect"]["state"] for c in by_key.values())[s.value] for s in State}


def test_changes_are_exactly_the_import_delete_adopt_and_advance_steps() -> None:
    """Plan.changes keeps the steps that change something, and only those, in order."""
    changing = {"import", "delete", "adopt", "advance"}
    for _, result, by_key in _combined():
        expected = [s.key for s in result.steps if by_key[s.key]["expect"]["action"] in changing]
        assert [s.key for s in result.changes] == expected


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_a_step_overwrites_live_only_when_it_imports_or_deletes_over_a_live_flow(case: dict[str, Any]) -> None:
    """overwrites_live is true for import or delete with live content, else false."""
    step = plan_case(case).steps[0]
    expected = case["expect"]["action"] in ("import", "delete") and case["live"] is not None
    assert step.overwrites_live is expected


def test_planning_does_not_mutate_its_inputs() -> None:
    """plan() reads read-only mappings and leaves them as they were."""
    a, b, c = FlowKey("a", "1"), FlowKey("b", "1"), FlowKey("c", "1")
    base = {a: "x", b: "x"}
    desired = {a: "y", c: "z"}
    live = {a: "x", b: "w", c: "z"}
    invalid = {FlowKey("d", "1"): "not JSON"}
    copies = [dict(m) for m in (base, desired, live, invalid)]

    result = plan(
        MappingProxyType(base),
        MappingProxyType(desired),
        MappingProxyType(live),
        Policy(drift="restore", prune=True),
        invalid=MappingProxyType(invalid),
        live_complete=False,
    )

    assert [base, desired, live, invalid] == copies
    assert [s.key.name for s in result.steps] == ["a", "b", "c", "d"]


VALUES = st.sampled_from([None, "x", "y", "z"])
POLICIES = st.builds(
    Policy,
    drift=st.sampled_from(["restore", "adopt", "report"]),
    prune=st.booleans(),
    override=st.booleans(),
)


def _step(a: str | None, d: str | None, l: str | None, policy: Policy, complete: bool) -> Step | None:  # noqa: E741
    result = plan(one(a), one(d), one(l), policy, live_complete=complete)
    return result.steps[0] if result.steps else None


@settings(max_examples=300, deadline=None)
@given(VALUES, VALUES, VALUES, POLICIES, st.booleans())
def test_a_flow_changed_on_both_sides_is_never_written_to_the_environment(a, d, l, policy, complete) -> None:  # noqa: E741
    """When git and the environment both moved, nothing is imported or deleted."""
    step = _step(a, d, l, policy, complete)
    if step is not None and l != a and d != a:
        assert step.action not in (Action.IMPORT, Action.DELETE)


@settings(max_examples=300, deadline=None)
@given(VALUES, VALUES, VALUES, POLICIES, st.booleans())
def test_nothing_is_imported_over_a_live_flow_when_override_is_off(a, d, l, policy, complete) -> None:  # noqa: E741
    """With override off, an existing live flow is never replaced."""
    step = _step(a, d, l, policy, complete)
    if step is not None and not policy.override and l is not None:
        assert step.action is not Action.IMPORT


@settings(max_examples=300, deadline=None)
@given(VALUES, VALUES, VALUES, POLICIES, st.booleans())
def test_nothing_is_deleted_when_prune_is_off(a, d, l, policy, complete) -> None:  # noqa: E741
    """With prune off, the planner never deletes a flow from the environment."""
    step = _step(a, d, l, policy, complete)
    if step is not None and not policy.prune:
        assert step.action is not Action.DELETE
