"""``tlsweep train``, ``predict``, ``pretrain``, ``models`` and ``weights download``: single runs without Ray.

Settings come from (lowest to highest priority) ``TrialConfig``'s defaults, a ``--config`` YAML file and flags.
"""

from __future__ import annotations

import csv
import dataclasses
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tlsweep.errors import DataError, SpecError
from tlsweep.training.config import TrialConfig

SETTING_HELP: dict[str, str] = {
    "backbone": "Architecture (see `tlsweep models`).",
    "init": "scratch | imagenet | imagenet:WEIGHTS | checkpoint:PATH.",
    "freeze_depth": "0 trains everything, 1 freezes the stem, 2-4 also layer1..layer3, 5 the whole body.",
    "epochs": "Training epochs.",
    "train_fraction": "Stratified fraction of the training split used (nested across fractions for one seed).",
    "batch_size": "Training batch size.",
    "optimizer": "Optimizer.",
    "lr": "Learning rate of the head (peak, after warm-up).",
    "momentum": "SGD momentum.",
    "weight_decay": "Weight decay (all parameters).",
    "backbone_lr_mult": "Learning rate of the unfrozen body relative to the head.",
    "schedule": "Learning-rate schedule, stepped per optimizer step.",
    "warmup_epochs": "Linear warm-up length in epochs (fractions allowed).",
    "step_size": "Epochs between decays for --schedule step (0: epochs // 3).",
    "step_gamma": "Decay factor for --schedule step.",
    "label_smoothing": "Label smoothing of the training loss.",
    "augmentation": "none | flip | flip_color | trivial.",
    "seed": "Replicate seed: subset, data order, augmentation and initialization.",
    "eval_batch_size": "Batch size for validation and test.",
    "device": "auto | cpu | cuda | cuda:N.",
    "amp": "bf16 autocast + channels_last (CUDA only).",
    "num_threads": "Torch CPU threads (0: torch's default).",
}
_SETTINGS = [field.name for field in dataclasses.fields(TrialConfig)]
_TYPES = typing.get_type_hints(TrialConfig)
_DEFAULTS = TrialConfig()


def _click_type(name: str) -> Any:
    hint = _TYPES[name]
    if typing.get_origin(hint) is typing.Literal:
        return click.Choice(list(typing.get_args(hint)))
    return {int: int, float: float, str: str}[hint]


def trial_options(**defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One flag per ``TrialConfig`` field (``--freeze-depth``, ``--amp/--no-amp``...); unset flags are None."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(_SETTINGS):
            default = defaults.get(name, getattr(_DEFAULTS, name))
            help_text = f"{SETTING_HELP.get(name, '')} [default: {default}]"
            flag = name.replace("_", "-")
            if _TYPES[name] is bool:
                option = click.option(f"--{flag}/--no-{flag}", name, default=None, help=help_text)
            else:
                option = click.option(f"--{flag}", name, type=_click_type(name), default=None, help=help_text)
            command = option(command)
        return command

    return decorate


def _check_type(name: str, value: Any, source: str) -> Any:
    hint = _TYPES[name]
    if typing.get_origin(hint) is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise SpecError(f"{source}: {name}: must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    ok = isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise SpecError(f"{source}: {name}: expected {hint.__name__}, got {value!r}")
    return value


def read_train_yaml(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None, int | None]:
    """(TrialConfig settings, ``dataset:`` block or None, ``image_size`` or None) from a training YAML."""
    import yaml

    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read the training YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise SpecError(f"{path}: expected a mapping of settings, got {type(content).__name__}")
    dataset = content.pop("dataset", None)
    image_size = content.pop("image_size", None)
    unknown = sorted(set(content) - set(_SETTINGS))
    if unknown:
        raise SpecError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: dataset, image_size, {', '.join(_SETTINGS)}"
        )
    if dataset is not None and not isinstance(dataset, dict):
        raise SpecError(f"{path}: dataset: expected a mapping (format, root, ...), got {dataset!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size <= 0):
        raise SpecError(f"{path}: image_size: expected a positive integer, got {image_size!r}")
    return {k: _check_type(k, v, str(path)) for k, v in content.items()}, dataset, image_size


def dataset_spec_for_root(root: Path) -> Any:
    """A dataset spec for a directory: a generated dataset, the CSV layout, or an ImageFolder tree."""
    from tlsweep.data.config import CsvDatasetSpec, ImageFolderDatasetSpec
    from tlsweep.data.synth import read_manifest

    if not root.is_dir():
        raise DataError(f"--dataset-root {root} is not a directory")
    manifest = read_manifest(root)
    if manifest is not None:
        return CsvDatasetSpec(root=root, preset=manifest["preset"])
    if (root / "custom_train_dataset.csv").is_file():
        return CsvDatasetSpec(root=root)
    return ImageFolderDatasetSpec(root=root)


def resolve_run_settings(
    *,
    config_file: Path | None,
    flags: dict[str, Any],
    dataset_root: Path | None,
    synthetic: str | None,
    data_dir: Path,
    image_size: int | None,
    defaults: dict[str, Any] | None = None,
) -> tuple[TrialConfig, Any, int]:
    """(config, dataset spec, image size) from defaults < YAML < flags."""
    from tlsweep.data.config import SyntheticDatasetSpec, parse_dataset_spec

    settings: dict[str, Any] = dict(defaults or {})
    dataset_block, yaml_image_size = None, None
    if config_file is not None:
        from_yaml, dataset_block, yaml_image_size = read_train_yaml(config_file)
        settings.update(from_yaml)
    settings.update({k: v for k, v in flags.items() if v is not None})
    config = TrialConfig.from_dict(settings)
    from tlsweep.training.loop import check_config

    check_config(config)
    if dataset_root is not None and synthetic is not None:
        raise click.UsageError("use just one of --dataset-root and --synthetic")
    if dataset_root is not None:
        spec = dataset_spec_for_root(dataset_root)
    elif synthetic is not None:
        spec = SyntheticDatasetSpec(root=data_dir / f"synthetic-{synthetic}", task=synthetic)
    elif dataset_block is not None:
        spec = parse_dataset_spec(dataset_block, source=str(config_file))
    else:
        raise click.UsageError(
            "no dataset: give --dataset-root DIR, --synthetic age|source or a `dataset:` block in --config"
        )
    size = image_size or yaml_image_size or getattr(spec, "image_size", None)
    if size is None:
        raise click.UsageError("no image size: give --image-size N (or image_size in --config)")
    return config, spec, int(size)


def _load(spec: Any, image_size: int, console: Any) -> Any:
    from tlsweep.data.loading import load_dataset

    with console.status(f"preparing dataset {getattr(spec, 'root', '')} at {image_size}px"):
        return load_dataset(spec, image_size=image_size)


def _run_with_progress(config: TrialConfig, data: Any, console: Any, run: Callable[..., Any]) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[metrics]}"),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{config.backbone} {config.init}", total=config.epochs, metrics="")

        def report(metrics: dict[str, float], get_state: Callable[[], dict]) -> None:
            text = (
                f"loss {metrics['train_loss']:.3f}/{metrics['val_loss']:.3f} "
                f"acc {metrics['train_acc']:.3f}/{metrics['val_acc']:.3f} (train/val)"
            )
            progress.update(task, advance=1, metrics=text)

        return run(config, data, report=report)


_DATA_OPTIONS = [
    click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="YAML with TrialConfig settings, optionally `dataset:` and `image_size:`; flags override it.",
    ),
    click.option(
        "--dataset-root",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="A dataset directory: generated, CSV layout (custom_train_dataset.csv...) or ImageFolder.",
    ),
    click.option(
        "--synthetic",
        type=click.Choice(["age", "source"]),
        default=None,
        help="Use (and generate if needed) a generated dataset under --data-dir.",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("data"),
        show_default=True,
        help="Where --synthetic datasets live.",
    ),
    click.option("--image-size", type=click.IntRange(min=8), default=None, help="Images are resized to N×N."),
]


def _data_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_DATA_OPTIONS):
        command = option(command)
    return command


@click.command()
@_data_options
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/train"),
    show_default=True,
    help="Output directory.",
)
@trial_options()
def train(
    config_file: Path | None,
    dataset_root: Path | None,
    synthetic: str | None,
    data_dir: Path,
    image_size: int | None,
    out: Path,
    **flags: Any,
) -> None:
    """Train one model; write metrics.json, epochs.parquet, model.pt and curves.png into --out."""
    from rich.console import Console

    from tlsweep.training.loop import run_trial
    from tlsweep.training.outputs import write_train_outputs

    console = Console(stderr=True)
    config, spec, size = resolve_run_settings(
        config_file=config_file,
        flags=flags,
        dataset_root=dataset_root,
        synthetic=synthetic,
        data_dir=data_dir,
        image_size=image_size,
    )
    data = _load(spec, size, console)
    result = _run_with_progress(config, data, console, run_trial)
    written = write_train_outputs(out, config=config, data=data, image_size=size, result=result)
    if result.status == "ok":
        click.echo(
            f"{result.status}: best val acc {result.best_val_acc:.4f} (epoch {result.best_epoch}), "
            f"test acc {result.test_acc:.4f}, chance {result.chance:.4f}, n_train {result.n_train}"
        )
    else:
        click.echo(
            f"{result.status}: the loss became non-finite after {result.optimizer_steps} steps; "
            f"lower --lr (was {config.lr})"
        )
    click.echo("wrote " + ", ".join(str(path) for path in written))


PRETRAIN_DEFAULTS = {"epochs": 15, "lr": 0.05, "augmentation": "flip", "warmup_epochs": 0.5}


@click.command()
@_data_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file [default: checkpoints/<backbone>-source.pt].",
)
@trial_options(**PRETRAIN_DEFAULTS)
def pretrain(
    config_file: Path | None,
    dataset_root: Path | None,
    synthetic: str | None,
    data_dir: Path,
    image_size: int | None,
    out: Path | None,
    **flags: Any,
) -> None:
    """Train a backbone on a source dataset (default: the generated source task at 32 px) for init checkpoint:PATH."""
    from rich.console import Console

    from tlsweep.training import loop as training

    console = Console(stderr=True)
    if dataset_root is None and synthetic is None and config_file is None:
        synthetic = "source"
    config, spec, size = resolve_run_settings(
        config_file=config_file,
        flags=flags,
        dataset_root=dataset_root,
        synthetic=synthetic,
        data_dir=data_dir,
        image_size=image_size or 32,
        defaults=PRETRAIN_DEFAULTS,
    )
    out = out or Path("checkpoints") / f"{config.backbone}-source.pt"
    data = _load(spec, size, console)
    metrics = _run_with_progress(
        config, data, console, lambda c, d, report: training.pretrain(c, d, out, report=report)
    )
    click.echo(
        f"pretrained {config.backbone} on {data.name}: best val acc {metrics['best_val_acc']:.4f}, "
        f"test acc {metrics['test_acc']:.4f} ({data.num_classes} classes)"
    )
    click.echo(f"wrote {out}; use it with --init checkpoint:{out}")


def _images_in(folder: Path) -> list[Path]:
    from tlsweep.data.config import DEFAULT_EXTENSIONS

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DEFAULT_EXTENSIONS)


def _label_index(value: str, class_names: list[str]) -> int | None:
    if value in class_names:
        return class_names.index(value)
    if value.strip().lstrip("-").isdigit() and 0 <= int(value) < len(class_names):
        return int(value)
    return None


def prediction_inputs(
    images: Path | None,
    csv_file: Path | None,
    path_column: str | None,
    label_column: str | None,
    class_names: list[str],
    image_dir: Path | None = None,
) -> list[tuple[str, Path, str | None, int | None]]:
    """(name as written, file, label as written or None, label's class index or None) for every image."""
    if (images is None) == (csv_file is None):
        raise click.UsageError("give exactly one of --images DIR and --csv FILE")
    if images is not None:
        files = _images_in(images)
        if not files:
            raise DataError(f"--images {images}: no image files found (looked recursively for common extensions)")
        rows = []
        for file in files:
            relative = file.relative_to(images)
            folder = relative.parts[0] if len(relative.parts) > 1 else None
            rows.append((str(relative), file, folder, _label_index(folder, class_names) if folder else None))
        return rows
    assert csv_file is not None
    with csv_file.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        path_column = path_column or (columns[0] if columns else None)
        if path_column not in columns:
            raise DataError(
                f"{csv_file}: no column {path_column!r}; columns are {columns}; pick one with --path-column"
            )
        if label_column is None and "label" in columns:
            label_column = "label"
        if label_column is not None and label_column not in columns:
            raise DataError(f"{csv_file}: no label column {label_column!r}; columns are {columns}")
        rows = []
        for line, record in enumerate(reader, start=2):
            raw = record[path_column]
            file = Path(raw) if Path(raw).is_absolute() else (image_dir or csv_file.parent) / raw
            if not file.is_file():
                raise DataError(
                    f"{csv_file} line {line}: image {raw!r} not found (looked at {file}); "
                    "set the folder relative paths start from with --image-dir"
                )
            label = record[label_column] if label_column else None
            rows.append((raw, file, label, _label_index(label, class_names) if label is not None else None))
    return rows


@click.command()
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A model.pt written by `tlsweep train`.",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Predict every image under DIR; DIR/<class name>/... gives the label.",
)
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Predict the images listed in a CSV (paths relative to the CSV's folder).",
)
@click.option(
    "--image-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder the CSV's relative paths start from [default: the CSV's folder].",
)
@click.option("--path-column", default=None, help="CSV column with the image path [default: the first column].")
@click.option("--label-column", default=None, help="CSV column with the label (class name or index) [default: label].")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("predictions.csv"),
    show_default=True,
    help="Output CSV.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N.")
def predict(
    checkpoint: Path,
    images: Path | None,
    csv_file: Path | None,
    image_dir: Path | None,
    path_column: str | None,
    label_column: str | None,
    out: Path,
    batch_size: int,
    device: str,
) -> None:
    """Predict classes with a trained model; write file, predicted_class, class_name, confidence(, label)."""
    import numpy as np
    import torch

    from tlsweep.data.cache import decode_image
    from tlsweep.training.predict import load_trained_model, predict_images

    trained = load_trained_model(checkpoint)
    rows = prediction_inputs(images, csv_file, path_column, label_column, trained.class_names, image_dir)
    decoded = []
    for _, file, _, _ in rows:
        try:
            decoded.append(decode_image(file, trained.image_size))
        except Exception as exc:
            raise DataError(f"cannot decode image {file}: {exc}") from exc
    tensor = torch.from_numpy(np.stack(decoded))
    predicted, confidence = predict_images(trained.model, tensor, batch_size=batch_size, device=device)
    with_label = any(label is not None for _, _, label, _ in rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    correct = labelled = 0
    with out.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            ["file", "predicted_class", "class_name", "confidence"] + (["label", "correct"] if with_label else [])
        )
        for (name, _, label, index), cls, conf in zip(rows, predicted, confidence, strict=False):
            row: list[Any] = [name, int(cls), trained.class_names[int(cls)], f"{conf:.6f}"]
            if with_label:  # "correct" only where the label names one of the model's classes
                row += [label if label is not None else "", "" if index is None else int(cls) == index]
                labelled += index is not None
                correct += index is not None and int(cls) == index
            writer.writerow(row)
    summary = f"; accuracy on {labelled} labelled images {correct / labelled:.4f}" if labelled else ""
    click.echo(f"wrote {len(rows)} predictions to {out}{summary}")


@click.command()
@click.argument("pattern", default="*")
def models(pattern: str) -> None:
    """List the backbones (fnmatch PATTERN) with parameter counts and published ImageNet weights."""
    from rich.console import Console
    from rich.table import Table

    from tlsweep.training.backbones import backbone_info, list_backbones

    table = Table(title="backbones")
    for column, justify in (
        ("name", "left"),
        ("family", "left"),
        ("parameters", "right"),
        ("ImageNet weights", "left"),
        ("description", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name in list_backbones(pattern):
        info = backbone_info(name)
        table.add_row(name, info["family"], f"{info['params']:,}", info["imagenet_weights"] or "-", info["description"])
    Console().print(table)
    click.echo("parameters counted with a 1000-class head; `init: imagenet` needs published weights")


@click.group()
def weights() -> None:
    """Pretrained weights in torchvision's cache (TORCH_HOME)."""


@weights.command()
@click.argument("names", nargs=-1, required=True, metavar="BACKBONE[:WEIGHTS]...")
def download(names: tuple[str, ...]) -> None:
    """Download torchvision ImageNet weights into the torch.hub cache (e.g. resnet50, resnet50:IMAGENET1K_V1)."""
    from tlsweep.training.backbones import download_imagenet_weights

    for name in names:
        backbone, _, weights_name = name.partition(":")
        path = download_imagenet_weights(backbone, weights_name or None, progress=False)
        click.echo(f"{name}: {path}")
