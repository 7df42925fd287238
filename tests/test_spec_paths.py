"""Relative paths in a spec file resolve against the file's folder (issue 24, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_exit import run_tlsweep

from tlsweep.engine.run import check_resume, sweep_provenance
from tlsweep.errors import StoreError
from tlsweep.results.store import ResultsStore
from tlsweep.spec_load import load_spec, parse_spec


def _spec(**changes: object) -> dict:
    spec: dict = {
        "name": "own",
        "dataset": {"format": "imagefolder", "root": "images"},
        "model": {
            "backbone": "resnet_tiny",
            "image_size": 16,
            "pretrained": {"checkpoint": "weights/body.pt"},
            "pretrain": {"dataset": {"format": "imagefolder", "root": "../source"}},
        },
        "design": {"factors": {"init": ["checkpoint", "scratch"]}, "recipe": {"lr": 0.01}},
        "storage": "results",
    }
    spec.update(changes)
    return spec


def test_paths_in_the_file_resolve_beside_it_and_set_values_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = tmp_path / "study"
    study.mkdir()
    (study / "spec.yaml").write_text(yaml.safe_dump(_spec()))
    monkeypatch.chdir(tmp_path)
    spec = load_spec("study/spec.yaml")
    assert spec.dataset.root == study / "images" and spec.dataset.root.is_absolute()
    assert spec.model.pretrain is not None and spec.model.pretrain.dataset.root == tmp_path / "source"
    assert spec.model.pretrained.checkpoint == study / "weights" / "body.pt"
    assert spec.storage == str(study / "results")
    assert load_spec("study/spec.yaml", ["dataset.root=elsewhere"]).dataset.root == tmp_path / "elsewhere"
    monkeypatch.chdir(study)
    assert load_spec("spec.yaml") == spec  # the same spec from any folder

    (study / "spec.yaml").write_text(yaml.safe_dump(_spec(storage="s3://bucket/runs")))
    assert load_spec(study / "spec.yaml").storage == "s3://bucket/runs"
    del_storage = _spec()
    del del_storage["storage"]
    (study / "spec.yaml").write_text(yaml.safe_dump(del_storage))
    assert load_spec(study / "spec.yaml").storage == str(study / "runs")  # the default: the current folder's runs


def test_a_weights_name_stays_a_name_and_a_weights_file_is_anchored(tmp_path: Path) -> None:
    data = _spec(design={"factors": {"init": ["imagenet", "scratch"]}, "recipe": {"lr": 0.01}})
    data["model"] = {"backbone": "timm:resnet18", "image_size": 16, "pretrained": {"imagenet": "a1_in1k"}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    assert load_spec(tmp_path / "spec.yaml").model.pretrained.imagenet == "a1_in1k"
    data["model"]["pretrained"]["imagenet"] = "weights/model.safetensors"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    assert load_spec(tmp_path / "spec.yaml").model.pretrained.imagenet == str(tmp_path / "weights/model.safetensors")


def test_validate_names_the_resolved_dataset_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "study").mkdir()
    data = _spec(design={"factors": {"init": ["checkpoint", "scratch"]}, "recipe": {"lr": 0.01}})
    (tmp_path / "study" / "spec.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_tlsweep(["validate", "study/spec.yaml"], capsys, monkeypatch)
    assert code == 2 and str(tmp_path / "study" / "images") in err


def test_results_recorded_with_paths_relative_to_the_current_folder_still_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what tlsweep 0.2 recorded: `root: data/images` meant ./data/images of the folder it ran from
    (tmp_path / "sweeps").mkdir()
    old = _spec(dataset={"format": "imagefolder", "root": "data/images"})
    old["model"] = {"backbone": "resnet_tiny", "image_size": 16}
    old["design"] = {"factors": {"init": ["imagenet", "scratch"]}, "recipe": {"lr": 0.01}}
    store = ResultsStore(tmp_path / "runs" / "own")
    store.write_spec(parse_spec(old), sweep_provenance(parse_spec(old), source="sweeps/own.yaml"))
    monkeypatch.chdir(tmp_path)
    anchored = {**old, "dataset": {"format": "imagefolder", "root": "../data/images"}}  # the file, updated
    (tmp_path / "sweeps" / "own.yaml").write_text(yaml.safe_dump(anchored))
    check_resume(load_spec("sweeps/own.yaml"), store, new=False)  # accepted: the same data
    moved = {**old, "dataset": {"format": "imagefolder", "root": "../data/other"}}
    (tmp_path / "sweeps" / "own.yaml").write_text(yaml.safe_dump(moved))
    with pytest.raises(StoreError, match=r"dataset\.root"):
        check_resume(load_spec("sweeps/own.yaml"), store, new=False)
