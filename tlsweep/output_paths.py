"""Output paths checked before the work, and results kept somewhere when writing them fails after it.

``tlsweep train --out``, ``tlsweep pretrain --out`` and ``tlsweep predict --out`` call :func:`check_output_dir` or
:func:`check_output_file` before loading any data; once the work is done, :func:`keep_elsewhere` writes the result
into a fresh temporary directory when the chosen place refused it, and the error says where it is. Standard
library only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tlsweep.errors import OutputError, TlsweepError

T = TypeVar("T")


def _probe(directory: Path, what: str) -> None:
    """Create and remove a file in ``directory`` (created when missing); OutputError naming ``what`` if it fails."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".tlsweep-write-check-", dir=directory)
        os.close(fd)
        os.unlink(name)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(
            f"{what}: {directory} (or a folder above it) is a file, not a folder; choose another path"
        ) from None
    except OSError as exc:
        raise OutputError(
            f"{what}: cannot write into {directory} ({exc.strerror or exc}); choose a writable path "
            "or fix its permissions"
        ) from None


def check_output_dir(path: Path, *, what: str = "--out") -> None:
    """``path`` is (or can be created as) a folder this process can write files into.

    Raises:
        OutputError: naming ``what`` (the option), the path, why and the fix.
    """
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"{what}: {path} is a file, not a folder; move it aside or choose another folder (it is "
            "created when missing)"
        )
    _probe(path, what)


def check_output_file(path: Path, *, what: str = "--out") -> None:
    """``path`` can be created or replaced as a file (its folder is created when missing).

    Raises:
        OutputError: naming ``what``, the path, why and the fix.
    """
    if path.is_dir():
        raise OutputError(f"{what}: {path} is a folder; give a file name, e.g. {path / 'predictions.csv'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what}: {path} exists and is read-only; choose another file or fix its permissions")
    _probe(path.parent if str(path.parent) else Path("."), what)


def keep_elsewhere(write: Callable[[Path], T], target: Path, *, what: str, prefix: str, name: str | None = None) -> T:
    """``write(target)``; when that fails, ``write`` into a new temporary folder and raise an OutputError saying
    where the result is (``name``: the file name there; None: ``write`` gets the folder itself).

    Raises:
        OutputError: the target could not be written (the message names the place the result was kept), or
            neither could the temporary folder (the result is lost; the message says why).
    """
    try:
        return write(target)
    except (OSError, TlsweepError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        first = f"{what}: writing {target} failed ({reason})"
    kept: Path | None = None
    try:
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        kept = folder / name if name else folder
        write(kept)
    except (OSError, TlsweepError) as exc:
        with contextlib.suppress(OSError):
            if kept is not None and kept.is_file():
                kept.unlink()
        raise OutputError(
            f"{first}, and keeping the result in a temporary folder failed too ({exc}); nothing was saved"
        ) from None
    raise OutputError(f"{first}; the result was kept in {kept}: move it where you want it")
