"""``tlsweep.results.atomic``: the one way a local file is written atomically."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tlsweep.results import atomic
from tlsweep.results.atomic import TMP_PREFIX, atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_create_directories_and_replace_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.json"
    atomic_write_text(target, "first, and longer\n")
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    atomic_write_bytes(target, b"\x00\x01", durable=True)
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(target.parent) == ["file.json"]


def test_the_writer_gets_a_hidden_temporary_file_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "epochs.parquet"
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_text("content")
        assert not target.exists()  # nothing at the target until the rename

    atomic_write(target, write)
    assert seen[0].parent == tmp_path and seen[0].name.startswith(TMP_PREFIX)
    assert seen[0].name.endswith(".epochs.parquet") and not seen[0].exists()
    assert target.read_text() == "content"


@pytest.mark.parametrize("failure", ["writer", "rename"])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    target = tmp_path / "model.pt"
    atomic_write_bytes(target, b"old")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"new but half")
        if failure == "writer":
            raise KeyboardInterrupt  # any exception, not just OSError

    if failure == "rename":
        monkeypatch.setattr(atomic.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(KeyboardInterrupt if failure == "writer" else OSError):
        atomic_write(target, write)
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.pt"]


def test_a_process_killed_before_the_rename_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    script = textwrap.dedent(
        f"""
        import os
        from tlsweep.results import atomic
        atomic.os.replace = lambda src, dst: os._exit(9)
        atomic.atomic_write_text({str(target)!r}, "new")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    assert target.read_text() == "old"
    leftovers = [name for name in os.listdir(tmp_path) if name != "metrics.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(TMP_PREFIX)
