"""Trained-model files (``model.pt``) and prediction with them, for ``tlsweep train`` / ``tlsweep predict``.

Prediction: :func:`prediction_inputs` lists the images (a folder or a CSV), :func:`decode_inputs` decodes them,
:func:`predict_images` classifies them and :func:`write_predictions` writes the predictions CSV.

A ``model.pt`` holds ``{"arch", "num_classes", "class_names", "image_size", "init", "state_dict", ...}`` and is
read with ``torch.load(weights_only=True)``. Its ``state_dict`` is a whole classifier (body and head, ``linear`` or
``mlp``: read back from the head's keys), so the file also works as ``init: checkpoint:model.pt`` (the head is
dropped there).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlsweep.errors import DataError, InputChoiceError, UnknownNameError, WeightsError
from tlsweep.results.atomic import atomic_write

if TYPE_CHECKING:
    import torch
    from torch import nn

REQUIRED_KEYS = ("arch", "num_classes", "class_names", "image_size", "state_dict")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (``tlsweep.results.atomic``), creating its directory."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_trained_model(
    path: Path,
    *,
    arch: str,
    state_dict: dict[str, Any],
    class_names: list[str],
    image_size: int,
    init: str,
    extra: dict[str, Any] | None = None,
) -> None:
    atomic_torch_save(
        {
            "arch": arch,
            "num_classes": len(class_names),
            "class_names": list(class_names),
            "image_size": int(image_size),
            "init": init,
            "state_dict": state_dict,
            "backbone": {k: v for k, v in state_dict.items() if not k.startswith(_head_prefix(arch))},
            **(extra or {}),
        },
        path,
    )


def save_library_weights(path: Path, *, arch: str, state_dict: dict[str, Any]) -> str | None:
    """Write the classifier's weights as its library's own model names them (a plain state dict at ``path``) and
    return the call that builds that model, e.g. ``timm.create_model('resnet50', num_classes=3)``; write nothing
    and return None where no library model matches (tlsweep's own backbones, an MLP head)."""
    from tlsweep.training.backbones import library_model

    found = library_model(arch, state_dict)
    if found is None:
        return None
    call, weights = found
    atomic_torch_save(weights, path)
    return call


def _head_prefix(arch: str) -> str:
    from tlsweep.training.backbones import head_prefix

    return head_prefix(arch)


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Module
    arch: str
    class_names: list[str]
    image_size: int
    meta: dict[str, Any]


def sweep_checkpoint_model(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """A sweep trial's ``state.pt`` (kept by ``checkpoints.keep``) as a model file: its best-validation weights."""
    best = state["progress"].get("best_state")
    if best is None or "class_names" not in state or "image_size" not in state:
        raise WeightsError(
            f"{path} is a sweep checkpoint without best-validation weights or class names (saved before its first "
            "epoch finished, or by tlsweep < 0.2); use the final checkpoint of a finished trial"
        )
    config = state["config"]
    return {
        "arch": config["backbone"],
        "num_classes": len(state["class_names"]),
        "class_names": list(state["class_names"]),
        "image_size": int(state["image_size"]),
        "init": config["init"],
        "state_dict": best,
        "config": config,
        "best_epoch": state["progress"].get("best_epoch"),
        "best_val_acc": state["progress"].get("best_val_acc"),
    }


def load_trained_model(path: str | Path) -> TrainedModel:
    """The classifier saved by ``tlsweep train`` at ``path``, or the best-validation weights of a sweep trial's
    kept checkpoint (``ray/sweep-*/confirm-<trial id>/checkpoint_*/state.pt``), in eval mode on CPU."""
    import torch

    from tlsweep.training.backbones import create_model, head_of_state_dict

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file {path} does not exist; `tlsweep train --out DIR` writes DIR/model.pt")
    try:
        content = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise WeightsError(f"model file {path} cannot be read with torch.load(weights_only=True): {exc}") from exc
    if isinstance(content, dict) and "progress" in content and "format" in content:
        from tlsweep.training.config import STATE_FORMAT

        if content["format"] != STATE_FORMAT:
            raise WeightsError(
                f"{path}: a sweep checkpoint of format {content['format']!r}; this tlsweep reads format "
                f"{STATE_FORMAT}: predict with the tlsweep version that wrote it, or train the model again"
            )
        content = sweep_checkpoint_model(content, path)
    missing = [key for key in REQUIRED_KEYS if not isinstance(content, dict) or key not in content]
    if missing:
        raise WeightsError(
            f"{path} is not a model written by `tlsweep train` (missing {', '.join(missing)}); a backbone "
            "checkpoint from `tlsweep pretrain` is used as `--init checkpoint:PATH`, not for prediction"
        )
    _check_metadata(content, path)
    _check_finite(content["state_dict"], path)
    try:
        head = head_of_state_dict(content["state_dict"], content["arch"])
        model = create_model(content["arch"], int(content["num_classes"]), head=head)
    except UnknownNameError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(content["state_dict"])
    except RuntimeError as exc:
        raise WeightsError(f"{path}: the state dict does not fit {content['arch']}: {exc}") from exc
    model.eval()
    meta = {k: v for k, v in content.items() if k not in ("state_dict", "backbone")}
    return TrainedModel(model, content["arch"], list(content["class_names"]), int(content["image_size"]), meta)


def _check_metadata(content: dict[str, Any], path: Path) -> None:
    """The fields a prediction relies on are of the right type, size and range (before any image is decoded)."""
    from tlsweep.training.config import MAX_IMAGE_SIZE

    fix = "rewrite it with `tlsweep train --out DIR`"
    num_classes, names, size = content["num_classes"], content["class_names"], content["image_size"]
    if not isinstance(content["arch"], str):
        raise WeightsError(f"{path}: arch must be a backbone name, got {content['arch']!r}; {fix}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise WeightsError(f"{path}: num_classes must be an integer >= 2, got {num_classes!r}; {fix}")
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise WeightsError(f"{path}: class_names must be a list of names, got {type(names).__name__}; {fix}")
    if len(names) != num_classes:
        raise WeightsError(
            f"{path}: {len(names)} class names for a head of {num_classes} classes; the names and "
            f"the head must match: {fix}"
        )
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_IMAGE_SIZE:
        raise WeightsError(f"{path}: image_size must be an integer in 8..{MAX_IMAGE_SIZE}, got {size!r}; {fix}")


def _check_finite(state_dict: object, path: Path) -> None:
    """Every weight of ``state_dict`` is a finite number (a NaN head predicts class 0 for every image)."""
    import torch

    if not isinstance(state_dict, dict):
        raise WeightsError(f"{path}: state_dict must be a mapping of tensors, got {type(state_dict).__name__}")
    bad = [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise WeightsError(
            f"{path}: non-finite weights (NaN or inf) in {', '.join(bad[:3])}{more}: the training diverged; "
            "predict with a model whose training did not (a lower lr, or the best-validation weights)"
        )


def predict_images(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 256, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class index and its softmax probability for uint8 N×3×H×W ``images``."""
    import torch

    from tlsweep.data.augment import normalize

    model = model.to(device).eval()
    predicted, confidence = [], []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = normalize(images[start : start + batch_size].to(device))
            probabilities = model(batch).float().softmax(dim=1)
            top = probabilities.max(dim=1)
            predicted.append(top.indices.cpu().numpy())
            confidence.append(top.values.cpu().numpy())
    if not predicted:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return np.concatenate(predicted).astype(np.int64), np.concatenate(confidence).astype(np.float64)


# ---- prediction inputs and the predictions CSV ---------------------------------------------------------------
@dataclass(frozen=True)
class PredictionInput:
    """One image to predict, as ``tlsweep predict`` lists it."""

    name: str  # as written in the predictions CSV: the path under --images, or the CSV's path value
    file: Path
    label: str | None  # as written (class folder or CSV value); None when the image has none
    label_index: int | None  # the label's class index; None when it names none of the model's classes


@dataclass(frozen=True)
class PredictionSummary:
    """What :func:`write_predictions` wrote: ``count`` rows, ``correct`` of the ``labelled`` ones right."""

    count: int
    labelled: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def images_in(folder: Path) -> list[Path]:
    """Every image file (common extensions, any case) under ``folder``, recursively, sorted."""
    from tlsweep.data.dataset_spec import DEFAULT_EXTENSIONS

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DEFAULT_EXTENSIONS)


def label_index(value: str, class_names: list[str]) -> int | None:
    """The class index a label names: a class name, or an index in range; None otherwise."""
    if value in class_names:
        return class_names.index(value)
    if value.strip().lstrip("-").isdigit() and 0 <= int(value) < len(class_names):
        return int(value)
    return None


def prediction_inputs(
    *,
    images: Path | None = None,
    csv_file: Path | None = None,
    path_column: str | None = None,
    label_column: str | None = None,
    class_names: list[str],
    image_dir: Path | None = None,
) -> list[PredictionInput]:
    """The images to predict: every image under ``images`` or every row of ``csv_file``.

    Args:
        images: a folder; ``images/<class name>/...`` labels an image, files directly in it have no label.
        csv_file: a CSV listing image paths (absolute, or relative to ``image_dir``, default the CSV's folder).
        path_column: the CSV column with the path (default: the first column).
        label_column: the CSV column with the label, a class name or index (default: ``label`` if present).
        class_names: the model's classes, to find each label's index.

    Raises:
        InputChoiceError: unless exactly one of ``images`` and ``csv_file`` is given.
        DataError: no image under ``images``, a missing column, or a listed image that does not exist.
    """
    if (images is None) == (csv_file is None):
        raise InputChoiceError("give exactly one of --images DIR and --csv FILE")
    if images is not None:
        return _folder_inputs(images, class_names)
    assert csv_file is not None
    return _csv_inputs(csv_file, path_column, label_column, class_names, image_dir)


def _folder_inputs(images: Path, class_names: list[str]) -> list[PredictionInput]:
    files = images_in(images)
    if not files:
        raise DataError(f"--images {images}: no image files found (looked recursively for common extensions)")
    rows = []
    for file in files:
        relative = file.relative_to(images)
        folder = relative.parts[0] if len(relative.parts) > 1 else None
        rows.append(PredictionInput(str(relative), file, folder, label_index(folder, class_names) if folder else None))
    return rows


def _csv_inputs(
    csv_file: Path, path_column: str | None, label_column: str | None, class_names: list[str], image_dir: Path | None
) -> list[PredictionInput]:
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
            rows.append(
                PredictionInput(raw, file, label, label_index(label, class_names) if label is not None else None)
            )
    if not rows:
        raise DataError(f"{csv_file}: lists no images (only a header); add one image path per line")
    return rows


def decode_inputs(inputs: list[PredictionInput], image_size: int) -> torch.Tensor:
    """The images of ``inputs`` decoded as the training cache does: uint8 N×3×``image_size``×``image_size``.

    Raises:
        DataError: naming the first file that cannot be decoded.
    """
    import torch

    from tlsweep.data.cache import decode_image

    decoded = []
    for item in inputs:
        try:
            decoded.append(decode_image(item.file, image_size))
        except Exception as exc:
            raise DataError(f"cannot decode image {item.file}: {exc}") from exc
    return torch.from_numpy(np.stack(decoded))


def write_predictions(
    out: Path,
    inputs: list[PredictionInput],
    predicted: np.ndarray,
    confidence: np.ndarray,
    class_names: list[str],
) -> PredictionSummary:
    """Write ``file, predicted_class, class_name, confidence`` (+ ``label, correct`` when any input has a label).

    ``correct`` is filled only where the label names one of the model's classes. The CSV is written atomically.
    """
    with_label = any(item.label is not None for item in inputs)
    counts = {"labelled": 0, "correct": 0}

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(
                ["file", "predicted_class", "class_name", "confidence"] + (["label", "correct"] if with_label else [])
            )
            for item, cls, conf in zip(inputs, predicted, confidence, strict=False):
                row: list[Any] = [item.name, int(cls), class_names[int(cls)], f"{conf:.6f}"]
                if with_label:
                    index = item.label_index
                    row += [item.label if item.label is not None else "", "" if index is None else int(cls) == index]
                    counts["labelled"] += index is not None
                    counts["correct"] += index is not None and int(cls) == index
                writer.writerow(row)

    atomic_write(out, write)
    return PredictionSummary(len(inputs), counts["labelled"], counts["correct"])
