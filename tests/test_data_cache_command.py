"""``tlsweep data cache ROOT`` detects the layout and the image size (issue 24, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_exit import run_tlsweep
from data_fixtures import write_imagefolder


def test_data_cache_detects_an_imagefolder_and_its_image_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_imagefolder(tmp_path / "images", {"ants": 6, "bees": 6})  # 10 x 8 images
    code, out, err = run_tlsweep(["data", "cache", root], capsys, monkeypatch)
    assert code == 0, err
    assert "format imagefolder (detected)" in out and "image size 8 (the shorter side of ants/ants_" in out
    assert "images 8x8" in out and "ants" in out and "total" in out
    code, out, err = run_tlsweep(
        ["data", "cache", root, "--image-size", "4", "--format", "imagefolder"], capsys, monkeypatch
    )
    assert code == 0 and "images 4x4" in out and "format imagefolder (given)" in out


def test_data_cache_reads_a_generated_datasets_resolution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlsweep.data.synth import generate_dataset

    root = generate_dataset(tmp_path / "faces", task="age", resolution=16, n_identities=6, images_per_identity=2)
    code, out, err = run_tlsweep(["data", "cache", root], capsys, monkeypatch)
    assert code == 0, err
    assert "format csv (detected)" in out and "image size 16 (the resolution" in out and "images 16x16" in out
