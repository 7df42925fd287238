"""The experimental design as plain data: studies (cell × arm), trial ids, seeds, and resolved trial configs.

Pure functions over a ``SweepSpec`` and rows of ``trials.parquet``; no ray, no torch. The sweep engine asks this
module *what* to run; ``tlsweep.engine.searchers`` and ``tlsweep.engine.run`` decide *when*.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from tlsweep.spec import FACTOR_NAMES, PRETRAINED_LEVELS, SweepSpec
from tlsweep.training.config import TrialConfig


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def cell_id(levels: dict[str, Any]) -> str:
    """Cell name from factor levels, init excluded: ``train_fraction=0.1|epochs=2`` (``all`` if only init varies).

    Factors appear in the fixed order of ``FACTOR_NAMES`` whatever the order of the mapping.
    """
    ordered = sorted((FACTOR_NAMES.index(name), name) for name in levels if name != "init")
    parts = [f"{name}={_fmt(levels[name]).strip(chr(34))}" for _, name in ordered]
    return "|".join(parts) or "all"


def study_key(levels: dict[str, Any]) -> str:
    return f"{cell_id(levels)}|init={levels['init']}"


def trial_id(phase: str, cell: str, arm: str, index: str, params: dict[str, Any], seed: int) -> str:
    """Content hash of (phase, cell, arm, slot, params, seed): a rerun of the same trial has the same id."""
    payload = json.dumps(
        {"phase": phase, "cell": cell, "arm": arm, "index": index, "params": params, "seed": seed},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def tune_seed(spec: SweepSpec, tune_index: int) -> int:
    """Replicate seed of tune trial ``tune_index``: shared by every cell and arm (paired tuning curves)."""
    return 100_000 * (spec.design.budget.seed + 1) + tune_index


def confirm_seeds(spec: SweepSpec) -> list[int]:
    return [spec.confirm.seed_base + r for r in range(spec.confirm.seeds)]


def arm_params(spec: SweepSpec, levels: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Drop parameters that do not apply to this study (e.g. freeze_depth for scratch)."""
    out = {}
    for name, value in params.items():
        entry = spec.design.tune.get(name)
        if entry is not None and not entry.applies_to(levels):
            continue
        if name == "freeze_depth" and levels["init"] not in PRETRAINED_LEVELS:
            continue
        out[name] = value
    return out


def recipe_params(spec: SweepSpec, levels: dict[str, Any]) -> dict[str, Any]:
    """The recipe's values of the parameters tuned in this study (what the recipe trial suggests)."""
    tuned = [name for name, entry in spec.design.tune.items() if entry.applies_to(levels)]
    return arm_params(spec, levels, {name: spec.design.recipe[name] for name in tuned})


def resolve_init(spec: SweepSpec, init: str) -> str:
    if init == "imagenet":
        weights = spec.model.pretrained.imagenet
        return f"imagenet:{weights}" if weights else "imagenet"
    if init == "checkpoint":
        return f"checkpoint:{spec.model.pretrained.checkpoint}"
    return "scratch"


def trial_config(
    spec: SweepSpec, levels: dict[str, Any], params: dict[str, Any], seed: int, *, num_threads: int = 0
) -> TrialConfig:
    """Everything one run needs: model block < recipe < factor levels < tuned parameters; seed last."""
    values: dict[str, Any] = {k: v for k, v in levels.items() if k != "init"}
    values.update(params)
    config = spec.base_trial_config().replace(
        **values, init=resolve_init(spec, str(levels["init"])), seed=seed, num_threads=num_threads
    )
    if levels["init"] not in PRETRAINED_LEVELS:
        config = config.replace(freeze_depth=0)
    return config


@dataclass(frozen=True)
class PlannedTrial:
    """One trial the sweep will run: where it belongs in the design and everything needed to run and record it."""

    trial_id: str
    phase: str  # tune | confirm
    levels: dict[str, Any]
    config_kind: str  # recipe | search | best
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    tune_index: int | None = None
    replicate: int | None = None

    @property
    def cell_id(self) -> str:
        return cell_id(self.levels)

    @property
    def arm(self) -> str:
        return str(self.levels["init"])

    @property
    def study_key(self) -> str:
        return study_key(self.levels)

    def meta(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "phase": self.phase,
            "levels": self.levels,
            "config_kind": self.config_kind,
            "seed": self.seed,
            "params": self.params,
            "tune_index": self.tune_index,
            "replicate": self.replicate,
            "cell_id": self.cell_id,
            "arm": self.arm,
            "study_key": self.study_key,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> PlannedTrial:
        keys = ("trial_id", "phase", "levels", "config_kind", "seed", "params", "tune_index", "replicate")
        return cls(**{k: meta[k] for k in keys})


def plan_tune_trial(spec: SweepSpec, levels: dict[str, Any], tune_index: int, params: dict[str, Any]) -> PlannedTrial:
    params = arm_params(spec, levels, params)
    kind = "recipe" if tune_index == 0 else "search"
    seed = tune_seed(spec, tune_index)
    tid = trial_id("tune", cell_id(levels), str(levels["init"]), f"tune-{tune_index}", params, seed)
    return PlannedTrial(tid, "tune", levels, kind, seed, params, tune_index=tune_index)


def select_best(spec: SweepSpec, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The tune trial of one study the confirm phase reruns: best objective among finished, non-pruned trials.

    Selection uses validation only (the ``objective`` column). Ties go to the lower tune_index (the recipe first).
    """
    eligible = [r for r in rows if r["status"] in ("ok", "diverged") and r.get("objective") is not None]
    eligible = [r for r in eligible if r["objective"] == r["objective"]]  # drop NaN
    if not eligible:
        return None
    sign = 1.0 if spec.objective.mode == "max" else -1.0
    return max(eligible, key=lambda r: (sign * r["objective"], -int(r["tune_index"])))


def plan_confirm(spec: SweepSpec, tune_rows: list[dict[str, Any]]) -> tuple[list[PlannedTrial], list[str]]:
    """Confirm trials for every study from the finished tune phase; also the studies that could not be confirmed."""
    by_study: dict[str, list[dict[str, Any]]] = {}
    for row in tune_rows:
        by_study.setdefault(study_key(json.loads(row["params_json"])["levels"]), []).append(row)
    planned: list[PlannedTrial] = []
    skipped: list[str] = []
    for levels in spec.studies():
        key = study_key(levels)
        for kind in spec.confirm.configs:
            if kind == "best":
                best = select_best(spec, by_study.get(key, []))
                if best is None:
                    skipped.append(f"{key}: no finished tune trial to confirm (all failed or pruned)")
                    continue
                params = arm_params(spec, levels, json.loads(best["params_json"])["tuned"])
            else:
                params = recipe_params(spec, levels)
            for replicate, seed in enumerate(confirm_seeds(spec)):
                tid = trial_id("confirm", cell_id(levels), str(levels["init"]), f"{kind}-{replicate}", params, seed)
                planned.append(PlannedTrial(tid, "confirm", levels, kind, seed, params, replicate=replicate))
    return planned, skipped


# ---- design health: optimizer steps per cell --------------------------------------------------------------------
MIN_OPTIMIZER_STEPS = 10  # below this a run (from scratch above all) barely moves from its initialisation


@dataclass(frozen=True)
class CellSteps:
    """Optimizer steps one run of a cell takes: ceil(n_train·fraction / batch) × epochs (the largest batch tried)."""

    levels: dict[str, Any]  # the cell's factor levels (without init)
    n_train: int  # training images of the cell's subset
    batch_size: int
    epochs: int
    steps: int

    @property
    def too_few(self) -> bool:
        return self.steps < MIN_OPTIMIZER_STEPS


def optimizer_steps(n_train: int, fraction: float, batch_size: int, epochs: int) -> tuple[int, int]:
    """(subset size, optimizer steps) of a run, as ``tlsweep.training.loop`` counts them (a last batch of one image
    is dropped: it breaks BatchNorm)."""
    n = max(1, int(fraction * n_train + 0.5)) if fraction < 1 else n_train
    per_epoch = n // batch_size if n % batch_size == 1 else -(-n // batch_size)
    return n, max(per_epoch, 0) * epochs


def cell_steps(spec: SweepSpec, n_train: int) -> list[CellSteps]:
    """Steps per run of every cell of the design, with the largest batch size a study may use (fewest steps)."""
    base = spec.base_trial_config()
    batch = base.batch_size
    tuned = spec.design.tune.get("batch_size")
    if tuned is not None:
        options = [float(v) for v in (tuned.choices or []) if isinstance(v, (int, float))] or [float(tuned.high or batch)]
        batch = max(batch, int(max(options)))
    names = spec.cell_factors()
    out = []
    seen: set[str] = set()
    for study in spec.studies():
        levels = {name: study[name] for name in names}
        key = cell_id(levels)
        if key in seen:
            continue
        seen.add(key)
        fraction = float(levels.get("train_fraction", base.train_fraction))
        epochs = int(levels.get("epochs", base.epochs))
        n, steps = optimizer_steps(n_train, fraction, batch, epochs)
        out.append(CellSteps(levels, n, batch, epochs, steps))
    return out
