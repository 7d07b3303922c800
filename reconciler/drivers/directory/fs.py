"""The file-system calls of the directory driver, behind one small class: the seam tests replace.

Every read, write, rename, link and sync the driver makes on its folder goes
through one :class:`FileSystem` (``DirectoryDriver(path, identity, rules,
fs=...)``, the real one by default). A test injects a subclass that refuses a
call (``exchange`` with EINVAL, as on NFS; ``link`` with ENOSPC) or runs a hook
after one (a user's save landing mid-write) instead of patching the driver's
internals. Errors are ``OSError`` as the ``os`` module raises them.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ContextManager

__all__ = ["FileSystem", "MAX_FILE_BYTES"]

# Flow exports are small; a bigger file is refused rather than read into memory.
MAX_FILE_BYTES = 64 * 1024 * 1024


class FileSystem:
    """The real file system (Linux; elsewhere ``exchange`` raises ENOSYS); subclass it to test."""

    def scandir(self, path: str | Path) -> ContextManager[Iterator[os.DirEntry[str]]]:
        return os.scandir(path)

    def stat(self, path: str | Path) -> os.stat_result:
        """Following symbolic links (the environment folder itself may be one)."""
        return os.stat(path)

    def lstat(self, path: str | Path) -> os.stat_result:
        return os.lstat(path)

    def lstat_each(self, folder: str | Path, names: list[str]) -> list[os.stat_result | OSError]:
        """``lstat`` of each ``folder/name`` (the OSError in place of one that failed), relative to one
        open descriptor of the folder where the platform can (``fstatat``: the kernel walks one name,
        not the whole path again; 10,000 files: ~30 ms instead of ~50)."""
        if os.stat not in os.supports_dir_fd:
            return [_lstat_or_error(self.lstat, os.path.join(folder, name)) for name in names]
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            one = functools.partial(os.stat, dir_fd=fd, follow_symlinks=False)
            try:
                return list(map(one, names))
            except OSError:  # one of them failed: each on its own
                return [_lstat_or_error(one, name) for name in names]
        finally:
            os.close(fd)

    def lexists(self, path: str | Path) -> bool:
        return os.path.lexists(path)

    def read(self, path: str | Path) -> bytes:
        """A regular file's bytes (at most ``MAX_FILE_BYTES + 1``), never through a symbolic link."""
        # O_NONBLOCK: a file swapped for a FIFO after the scan must not hang us.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(0, "not a regular file")
            # Read until the end (or one byte past the limit), the first read as large as fstat says.
            chunks: list[bytes] = []
            left = MAX_FILE_BYTES + 1
            ask = min(st.st_size + 1, left)
            while left > 0:
                chunk = os.read(fd, min(ask, left))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
                ask = 1 << 20
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            os.close(fd)

    def write_new(self, path: str | Path, data: bytes, *, sync: bool) -> None:
        """Create ``path`` (never an existing name, never through a link) holding ``data``, mode 0644;
        fsync'ed when ``sync``. A file left half-written by an error is removed."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self.unlink(path, missing_ok=True)
            raise

    def rename(self, src: str | Path, dst: str | Path) -> None:
        os.rename(src, dst)

    def link(self, src: str | Path, dst: str | Path) -> None:
        """A second name for ``src``; fails (FileExistsError) if ``dst`` is taken: never replaces a file."""
        os.link(src, dst)

    def rename_new(self, src: str | Path, dst: str | Path) -> None:
        """Give ``src`` the name ``dst`` and drop its old name; fails (FileExistsError) if ``dst`` is
        taken: never replaces a file. One atomic step where the file system can (Linux
        ``renameat2(..., RENAME_NOREPLACE)``), else a hard link and an unlink of ``src`` (a crash
        between them leaves a second name that a recovery drops)."""
        renameat2 = _renameat2() if self._no_replace else None
        if renameat2 is not None:
            import ctypes

            at_fdcwd = -100
            if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise OSError(err, os.strerror(err), str(src), None, str(dst))
            self._no_replace = False  # this file system cannot: link and unlink from now on
        self.link(src, dst)
        self.unlink(src, missing_ok=True)

    _no_replace = True  # until renameat2(RENAME_NOREPLACE) says otherwise

    def unlink(self, path: str | Path, *, missing_ok: bool = False) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def exchange(self, a: str | Path, b: str | Path) -> None:
        """Swap two names atomically: Linux ``renameat2(..., RENAME_EXCHANGE)`` (glibc >= 2.28).
        Raises OSError; ENOSYS where there is no such call, EINVAL where the file system lacks it."""
        renameat2 = _renameat2()
        if renameat2 is None:
            raise OSError(errno.ENOSYS, "renameat2 is not available")
        import ctypes

        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(a), None, str(b))

    def fsync_dir(self, path: str | Path) -> None:
        """Make the folder's entries durable; best effort (some file systems cannot)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def syncfs(self, path: str | Path) -> None:
        """Flush the data of every file written so far on path's file system (syncfs, else sync)."""
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(path, os.O_RDONLY)
            try:
                if libc.syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        except (OSError, AttributeError):
            pass
        os.sync()


_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2, looked up once (None where there is none)."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def _lstat_or_error(call: Any, path: str) -> os.stat_result | OSError:
    try:
        return call(path)
    except OSError as exc:
        return exc
