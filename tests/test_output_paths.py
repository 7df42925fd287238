"""Nothing computed is lost to a bad output path: outputs are checked before the work (train, pretrain, predict,
the results storage of run), and a write that fails after the work keeps the result in a temporary folder and
says where."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result
from data_fixtures import write_image

from tlsweep.cli import cli
from tlsweep.engine.run import check_storage_writable
from tlsweep.errors import OutputError, StoreError
from tlsweep.output_paths import check_output_dir, check_output_file, keep_elsewhere
from tlsweep.results.location import resolve_location
from tlsweep.training.backbones import create_model

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration")
REPO = Path(__file__).resolve().parents[1]


def invoke(*args: Any) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def _blocker(tmp_path: Path) -> Path:
    """A regular file: nothing can be created below it, whoever runs the test (root included)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return blocker


def test_output_folders_and_files_are_checked(tmp_path: Path) -> None:
    blocker = _blocker(tmp_path)
    check_output_dir(tmp_path / "new" / "run")
    assert (tmp_path / "new" / "run").is_dir() and not list((tmp_path / "new" / "run").iterdir())
    with pytest.raises(OutputError, match=rf"--out: {blocker} is a file, not a folder"):
        check_output_dir(blocker)
    with pytest.raises(OutputError, match=rf"--out: {blocker / 'run'} \(or a folder above it\) is a file"):
        check_output_dir(blocker / "run")
    check_output_file(tmp_path / "out" / "p.csv")
    with pytest.raises(OutputError, match=r"is a folder; give a file name"):
        check_output_file(tmp_path)
    with pytest.raises(OutputError, match=r"\(or a folder above it\) is a file, not a folder"):
        check_output_file(blocker / "p.csv")


def test_a_failed_write_keeps_the_result_in_a_temporary_folder_and_says_where(tmp_path: Path) -> None:
    blocker = _blocker(tmp_path)

    def write(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("result")
        return "done"

    assert keep_elsewhere(write, tmp_path / "ok.txt", what="--out", prefix="t-") == "done"
    with pytest.raises(OutputError) as err:
        keep_elsewhere(write, blocker / "r.txt", what="--out", prefix="tlsweep-test-", name="r.txt")
    kept = Path(str(err.value).split("the result was kept in ")[1].split(":")[0])
    assert kept.name == "r.txt" and kept.read_text() == "result" and kept.parent.name.startswith("tlsweep-test-")
    assert f"--out: writing {blocker / 'r.txt'} failed" in str(err.value)


def test_the_results_storage_is_checked_before_any_data(tmp_path: Path) -> None:
    check_storage_writable(resolve_location(tmp_path / "runs" / "x"))
    assert not list((tmp_path / "runs" / "x").iterdir())  # the probe is gone
    blocker = _blocker(tmp_path)
    with pytest.raises(StoreError, match=rf"results storage {blocker}/demo is not writable"):
        check_storage_writable(resolve_location(blocker / "demo"))
    result = invoke("run", REPO / "sweeps" / "demo.yaml", "--storage", blocker, "--no-report")
    assert result.exit_code == 2 and "is not writable" in result.output and "data:" not in result.output


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    model = create_model("resnet_tiny", 3)
    torch.save(
        {
            "arch": "resnet_tiny",
            "num_classes": 3,
            "class_names": ["a", "b", "c"],
            "image_size": 16,
            "state_dict": model.state_dict(),
        },
        path,
    )
    for index in range(3):
        write_image(tmp_path / "images" / "a" / f"{index}.png", index)
    return path


def test_predict_checks_out_and_device_before_the_work(model_file: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    blocker = _blocker(tmp_path)
    result = invoke("predict", "--checkpoint", model_file, "--images", images, "--out", blocker / "p.csv")
    assert result.exit_code == 2 and f"--out: {blocker} (or a folder above it) is a file" in result.output
    result = invoke("predict", "--checkpoint", model_file, "--images", images, "--out", tmp_path)
    assert result.exit_code == 2 and "is a directory" in result.output  # click's own check of --out
    result = invoke("predict", "--checkpoint", model_file, "--images", images, "--device", "banana")
    assert result.exit_code == 2 and "--device 'banana' is not a device; use auto, cpu, cuda or cuda:N" in result.output
    result = invoke("predict", "--checkpoint", model_file, "--images", images, "--device", "meta")
    assert result.exit_code == 2 and "tlsweep runs on cpu or cuda" in result.output


def test_predictions_that_cannot_be_written_are_kept_and_named(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlsweep.training import predict

    out = tmp_path / "predictions.csv"
    original = predict.write_predictions

    def failing_at_out(path: Path, *args: Any) -> Any:
        if path == out:
            raise OSError(28, "No space left on device")
        return original(path, *args)

    monkeypatch.setattr(predict, "write_predictions", failing_at_out)
    result = invoke("predict", "--checkpoint", model_file, "--images", tmp_path / "images", "--out", out)
    assert result.exit_code == 2, result.output
    assert f"--out: writing {out} failed (No space left on device); the result was kept in" in result.output
    kept = Path(" ".join(result.output.split()).split("the result was kept in ")[1].split(": move")[0])
    assert kept.name == "predictions.csv" and len(list(csv.DictReader(kept.open()))) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class_names": ["a", "b"]}, "2 class names for a head of 3 classes"),
        ({"image_size": 100_000}, "image_size must be an integer in 8..1024, got 100000"),
        ({"num_classes": "3"}, "num_classes must be an integer >= 2"),
        ({"class_names": "abc"}, "class_names must be a list of names"),
    ],
)
def test_a_checkpoint_whose_metadata_does_not_fit_is_refused(model_file: Path, change: dict, message: str) -> None:
    content = torch.load(model_file, weights_only=True)
    torch.save({**content, **change}, model_file)
    result = invoke(
        "predict",
        "--checkpoint",
        model_file,
        "--images",
        model_file.parent / "images",
        "--out",
        model_file.parent / "p.csv",
    )
    assert result.exit_code == 2 and message in " ".join(result.output.split()) and str(model_file) in result.output


def test_train_checks_out_before_the_work_and_keeps_a_run_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlsweep.data.synth import generate_dataset
    from tlsweep.training import outputs

    blocker = _blocker(tmp_path)
    result = invoke("train", "--synthetic", "age", "--out", blocker / "run", "--data-dir", tmp_path / "data")
    assert result.exit_code == 2 and f"--out: {blocker / 'run'} (or a folder above it) is a file" in result.output
    assert not (tmp_path / "data").exists()  # refused before any data was generated

    dataset = generate_dataset(
        tmp_path / "faces", task="age", n_identities=8, images_per_identity=4, resolution=16, workers=1
    )
    out = tmp_path / "run"
    original = outputs.write_train_outputs

    def failing_at_out(folder: Path, **kwargs: Any) -> Any:
        if folder == out:
            raise OSError(122, "Disk quota exceeded")
        return original(folder, **kwargs)

    monkeypatch.setattr(outputs, "write_train_outputs", failing_at_out)
    result = invoke(
        "train",
        "--dataset-root",
        dataset,
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--num-threads",
        "1",
        "--out",
        out,
        "--data-dir",
        tmp_path / "data",
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"--out: writing {out} failed (Disk quota exceeded); the result was kept in" in text
    kept = Path(text.split("the result was kept in ")[1].split(": move")[0])
    assert (kept / "model.pt").is_file() and (kept / "metrics.json").is_file()
