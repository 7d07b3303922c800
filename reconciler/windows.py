"""Sync windows (Argo CD's semantics): when an environment may be changed (pure; time is passed in).

A window is a cron ``schedule`` (standard five fields, by croniter, in its IANA
``timezone``, daylight-saving changes included) opening it for ``duration``:

- no window: always allowed;
- any ``allow`` window: only while one is active;
- an active ``deny`` window beats every allow;
- ``manual = true`` on the windows that keep it closed lets a manual sync
  (``reconciler sync --force``, the API's sync) through: every active deny must
  allow it, and outside the allows one of them must.

Outside a window the service still reads and plans (the status says when it
opens next) and applies when it opens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo


if TYPE_CHECKING:
    from croniter import croniter


def _croniter() -> "type[croniter]":
    """croniter (and dateutil under it) only when a window is used: most configs have none, and every
    command that loads a config would pay for the import."""
    from croniter import croniter

    return croniter

__all__ = ["Window", "Verdict", "verdict", "parse_duration"]

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str | int | float) -> float:
    """Seconds of ``"1h30m"``, ``"90m"``, ``"45s"``, ``"2d"`` or a number of seconds."""
    if isinstance(text, bool):
        raise ValueError("a duration such as '1h30m' or a number of seconds")
    if isinstance(text, (int, float)):
        if text <= 0:
            raise ValueError("must be positive")
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", text.strip().lower())
    if not parts or re.sub(r"\s|(\d+(?:\.\d+)?)\s*[dhms]", "", text.strip().lower()):
        raise ValueError(f"{text!r} is not a duration such as '1h30m', '90m' or '45s'")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


@dataclass(frozen=True)
class Window:
    kind: str  # allow | deny
    schedule: str  # cron, five fields
    duration: float  # seconds
    timezone: str = "UTC"
    manual: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("allow", "deny"):
            raise ValueError("kind must be 'allow' or 'deny'")
        if not _croniter().is_valid(self.schedule) or len(self.schedule.split()) != 5:
            raise ValueError(f"schedule {self.schedule!r} is not a five-field cron expression")
        try:
            ZoneInfo(self.timezone)
        except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone (such as Europe/Amsterdam)") \
                from exc
        from croniter import CroniterBadDateError

        try:
            _croniter()(self.schedule, datetime(2026, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
        except CroniterBadDateError as exc:
            raise ValueError(f"schedule {self.schedule!r} never fires (no such date)") from exc

    @property
    def label(self) -> str:
        return self.name or f"{self.kind} {self.schedule!r} for {_human(self.duration)} ({self.timezone})"

    def active_since(self, now: datetime) -> datetime | None:
        """When the occurrence that covers ``now`` opened (None: not active)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        # The last opening at or before now (croniter's get_prev excludes the start itself).
        start = _croniter()(self.schedule, local + timedelta(seconds=1)).get_prev(datetime)
        return start if self.closes(start) > now else None

    def closes(self, opened: datetime) -> datetime:
        """When an occurrence opened at ``opened`` closes: ``duration`` of elapsed time (in UTC, so a
        window across a daylight-saving change lasts as long as any other)."""
        return opened.astimezone(timezone.utc) + timedelta(seconds=self.duration)

    def next_opening(self, now: datetime) -> datetime:
        return _croniter()(self.schedule, now.astimezone(ZoneInfo(self.timezone))).get_next(datetime)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    manual_allowed: bool  # may a manual sync run now anyway?
    why: str  # empty when allowed
    opens: datetime | None = None  # when it is allowed next (None: allowed now, or never within a year)


def verdict(windows: Sequence[Window], now: datetime, *, horizon: timedelta = timedelta(days=366)) -> Verdict:
    """May the environment be changed at ``now`` (timezone-aware)?"""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    allowed, deny, allows, active_allows = _state(windows, now)
    if allowed:
        return Verdict(True, True, "")
    if deny:
        why = "inside the deny window " + ", ".join(w.label for w in deny)
        manual = all(w.manual for w in deny) and (not allows or bool(active_allows) or any(w.manual for w in allows))
    else:
        why = "outside every allow window (" + ", ".join(w.label for w in allows) + ")"
        manual = any(w.manual for w in allows)
    return Verdict(False, manual, why, _next_allowed(windows, now, horizon))


def _state(windows: Sequence[Window], now: datetime):
    deny = [w for w in windows if w.kind == "deny" and w.active_since(now) is not None]
    allows = [w for w in windows if w.kind == "allow"]
    active_allows = [w for w in allows if w.active_since(now) is not None]
    return (not deny and (not allows or bool(active_allows))), deny, allows, active_allows


def _next_allowed(windows: Sequence[Window], now: datetime, horizon: timedelta) -> datetime | None:
    """The first moment after ``now`` at which :func:`verdict` allows: a deny closing or an allow opening."""
    candidates: set[datetime] = set()
    for w in windows:
        since = w.active_since(now)
        if w.kind == "deny" and since is not None:
            candidates.add(w.closes(since))
        t = now
        for _ in range(64):  # the next openings, and the ends of the next denies
            t = w.next_opening(t)
            if t - now > horizon:
                break
            candidates.add(t.astimezone(timezone.utc))
            if w.kind == "deny":
                candidates.add(w.closes(t))
    for t in sorted(c for c in candidates if c > now):
        if _state(windows, t)[0]:
            return t
    return None


def _human(seconds: float) -> str:
    out, left = [], int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            out.append(f"{left // size}{unit}")
            left %= size
    return "".join(out) or "0s"
