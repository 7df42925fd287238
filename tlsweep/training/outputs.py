"""What ``tlsweep train`` leaves in ``--out``: metrics.json, epochs.parquet, model.pt and curves.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsweep.results.atomic import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from tlsweep.data.types import DatasetTensors
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.loop import TrialResult

EPOCH_COLUMNS = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s")


def json_ready(value: Any) -> Any:
    """Replace NaN/inf by None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def epochs_schema() -> Any:
    """The per-epoch columns of ``tlsweep.results.schema.EPOCHS_SCHEMA`` (same names and types)."""
    import pyarrow as pa

    from tlsweep.results.schema import EPOCHS_SCHEMA

    return pa.schema([EPOCHS_SCHEMA.field(name) for name in EPOCH_COLUMNS])


def write_epochs_parquet(history: list[dict[str, float]], path: Path) -> None:
    """One row per epoch of ``history`` with :func:`epochs_schema`'s columns, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = epochs_schema()
    table = pa.Table.from_pylist([{name: row[name] for name in EPOCH_COLUMNS} for row in history], schema=schema)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def plot_curves(history: list[dict[str, float]], path: Path, *, title: str = "") -> None:
    """Loss and accuracy against epoch, train and validation, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric, label in ((loss_axis, "loss", "loss"), (acc_axis, "acc", "accuracy")):
        axis.plot(epochs, [row[f"train_{metric}"] for row in history], marker="o", label=f"train {label}")
        axis.plot(epochs, [row[f"val_{metric}"] for row in history], marker="o", label=f"validation {label}")
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_train_outputs(
    out: Path, *, config: TrialConfig, data: DatasetTensors, image_size: int, result: TrialResult
) -> list[Path]:
    """Write every output of one run into ``out``; returns the files written."""
    from tlsweep.training.predict import save_trained_model

    out.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = {
        "result": result.to_dict(),
        "config": config.to_dict(),
        "dataset": {
            "name": data.name,
            "class_names": list(data.class_names),
            "ordinal": data.ordinal,
            "image_size": image_size,
            **dict(data.extra),
        },
    }
    atomic_write_text(out / "metrics.json", json.dumps(json_ready(metrics), indent=2) + "\n")
    written.append(out / "metrics.json")
    write_epochs_parquet(result.history, out / "epochs.parquet")
    written.append(out / "epochs.parquet")
    if result.best_state is not None:
        save_trained_model(
            out / "model.pt",
            arch=config.backbone,
            state_dict=result.best_state,
            class_names=list(data.class_names),
            image_size=image_size,
            init=config.init,
            extra={"best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc, "config": config.to_dict()},
        )
        written.append(out / "model.pt")
    if result.history:
        plot_curves(result.history, out / "curves.png", title=f"{config.backbone} ({config.init}) on {data.name}")
        written.append(out / "curves.png")
    return written
