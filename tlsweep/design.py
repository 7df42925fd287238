"""The plan of a sweep: studies (cell × arm), trial counts, trial ids, seeds, trial configs and the confirm plan.

Pure functions over a validated ``SweepSpec`` (``tlsweep.spec``, the data) and rows of ``trials.parquet``; no ray, no
torch. :func:`check_design` is the part of a spec's validation that needs the plan (``tlsweep.spec_load`` runs it).
The sweep engine asks this module *what* to run; ``tlsweep.engine.searchers`` and ``tlsweep.engine.run`` decide
*when*.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlsweep.errors import SpecError
from tlsweep.metrics import metric_value
from tlsweep.space import grid_points
from tlsweep.spec import ARM_KEY, FACTOR_NAMES, PRETRAINED_LEVELS, SweepSpec, tune_range_values
from tlsweep.stats.sequential import SequentialDesign, SequentialOutcome, look_pvalues, sequential_decide
from tlsweep.training.config import (
    MAX_FREEZE_DEPTH,
    BodyFacts,
    TrialConfig,
    check_trial_config,
    effective_settings,
)


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def cell_id(levels: dict[str, Any]) -> str:
    """Cell name from factor levels, the arm (init) excluded: ``train_fraction=0.1|epochs=2`` (``all`` if only the
    arm varies).

    Factors appear in the fixed order of ``FACTOR_NAMES`` whatever the order of the mapping.
    """
    ordered = sorted((FACTOR_NAMES.index(name), name) for name in levels if name not in ("init", ARM_KEY))
    parts = [f"{name}={_fmt(levels[name]).strip(chr(34))}" for _, name in ordered]
    return "|".join(parts) or "all"


def arm_of(levels: dict[str, Any]) -> str:
    """The arm of a study's levels: its ``arm`` name (``design.arms``), else its init level."""
    return str(levels[ARM_KEY] if ARM_KEY in levels else levels["init"])


def study_key(levels: dict[str, Any]) -> str:
    if ARM_KEY in levels:
        return f"{cell_id(levels)}|arm={levels[ARM_KEY]}"
    return f"{cell_id(levels)}|init={levels['init']}"


def split_study_key(key: str) -> tuple[str, str]:
    """(cell id, arm) of a :func:`study_key`."""
    for separator in (f"|{ARM_KEY}=", "|init="):
        cell, found, arm = key.rpartition(separator)
        if found:
            return cell, arm
    raise ValueError(f"{key!r} is not a study key (CELL|init=LEVEL or CELL|arm=NAME)")


def studies(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every combination of factor levels (cell × arm): one Optuna study each, in a stable order.

    With init levels as the arms a study's levels are its factor levels (``init`` among them); with
    ``design.arms`` they also hold ``arm`` (the name) and ``init`` (the arm's level), arms first.
    """
    factors = spec.design.factors
    names = list(factors)
    cells = [dict(zip(names, combo, strict=False)) for combo in itertools.product(*(factors[n] for n in names))]
    if spec.design.arms is None:
        return cells
    return [{**arm, **cell} for arm in spec.design.arm_levels() for cell in cells]


def study_trial_counts(spec: SweepSpec) -> dict[tuple[str, str, str], int]:
    """Trials each (phase, cell, arm) runs: its tune budget, and its confirm seeds × configs (adaptive: at most)."""
    per_confirm = spec.confirm.max_seeds * len(spec.confirm.configs)
    counts: dict[tuple[str, str, str], int] = {}
    for levels in studies(spec):
        counts[("tune", cell_id(levels), arm_of(levels))] = spec.design.budget.trials_per_cell
        counts[("confirm", cell_id(levels), arm_of(levels))] = per_confirm
    return counts


def trial_counts(spec: SweepSpec) -> dict[str, int]:
    """Trials of each phase: ``{"tune": N, "confirm": M}`` (adaptive confirm: at most)."""
    totals = {"tune": 0, "confirm": 0}
    for (phase, _, _), count in study_trial_counts(spec).items():
        totals[phase] += count
    return totals


def base_trial_config(spec: SweepSpec) -> TrialConfig:
    """TrialConfig with everything the model block and the recipe fix (factors and tuned values go on top)."""
    m = spec.model
    return TrialConfig(
        backbone=m.backbone,
        batch_size=m.batch_size,
        eval_batch_size=m.eval_batch_size,
        optimizer=m.optimizer.name,
        momentum=m.optimizer.momentum,
        schedule=m.schedule.name,
        warmup_epochs=m.schedule.warmup_epochs,
        step_size=m.schedule.step_size,
        step_gamma=m.schedule.gamma,
        label_smoothing=m.label_smoothing,
        backbone_lr_mult=m.backbone_lr_mult,
        feature_cache_dtype=m.feature_cache_dtype,
    ).replace(**{k: v for k, v in spec.design.recipe.items() if v is not None})


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


def confirm_seed(spec: SweepSpec, replicate: int) -> int:
    """Seed of confirm replicate ``replicate``: ``seed_base + replicate`` (r < ``seeds``; adaptive: r < ``max_seeds``,
    handed out look by look), shared by every cell and arm (paired comparisons)."""
    return spec.confirm.seed_base + replicate


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


def tuned_in(spec: SweepSpec, levels: dict[str, Any]) -> list[str]:
    """The parameters tuned in this study: the tune entries whose ``when`` holds for its levels."""
    return [name for name, entry in spec.design.tune.items() if entry.applies_to(levels)]


def recipe_params(spec: SweepSpec, levels: dict[str, Any]) -> dict[str, Any]:
    """The recipe's values of the parameters tuned in this study (what the recipe trial suggests)."""
    return arm_params(spec, levels, {name: spec.design.recipe[name] for name in tuned_in(spec, levels)})


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
    """Everything one run needs: model block < recipe < the arm's settings < factor levels < tuned parameters; seed
    last."""
    values = {k: v for k, v in spec.arm_settings(arm_of(levels)).items() if k != "init"}
    values.update({k: v for k, v in levels.items() if k not in ("init", ARM_KEY)})
    values.update(params)
    config = base_trial_config(spec).replace(
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
        return arm_of(self.levels)

    @property
    def init(self) -> str:
        """The arm's init level (scratch, imagenet, checkpoint)."""
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
    tid = trial_id("tune", cell_id(levels), arm_of(levels), f"tune-{tune_index}", params, seed)
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


def _confirm_studies(
    spec: SweepSpec, tune_rows: list[dict[str, Any]], only: set[str] | None = None
) -> tuple[list[tuple[dict[str, Any], str, dict[str, Any]]], list[str]]:
    """(levels, config kind, params) of every study (of those in ``only``, when given) × confirmed config; also the
    studies that cannot be confirmed."""
    by_study: dict[str, list[dict[str, Any]]] = {}
    for row in tune_rows:
        by_study.setdefault(study_key(json.loads(row["params_json"])["levels"]), []).append(row)
    confirmed: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
    skipped: list[str] = []
    for levels in studies(spec):
        key = study_key(levels)
        if only is not None and key not in only:
            continue
        for kind in spec.confirm.configs:
            if kind == "best":
                best = select_best(spec, by_study.get(key, []))
                if best is None:
                    skipped.append(f"{key}: no finished tune trial to confirm (all failed or pruned)")
                    continue
                params = arm_params(spec, levels, json.loads(best["params_json"])["tuned"])
            else:
                params = recipe_params(spec, levels)
            confirmed.append((levels, kind, params))
    return confirmed, skipped


def _confirm_trials(
    spec: SweepSpec, confirmed: list[tuple[dict[str, Any], str, dict[str, Any]]], replicates: range
) -> list[PlannedTrial]:
    planned = []
    for levels, kind, params in confirmed:
        for replicate in replicates:
            seed = confirm_seed(spec, replicate)
            tid = trial_id("confirm", cell_id(levels), arm_of(levels), f"{kind}-{replicate}", params, seed)
            planned.append(PlannedTrial(tid, "confirm", levels, kind, seed, params, replicate=replicate))
    return planned


@dataclass(frozen=True)
class ConfirmStep:
    """What the confirm phase hands out now (``plan_confirm_step``)."""

    trials: list[PlannedTrial]  # every confirm trial planned up to this look, recorded ones included
    more: bool  # True: once these are recorded, ask again; the next look may give open cells more seeds
    skipped: list[str]  # studies that cannot be confirmed (no finished tune trial)
    look: int  # 1-based look these trials complete
    looks: tuple[int, ...]  # seeds per cell at each look
    open_cells: tuple[str, ...]  # cells that get seeds at this look


def plan_confirm_step(spec: SweepSpec, rows: list[dict[str, Any]]) -> ConfirmStep:
    """The confirm trials to hand out now, from the spec and the recorded rows alone (so a resumed sweep takes the
    same path: the same batches, the same seeds).

    Without ``confirm.adaptive`` that is every confirm trial, and nothing follows. With it, look k gives every cell
    still open seeds ``seed_base + r`` for r < n_k; once a look's trials are all recorded, the group-sequential
    decision on the first n_k paired seeds (``confirm_outcome``) says which cells stay open for the next look.
    The tune phase must be complete (its rows select each study's config).
    """
    tune_rows = [r for r in rows if r["phase"] == "tune"]
    confirm_rows = [r for r in rows if r["phase"] == "confirm"]
    recorded = {r["trial_id"] for r in confirm_rows}
    confirmed, skipped = _confirm_studies(spec, tune_rows)
    looks = spec.confirm.looks()
    open_cells = tuple(dict.fromkeys(cell_id(levels) for levels, _, _ in confirmed))
    planned: list[PlannedTrial] = []
    previous = 0
    for k, n in enumerate(looks, start=1):
        batch = [t for t in _confirm_trials(spec, confirmed, range(previous, n)) if t.cell_id in open_cells]
        planned += batch
        if k == len(looks) or any(t.trial_id not in recorded for t in batch):
            return ConfirmStep(planned, k < len(looks), skipped, k, looks, open_cells)
        cells, outcome = confirm_outcome(spec, confirm_rows, looks_done=k)
        still = {cell for cell, is_open in zip(cells, outcome.open.tolist(), strict=True) if is_open}
        open_cells = tuple(cell for cell in open_cells if cell in still)
        if not open_cells:
            return ConfirmStep(planned, False, skipped, k, looks, open_cells)
        previous = n
    raise AssertionError("unreachable: the last look returns")


def tune_complete_studies(spec: SweepSpec, rows: list[dict[str, Any]]) -> set[str]:
    """Study keys whose whole tune budget is recorded in ``rows`` (their confirm config can be selected now)."""
    indices: dict[str, set[int]] = {}
    for row in rows:
        if row["phase"] == "tune" and row.get("tune_index") is not None:
            key = study_key(json.loads(row["params_json"])["levels"])
            indices.setdefault(key, set()).add(int(row["tune_index"]))
    budget = spec.design.budget.trials_per_cell
    return {key for key, done in indices.items() if len(done) >= budget}


def plan_confirm_now(spec: SweepSpec, rows: list[dict[str, Any]]) -> ConfirmStep:
    """The confirm trials that may run now, while the tune phase may still be running elsewhere.

    A study's first look needs only its own tune trials, so it is planned as soon as that study's tune budget is
    recorded (the same trials, ids and seeds ``plan_confirm_step`` gives later). Once every study is tuned this is
    ``plan_confirm_step``: later looks of an adaptive design decide over all cells together, so they wait for
    every cell's previous look.
    """
    ready = tune_complete_studies(spec, rows)
    if len(ready) == len(studies(spec)):
        return plan_confirm_step(spec, rows)
    confirmed, skipped = _confirm_studies(spec, [r for r in rows if r["phase"] == "tune"], only=ready)
    looks = spec.confirm.looks()
    trials = _confirm_trials(spec, confirmed, range(looks[0]))
    return ConfirmStep(trials, True, skipped, 1, looks, tuple(dict.fromkeys(t.cell_id for t in trials)))


def expected_trial_seconds(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each study's expected trial length: the median ``wall_time_s`` of its recorded tune trials that ran to the
    end (status ``ok``; pruned trials stop early, a failed one says nothing about the length).

    A confirm trial runs its study's cell with the selected config, so its study's tune trials are the best guess of
    its length; the searcher hands confirm trials out longest first, so short trials fill the slots at the end.
    """
    walls: dict[str, list[float]] = {}
    for row in rows:
        wall = row.get("wall_time_s")
        if row["phase"] == "tune" and row.get("status") == "ok" and wall is not None and wall == wall:
            walls.setdefault(study_key(json.loads(row["params_json"])["levels"]), []).append(float(wall))
    return {key: float(np.median(values)) for key, values in walls.items()}


# ---- the group-sequential decision of an adaptive confirm phase ------------------------------------------------
def sequential_design(spec: SweepSpec) -> SequentialDesign:
    """The spec's group-sequential plan (a one-look design without ``confirm.adaptive``)."""
    adaptive = spec.confirm.adaptive
    hyp = spec.hypothesis
    return SequentialDesign(
        looks=spec.confirm.looks(),
        alpha=hyp.alpha,
        spending=adaptive.spending if adaptive is not None else "obrien_fleming",
        correction=hyp.correction,
        alternative=spec.compared_arms[0].direction,  # the comparison's own direction (adaptive: one comparison)
        margin=hyp.equivalence_margin,
        futility=adaptive.futility if adaptive is not None else 0.0,
    )


def primary_config_kind(spec: SweepSpec) -> str:
    """The confirmed config the primary family tests: ``best`` when confirmed, else ``recipe``."""
    return "best" if "best" in spec.confirm.configs else spec.confirm.configs[0]


def confirm_differences(spec: SweepSpec, confirm_rows: list[dict[str, Any]]) -> tuple[list[str], np.ndarray]:
    """(cells, treated − baseline per cell and replicate ``[m, max_seeds]``, NaN where a pair is missing) of the
    primary (first) comparison's confirm runs."""
    treated, baseline = spec.compared_arms[0].pair
    kind = primary_config_kind(spec)
    cells = list(dict.fromkeys(cell_id(levels) for levels in studies(spec)))
    index = {cell: i for i, cell in enumerate(cells)}
    n = spec.confirm.max_seeds
    values = {arm: np.full((len(cells), n), np.nan) for arm in (treated, baseline)}
    for row in confirm_rows:
        if row["phase"] != "confirm" or row["config_kind"] != kind or row["arm"] not in values:
            continue
        factors = spec.cell_factors()
        name = cell_id({f: row[f] for f in factors}) if all(row.get(f) is not None for f in factors) else row["cell_id"]
        i, r = index.get(name), row.get("replicate")
        if i is None or r is None or not 0 <= int(r) < n:
            continue
        values[row["arm"]][i, int(r)] = metric_value(row, spec.hypothesis.metric)
    return cells, values[treated] - values[baseline]


def confirm_outcome(
    spec: SweepSpec, confirm_rows: list[dict[str, Any]], *, looks_done: int | None = None
) -> tuple[list[str], SequentialOutcome]:
    """The group-sequential decisions of every cell after ``looks_done`` looks (default: all), from recorded rows."""
    design = sequential_design(spec)
    cells, diffs = confirm_differences(spec, confirm_rows)
    return cells, sequential_decide(look_pvalues(diffs, design), design, looks_done)


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
    base = base_trial_config(spec)
    batch = base.batch_size
    tuned = spec.design.tune.get("batch_size")
    if tuned is not None:
        options = [float(v) for v in (tuned.choices or []) if isinstance(v, (int, float))] or [
            float(tuned.high or batch)
        ]
        batch = max(batch, int(max(options)))
    fixed = [spec.arm_settings(arm).get("batch_size") for arm in spec.design.arm_names()]
    batch = max([batch, *(int(b) for b in fixed if isinstance(b, int))])  # an arm may fix a larger batch
    names = spec.cell_factors()
    out = []
    seen: set[str] = set()
    for study in studies(spec):
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


# ---- the checks of a spec that need its plan ---------------------------------------------------------------------
def check_design(spec: SweepSpec) -> None:
    """What field validation cannot see: arms that differ in nothing, trials the design makes that are invalid, a
    grid sampler whose grid is not the budget.

    Raises:
        ValueError: naming the field and the fix (``tlsweep.spec_load.parse_spec`` reports it as a spec error).
    """
    check_arms_differ(spec)
    _check_when_applies(spec)
    _check_tuned_somewhere(spec)
    _check_trial_configs(spec)
    if spec.design.budget.sampler == "grid":
        _check_grid(spec)


HOW_IT_COMPUTES = "how it computes, not what"
NO_EFFECT_WHY = {  # why a setting two arms differ in cannot matter (training.config.effective_settings)
    "momentum": "the optimizer has none",
    "freeze_depth": "scratch trains every layer",
    "backbone_lr_mult": "the whole body is frozen",
    "feature_cache_dtype": "the frozen-feature cache is not used, or auto stores that dtype",
}


def parse_time_body(backbone: str) -> BodyFacts:
    """What is known of a backbone without torch: the registered ones have at most ``MAX_FREEZE_DEPTH`` levels (a
    depth of 5 is their whole body); a timm model's levels are its own."""
    return BodyFacts(freeze_levels=None if backbone.startswith("timm:") else MAX_FREEZE_DEPTH)


def check_arms_differ(spec: SweepSpec, body: Callable[[str], BodyFacts] = parse_time_body) -> None:
    """Two arms that would train the same model with the same settings in every cell are one arm: an error. Settings
    that cannot change a run's numbers (``training.config.effective_settings``, told what ``body`` knows of each
    backbone and what each study tunes) do not count.

    Raises:
        ValueError: naming both arms, the settings in which they differ and the fix.
    """
    if spec.design.arms is None:
        return
    base = base_trial_config(spec).to_dict()
    keys: dict[str, list[str]] = {}
    for levels in studies(spec):
        effective = _effective_study_settings(spec, levels, base, body)
        keys.setdefault(arm_of(levels), []).append(json.dumps(effective, sort_keys=True, default=str))
    seen: dict[str, str] = {}
    for name, key in keys.items():
        other = seen.setdefault(json.dumps(key), name)
        if other == name:
            continue
        mine, theirs = ({**base, **spec.arm_settings(arm)} for arm in (name, other))
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        what = (
            f"differ only in {', '.join(differ)}, which cannot change a run's numbers here ("
            + "; ".join(f"{k}: {NO_EFFECT_WHY.get(k, HOW_IT_COMPUTES)}" for k in differ)
            + ")"
            if differ
            else "differ in nothing"
        )
        raise ValueError(
            f"design.arms.{other} and design.arms.{name} {what}: the same init and settings once the model block "
            "and the recipe apply; change a setting of one arm or drop it"
        )


def _check_when_applies(spec: SweepSpec) -> None:
    """A tune entry whose ``when`` holds in no study is tuned nowhere: an error, not a silent no-op."""
    every = studies(spec)
    arms = ", ".join(
        f"{levels.get(ARM_KEY, levels['init'])} (init {levels['init']})" for levels in spec.design.arm_levels()
    )
    for name, entry in spec.design.tune.items():
        if entry.when and not any(entry.applies_to(levels) for levels in every):
            raise ValueError(
                f"design.tune.{name}.when {entry.when} holds in no study (no arm and cell has all those levels "
                f"together; the arms: {arms}); widen it to an arm that has them or drop the entry"
            )


def _effective_study_settings(
    spec: SweepSpec, levels: dict[str, Any], base: dict[str, Any], body: Callable[[str], BodyFacts]
) -> dict[str, Any]:
    """A study's settings (``base`` < its arm's < its levels) that can change a run's numbers, what it tunes counted
    as varying (``training.config.effective_settings``)."""
    settings = {**base, **spec.arm_settings(arm_of(levels)), **{k: v for k, v in levels.items() if k != ARM_KEY}}
    return effective_settings(settings, varying=tuned_in(spec, levels), body=body(str(settings["backbone"])))


def _check_tuned_somewhere(spec: SweepSpec) -> None:
    """A tune entry that cannot change a run's numbers in any study it applies to (``freeze_depth`` where only
    scratch arms have it, ``momentum`` where every optimizer lacks one) spends the budget on nothing: an error."""
    base = base_trial_config(spec).to_dict()
    applied: set[str] = set()
    mattered: set[str] = set()
    for levels in studies(spec):
        tuned = set(tuned_in(spec, levels))
        applied |= tuned
        mattered |= tuned & set(_effective_study_settings(spec, levels, base, parse_time_body))
    idle = [name for name in spec.design.tune if name in applied - mattered]  # a `when` holding nowhere: above
    if idle:
        name = idle[0]
        where = "its `when` selects" if spec.design.tune[name].when else "the design has"
        raise ValueError(
            f"design.tune.{name} cannot change a run's numbers in any study {where} "
            f"({NO_EFFECT_WHY.get(name, HOW_IT_COMPUTES)}): drop the entry, or let `when` select an arm where "
            f"{name} matters"
        )


def _check_trial_configs(spec: SweepSpec) -> None:
    """Every study's recipe trial and every end of every tune range passes ``check_trial_config``: what holds for
    each setting alone is checked field by field; this catches the rules between settings (warmup_epochs within
    epochs) as the trials will meet them."""
    seed = spec.confirm.seed_base
    for levels in studies(spec):
        candidates: list[tuple[str, dict[str, Any]]] = [("the recipe", recipe_params(spec, levels))]
        for name, entry in spec.design.tune.items():
            if entry.applies_to(levels):
                candidates += [(f"design.tune.{name} = {value!r}", {name: value}) for value in tune_range_values(entry)]
        for what, params in candidates:
            try:
                check_trial_config(trial_config(spec, levels, params, seed))
            except SpecError as exc:
                where = ", ".join(f"{k}={v}" for k, v in levels.items())
                raise ValueError(f"{what} gives an invalid trial in the study {where}: {exc}") from None


def _check_grid(spec: SweepSpec) -> None:
    for levels in studies(spec):
        grid = grid_points(spec.design.tune, levels)
        if grid is None:
            raise ValueError("budget.sampler grid needs categorical or linear int tune entries only")
        size = 1
        for values in grid.values():
            size *= len(values)
        if size != spec.design.budget.trials_per_cell:
            raise ValueError(
                f"budget.trials_per_cell must equal the grid size ({size}) with sampler grid, "
                f"got {spec.design.budget.trials_per_cell}"
            )
