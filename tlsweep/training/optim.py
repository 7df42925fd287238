"""Optimizers and learning-rate schedules of one trial, stepped once per optimizer step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tlsweep.errors import SpecError
from tlsweep.training.config import OPTIMIZERS, SCHEDULES, TrialConfig

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Schedule:
    """Multiplier of the base learning rate as a function of the optimizer step (0-based)."""

    kind: str
    total_steps: int
    warmup_steps: int = 0
    decay_every_steps: int = 1  # schedule=step only
    gamma: float = 0.1  # schedule=step only

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise SpecError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")

    def lr_factor(self, step: int) -> float:
        # 1) linear warm-up: ramps from 1/(warmup+1) to 1 over the first warmup_steps steps
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        # 2) constant: full learning rate after the warm-up
        if self.kind == "constant":
            return 1.0
        # 3) step: ×gamma every decay_every_steps steps, counted from the first step (warm-up included)
        if self.kind == "step":
            return self.gamma ** (step // max(1, self.decay_every_steps))
        # 4) cosine: from 1 after the warm-up down to 0 at total_steps, 0 past it
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule_for(config: TrialConfig, steps_per_epoch: int) -> Schedule:
    """The schedule of ``config`` for a run with ``steps_per_epoch`` optimizer steps per epoch."""
    step_epochs = config.step_size if config.step_size > 0 else max(1, config.epochs // 3)
    return Schedule(
        kind=config.schedule,
        total_steps=steps_per_epoch * config.epochs,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        decay_every_steps=step_epochs * steps_per_epoch,
        gamma=config.step_gamma,
    )


def build_optimizer(config: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum, no Nesterov) or AdamW over the trainable parameters: head at lr, body at lr·backbone_lr_mult."""
    import torch

    from tlsweep.training.backbones import parameter_groups

    groups = parameter_groups(model, config.lr, config.backbone_lr_mult)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    raise SpecError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.lr_factor(step))
