"""The directory driver: an environment is a folder of ``*.json`` flow exports.

It is the embedded default and the simplest real integration (a shared folder
another tool watches). Identity comes from the documents, not the file names:
users may drop ``my-export.json`` into the folder. New flows are written as
``<name>@<version>.json`` (names encoded as in git).

Guarantees:

- writes are atomic (temporary files in the same folder, synced to disk, then
  renamed; a crash leaves either the old or the new file, never half of one;
  the next run sorts out a crashed write's hidden files before it reads the
  folder: see :mod:`.recovery`) and never leave the folder: file names come
  from :mod:`reconciler.names` and every path is checked to stay inside it;
- a new file never replaces an existing one (hard link, which fails if the
  name is taken);
- before overwriting or deleting a file the driver re-reads it and compares
  its canonical form with what the plan saw, so an edit made during a sync is
  never clobbered;
- a file being replaced never disappears: where the file system can swap two
  names atomically (Linux ``renameat2(RENAME_EXCHANGE)``), the new version is
  swapped in and the old one checked afterwards (swapped back if it was a save
  made meanwhile); elsewhere the old file is moved aside and the new one
  hard-linked in, and the name is absent for that moment;
- a file that cannot be read or parsed is reported (path and reason) and left
  as it is; so are symlinks, sub-folders and special files.

Modules: :mod:`.settings` (the environment's settings), :mod:`.scan` (reading
the folder), :mod:`.write` and :mod:`.recovery` (the crash-safe write protocol
and the sorting out of a crashed one's files), :mod:`.fs` (the file-system
calls, injectable), :mod:`.driver` (the driver port on top of them).
"""

from typing import TYPE_CHECKING

from reconciler.lazy import lazy_attributes

if TYPE_CHECKING:
    from .driver import DirectoryDriver
    from .fs import FileSystem
    from .settings import SETTINGS, DirectoryEnvironment

__all__ = ["DirectoryDriver", "DirectoryEnvironment", "FileSystem", "SETTINGS"]

# Imported when first named (PEP 562): a command whose config comes from its cache (reconciler.configcache)
# builds the driver from a view of the settings and imports no pydantic settings model.
_WHERE = {"DirectoryDriver": "driver", "FileSystem": "fs", "SETTINGS": "settings", "DirectoryEnvironment": "settings"}


__getattr__ = lazy_attributes(__name__, _WHERE)
