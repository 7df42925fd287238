"""Atomic writes of local files: write a temporary file beside the target, then ``os.replace`` it into place.

A reader sees the old file or the new one, never a partial one: the rename is atomic within one directory on
POSIX (also on NFS). The temporary file is named ``.tmp-<uuid>.<target name>`` in the target's directory: hidden,
so directory scans (pyarrow datasets, the tensor cache) skip it, and it keeps the target's suffix. A failed write
removes it; a process killed between the write and the rename leaves it behind, next to the untouched old file.

Pure standard library (no pyarrow, no torch), so every package may use it. Objects in a bucket are written by
``tlsweep.results.store`` through pyarrow's filesystem instead: an upload becomes visible only when complete.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"


def temporary_path(target: Path) -> Path:
    """A fresh, unused name for the temporary file of ``target``, in ``target``'s directory."""
    return target.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}.{target.name}")


def atomic_write(path: str | Path, write: Callable[[Path], None], *, durable: bool = False) -> None:
    """Call ``write(tmp)`` to create a temporary file beside ``path``, then rename it over ``path``.

    Args:
        path: the file to create or replace; its directory is created when missing.
        write: writes the whole content to the path it is given (``torch.save``, ``pq.write_table``, ...).
        durable: also flush the file and the directory entry to disk (``fsync``) before returning, so the new
            content survives a power loss; costs a disk round trip.

    Raises:
        OSError: from creating the directory, from ``write`` or from the rename; ``path`` is then unchanged
            and the temporary file is removed. Any other exception from ``write`` also propagates after cleanup.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(target)
    try:
        write(tmp)
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        _fsync_directory(target.parent)


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` by ``data`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: _write_bytes(tmp, data), durable=durable)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8", durable: bool = False) -> None:
    """Replace ``path`` by ``text`` atomically (see :func:`atomic_write`); newlines are written as given."""
    atomic_write(path, lambda tmp: _write_bytes(tmp, text.encode(encoding)), durable=durable)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable; not every filesystem (or platform) lets a directory be opened for that."""
    with contextlib.suppress(OSError):
        _fsync_file(directory)
