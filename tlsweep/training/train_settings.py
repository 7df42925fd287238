"""The settings of one training run outside a sweep (``tlsweep train`` / ``tlsweep pretrain``).

Layers, lowest priority first: a recipe's defaults (``TrialConfig``'s, or the pretraining recipe's), a training
YAML (``--config``: TrialConfig settings plus optional ``dataset:`` and ``image_size:``), then flags. The dataset
comes from a directory, a generated dataset or the YAML's ``dataset:`` block. Every setting is checked by the
rules of ``tlsweep.training.config``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlsweep.data.dataset_spec import DatasetSpec
from tlsweep.errors import InputChoiceError, SpecError
from tlsweep.training.config import SETTINGS, TrialConfig, check_setting


@dataclass(frozen=True)
class TrainingFile:
    """The content of a training YAML."""

    settings: dict[str, Any] = field(default_factory=dict)  # TrialConfig settings, each checked
    dataset: dict[str, Any] | None = None  # the ``dataset:`` block, parsed later by parse_dataset_spec
    image_size: int | None = None


@dataclass(frozen=True)
class RunSettings:
    """Everything one training run needs besides the data itself."""

    config: TrialConfig
    dataset: DatasetSpec
    image_size: int


def read_training_file(path: Path) -> TrainingFile:
    """Read and check a training YAML.

    Raises:
        SpecError: naming ``path`` and the setting: unreadable YAML, not a mapping, an unknown key, a value of the
            wrong type or out of range, a ``dataset:`` that is not a mapping, an ``image_size`` that is not a
            positive integer.
    """
    import yaml

    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read the training YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise SpecError(f"{path}: expected a mapping of settings, got {type(content).__name__}")
    dataset = content.pop("dataset", None)
    image_size = content.pop("image_size", None)
    unknown = sorted(set(content) - set(SETTINGS))
    if unknown:
        raise SpecError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: dataset, image_size, {', '.join(SETTINGS)}"
        )
    if dataset is not None and not isinstance(dataset, dict):
        raise SpecError(f"{path}: dataset: expected a mapping (format, root, ...), got {dataset!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size <= 0):
        raise SpecError(f"{path}: image_size: expected a positive integer, got {image_size!r}")
    settings = {name: check_setting(name, value, source=str(path)) for name, value in content.items()}
    return TrainingFile(settings, dataset, image_size)


def resolve_run_settings(
    *,
    config_file: Path | None,
    flags: Mapping[str, Any],
    dataset_root: Path | None,
    synthetic: str | None,
    data_dir: Path,
    image_size: int | None,
    make_config: Callable[[dict[str, Any]], TrialConfig] = TrialConfig.from_dict,
) -> RunSettings:
    """The config, dataset and image size of one run, from a training YAML and flags.

    Args:
        config_file: a training YAML (see :func:`read_training_file`), or None.
        flags: TrialConfig settings given on the command line; None values are unset and ignored.
        dataset_root: a dataset directory (format detected by ``dataset_spec_for_directory``), or None.
        synthetic: ``age`` or ``source``: the generated dataset ``data_dir/synthetic-<task>``, or None.
        data_dir: where generated datasets live.
        image_size: the image side in pixels; None takes the YAML's, then the dataset spec's.
        make_config: builds the config from the merged settings (YAML < flags) over its own defaults:
            ``TrialConfig.from_dict``, or ``tlsweep.training.config.pretrain_config``.

    Raises:
        SpecError: a bad YAML or setting; UnknownNameError: an unknown backbone.
        InputChoiceError: no dataset, both ``dataset_root`` and ``synthetic``, or no image size.
        DataError: ``dataset_root`` is not a directory.
    """
    from tlsweep.data.dataset_spec import SyntheticDatasetSpec, dataset_spec_for_directory, parse_dataset_spec
    from tlsweep.training.loop import check_config

    training_file = read_training_file(config_file) if config_file is not None else TrainingFile()
    settings = {**training_file.settings, **{name: value for name, value in flags.items() if value is not None}}
    config = make_config(settings)
    check_config(config)
    if config.freeze_depth > 0 and config.init == "scratch":
        where = f"{config_file}: " if config_file is not None and "freeze_depth" in training_file.settings else ""
        raise SpecError(
            f"{where}freeze_depth {config.freeze_depth} with init scratch freezes a randomly initialized body (only "
            "the head would learn, on random features); use freeze_depth 0, or a pretrained init (imagenet, "
            "checkpoint:PATH)"
        )
    if dataset_root is not None and synthetic is not None:
        raise InputChoiceError("use just one of --dataset-root and --synthetic")
    spec: DatasetSpec
    if dataset_root is not None:
        spec = dataset_spec_for_directory(dataset_root)
    elif synthetic is not None:
        spec = SyntheticDatasetSpec.model_validate({"root": data_dir / f"synthetic-{synthetic}", "task": synthetic})
    elif training_file.dataset is not None:
        spec = parse_dataset_spec(training_file.dataset, source=str(config_file))
    else:
        raise InputChoiceError(
            "no dataset: give --dataset-root DIR, --synthetic age|source or a `dataset:` block in --config"
        )
    size = image_size or training_file.image_size or getattr(spec, "image_size", None)
    if size is None:
        raise InputChoiceError("no image size: give --image-size N (or image_size in --config)")
    return RunSettings(config, spec, int(size))
