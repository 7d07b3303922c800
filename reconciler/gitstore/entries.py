"""What a tree entry at a flow's path is (pure over pygit2's objects): a flow's JSON, with or without its
sidecar folder, or something that is not a flow (a submodule, a symlink, a folder, an orphan folder)."""

from __future__ import annotations

import pygit2

from reconciler.sidecars import entry_id

_BLOB = pygit2.GIT_OBJECT_BLOB
_TREE = pygit2.GIT_OBJECT_TREE
# Tree entry modes of regular files (a symlink is 0o120000, a submodule 0o160000).
FILE_MODES = frozenset({0o100644, 0o100755})


def entry_kind(entry: pygit2.Object) -> str:
    return mode_kind(entry.filemode)


def mode_kind(mode: int) -> str:
    if mode == 0o160000:
        return "a submodule"
    if mode == 0o120000:
        return "a symlink"
    if mode == 0o040000:
        return "a folder"
    return "a file"


def _flow_entry(json_entry, side_entry) -> tuple[str | None, str | None]:
    """(entry id, None), (None, why the flow is unusable), or (None, None) when neither is there."""
    if json_entry is None:
        if side_entry is None:
            return None, None
        return None, "a sidecar folder without its flow: its JSON is missing; restore it, or delete the folder"
    if json_entry.type != _BLOB or json_entry.filemode not in FILE_MODES:
        return None, f"{entry_kind(json_entry)}, not a file; replace it with the flow's JSON"
    if side_entry is None:
        return str(json_entry.id), None
    if side_entry.type != _TREE:
        return None, f"its sidecar folder is {entry_kind(side_entry)}, not a folder; a flow's folder holds its sidecar files"
    return entry_id(str(json_entry.id), str(side_entry.id)), None
