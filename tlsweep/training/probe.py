"""A timed probe: one short trial in this process (no Ray), through the same ``run_trial`` a sweep's trials use."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlsweep.data.types import DatasetTensors
    from tlsweep.training.config import TrialConfig


@dataclass(frozen=True)
class ProbeRun:
    """Seconds of each epoch a probe trained, its one-off seconds (the rest of its wall time: subset, model, frozen
    features, the test), the training images and the device it ran on."""

    epoch_seconds: tuple[float, ...]
    one_off_s: float
    wall_s: float
    n_train: int
    device: str


def probe_trial(config: TrialConfig, data: DatasetTensors, *, epochs: int) -> ProbeRun:
    """Run ``config`` for ``epochs`` epochs (its warm-up cut to fit) and time it.

    Raises:
        SpecError: for a setting that cannot run (as ``run_trial``).
    """
    from tlsweep.training.loop import resolve_device, run_trial

    short = config.replace(epochs=epochs, warmup_epochs=min(config.warmup_epochs, float(epochs)))
    seconds: list[float] = []

    def report(row: dict[str, Any], get_state: Any) -> None:
        seconds.append(float(row["epoch_time_s"]))

    started = time.perf_counter()
    result = run_trial(short, data, report=report)
    wall = time.perf_counter() - started
    if not seconds:  # diverged in the first epoch: its whole time is the one epoch it trained
        seconds.append(wall)
    return ProbeRun(
        epoch_seconds=tuple(seconds),
        one_off_s=max(0.0, wall - sum(seconds)),
        wall_s=wall,
        n_train=int(result.n_train),
        device=str(resolve_device(short.device)),
    )
