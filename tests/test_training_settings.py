"""Settings of a single training run (``tlsweep.training.train_settings``) and dataset detection from a directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_fixtures import write_csv_dataset, write_imagefolder

from tlsweep.data.dataset_spec import (
    CsvDatasetSpec,
    ImageFolderDatasetSpec,
    SyntheticDatasetSpec,
    dataset_spec_for_directory,
)
from tlsweep.data.synth import generate_dataset
from tlsweep.errors import DataError, InputChoiceError, SpecError, UnknownNameError
from tlsweep.training.config import pretrain_config
from tlsweep.training.train_settings import TrainingFile, read_training_file, resolve_run_settings


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def _resolve(tmp_path: Path, **overrides: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "config_file": None,
        "flags": {},
        "dataset_root": None,
        "synthetic": "age",
        "data_dir": tmp_path / "data",
        "image_size": 16,
    }
    arguments.update(overrides)
    return resolve_run_settings(**arguments)  # type: ignore[arg-type]


# ---- the training YAML -----------------------------------------------------------------------------------------


def test_training_file_settings_are_checked_and_typed(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "dataset: {format: csv, root: /data}\nimage_size: 24\nlr: 1\nepochs: 3\namp: false\n")
    content = read_training_file(path)
    assert content == TrainingFile({"lr": 1.0, "epochs": 3, "amp": False}, {"format": "csv", "root": "/data"}, 24)
    assert isinstance(content.settings["lr"], float)
    assert read_training_file(_yaml(tmp_path, "")) == TrainingFile()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- lr: 0.1\n", "expected a mapping of settings, got list"),
        ("lr: [0.1\n", "cannot read the training YAML"),
        ("epochs: 0\n", "epochs: must be an integer in 1..100000, got 0"),
        ("backbone_lr_mult: 0\n", "backbone_lr_mult: must be > 0"),
        ("augmentation: mixup\n", "augmentation: must be one of none, flip, flip_color, trivial, got 'mixup'"),
        ("dataset: /data\n", "dataset: expected a mapping (format, root, ...), got '/data'"),
        ("image_size: 0\n", "image_size: expected a positive integer, got 0"),
        ("image_size: 16.5\n", "image_size: expected a positive integer, got 16.5"),
    ],
)
def test_bad_training_file_names_file_and_setting(tmp_path: Path, text: str, message: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(SpecError) as info:
        read_training_file(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


# ---- resolving one run's settings ------------------------------------------------------------------------------


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "epochs: 3\nlr: 0.05\naugmentation: flip\nimage_size: 24\n")
    settings = _resolve(tmp_path, config_file=path, flags={"epochs": 1, "lr": None, "seed": 7}, image_size=None)
    config = settings.config
    assert (config.epochs, config.lr, config.augmentation, config.seed) == (1, 0.05, "flip", 7)
    assert config.batch_size == 128  # TrialConfig's default
    assert settings.image_size == 24
    assert settings.dataset == SyntheticDatasetSpec(root=tmp_path / "data" / "synthetic-age", task="age")
    assert _resolve(tmp_path, config_file=path).image_size == 16  # --image-size beats the file


def test_the_dataset_can_come_from_the_file(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "csv")
    path = _yaml(tmp_path, f"dataset: {{format: csv, root: {root}, image_size: 20}}\n")
    settings = _resolve(tmp_path, config_file=path, synthetic=None, image_size=None)
    assert isinstance(settings.dataset, CsvDatasetSpec) and settings.dataset.root == root
    assert settings.image_size == 20  # the dataset block's image_size when neither flag nor file sets one
    bad = _yaml(tmp_path, "dataset: {format: parquet, root: /x}\n")
    with pytest.raises(SpecError, match=r"train.yaml: invalid dataset spec"):
        _resolve(tmp_path, config_file=bad, synthetic=None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"synthetic": None}, "no dataset: give --dataset-root DIR, --synthetic age|source or a `dataset:` block"),
        ({"dataset_root": Path("/somewhere")}, "use just one of --dataset-root and --synthetic"),
        ({"image_size": None}, "no image size: give --image-size N (or image_size in --config)"),
    ],
)
def test_missing_or_conflicting_inputs_are_input_choice_errors(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InputChoiceError) as info:
        _resolve(tmp_path, **overrides)
    assert str(info.value).startswith(message)


def test_settings_are_checked_before_the_dataset(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"warmup_epochs must be in \[0, epochs\], got 5.0"):
        _resolve(tmp_path, flags={"epochs": 2, "warmup_epochs": 5.0}, synthetic=None)
    with pytest.raises(UnknownNameError, match="unknown backbone 'resnet7'"):
        _resolve(tmp_path, flags={"backbone": "resnet7"})


def test_pretrain_settings_use_the_recipe_under_file_and_flags(tmp_path: Path) -> None:
    settings = _resolve(tmp_path, flags={"epochs": 2}, make_config=pretrain_config)
    assert settings.config == pretrain_config({"epochs": 2})
    assert settings.config.warmup_epochs == pytest.approx(0.4)  # follows the final epochs
    path = _yaml(tmp_path, "warmup_epochs: 0\nweight_decay: 0\n")
    settings = _resolve(tmp_path, config_file=path, flags={"epochs": 2}, make_config=pretrain_config)
    assert (settings.config.warmup_epochs, settings.config.weight_decay, settings.config.lr) == (0.0, 0.0, 0.05)


# ---- a dataset's format from its directory ---------------------------------------------------------------------


def test_dataset_format_is_detected_from_the_directory(tmp_path: Path) -> None:
    generated = generate_dataset(
        tmp_path / "gen", task="source", n_identities=3, images_per_identity=1, resolution=16, workers=1
    )
    spec = dataset_spec_for_directory(generated)
    assert isinstance(spec, CsvDatasetSpec) and spec.preset == "synthetic_source" and spec.root == generated
    csv_root = write_csv_dataset(tmp_path / "csv")
    spec = dataset_spec_for_directory(csv_root)
    assert isinstance(spec, CsvDatasetSpec) and spec.preset == "korean_face_age"
    folder = write_imagefolder(tmp_path / "folder", {"ant": 2, "bee": 2})
    assert dataset_spec_for_directory(folder) == ImageFolderDatasetSpec(root=folder)
    with pytest.raises(DataError, match=f"--dataset-root {tmp_path / 'nothing'} is not a directory"):
        dataset_spec_for_directory(tmp_path / "nothing")
