"""Evaluation of a classifier on one split: loss, accuracy, balanced accuracy and ordinal errors."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tlsweep.data.types import SplitTensors


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, *, ordinal: bool, loss: float
) -> dict[str, float | None]:
    """``acc``, ``balanced_acc`` (mean recall over the classes present), ``loss`` and, for ordinal labels only,
    ``mae`` (mean absolute class-index error) and ``off_by_one`` (accuracy within one class; else None)."""
    if len(labels) == 0:
        nan = float("nan")
        return {
            "loss": nan,
            "acc": nan,
            "balanced_acc": nan,
            "mae": nan if ordinal else None,
            "off_by_one": nan if ordinal else None,
        }
    predicted = probabilities.argmax(axis=1)
    correct = predicted == labels
    recalls = [float(correct[labels == cls].mean()) for cls in np.unique(labels)]
    distance = np.abs(predicted.astype(np.int64) - labels.astype(np.int64))
    return {
        "loss": float(loss),
        "acc": float(correct.mean()),
        "balanced_acc": float(np.mean(recalls)),
        "mae": float(distance.mean()) if ordinal else None,
        "off_by_one": float((distance <= 1).mean()) if ordinal else None,
    }


def confusion_matrix(probabilities: np.ndarray, labels: np.ndarray, num_classes: int) -> list[list[int]]:
    """Counts of (true class, predicted class): row ``i`` holds the images of class ``i`` by predicted class."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    if len(labels):
        np.add.at(counts, (labels.astype(np.int64), probabilities.argmax(axis=1)), 1)
    return counts.tolist()


def class_accuracies(confusion: list[list[int]]) -> list[float | None]:
    """Each class's accuracy (its recall) from a confusion matrix; None for a class without images."""
    return [row[i] / sum(row) if sum(row) else None for i, row in enumerate(confusion)]


def predict_probabilities(
    model: nn.Module,
    split: SplitTensors,
    indices: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    use_amp: bool = False,
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax probabilities (N×K float64), labels (N int64) and mean cross-entropy of ``model`` on ``indices``."""
    import torch

    from tlsweep.data.augment import normalize
    from tlsweep.data.batches import iterate_batches

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, targets in iterate_batches(
            split, indices, batch_size, shuffle=False, generator=None, device=device
        ):
            x = normalize(images)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, targets

    model.eval()
    return probabilities_of(model, batches(), use_amp=use_amp, device=device)


def probabilities_of(
    forward: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    use_amp: bool,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Probabilities, labels and mean cross-entropy of ``forward`` (already in eval mode) over ``batches`` of
    (inputs, labels). Everything stays on the device until one transfer at the end."""
    import torch
    import torch.nn.functional as F

    probabilities, labels = [], []
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for x, targets in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = forward(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
            probabilities.append(logits.softmax(dim=1).double())
            labels.append(targets)
    count = sum(len(batch) for batch in labels)
    if count == 0:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64), math.nan
    return torch.cat(probabilities).cpu().numpy(), torch.cat(labels).cpu().numpy(), float(loss_sum) / count
