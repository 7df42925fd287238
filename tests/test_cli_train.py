"""``tlsweep train / predict / pretrain / models / weights download`` through click's CliRunner."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner, Result

from tlsweep.cli import cli
from tlsweep.data.synth import generate_dataset

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration")
FAST = ["--image-size", "16", "--epochs", "1", "--batch-size", "16", "--num-threads", "1", "--lr", "0.05"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "faces"
    return generate_dataset(root, task="age", n_identities=16, images_per_identity=4, resolution=16, workers=1)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_train_writes_metrics_epochs_model_and_curves(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("train", "--dataset-root", dataset, *FAST, "--epochs", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "ok: best val acc" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["result"]["status"] == "ok" and metrics["result"]["num_classes"] == 8
    assert metrics["config"]["epochs"] == 2 and metrics["dataset"]["image_size"] == 16
    table = pq.read_table(out / "epochs.parquet")
    assert table.column_names == [
        "epoch",
        "step",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "epoch_time_s",
    ]
    assert str(table.schema.field("epoch").type) == "int32" and table.column("epoch").to_pylist() == [1, 2]
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["arch"] == "resnet_tiny" and saved["image_size"] == 16 and len(saved["class_names"]) == 8
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_train_from_yaml_with_flag_overrides(dataset: Path, tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(
        f"dataset: {{format: csv, root: {dataset}}}\nimage_size: 16\nepochs: 3\nlr: 0.05\nbatch_size: 16\n"
        "num_threads: 1\naugmentation: flip\n"
    )
    out = tmp_path / "run"
    assert invoke("train", "--config", config, "--epochs", "1", "--out", out).exit_code == 0
    settings = json.loads((out / "metrics.json").read_text())["config"]
    assert settings["epochs"] == 1 and settings["augmentation"] == "flip" and settings["lr"] == 0.05


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("epochs: 1\nlearning_rate: 0.1\n", "unknown setting(s) learning_rate"),
        ("epochs: two\n", "epochs: expected int, got 'two'"),
        ("optimizer: adam\n", "optimizer: must be one of sgd, adamw, got 'adam'"),
    ],
)
def test_bad_training_yaml_is_named(tmp_path: Path, yaml_text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    result = CliRunner().invoke(cli, ["train", "--config", str(config), "--synthetic", "age"])
    assert result.exit_code != 0 and message in result.output and str(config) in result.output


def test_train_needs_a_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--image-size", "16", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no dataset" in result.output


def test_pretrain_then_fine_tune_then_predict(dataset: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt" / "tiny.pt"
    result = invoke("pretrain", "--dataset-root", dataset, *FAST, "--out", checkpoint)
    assert result.exit_code == 0, result.output
    assert checkpoint.is_file() and f"--init checkpoint:{checkpoint}" in result.output

    out = tmp_path / "run"
    result = invoke(
        "train",
        "--dataset-root",
        dataset,
        *FAST,
        "--init",
        f"checkpoint:{checkpoint}",
        "--freeze-depth",
        "5",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    model = torch.load(out / "model.pt", weights_only=True)
    body = torch.load(checkpoint, weights_only=True)["backbone"]
    assert torch.equal(model["state_dict"]["layer3.0.conv1.weight"], body["layer3.0.conv1.weight"])  # frozen

    class_names = model["class_names"]
    folder = tmp_path / "to_predict"
    images = sorted((dataset / "test_images").glob("*.png"))[:4]
    for index, image in enumerate(images):
        (folder / class_names[index % 2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / class_names[index % 2] / image.name)
    shutil.copy(images[0], folder / "unlabelled.png")
    predictions = tmp_path / "predictions.csv"
    result = invoke("predict", "--checkpoint", out / "model.pt", "--images", folder, "--out", predictions)
    assert result.exit_code == 0 and "wrote 5 predictions" in result.output and "4 labelled" in result.output
    rows = list(csv.DictReader(predictions.open()))
    assert list(rows[0]) == ["file", "predicted_class", "class_name", "confidence", "label", "correct"]
    assert {row["label"] for row in rows} == {class_names[0], class_names[1], ""}
    assert all(row["class_name"] == class_names[int(row["predicted_class"])] for row in rows)
    assert all(0 < float(row["confidence"]) <= 1 for row in rows)

    listing = tmp_path / "list.csv"
    listing.write_text("path\n" + "\n".join(image.name for image in images) + "\n")
    result = invoke(
        "predict",
        "--checkpoint",
        out / "model.pt",
        "--csv",
        listing,
        "--image-dir",
        dataset / "test_images",
        "--out",
        predictions,
    )
    assert result.exit_code == 0, result.output
    with_csv = list(csv.DictReader(predictions.open()))
    assert [row["file"] for row in with_csv] == [image.name for image in images] and "label" not in with_csv[0]


def test_models_lists_every_backbone() -> None:
    result = invoke("models")
    assert result.exit_code == 0
    for name in ("resnet18", "resnet50", "vgg16_bn", "resnet_tiny", "11,689,512"):
        assert name in result.output


def test_weights_download_fills_the_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise OSError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    result = CliRunner().invoke(cli, ["weights", "download", "resnet18"])
    assert result.exit_code != 0
    assert (
        "https://download.pytorch.org/models/resnet18-f37072fd.pth" in result.output and str(expected) in result.output
    )

    def fake_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        torch.save({"fake": torch.zeros(1)}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    result = invoke("weights", "download", "resnet18")
    assert result.exit_code == 0 and str(expected) in result.output and expected.is_file()
