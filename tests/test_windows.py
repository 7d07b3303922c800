"""Sync windows, table-driven on an injected clock: Argo CD's allow/deny/manual semantics,
time zones, and the days the clocks change (Europe/Amsterdam: 2026-03-29 02:00 CET → 03:00
CEST, 2026-10-25 03:00 CEST → 02:00 CET; America/New_York: 2026-03-08 and 2026-11-01).

Every expectation is worked out by hand from the calendar, never computed by the code under test.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reconciler.windows import Window, parse_duration, verdict

H = 3600
AMS, NYC = "Europe/Amsterdam", "America/New_York"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def allow(schedule: str, hours: float, tz: str = "UTC", manual: bool = False) -> Window:
    return Window("allow", schedule, hours * H, tz, manual)


def deny(schedule: str, hours: float, tz: str = "UTC", manual: bool = False) -> Window:
    return Window("deny", schedule, hours * H, tz, manual)


NIGHTLY = allow("0 22 * * *", 2)  # 22:00–24:00 UTC
OFFICE = deny("0 9 * * 1-5", 8, AMS)  # weekdays 09:00–17:00 Amsterdam time

CASES = [
    # (id, windows, now (UTC), allowed, a manual sync allowed, opens next (UTC) or None)
    ("no window: always", [], "2026-12-01T12:00", True, True, None),
    ("inside the allow", [NIGHTLY], "2026-12-01T23:00", True, True, None),
    ("outside the allow: opens tonight", [NIGHTLY], "2026-12-01T12:00", False, False, "2026-12-01T22:00"),
    ("the allow's last second is inside", [NIGHTLY], "2026-12-01T23:59:59", True, True, None),
    ("the allow closes at its end", [NIGHTLY], "2026-12-02T00:00", False, False, "2026-12-02T22:00"),
    ("outside a manual allow: --force may", [allow("0 22 * * *", 2, manual=True)], "2026-12-01T12:00", False, True,
     "2026-12-01T22:00"),
    ("two allows: inside either", [NIGHTLY, allow("0 6 * * *", 1)], "2026-12-01T06:30", True, True, None),
    ("two allows: the nearer opening", [NIGHTLY, allow("0 6 * * *", 1)], "2026-12-01T03:00", False, False,
     "2026-12-01T06:00"),
    # Amsterdam in winter is UTC+1: the office deny is 08:00–16:00 UTC.
    ("deny on a weekday (CET)", [OFFICE], "2026-12-01T10:00", False, False, "2026-12-01T16:00"),
    ("before the deny (CET)", [OFFICE], "2026-12-01T07:30", True, True, None),
    ("deny not on Saturday", [OFFICE], "2026-12-05T10:00", True, True, None),
    # Summer is UTC+2: the same deny is 07:00–15:00 UTC.
    ("deny on a weekday (CEST)", [OFFICE], "2026-07-01T07:30", False, False, "2026-07-01T15:00"),
    ("after the deny (CEST)", [OFFICE], "2026-07-01T15:30", True, True, None),
    ("a manual deny lets --force through", [deny("0 9 * * 1-5", 8, AMS, manual=True)], "2026-12-01T10:00", False,
     True, "2026-12-01T16:00"),
    ("deny beats an active allow", [allow("0 0 * * *", 24), OFFICE], "2026-12-01T10:00", False, False,
     "2026-12-01T16:00"),
    ("every active deny must allow manual", [deny("0 9 * * 1-5", 8, AMS, manual=True), deny("0 10 * * *", 1)],
     "2026-12-01T10:30", False, False, "2026-12-01T16:00"),
    ("a manual deny outside every allow needs a manual allow too", [NIGHTLY, deny("0 9 * * *", 8, manual=True)],
     "2026-12-01T10:00", False, False, "2026-12-01T22:00"),
    ("a manual deny and a manual allow", [allow("0 22 * * *", 2, manual=True), deny("0 9 * * *", 8, manual=True)],
     "2026-12-01T10:00", False, True, "2026-12-01T22:00"),
    ("a deny inside an allow: the allow resumes when it ends", [allow("0 8 * * *", 10), deny("0 9 * * *", 2)],
     "2026-12-01T10:00", False, False, "2026-12-01T11:00"),
    ("a deny covering every allow: it never opens", [allow("0 9 * * *", 1), deny("0 8 * * *", 3)],
     "2026-12-01T08:30", False, False, None),
    # Spring forward in Amsterdam: the day before, 09:00 local is 08:00 UTC; that Sunday 07:00 UTC.
    ("allow at 09:00 local across the spring change", [allow("0 9 * * *", 1, AMS)], "2026-03-28T20:00", False, False,
     "2026-03-29T07:00"),
    ("09:30 CEST on the change day is inside", [allow("0 9 * * *", 1, AMS)], "2026-03-29T07:30", True, True, None),
    ("08:30 CET the day before is outside", [allow("0 9 * * *", 1, AMS)], "2026-03-28T07:30", False, False,
     "2026-03-28T08:00"),
    # Fall back: a 6 h deny from midnight CEST (22:00 UTC) lasts 6 h of real time, to 04:00 UTC (05:00 CET).
    ("a deny across the autumn change lasts its duration", [deny("0 0 * * *", 6, AMS)], "2026-10-25T03:30", False,
     False, "2026-10-25T04:00"),
    ("and is over after it", [deny("0 0 * * *", 6, AMS)], "2026-10-25T04:00", True, True, None),
    # New York, UTC-5 in winter, UTC-4 in summer; a nightly allow at 01:00 local.
    ("New York before its spring change", [allow("0 1 * * *", 1, NYC)], "2026-03-07T12:00", False, False,
     "2026-03-08T06:00"),
    ("New York after it", [allow("0 1 * * *", 1, NYC)], "2026-03-08T12:00", False, False, "2026-03-09T05:00"),
    ("New York after its autumn change", [allow("0 1 * * *", 1, NYC)], "2026-11-01T12:00", False, False,
     "2026-11-02T06:00"),
]


@pytest.mark.parametrize("windows,now,allowed,manual,opens", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdict(windows, now, allowed, manual, opens) -> None:
    v = verdict(windows, utc(now))
    assert (v.allowed, v.manual_allowed) == (allowed, manual)
    assert v.opens == (utc(opens) if opens else None)
    assert bool(v.why) == (not allowed)


def test_the_reason_names_the_window_that_keeps_it_closed() -> None:
    named = Window("deny", "0 9 * * 1-5", 8 * H, AMS, name="office hours")
    assert "office hours" in verdict([named], utc("2026-12-01T10:00")).why
    assert "outside every allow window" in verdict([NIGHTLY], utc("2026-12-01T12:00")).why


def test_a_schedule_that_never_fires_is_refused_when_the_config_loads() -> None:
    """30 February is valid cron syntax but never comes: refused, not a window that silently never opens."""
    with pytest.raises(ValueError, match="never"):
        allow("0 0 30 2 *", 1)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verdict([NIGHTLY], datetime(2026, 12, 1, 12))


@pytest.mark.parametrize("text,seconds", [("1h30m", 5400), ("90m", 5400), ("45s", 45), ("2d", 172800), (60, 60),
                                          ("1h 30m", 5400)])
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "-5m", 0, -1, True, "1h and then some", "5"])
def test_bad_durations_are_refused(text) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "sometimes"}, "kind"),
    ({"schedule": "0 9 * *"}, "five-field"),
    ({"schedule": "0 9 * * * *"}, "five-field"),
    ({"schedule": "every morning"}, "five-field"),
    ({"timezone": "Mars/Olympus_Mons"}, "Mars"),
])
def test_bad_windows_are_refused(kwargs, match) -> None:
    args = {"kind": "allow", "schedule": "0 9 * * *", "duration": 3600.0, "timezone": "UTC"} | kwargs
    with pytest.raises(Exception, match=match):
        Window(**args)
