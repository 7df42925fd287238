"""Evaluation of a classifier on one split: loss, accuracy, balanced accuracy and ordinal errors."""

from __future__ import annotations

import math
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
    import torch.nn.functional as F

    from tlsweep.data.augment import normalize
    from tlsweep.data.batches import iterate_batches

    model.eval()
    probabilities, labels, loss_sum = [], [], 0.0
    with torch.inference_mode():
        for images, targets in iterate_batches(
            split, indices, batch_size, shuffle=False, generator=None, device=device
        ):
            x = normalize(images)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(x)
            logits = logits.float()
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            probabilities.append(logits.softmax(dim=1).double().cpu().numpy())
            labels.append(targets.cpu().numpy())
    count = sum(len(batch) for batch in labels)
    if count == 0:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64), math.nan
    return np.concatenate(probabilities), np.concatenate(labels), loss_sum / count
