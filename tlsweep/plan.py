"""A sweep's plan before it runs: the work of its design (trials × epochs per study), the wall time and trial-hours
that timed probes of single trials give it, and the smallest paired difference its confirm seeds can detect.

Pure arithmetic over a ``SweepSpec``, probe timings and recorded rows (no torch, no Ray): ``tlsweep plan`` times the
probes (``tlsweep.training.probe``) and prints what this module computes.

Timing model. One trial of study (cell × arm) costs ``one_off + epochs × s_epoch(train_fraction)``: the one-off is
the trial's set-up and its test (subset, model, frozen features, the final evaluation), and seconds per epoch are
affine in the training fraction (the training pass grows with the subset, validation does not), fitted through
the probes at the smallest and the largest fraction. Factors other than epochs and train_fraction (augmentation,
freeze_depth) are probed level by level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlsweep.design import arm_of, cell_id, recipe_params, studies, study_trial_counts, trial_config
from tlsweep.metrics import is_accuracy_like, metric_value
from tlsweep.spec import ARM_KEY, SweepSpec
from tlsweep.stats.family import smallest_threshold
from tlsweep.stats.power import detectable_difference, detectable_effect

TIMED_ALONE = ("epochs", "train_fraction")  # factors the timing model handles without a probe of their own


@dataclass(frozen=True)
class StudyWork:
    """The trials one phase of one study (cell × arm) runs and the epochs each trains (at most, under ASHA)."""

    phase: str
    cell: str
    arm: str
    probe_key: str  # the probes that time this study (``probe_key``)
    train_fraction: float
    trials: int
    epochs: int
    early_stopped: bool  # ASHA may stop these trials early: their epochs are an upper bound

    @property
    def trial_epochs(self) -> int:
        return self.trials * self.epochs


def probe_key(levels: dict[str, Any]) -> str:
    """The study's arm and its levels that the timing model does not interpolate (``augmentation=flip|arm=x``)."""
    rest = {k: v for k, v in levels.items() if k not in TIMED_ALONE and k not in ("init", ARM_KEY)}
    return "|".join([*(f"{k}={v}" for k, v in rest.items()), f"arm={arm_of(levels)}"])


def sweep_work(spec: SweepSpec) -> list[StudyWork]:
    """Every (phase, study) of the design with its trial count (``design.study_trial_counts``) and epochs per trial
    (the study's recipe config: the model block, the recipe, the arm, the cell's levels)."""
    counts = study_trial_counts(spec)
    asha = spec.design.early_stopping is not None
    work = []
    for levels in studies(spec):
        config = trial_config(spec, levels, recipe_params(spec, levels), spec.confirm.seed_base)
        cell, arm = cell_id(levels), arm_of(levels)
        for phase in ("tune", "confirm"):
            work.append(
                StudyWork(
                    phase=phase,
                    cell=cell,
                    arm=arm,
                    probe_key=probe_key(levels),
                    train_fraction=float(config.train_fraction),
                    trials=counts[(phase, cell, arm)],
                    epochs=int(config.epochs),
                    early_stopped=asha and phase == "tune",
                )
            )
    return work


@dataclass(frozen=True)
class ProbePlan:
    """One probe: a study's levels, timed with its recipe config at one training fraction."""

    key: str
    levels: dict[str, Any]
    train_fraction: float


def probe_plans(spec: SweepSpec) -> list[ProbePlan]:
    """Per arm (and level of every factor the timing model does not interpolate): the study at the smallest and at
    the largest training fraction of the design (one probe when they are equal)."""
    by_key: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for levels in studies(spec):
        config = trial_config(spec, levels, recipe_params(spec, levels), spec.confirm.seed_base)
        by_key.setdefault(probe_key(levels), []).append((float(config.train_fraction), levels))
    plans = []
    for key, found in by_key.items():
        low, high = min(found, key=lambda f: f[0]), max(found, key=lambda f: f[0])
        plans += [ProbePlan(key, low[1], low[0])] + ([ProbePlan(key, high[1], high[0])] if high[0] > low[0] else [])
    return plans


@dataclass(frozen=True)
class ProbeTiming:
    """What one probe measured: seconds of each epoch it trained and its one-off seconds (set-up and test)."""

    key: str
    train_fraction: float
    epoch_seconds: tuple[float, ...]
    one_off_s: float
    n_train: int

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.median(self.epoch_seconds))


def epoch_seconds(timings: list[ProbeTiming], key: str, fraction: float) -> float:
    """Seconds per epoch of a study timed by ``key``'s probes at ``fraction``: the line through the probes at the
    smallest and largest fraction (never below the smaller probe's time); one probe: its time."""
    mine = sorted((t for t in timings if t.key == key), key=lambda t: t.train_fraction)
    if not mine:
        raise ValueError(f"no probe timed {key!r}")
    low, high = mine[0], mine[-1]
    if high.train_fraction == low.train_fraction:
        return high.seconds_per_epoch
    slope = (high.seconds_per_epoch - low.seconds_per_epoch) / (high.train_fraction - low.train_fraction)
    value = low.seconds_per_epoch + slope * (fraction - low.train_fraction)
    return max(value, min(low.seconds_per_epoch, high.seconds_per_epoch))


def one_off_seconds(timings: list[ProbeTiming], key: str) -> float:
    """A trial's one-off seconds for ``key``: the largest of its probes (the larger subset's set-up and test)."""
    return max(t.one_off_s for t in timings if t.key == key)


@dataclass(frozen=True)
class ArmEstimate:
    arm: str
    seconds_per_epoch: tuple[float, float]  # (smallest, largest) over the arm's cells; NaN without probes
    one_off_s: float
    tune_trials: int
    confirm_trials: int
    trial_epochs: int
    trial_hours: float


@dataclass(frozen=True)
class Estimate:
    """The sweep's work and, with probes, its time: per arm and in total."""

    arms: list[ArmEstimate]
    tune_trials: int
    confirm_trials: int
    trial_epochs: int
    tune_trial_epochs: int
    early_stopping: bool  # the tune phase's epochs are an upper bound (ASHA stops trials early)
    concurrency: int
    trial_hours: float  # NaN without probes
    resource_hours: dict[str, float] = field(default_factory=dict)  # {"CPU": h, "GPU": h}
    wall_hours: float = float("nan")  # trial-hours spread over the concurrent slots, at least the longest trial


def estimate(
    spec: SweepSpec, work: list[StudyWork], timings: list[ProbeTiming] | None, *, concurrency: int
) -> Estimate:
    """Totals of ``work``; with ``timings``, seconds per study from the timing model, and the wall time at
    ``concurrency`` trials at once (ideal packing: a lower bound when the phases cannot fill every slot)."""
    arms = []
    total_s = 0.0
    longest = 0.0
    for arm in spec.design.arm_names():
        mine = [w for w in work if w.arm == arm]
        seconds = 0.0
        per_epoch: list[float] = []
        one_offs: list[float] = []
        for w in mine:
            if timings is None:
                continue
            s_epoch = epoch_seconds(timings, w.probe_key, w.train_fraction)
            one_off = one_off_seconds(timings, w.probe_key)
            per_epoch.append(s_epoch)
            one_offs.append(one_off)
            seconds += w.trials * one_off + w.trial_epochs * s_epoch
            if w.trials:
                longest = max(longest, one_off + w.epochs * s_epoch)
        total_s += seconds
        nan = float("nan")
        arms.append(
            ArmEstimate(
                arm=arm,
                seconds_per_epoch=(min(per_epoch), max(per_epoch)) if per_epoch else (nan, nan),
                one_off_s=max(one_offs) if one_offs else nan,
                tune_trials=sum(w.trials for w in mine if w.phase == "tune"),
                confirm_trials=sum(w.trials for w in mine if w.phase == "confirm"),
                trial_epochs=sum(w.trial_epochs for w in mine),
                trial_hours=seconds / 3600 if timings is not None else nan,
            )
        )
    hours = total_s / 3600 if timings is not None else float("nan")
    resources = spec.resources
    resource_hours = {"CPU": hours * resources.cpus_per_trial}
    if resources.gpus_per_trial:
        resource_hours["GPU"] = hours * resources.gpus_per_trial
    return Estimate(
        arms=arms,
        tune_trials=sum(a.tune_trials for a in arms),
        confirm_trials=sum(a.confirm_trials for a in arms),
        trial_epochs=sum(w.trial_epochs for w in work),
        tune_trial_epochs=sum(w.trial_epochs for w in work if w.phase == "tune"),
        early_stopping=spec.design.early_stopping is not None,
        concurrency=concurrency,
        trial_hours=hours,
        resource_hours=resource_hours,
        wall_hours=max(hours / max(concurrency, 1), longest / 3600) if timings is not None else float("nan"),
    )


# ---- the smallest detectable effect ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CellDetectable:
    """One cell × comparison: the SD of its paired differences (tune phase) and the difference the seeds detect."""

    cell: str
    comparison: str  # "treated vs baseline"
    pairs: int  # tune pairs the SD comes from
    sd: float  # NaN: fewer than 2 pairs
    difference: float  # detectable mean difference in the metric's units (NaN without an SD)


@dataclass(frozen=True)
class Detectable:
    """What the confirm phase can detect: at ``seeds`` paired seeds, the family's smallest threshold, ``power``."""

    seeds: int
    tests: int  # cells × comparisons
    threshold: float  # the family's smallest one-sided threshold
    power: float
    d_z: float  # the detectable effect in SD units of the paired differences
    metric: str  # the column the SDs come from ("" without results)
    metric_name: str = ""  # what that column holds (the objective's metric for "objective")
    accuracy_like: bool = False  # the metric is a proportion (shown in points)
    cells: list[CellDetectable] = field(default_factory=list)


def detectable(spec: SweepSpec, tune_rows: list[dict[str, Any]] | None = None, *, power: float = 0.8) -> Detectable:
    """The smallest paired mean difference the confirm seeds detect with ``power`` by the one-sided paired t-test at
    the primary family's smallest threshold (both directions of every cell × comparison in one family: alpha / 2m
    under Holm), in SD units (d_z) and, from ``tune_rows`` (recorded tune trials), per cell × comparison.

    A cell's SD is that of the differences treated − baseline of its tune trials paired by tune index (the same
    seed in every arm; the configs differ, so it is an upper bound on the seeds' own spread). The metric is the
    hypothesis metric where the tune rows hold it, else the objective's column (validation).
    """
    cells = list(dict.fromkeys(cell_id(levels) for levels in studies(spec)))
    tests = len(cells) * len(spec.compared_arms)
    threshold = smallest_threshold(spec.hypothesis.alpha, spec.hypothesis.correction, tests)
    seeds = spec.confirm.max_seeds
    d_z = detectable_effect(seeds, alpha=threshold, power=power)
    if not tune_rows:
        return Detectable(seeds, tests, threshold, power, d_z, "")
    metric: str = spec.hypothesis.metric
    if not any(np.isfinite(metric_value(row, metric)) for row in tune_rows):
        metric = "objective"
    values: dict[tuple[str, str, int], float] = {}
    factors = spec.cell_factors()
    for row in tune_rows:
        if row.get("tune_index") is None:
            continue
        levels = {f: row.get(f) for f in factors}
        cell = cell_id(levels) if all(v is not None for v in levels.values()) else str(row.get("cell_id"))
        value = metric_value(row, metric)
        if np.isfinite(value):
            values[(cell, str(row["arm"]), int(row["tune_index"]))] = value
    name = spec.objective.metric if metric == "objective" else metric
    found = []
    for comparison in spec.compared_arms:
        for cell in cells:
            diffs = [
                value - values[(cell, comparison.baseline, index)]
                for (c, arm, index), value in values.items()
                if c == cell and arm == comparison.treated and (cell, comparison.baseline, index) in values
            ]
            sd = float(np.std(diffs, ddof=1)) if len(diffs) >= 2 else float("nan")
            difference = (
                detectable_difference(sd, seeds, alpha=threshold, power=power) if np.isfinite(sd) else float("nan")
            )
            found.append(
                CellDetectable(cell, f"{comparison.treated} vs {comparison.baseline}", len(diffs), sd, difference)
            )
    return Detectable(seeds, tests, threshold, power, d_z, metric, name, is_accuracy_like(name), found)


def to_json(estimate: Estimate, detectable: Detectable, **extra: Any) -> str:
    """The plan as JSON (NaN as null)."""
    from dataclasses import asdict

    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return value if np.isfinite(value) else None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean({**extra, "estimate": asdict(estimate), "detectable": asdict(detectable)}), indent=2)
