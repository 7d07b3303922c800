"""The flink-sql driver (see the package's docstring): the folder's scripts behind the driver port.

It implements :class:`~reconciler.drivers.Driver`, :class:`~reconciler.drivers.Rendering`
(flows are rendered to SQL, never read back), :class:`~reconciler.drivers.Recoverable`
and :class:`~reconciler.drivers.Watchable`.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler.canonical import Rules, blob_id, parse_json
from reconciler.drivers import Change, LiveSet, Progress
from reconciler.drivers._common import DriverBase, Ticker
from reconciler.drivers.directory.fs import MAX_FILE_BYTES, FileSystem
from reconciler.drivers.directory.hidden import Hidden
from reconciler.drivers.directory.recovery import crashed, remove_leftovers
from reconciler.drivers.directory.scan import ensure_root
from reconciler.drivers.directory.write import Writer
from reconciler.errors import Problem, RetryableError
from reconciler.flows import CanonicalFlow, FlowKey, Identity

from . import codec

__all__ = ["FlinkSqlDriver", "ONE_WAY"]

ONE_WAY = ("SQL cannot be imported: a flink-sql environment holds Flink SQL rendered from event-processing flows. "
           "Change the flow's JSON in git (or export it from an environment that holds the flows themselves)")


class FlinkSqlDriver(DriverBase):
    """A folder of ``<name>@<version>.sql`` scripts rendered from event-processing flows."""

    one_way = ONE_WAY

    def __init__(self, path: str | Path, *, fs: FileSystem | None = None):
        self.root = Path(path)
        self.fs = fs if fs is not None else FileSystem()
        self.location = str(self.root)
        self._hider = codec.Hider({})
        self._rendered: dict[str, bytes] = {}  # compared form's id -> the script to write (secrets in)
        self._files: dict[FlowKey, str] = {}
        self._last: dict[FlowKey, CanonicalFlow] = {}
        self._write = Writer(self.root, self.fs, Identity(), Rules(), set(), suffix=codec.SUFFIX,
                             decode=self._current)
        self._recovered = False

    # -- Rendering --------------------------------------------------------------------

    def prepare(self, secrets: Mapping[str, str]) -> None:
        self._hider = codec.Hider(secrets)

    def present(self, flow: CanonicalFlow, where: str) -> CanonicalFlow | Problem:
        from reconciler.eventproc import KIND, RenderRefused, render

        assert flow.data is not None
        doc = parse_json(flow.data)
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            return Problem(where, f"a flink-sql environment runs event-processing flows only (\"kind\": \"{KIND}\"); "
                                  "this flow belongs to another environment's branch", "/kind", str(flow.key))
        try:
            sql = render(doc, params={}, secrets={})  # placeholders were rendered with the environment's values
        except RenderRefused as exc:
            first = exc.issues[0]
            more = f" (and {len(exc.issues) - 1} more)" if len(exc.issues) > 1 else ""
            return Problem(where, f"cannot be rendered to Flink SQL: {first.message}{more}", first.pointer,
                           str(flow.key))
        data = sql.encode("utf-8")
        got = codec.view(flow.key, sql, self._hider)
        self._rendered[got.oid] = data
        return got

    # -- Watchable ----------------------------------------------------------------------

    def watch_paths(self) -> tuple[Path, ...]:
        return (self.root,)

    def is_flow_file(self, path: Path) -> bool:
        name = Path(path).name
        return name.endswith(codec.SUFFIX) and not name.startswith(".")

    def watched_by(self, changed) -> None:
        return None  # every export reads the folder (a few scripts, not thousands of flows)

    def trust_watch(self, trust: bool = True) -> None:
        return None

    # -- Driver -------------------------------------------------------------------------

    def export(self, progress: Progress | None = None) -> LiveSet:
        ensure_root(self.fs, self.root)
        flows: dict[FlowKey, CanonicalFlow] = {}
        where: dict[FlowKey, str] = {}
        problems: list[Problem] = []
        complete = True
        try:
            with self.fs.scandir(self.root) as it:
                entries = sorted((e.name for e in it if not e.name.startswith(".")))
        except OSError as exc:
            raise RetryableError(f"cannot list {self.root}: {exc.strerror}") from exc
        tick = Ticker(progress, len(entries))
        for i, name in enumerate(entries, 1):
            tick(i)
            path = str(self.root / name)
            if name.endswith(".json"):
                problems.append(Problem(path, "a JSON file in a flink-sql environment, which holds the Flink SQL "
                                              "rendered from the branch's flows: it is not read; commit flows to "
                                              "the branch, and remove this file"))
                continue
            if not name.endswith(codec.SUFFIX):
                continue
            key = codec.key_of(name)
            if key is None:
                problems.append(Problem(path, "not named <name>@<version>.sql as the reconciler writes scripts; "
                                              "it is not read: rename or remove it"))
                continue
            got = self._read(path, key)
            if isinstance(got, Problem):
                problems.append(got)
                complete = False
                continue
            flows[key], where[key] = got, path
        self._files, self._last = dict(where), flows
        return LiveSet(flows, where, tuple(problems), {}, complete)

    def _read(self, path: str, key: FlowKey) -> CanonicalFlow | Problem:
        try:
            st = self.fs.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                return Problem(path, "not a regular file (a link or a folder): left as it is", flow=str(key))
            raw = self.fs.read(path)
        except OSError as exc:
            return Problem(path, f"cannot be read: {exc.strerror or exc}", flow=str(key))
        if len(raw) > MAX_FILE_BYTES:
            return Problem(path, f"larger than {MAX_FILE_BYTES} bytes: not a script the reconciler wrote",
                           flow=str(key))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Problem(path, f"not UTF-8 text (byte {exc.start}): not a script the reconciler wrote",
                           flow=str(key))
        said = codec.header_id(text)
        if said is not None and said != f"{key.name}@{key.version}":
            return Problem(path, f"its header says it is {said} but its name says {key}: a copy kept during a write "
                                 "(an edit made while the reconciler wrote) or a misnamed file; compare it with "
                                 f"{codec.file_name(key)}, then remove it", flow=str(key))
        return codec.view(key, text, self._hider)

    def _current(self, path: str, raw: bytes) -> str:
        """The compared form's id of a file's bytes (the write protocol's check of what it replaces)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid"
        name = Path(path).name
        hidden = Hidden.decode(name)  # the protocol's own copies (.aside, .swap) name the script they belong to
        key = codec.key_of(hidden.name if hidden is not None else name)
        if key is None and (said := codec.header_id(text)) is not None and "@" in said:
            name_, _, version = said.rpartition("@")
            key = FlowKey(name_, version)
        return "invalid" if key is None else codec.view(key, text, self._hider).oid

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """Write the scripts of these versions (rendered by :meth:`present`), or delete scripts."""
        ensure_root(self.fs, self.root)
        remove_leftovers(self._write)
        if not self._files and not self._last:
            self.export()
        failed: dict[FlowKey, str] = {}
        scripts: list[Change] = []
        for change in changes:
            if change.data is None:
                scripts.append(change)
                continue
            sql = self._rendered.get(blob_id(change.data))
            if sql is None:
                failed[change.key] = "its SQL was not rendered by this process; the next run renders it again"
            else:
                scripts.append(Change(change.key, sql, change.expect))
        failed.update(self._write.apply(scripts, self._files, progress))
        return failed

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        path = self._files.get(key)
        if path is None:
            return None
        got = self._read(path, key)
        return got if isinstance(got, CanonicalFlow) else None

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        out: dict[FlowKey, str | None] = {}
        for key in keys:
            path = self._files.get(key) or str(self.root / codec.file_name(key))
            try:
                raw = self.fs.read(path)
            except FileNotFoundError:
                out[key] = None
                continue
            except OSError:
                out[key] = "unreadable"
                continue
            out[key] = self._current(path, raw)
        return out

    def recover(self) -> None:
        if self._recovered:
            return
        self._recovered = True
        try:
            found = crashed(self.fs, self.root)
        except OSError:
            return  # the export reports an unreadable folder
        if found:
            remove_leftovers(self._write)


