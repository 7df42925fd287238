"""``tlsweep train``, ``predict``, ``pretrain``, ``models`` and ``weights download``: single runs without Ray.

Settings come from (lowest to highest priority) ``TrialConfig``'s defaults (the pretraining recipe's for
``pretrain``), a ``--config`` YAML file and flags; ``tlsweep.training.train_settings`` resolves and checks them.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from tlsweep.errors import InputChoiceError
from tlsweep.training.config import PRETRAIN_DEFAULTS, PRETRAIN_WARMUP, SETTING_TYPES, SETTINGS, TrialConfig

SETTING_HELP: dict[str, str] = {
    "backbone": "Architecture (see `tlsweep models`), or timm:<model name> for any timm model.",
    "init": "scratch | imagenet | imagenet:WEIGHTS (torchvision name; timm: a tag or a file) | checkpoint:PATH.",
    "freeze_depth": "0 trains everything, 1 freezes the stem, then stages; the backbone's last level (5 for "
    "ResNets and VGG; `tlsweep models`) the whole body.",
    "head": "linear | mlp (dense(32) + BatchNorm + ReLU + dense) on the pooled features.",
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
    "feature_cache": "Compute frozen layers once per node and reuse them (augmentation none/flip).",
    "feature_cache_dtype": "Storage dtype of the reused frozen-layer activations: auto, float16 or float32.",
}
_DEFAULTS = TrialConfig()


def _click_type(name: str) -> Any:
    hint = SETTING_TYPES[name]
    if typing.get_origin(hint) is typing.Literal:
        return click.Choice(list(typing.get_args(hint)))
    return {int: int, float: float, str: str}[hint]


def trial_options(**defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One flag per ``TrialConfig`` field (``--freeze-depth``, ``--amp/--no-amp``...); unset flags are None."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(SETTINGS):
            default = defaults.get(name, getattr(_DEFAULTS, name))
            help_text = f"{SETTING_HELP.get(name, '')} [default: {default}]"
            flag = name.replace("_", "-")
            if SETTING_TYPES[name] is bool:
                option = click.option(f"--{flag}/--no-{flag}", name, default=None, help=help_text)
            else:
                option = click.option(f"--{flag}", name, type=_click_type(name), default=None, help=help_text)
            command = option(command)
        return command

    return decorate


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """A missing or conflicting input is a usage error (usage line, exit code 2)."""
    try:
        yield
    except InputChoiceError as exc:
        raise click.UsageError(str(exc)) from exc


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

    from tlsweep.output_paths import check_output_dir, keep_elsewhere
    from tlsweep.training.loop import run_trial
    from tlsweep.training.outputs import write_train_outputs
    from tlsweep.training.train_settings import resolve_run_settings

    console = Console(stderr=True)
    check_output_dir(out)  # before any work: a finished run is never lost to an unwritable --out
    with _usage_errors():
        settings = resolve_run_settings(
            config_file=config_file,
            flags=flags,
            dataset_root=dataset_root,
            synthetic=synthetic,
            data_dir=data_dir,
            image_size=image_size,
        )
    config, size = settings.config, settings.image_size
    data = _load(settings.dataset, size, console)
    result = _run_with_progress(config, data, console, run_trial)
    written = keep_elsewhere(
        lambda folder: write_train_outputs(folder, config=config, data=data, image_size=size, result=result),
        out,
        what="--out",
        prefix="tlsweep-train-",
    )
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


@click.command()
@_data_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file [default: checkpoints/<backbone>-source.pt].",
)
@trial_options(**PRETRAIN_DEFAULTS, warmup_epochs=PRETRAIN_WARMUP)
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

    from tlsweep.output_paths import check_output_file
    from tlsweep.training import loop as training
    from tlsweep.training.config import pretrain_config
    from tlsweep.training.train_settings import resolve_run_settings

    console = Console(stderr=True)
    if dataset_root is None and synthetic is None and config_file is None:
        synthetic = "source"
    with _usage_errors():
        settings = resolve_run_settings(
            config_file=config_file,
            flags=flags,
            dataset_root=dataset_root,
            synthetic=synthetic,
            data_dir=data_dir,
            image_size=image_size or 32,
            make_config=pretrain_config,
        )
    config = settings.config
    out = out or Path("checkpoints") / f"{config.backbone}-source.pt"
    check_output_file(out)
    data = _load(settings.dataset, settings.image_size, console)
    metrics = _run_with_progress(
        config, data, console, lambda c, d, report: training.pretrain(c, d, out, report=report)
    )
    click.echo(
        f"pretrained {config.backbone} on {data.name}: best val acc {metrics['best_val_acc']:.4f}, "
        f"test acc {metrics['test_acc']:.4f} ({data.num_classes} classes)"
    )
    click.echo(f"wrote {out}; use it with --init checkpoint:{out}")


@click.command()
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A model.pt written by `tlsweep train`, or a sweep checkpoint kept by `checkpoints.keep` (its state.pt).",
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
@click.option("--device", default="cpu", show_default=True, help="auto | cpu | cuda | cuda:N.")
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
    from tlsweep.output_paths import check_output_file, keep_elsewhere
    from tlsweep.training.loop import resolve_device
    from tlsweep.training.predict import (
        decode_inputs,
        load_trained_model,
        predict_images,
        prediction_inputs,
        write_predictions,
    )

    check_output_file(out)  # before any work: predictions are never lost to an unwritable --out
    torch_device = resolve_device(device, what="--device")
    trained = load_trained_model(checkpoint)
    with _usage_errors():
        inputs = prediction_inputs(
            images=images,
            csv_file=csv_file,
            path_column=path_column,
            label_column=label_column,
            class_names=trained.class_names,
            image_dir=image_dir,
        )
    tensor = decode_inputs(inputs, trained.image_size)
    predicted, confidence = predict_images(trained.model, tensor, batch_size=batch_size, device=torch_device)
    summary = keep_elsewhere(
        lambda path: write_predictions(path, inputs, predicted, confidence, trained.class_names),
        out,
        what="--out",
        prefix="tlsweep-predict-",
        name=out.name,
    )
    accuracy = f"; accuracy on {summary.labelled} labelled images {summary.accuracy:.4f}" if summary.labelled else ""
    click.echo(f"wrote {summary.count} predictions to {out}{accuracy}")


@click.command()
@click.argument("pattern", default="*")
@click.option(
    "--timm",
    "timm_pattern",
    default=None,
    metavar="PATTERN",
    help="List timm's models matching this fnmatch PATTERN (e.g. 'resnetv2*') instead of the registry.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="At most this many timm models (each is built on the meta device to count its parameters and freeze levels).",
)
def models(pattern: str, timm_pattern: str | None, limit: int) -> None:
    """List the backbones (fnmatch PATTERN) with parameter counts, freeze levels and published ImageNet weights."""
    from rich.console import Console
    from rich.table import Table

    from tlsweep.training.backbones import backbone_info, list_backbones, list_timm_models
    from tlsweep.training.weights import locate_weights

    names = list_backbones(pattern) if timm_pattern is None else list_timm_models(timm_pattern)
    table = Table(title="backbones" if timm_pattern is None else f"timm models matching {timm_pattern!r}")
    for column, justify in (
        ("name", "left"),
        ("family", "left"),
        ("parameters", "right"),
        ("freeze levels", "right"),
        ("ImageNet weights", "left"),
        ("cached", "left"),
        ("description", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column in ("name", "parameters"))  # type: ignore[arg-type]
    where: list[str] = []
    for name in names[:limit] if timm_pattern is not None else names:
        info = backbone_info(name)
        located = locate_weights(name, "imagenet") if info["imagenet_weights"] else None
        if located is not None:
            where.append(f"{name}: {located.found}" if located.found else f"{name}: not cached; `{located.fetch}`")
        table.add_row(
            name,
            info["family"],
            f"{info['params']:,}",
            f"0..{info['freeze_levels']}",
            info["imagenet_weights"] or "-",
            "-" if located is None else "yes" if located.present else "no",
            info["description"],
        )
    Console().print(table)
    if where:
        click.echo("ImageNet weights on this machine:\n  " + "\n  ".join(where))
    if timm_pattern is not None and len(names) > limit:
        click.echo(f"{len(names) - limit} more timm models match; narrow the pattern or raise --limit")
    click.echo(
        "parameters counted with a 1000-class head; freeze_depth runs over the levels (the last freezes the whole "
        "body); `init: imagenet` needs published weights, read from this machine's cache (TORCH_HOME, HF_HOME); "
        "any timm model is a backbone as timm:<model name>"
    )


@click.group()
def weights() -> None:
    """Pretrained weights in torchvision's cache (TORCH_HOME) and timm's (the Hugging Face cache, HF_HOME)."""


@weights.command()
@click.argument("names", nargs=-1, required=True, metavar="BACKBONE[:WEIGHTS]...")
def download(names: tuple[str, ...]) -> None:
    """Download ImageNet weights: torchvision's into the torch.hub cache (e.g. resnet50, resnet50:IMAGENET1K_V1),
    timm's into the Hugging Face cache (e.g. timm:resnetv2_50, timm:resnet50.a1_in1k)."""
    from tlsweep.training.backbones import TIMM_PREFIX, download_imagenet_weights, download_timm_weights

    for name in names:
        if name.startswith(TIMM_PREFIX):
            path = download_timm_weights(name)
        else:
            backbone, _, weights_name = name.partition(":")
            path = download_imagenet_weights(backbone, weights_name or None, progress=False)
        click.echo(f"{name}: {path}")
