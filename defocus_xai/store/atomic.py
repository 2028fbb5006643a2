"""Atomic file writes and the lock that makes one writer per output.

Every file of a store is written to a temporary file ``.<name>.<pid>.tmp`` beside it, flushed and renamed
(:func:`atomic_file`); the writer removes its temporary file on any failure, and a full disk is reported
as "no space left" with the file's name. :func:`output_lock` holds an exclusive ``flock`` on the output
of an export or a merge, so that a second writer fails at once instead of mixing or deleting files.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_file", "output_lock", "OutputLocked", "LOCK_NAME"]

LOCK_NAME = ".lock"
"""The lock file inside a store folder (a ``.npz`` target uses ``.<name>.lock`` beside it)."""


class OutputLocked(OSError):
    """Another process writes into the same output (the message names the output and the holder's pid)."""


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, else removed.

    Raises
    ------
    OSError
        ``ENOSPC`` as "``<path>``: no space left on device ..." (the temporary file removed); other
        errors as raised.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_file(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"{path}: no space left on device while writing it (its temporary "
                                        f"file {tmp.name} was removed; free space and rerun to resume)") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def lock_path(out: str | os.PathLike) -> Path:
    """Where the lock of output ``out`` lives: ``out/.lock`` for a folder, ``.<name>.lock`` beside a file.

    Examples
    --------
    >>> lock_path("exports/run1").as_posix(), lock_path("exports/run1.npz").as_posix()
    ('exports/run1/.lock', 'exports/.run1.npz.lock')
    """
    out = Path(out)
    if out.suffix == ".npz":
        return out.parent / f".{out.name}.lock"
    return out / LOCK_NAME


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def _holder(path: Path) -> str:
    """``"export (pid 123)"``: what holds the lock, from the lock file."""
    try:
        pid, _, what = path.read_text().strip().partition(" ")
    except OSError:
        pid, what = "", ""
    return f"{what or 'writer'} (pid {pid})" if pid.isdigit() else "writer"


@contextlib.contextmanager
def output_lock(out: str | os.PathLike, what: str = "export") -> Iterator[Path]:
    """Hold the exclusive lock of output ``out`` (a store folder or a ``.npz`` file) while writing it.

    The lock is an ``flock`` on :func:`lock_path`, released (and the lock file removed) on exit; the
    operating system releases it when the process dies, so a killed writer never blocks a rerun.

    Parameters
    ----------
    out : path-like
        The output of an export or a merge.
    what : str
        What holds the lock (``"export"``, ``"merge"``), for the message another writer gets.

    Raises
    ------
    OutputLocked
        Another process holds the lock; the message names ``out`` and the holder's pid.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "store"
    >>> with output_lock(d):
    ...     (d / ".lock").exists()
    True
    """
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise OutputLocked(f"{out}: another {_holder(path)} is writing into it; wait for it to "
                               "finish, or write to another output (one writer per output; join several "
                               "outputs with merge)")
        try:
            same = os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file that its holder removed while we opened it
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {what}".encode())
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
