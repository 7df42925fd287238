from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tlsweep.cli import cli
from tlsweep.data.dataset_spec import SyntheticDatasetSpec
from tlsweep.data.loading import load_dataset
from tlsweep.data.synth import MANIFEST_NAME, generate_dataset
from tlsweep.errors import DataError

SMALL = {"n_identities": 8, "images_per_identity": 3, "resolution": 24, "workers": 1}


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def identity_of(name: str) -> str:
    return name.split("/")[-1].split("_")[0]


def test_same_seed_gives_byte_identical_datasets_whatever_the_worker_count(tmp_path: Path) -> None:
    a = files_of(generate_dataset(tmp_path / "a", seed=3, **SMALL))
    b = files_of(generate_dataset(tmp_path / "b", seed=3, **{**SMALL, "workers": 2}))
    assert a == b and len(a) == 8 * 3 + 4
    c = files_of(generate_dataset(tmp_path / "c", seed=4, **SMALL))
    assert c["custom_train_dataset.csv"] != a["custom_train_dataset.csv"]


def test_layout_names_and_identity_disjoint_splits(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "d", seed=0, **{**SMALL, "n_identities": 12})
    identities = {}
    for split in ("train", "val", "test"):
        lines = (root / f"custom_{split}_dataset.csv").read_text().splitlines()
        assert lines[0] == "image_path,age_class"
        names = [line.split(",")[0] for line in lines[1:]]
        assert all((root / f"{split}_images" / n).is_file() for n in names)
        assert all(n.startswith("F") and "_AGE_" in n and n.endswith(".png") for n in names)
        assert {line.split(",")[1] for line in lines[1:]} <= set("abcdefgh")
        identities[split] = {identity_of(n) for n in names}
    assert identities["train"].isdisjoint(identities["val"]) and identities["train"].isdisjoint(identities["test"])
    assert identities["val"].isdisjoint(identities["test"])
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest["counts"] == {"train": 24, "val": 6, "test": 6} and manifest["preset"] == "korean_face_age"


def test_synthetic_spec_generates_once_then_reuses_and_regenerates_on_new_parameters(tmp_path: Path) -> None:
    root = tmp_path / "gen"
    params = {"n_identities": 6, "images_per_identity": 2, "resolution": 16}
    ds = load_dataset(SyntheticDatasetSpec(root=root, **params), image_size=8)
    assert ds.name == "synthetic-age" and ds.ordinal and ds.num_classes == 8
    assert ds.train.images.shape[1:] == (3, 8, 8) and len(ds.train) + len(ds.val) + len(ds.test) == 12
    stamp = (root / MANIFEST_NAME).stat().st_mtime_ns
    load_dataset(SyntheticDatasetSpec(root=root, **params), image_size=8)
    assert (root / MANIFEST_NAME).stat().st_mtime_ns == stamp, "same parameters: not regenerated"
    bigger = load_dataset(SyntheticDatasetSpec(root=root, **{**params, "images_per_identity": 3}), image_size=8)
    assert len(bigger.train) + len(bigger.val) + len(bigger.test) == 18


def test_synthetic_root_holding_other_files_is_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match=r"thesis.tex"):
        load_dataset(SyntheticDatasetSpec(root=root, n_identities=4, images_per_identity=1), image_size=8)
    assert (root / "thesis.tex").read_text() == "precious"


def test_source_task_has_sixteen_attribute_classes(tmp_path: Path) -> None:
    spec = SyntheticDatasetSpec(
        root=tmp_path / "src", task="source", n_identities=20, images_per_identity=8, resolution=16
    )
    ds = load_dataset(spec, image_size=8)
    assert ds.num_classes == 16 and not ds.ordinal and ds.class_names[0] == "smooth-darkhair-longface-bare"
    labels = torch.cat([ds.train.labels, ds.val.labels, ds.test.labels])
    assert len(Counter(labels.tolist())) >= 12 and int(labels.max()) <= 15
    assert (tmp_path / "src" / "custom_train_dataset.csv").read_text().startswith("image_path,attribute_class\n")


def test_data_synth_and_cache_commands(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "data",
            "synth",
            str(out),
            "--identities",
            "6",
            "--per-identity",
            "2",
            "--resolution",
            "16",
            "--seed",
            "1",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 12 age images (train 8 images / 4 identities" in result.output and str(out) in result.output
    result = runner.invoke(cli, ["data", "cache", str(out), "--image-size", "8"])
    assert result.exit_code == 0, result.output
    assert "0-6" in result.output and "total" in result.output and ".tlsweep-cache" in result.output
    result = runner.invoke(cli, ["data", "cache", str(tmp_path / "missing"), "--image-size", "8"])
    assert result.exit_code != 0 and "does not exist" in result.output
