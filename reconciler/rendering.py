"""How outcomes and reviews read: the one place for verbs, the counts line and the tables (pure).

The CLI prints these lines (stdout for results, stderr for problems); the
merge-request comment is :func:`review_markdown`. Nothing here decides
anything: it renders :class:`~reconciler.outcome.Outcome` and
:class:`~reconciler.review.Review` values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from reconciler.outcome import Outcome
from reconciler.plan import Action

if TYPE_CHECKING:  # only `plan --against` renders reviews; the other commands need not import it
    from reconciler.review import Review

__all__ = ["VERBS", "counts_line", "outcome_lines", "steps_lines", "trailer_lines", "review_text", "review_markdown"]

VERBS = {
    Action.NONE: "none",
    Action.IMPORT: "import",
    Action.DELETE: "delete",
    Action.ADOPT: "adopt",
    Action.ADVANCE: "agree",
    Action.REPORT: "drifted",
    Action.BLOCKED: "blocked",
    Action.CONFLICT: "CONFLICT",
    Action.INVALID: "INVALID",
    Action.UNKNOWN: "unknown",
}


def counts_line(c: Mapping[str, int]) -> str:
    """``in sync 3 · pending 1 · drifted 0 · conflict 0 · invalid 0`` (``· quarantined 1``, ``· suspended 2``
    when there are any)."""
    line = (f"in sync {c['in_sync']} · pending {c['pending']} · drifted {c['drifted']} · "
            f"conflict {c['conflict']} · invalid {c['invalid']}")
    extra = [f"{state} {c[state]}" for state in ("quarantined", "suspended") if c.get(state)]
    return " · ".join([line, *extra])


Lines = tuple[list[str], list[str]]  # (for stdout, for stderr)


def outcome_lines(out: Outcome, *, quiet: bool = False) -> Lines:
    """A plan or a sync: the counts line, one line per step (with ✓/✗ once carried out), what was committed."""
    mode = "plan" if out.dry_run else "sync"
    lines = [f"{out.env} ({mode}): {counts_line(out.states)}"]
    errors: list[str] = []
    if out.stale:
        lines.append("  (another process is reconciling this environment right now: this plan may already be "
                     "out of date)")
    done = {s.key for s in out.done}
    for s in out.plan.notable:  # the others are in sync with nothing to do: no line (10,000 steps: ~30 ms)
        if s.action in (Action.NONE, Action.CONFLICT, Action.INVALID):
            continue
        ok = s.key in done
        if quiet and (out.dry_run or ok):
            continue
        mark = ""
        if not out.dry_run and s.action in (Action.IMPORT, Action.DELETE, Action.ADOPT, Action.ADVANCE):
            mark = " ✓" if ok else " ✗ " + out.failed.get(s.key, "not done")
        lines.append(f"  {VERBS[s.action]:<8} {s.key}  {s.reason}{mark}")
    if quiet:
        n = sum(1 for s in out.plan.changes if s.key in done)
        if n:
            lines.append(f"  {n} flow{'s' * (n != 1)} reconciled")
    if out.held:
        lines.append(f"  held back, nothing changed: {out.held}")
    if out.refused:
        errors.append(f"  ! a sync would refuse this plan: {out.refused}")
    if out.drift_commit:
        lines.append(f"  live versions saved to drift/{out.env} as {out.drift_commit[:12]}")
    if out.commit:
        lines.append(f"  committed to the branch as {out.commit[:12]}")
    more, more_errors = trailer_lines(out)
    return lines + more, errors + more_errors


def steps_lines(out: Outcome, only: set[Action], verb: str) -> list[str]:
    """One line per step of these actions: ``exported`` or ``not exported: why``."""
    done = {s.key for s in out.done}
    lines = []
    for s in (out.plan.steps if Action.NONE in only else out.plan.notable):
        if s.action in only:
            status = verb if s.key in done else f"not {verb}: {out.failed.get(s.key, '')}"
            lines.append(f"  {status:<10} {s.key}  {s.reason}")
    return lines


def trailer_lines(out: Outcome) -> Lines:
    """Conflicts and failures (stdout), problems and invalid flows (stderr)."""
    notable = out.plan.notable  # every step whose action is not NONE, in order (not a walk over every flow)
    lines = [f"  CONFLICT {s.key}: {s.reason}" for s in notable if s.action == Action.CONFLICT]
    stepped = {st.key for st in notable if st.action != Action.NONE}
    lines += [f"  ✗ {key}: {why}" for key, why in out.failed.items() if key not in stepped]
    errors = [f"  ! {p}" for p in out.problems]
    named = {p.flow for p in out.problems}
    errors += [f"  ! {s.key}: {s.reason}" for s in notable
               if s.action == Action.INVALID and str(s.key) not in named]
    return lines, errors


def _headline(r: Review) -> str:
    tip = r.tip[:12] if r.tip else "(no branch yet)"
    return f"{r.env}: merging {r.against} ({r.against_commit[:12]}) into {r.branch} ({tip})"


def review_text(r: Review) -> list[str]:
    # the semantic diff's modules here: only reviews render diffs; the other commands need not import them
    from reconciler.semdiff import render_text

    lines = [_headline(r)]
    if r.conflicts:
        lines.append("  the merge conflicts; resolve these files first:")
        lines += [f"    {p}" for p in r.conflicts]
        lines += [f"  {line}" for line in _forms_hint(r)]
        return lines
    assert r.plan is not None
    lines.append(f"  {counts_line(r.plan.counts())}")
    if not r.flows:
        lines.append("  nothing would change")
    for f in r.flows:
        action = VERBS[f.step.action] if f.step else "none"
        reason = f.step.reason if f.step else "in sync"
        lines.append(f"  {action:<8} {f.key}  {reason}  [git: {f.git}]")
        if f.git != "unchanged":
            lines += [f"      {line}" for line in render_text(f.diff)]
        if f.note:
            lines.append(f"      ({f.note})")
    lines += [f"  ! {p}" for p in r.problems]
    return lines


def _cell(text: str) -> str:
    import html  # here: only markdown tables need it (its entities table costs a command's start ~2 ms)

    return html.escape(text).replace("|", "&#124;").replace("\n", " ")


def _fence(body: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def review_markdown(r: Review) -> str:
    """A merge-request comment: a table of flows and a collapsible semantic diff per flow."""
    from reconciler.semdiff import summary

    tip = f"`{r.tip[:12]}`" if r.tip else "(no branch yet)"
    out = [f"### reconciler plan {_cell(r.env)} --against {_cell(r.against)}", "",
           f"Merging <code>{_cell(r.against)}</code> (`{r.against_commit[:12]}`) into "
           f"<code>{_cell(r.branch)}</code> ({tip}) would do this to **{_cell(r.env)}**:", ""]
    if r.conflicts:
        out += [":x: **The merge conflicts.** Resolve these files first:", ""]
        out += [f"- `{_cell(p)}`" for p in r.conflicts]
        hint = _forms_hint(r)
        if hint:
            out += ["", *(_cell(line) for line in hint)]
        return "\n".join(out) + "\n"
    assert r.plan is not None
    c = r.plan.counts()
    if not r.flows:
        out.append(":white_check_mark: Nothing would change in the environment.")
    else:
        verdict = ":x: Some flows are invalid." if r.errors else ":arrow_right: Merging changes the environment as below."
        out += [verdict, "", "| Flow | In git | Action | Why |", "|---|---|---|---|"]
        for f in r.flows:
            action = VERBS[f.step.action] if f.step else "none"
            reason = f.step.reason if f.step else "in sync"
            out.append(f"| <code>{_cell(str(f.key))}</code> | {f.git} | **{action}** | {_cell(reason)} |")
        out.append("")
        for f in r.flows:
            if f.git == "unchanged":
                continue
            out += [f"<details><summary><code>{_cell(str(f.key))}</code>: {_cell(summary(f.diff))}</summary>", "",
                    *_flow_markdown(f.diff, f.note), "</details>", ""]
    out.append(f"<sub>{counts_line(c)}</sub>")
    if r.problems:
        out += ["", "**Problems**", ""] + [f"- `{_cell(str(p))}`" for p in r.problems]
    return "\n".join(out) + "\n"


def _fenced(lines: list[str], lang: str = "diff") -> list[str]:
    body = "\n".join(lines)
    fence = _fence(body)
    return [f"{fence}{lang}", body, fence, ""]


def _flow_markdown(items, note: str) -> list[str]:
    """One flow's diff in a comment: the fields (old and new on their own lines), each code change as a
    unified diff of its file, the layout-only changes folded apart."""
    from reconciler.codediff import unified
    from reconciler.semdiff import render_item, render_value

    lines: list[str] = []
    for i in items:
        if i.layout:
            continue
        if i.op == "change" and i.code is None:
            where = i.pointer + (f" ({i.node})" if i.node else "")
            lines += [f"- {where}: {render_value(i.old)}", f"+ {where}: {render_value(i.new)}"]
        else:
            lines.append(render_item(i))
    if note:
        lines.append(f"# {note}")
    out = _fenced(lines) if lines else []
    for i in items:
        if i.code is not None and not i.layout:
            where = i.code or i.pointer
            out += [f"<code>{_cell(where)}</code>" + (f" ({_cell(str(i.node))})" if i.node else ""), "",
                    *_fenced(unified(i.old, i.new, where))]
    layout = [render_item(i) for i in items if i.layout]
    if layout:
        n = len(layout)
        out += [f"<details><summary>{n} layout-only change{'s' * (n != 1)} (position, size)</summary>", "",
                *_fenced(layout), "</details>", ""]
    return out


def _forms_hint(r: Review) -> list[str]:
    """What to do when a conflict comes from one branch holding flows split and the other inline."""
    if not r.forms:
        return []
    return [f"{len(r.forms)} of them store a flow in the split form on one side and as one file on the other "
            f"({', '.join(r.forms[:5])}): run `reconciler migrate` for the environment whose branch holds the "
            "single-file form (its commit changes the form only), then merge again"]
