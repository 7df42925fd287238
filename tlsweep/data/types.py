"""The tensors a trial trains on: one decoded split, and the three splits of a dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SplitTensors:
    """One split, decoded once: ``images`` is uint8 N×C×H×W (usually memory-mapped), ``labels`` int64 N."""

    images: torch.Tensor
    labels: torch.Tensor
    files: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DatasetTensors:
    """Train/val/test splits of one dataset, plus what a report needs to name the classes."""

    train: SplitTensors
    val: SplitTensors
    test: SplitTensors
    class_names: list[str]
    ordinal: bool = False  # labels are ordered groups (age): MAE and off-by-one accuracy are meaningful
    name: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
