"""Trained-model files (``model.pt``) and prediction with them, for ``tlsweep train`` / ``tlsweep predict``.

A ``model.pt`` holds ``{"arch", "num_classes", "class_names", "image_size", "init", "state_dict", ...}`` and is
read with ``torch.load(weights_only=True)``. Its ``state_dict`` is a whole classifier, so the file also works as
``init: checkpoint:model.pt`` (the head is dropped there).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlsweep.errors import WeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn

REQUIRED_KEYS = ("arch", "num_classes", "class_names", "image_size", "state_dict")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` it into place."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def load_trained_model(path: str | Path) -> TrainedModel:
    """The classifier saved by ``tlsweep train`` at ``path``, in eval mode on CPU."""
    import torch

    from tlsweep.training.backbones import create_model

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file {path} does not exist; `tlsweep train --out DIR` writes DIR/model.pt")
    try:
        content = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise WeightsError(f"model file {path} cannot be read with torch.load(weights_only=True): {exc}") from exc
    missing = [key for key in REQUIRED_KEYS if not isinstance(content, dict) or key not in content]
    if missing:
        raise WeightsError(
            f"{path} is not a model written by `tlsweep train` (missing {', '.join(missing)}); a backbone "
            "checkpoint from `tlsweep pretrain` is used as `--init checkpoint:PATH`, not for prediction"
        )
    model = create_model(content["arch"], int(content["num_classes"]))
    try:
        model.load_state_dict(content["state_dict"])
    except RuntimeError as exc:
        raise WeightsError(f"{path}: the state dict does not fit {content['arch']}: {exc}") from exc
    model.eval()
    meta = {k: v for k, v in content.items() if k not in ("state_dict", "backbone")}
    return TrainedModel(model, content["arch"], list(content["class_names"]), int(content["image_size"]), meta)


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
