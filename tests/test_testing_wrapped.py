"""reconciler.testing.Wrapped forwards exactly the capabilities of the driver it wraps (the engine tells
them apart with isinstance): a real directory driver and a real flink-sql driver, wrapped."""

from __future__ import annotations

from pathlib import Path

from reconciler.canonical import Rules
from reconciler.drivers import HealthChecked, Indexed, Remembering, Rendering, Watchable, WriteOnly
from reconciler.drivers.directory import DirectoryDriver
from reconciler.flows import Identity
from reconciler.testing import Wrapped


class Hooked(Wrapped):
    def __init__(self, inner, note: list[str]):
        super().__init__(inner)
        self.note = note

    def watch_paths(self):
        self.note.append("hooked")
        return super().watch_paths()


def test_a_wrapped_directory_driver_watches_and_indexes_like_it_and_claims_nothing_else(tmp_path: Path) -> None:
    inner = DirectoryDriver(tmp_path, Identity(), Rules())
    w = Wrapped(inner)
    assert isinstance(w, Watchable) and isinstance(w, Indexed)
    assert not isinstance(w, (HealthChecked, Remembering, Rendering, WriteOnly))
    assert w.watch_paths() == inner.watch_paths() and w.is_flow_file(tmp_path / "a.json")
    note: list[str] = []
    h = Hooked(inner, note)
    assert type(h).__name__ == "Hooked" and isinstance(h, Hooked) and isinstance(h, Watchable)
    assert h.watch_paths() == inner.watch_paths() and note == ["hooked"]  # the subclass's override wins


def test_a_wrapped_driver_without_capabilities_has_none(tmp_path: Path) -> None:
    class Plain:
        location = "nowhere"

        def export(self, progress=None):
            raise AssertionError

        def apply(self, changes, progress=None):
            raise AssertionError

        def load(self, key):
            return None

        def reread(self, keys):
            return {}

        def close(self):
            pass

    w = Wrapped(Plain())
    assert not isinstance(w, (Watchable, Indexed, HealthChecked, Remembering, Rendering, WriteOnly))


def test_a_wrapped_flink_sql_driver_still_renders(tmp_path: Path) -> None:
    from reconciler.drivers.flink_sql.driver import FlinkSqlDriver

    inner = FlinkSqlDriver(tmp_path)
    w = Wrapped(inner)
    assert isinstance(w, Rendering) and w.one_way == inner.one_way
    assert not isinstance(w, (HealthChecked, Remembering, WriteOnly))
