"""``TrialConfig``: every setting one training run needs, as plain values (no torch, no ray, no pydantic).

The sweep engine resolves a spec + cell + tuned parameters + seed into one of these; ``tlsweep train`` builds one
from flags or YAML. ``tlsweep.training.loop.run_trial`` consumes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Init = str  # "scratch" | "imagenet" | "imagenet:WEIGHTS_ENUM" | "checkpoint:/path/to/backbone.pt"


@dataclass(frozen=True)
class TrialConfig:
    backbone: str = "resnet_tiny"
    init: Init = "scratch"
    freeze_depth: int = 0  # 0 trains everything; 5 freezes the whole body (linear probe)
    epochs: int = 2
    train_fraction: float = 1.0
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    backbone_lr_mult: float = 1.0  # lr of unfrozen body parameters relative to the head
    schedule: Literal["constant", "step", "cosine"] = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up length in epochs (fractions allowed)
    step_size: int = 0  # epochs between ×gamma decays for schedule=step (0 → epochs // 3, at least 1)
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    augmentation: str = "none"  # none | flip | flip_color | trivial
    seed: int = 0  # replicate seed: subset, data order, augmentation, head init (and body init for scratch)
    eval_batch_size: int = 512
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast + channels_last on CUDA only
    num_threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trial setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)
