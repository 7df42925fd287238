"""A simulator of tlsweep results directories, written with the exact TRIALS/EPOCHS Parquet schemas.

Accuracy of a run = level(cell, arm) + seed effect (shared by both arms: common random numbers) + run noise.
``status_of`` decides each run's status ("ok", "diverged", "failed", or "nan" for an ok run whose metrics are
missing), so tests can build every degenerate case. The directory holds what a sweep writes: a valid
``spec.resolved.yaml`` (from ``spec`` when given, else built from the arguments) and ``provenance.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tlsweep.design import trial_counts
from tlsweep.results.schema import EPOCHS_SCHEMA, TRIALS_SCHEMA
from tlsweep.results.store import Provenance, ResultsStore
from tlsweep.spec import SweepSpec
from tlsweep.spec_load import parse_spec

StatusOf = Callable[[str, str, str, int, int | None], str]  # (phase, cell_id, arm, seed, tune_index) -> status


def default_effect(train_fraction: float, epochs: int) -> float:
    """Pretraining advantage (accuracy units) that shrinks with data and epochs: 0.25 at (0.1, 2) → ~0 at (1, 6)."""
    return max(0.0, 0.25 - 0.08 * math.log2(train_fraction / 0.1) - 0.02 * (epochs - 2))


def baseline_level(train_fraction: float, epochs: int) -> float:
    return 0.30 + 0.06 * math.log2(train_fraction / 0.1) + 0.02 * epochs


def cell_id_of(levels: dict[str, Any]) -> str:
    return "|".join(f"{name}={value}" for name, value in levels.items())


def simulate_results(
    path: Path,
    *,
    name: str = "demo",
    arms: Sequence[str] = ("checkpoint", "scratch"),
    train_fractions: Sequence[float] = (0.1, 1.0),
    epochs: Sequence[int] = (2, 6),
    augmentations: Sequence[str] | None = None,
    seeds: int = 8,
    trials_per_cell: int = 4,
    effect: Callable[[float, int], float] | float = default_effect,
    noise_sd: float = 0.01,
    seed_sd: float = 0.02,
    configs: Sequence[str] = ("best", "recipe"),
    status_of: StatusOf | None = None,
    hypothesis: dict[str, Any] | None = None,
    write_spec: bool = True,
    rng_seed: int = 0,
    num_classes: int = 8,
    freeze_depths: Sequence[int] | None = None,
    spec: SweepSpec | None = None,
    baseline: Callable[[float, int], float] | None = None,
    best_lr: float | None = None,
    region: dict[str, list[Any]] | None = None,
    arm_effects: dict[str, float] | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write trials.parquet, epochs.parquet, spec.resolved.yaml and provenance.json under ``path``; return ``path``.

    With ``spec``, its name, arms (in the order of its init levels), factor levels, budget and confirm settings
    replace the corresponding arguments; the simulated advantage goes to the treated arm (the first arm
    without ``spec``). ``baseline(fraction, epochs)`` replaces the baseline arm's accuracy (``chance`` puts a cell at
    chance), ``best_lr`` is the lr every confirmed ``best`` config selected, ``region`` the spec's hypothesis.region.
    ``class_names`` go to provenance.json (the per-class columns stay null; ``set_confusions`` writes them).
    """
    if spec is not None:
        unsupported = sorted(set(spec.cell_factors()) - {"train_fraction", "epochs", "augmentation"})
        if unsupported:
            raise ValueError(f"simulate_results cannot simulate the factor(s) {unsupported}")
        factors = spec.design.factors
        name, arms = spec.name, spec.design.arm_names()
        train_fractions = factors.get("train_fraction", [1.0])
        epochs = factors.get("epochs", [2])
        augmentations = factors.get("augmentation")
        seeds, trials_per_cell = spec.confirm.seeds, spec.design.budget.trials_per_cell
        configs = spec.confirm.configs
    rng = np.random.default_rng(rng_seed)
    path.mkdir(parents=True, exist_ok=True)
    chance = 1.0 / num_classes
    treated = spec.compared_arms[0].treated if spec is not None else arms[0]
    inits = {arm: str(spec.arm_settings(arm)["init"]) if spec is not None else arm for arm in arms}
    effect_fn = effect if callable(effect) else (lambda f, e: float(effect))
    replicate_seeds = [1000 + r for r in range(seeds)]
    seed_effects = {s: rng.normal(0.0, seed_sd) for s in replicate_seeds}
    trials: list[dict[str, Any]] = []
    epochs_rows: list[dict[str, Any]] = []
    aug_levels = list(augmentations) if augmentations else [None]
    status_of = status_of or (lambda *args: "ok")

    def level(fraction: float, n_epochs: int, arm: str, aug: str | None) -> float:
        base = (baseline or baseline_level)(fraction, n_epochs) + (0.03 if aug == "flip" else 0.0)
        if arm_effects is not None:
            return base + arm_effects.get(arm, 0.0)
        return base + (effect_fn(fraction, n_epochs) if arm == treated else 0.0)

    for fraction in train_fractions:
        for n_epochs in epochs:
            for aug in aug_levels:
                levels: dict[str, Any] = {"train_fraction": fraction, "epochs": n_epochs}
                if aug is not None:
                    levels["augmentation"] = aug
                cell = cell_id_of(levels)
                for arm in arms:
                    freeze = None if inits[arm] == "scratch" else 0
                    common = dict(
                        cell_id=cell,
                        arm=arm,
                        init=inits[arm],
                        train_fraction=float(fraction),
                        epochs=int(n_epochs),
                        augmentation=aug or "none",
                        freeze_depth=freeze,
                    )
                    mean = level(fraction, n_epochs, arm, aug)
                    for index in range(trials_per_cell):
                        seed = 1 + index
                        penalty = 0.0 if index == 0 else abs(rng.normal(0.0, 0.04)) - 0.01
                        fd = None
                        if freeze_depths is not None and inits[arm] != "scratch":
                            fd = int(freeze_depths[index % len(freeze_depths)])
                            penalty += 0.01 * fd
                        value = float(np.clip(mean - 0.02 - penalty + rng.normal(0, noise_sd), 0.01, 0.99))
                        row = _row(
                            name,
                            "tune",
                            "recipe" if index == 0 else "search",
                            index,
                            None,
                            seed,
                            value,
                            status_of("tune", cell, arm, seed, index),
                            chance,
                            num_classes,
                            n_epochs,
                            fraction,
                            common,
                            rng,
                        )
                        if fd is not None:
                            row["freeze_depth"] = fd
                        trials.append(row)
                        epochs_rows += _epoch_rows(row, rng)
                    for kind in configs:
                        for replicate, seed in enumerate(replicate_seeds):
                            shift = -0.03 if kind == "recipe" and arm != treated else 0.0
                            value = float(
                                np.clip(mean + shift + seed_effects[seed] + rng.normal(0, noise_sd), 0.0, 1.0)
                            )
                            row = _row(
                                name,
                                "confirm",
                                kind,
                                None,
                                replicate,
                                seed,
                                value,
                                status_of("confirm", cell, arm, seed, None),
                                chance,
                                num_classes,
                                n_epochs,
                                fraction,
                                common,
                                rng,
                            )
                            lr = 0.01 if kind == "recipe" or best_lr is None else best_lr
                            row["lr"] = lr
                            arm_levels = (
                                {"init": arm}
                                if spec is None or spec.design.arms is None
                                else {"arm": arm, "init": inits[arm]}
                            )
                            row["params_json"] = json.dumps({"tuned": {"lr": lr}, "levels": {**levels, **arm_levels}})
                            trials.append(row)
                            epochs_rows += _epoch_rows(row, rng)
    pq.write_table(pa.Table.from_pylist(trials, schema=TRIALS_SCHEMA), path / "trials.parquet")
    pq.write_table(pa.Table.from_pylist(epochs_rows, schema=EPOCHS_SCHEMA), path / "epochs.parquet")
    if write_spec:
        if spec is None:
            spec = parse_spec(
                spec_dict(
                    path,
                    name=name,
                    arms=arms,
                    train_fractions=train_fractions,
                    epochs=epochs,
                    augmentations=augmentations,
                    seeds=seeds,
                    trials_per_cell=trials_per_cell,
                    configs=configs,
                    hypothesis=hypothesis,
                    region=region,
                )
            )
        provenance = Provenance(
            spec_hash=spec.result_hash(),
            tlsweep_version="0.1.0",
            source="simulated",
            versions={"tlsweep": "0.1.0"},
            trial_counts=trial_counts(spec),
            compared_arms=tuple(c.pair for c in spec.compared_arms),
            class_names=tuple(class_names) if class_names is not None else None,
        )
        ResultsStore(path).write_spec(spec, provenance)
    return path


def spec_dict(
    path: Path,
    *,
    name: str = "demo",
    arms: Sequence[str] = ("checkpoint", "scratch"),
    train_fractions: Sequence[float] = (0.1, 1.0),
    epochs: Sequence[int] = (2, 6),
    augmentations: Sequence[str] | None = None,
    seeds: int = 8,
    trials_per_cell: int = 4,
    configs: Sequence[str] = ("best", "recipe"),
    hypothesis: dict[str, Any] | None = None,
    region: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """A valid sweep spec for simulated results; init holds the simulated arms and any other compared arm."""
    hypothesis = hypothesis or {
        "metric": "test_acc",
        "compare": {"init": [arms[0], arms[-1]]},
        "direction": "greater",
        "alpha": 0.05,
        "correction": "holm",
        "equivalence_margin": 0.02,
    }
    if region is not None:
        hypothesis = {**hypothesis, "region": region}
    init = list(dict.fromkeys([*arms, *(hypothesis.get("compare") or {}).get("init", [])]))
    factors: dict[str, Any] = {"init": init, "train_fraction": list(train_fractions), "epochs": list(epochs)}
    if augmentations:
        factors["augmentation"] = list(augmentations)
    return {
        "name": name,
        "dataset": {"format": "synthetic", "root": str(path / "data")},
        "model": {"pretrained": {"checkpoint": str(path / "backbone.pt")}} if "checkpoint" in init else {},
        "design": {
            "factors": factors,
            "tune": {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}},
            "recipe": {"lr": 0.01},
            "budget": {"trials_per_cell": trials_per_cell, "sampler": "tpe"},
        },
        "confirm": {"seeds": seeds, "configs": list(configs) or ["best"]},
        "objective": {"metric": "val_acc", "mode": "max"},
        "hypothesis": hypothesis,
    }


def _row(
    sweep: str,
    phase: str,
    kind: str,
    tune_index: int | None,
    replicate: int | None,
    seed: int,
    value: float,
    status: str,
    chance: float,
    num_classes: int,
    n_epochs: int,
    fraction: float,
    common: dict[str, Any],
    rng: np.random.Generator,
) -> dict[str, Any]:
    trial_id = hashlib.sha1(
        f"{phase}|{common['cell_id']}|{common['arm']}|{kind}|{tune_index}|{seed}".encode()
    ).hexdigest()[:16]
    if status == "diverged":
        value = chance
    val = float(np.clip(value + rng.normal(0, 0.005), 0, 1))
    metrics_missing = status in ("failed", "nan")
    confirm = phase == "confirm"
    n_train = int(round(4000 * fraction))
    return {
        "sweep": sweep,
        "trial_id": trial_id,
        "phase": phase,
        "config_kind": kind,
        "tune_index": tune_index,
        "replicate": replicate,
        "seed": seed,
        **common,
        "lr": 0.01 if kind == "recipe" else float(10 ** rng.uniform(-4, 0)),
        "weight_decay": 1e-4,
        "params_json": json.dumps({"lr": 0.01}),
        "status": "ok" if status == "nan" else status,
        "error": "worker died" if status == "failed" else None,
        "attempts": 1,
        "best_val_acc": None if metrics_missing else val,
        "best_val_loss": None if metrics_missing else 1.0 - val,
        "best_epoch": n_epochs,
        "final_val_acc": None if metrics_missing else val,
        "test_acc": value if confirm and not metrics_missing else None,
        "test_balanced_acc": value - 0.01 if confirm and not metrics_missing else None,
        "test_loss": None if metrics_missing or not confirm else 2.0 - value,
        "test_mae": None,
        "test_off_by_one": None,
        "objective": None if metrics_missing else val,
        "chance": chance,
        "num_classes": num_classes,
        "n_train": n_train,
        "n_val": 500,
        "n_test": 1000,
        "subset_hash": hashlib.sha1(f"{common['cell_id']}|{seed}".encode()).hexdigest()[:12],
        "epochs_run": n_epochs,
        "optimizer_steps": n_epochs * max(1, n_train // 128),
        "wall_time_s": 1.0,
        "node_id": "node0",
        "hostname": "localhost",
        "finished_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
    }


def _epoch_rows(trial: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    if trial["status"] == "failed" or trial["best_val_acc"] is None:
        return []
    final = float(trial["best_val_acc"])
    n_epochs = int(trial["epochs_run"])
    steps = int(trial["optimizer_steps"]) // n_epochs
    rows = []
    for epoch in range(1, n_epochs + 1):
        frac = epoch / n_epochs
        val = float(
            np.clip(
                trial["chance"]
                + (final - trial["chance"]) * (1 - math.exp(-3 * frac)) / (1 - math.exp(-3))
                + rng.normal(0, 0.005),
                0,
                1,
            )
        )
        rows.append(
            {
                "sweep": trial["sweep"],
                "trial_id": trial["trial_id"],
                "phase": trial["phase"],
                "cell_id": trial["cell_id"],
                "arm": trial["arm"],
                "seed": trial["seed"],
                "epoch": epoch,
                "step": steps * epoch,
                "train_loss": 2.0 - val,
                "train_acc": min(val + 0.05, 1.0),
                "val_loss": 2.0 - val,
                "val_acc": val,
                "lr": 0.01,
                "epoch_time_s": 0.5,
            }
        )
    return rows


def filter_trials(path: Path, keep: Callable[[Any], Any]) -> None:
    """Rewrite ``path/trials.parquet`` keeping the rows where ``keep(frame)`` is True (schema unchanged)."""
    table = pq.read_table(path / "trials.parquet")
    frame = table.to_pandas()
    kept = frame[keep(frame)]
    pq.write_table(pa.Table.from_pandas(kept, schema=TRIALS_SCHEMA, preserve_index=False), path / "trials.parquet")


def set_confusions(path: Path, confusion_of: Callable[[dict[str, Any]], list[list[int]] | None]) -> None:
    """Rewrite ``path/trials.parquet`` with each row's ``test_confusion`` = ``confusion_of(row)`` and its
    ``test_class_acc`` computed from it as the recorder does (row i's diagonal share; None for an empty row)."""
    rows = pq.read_table(path / "trials.parquet").to_pylist()
    for row in rows:
        confusion = confusion_of(row)
        row["test_confusion"] = json.dumps(confusion) if confusion else None
        row["test_class_acc"] = (
            json.dumps([r[i] / sum(r) if sum(r) else None for i, r in enumerate(confusion)]) if confusion else None
        )
    pq.write_table(pa.Table.from_pylist(rows, schema=TRIALS_SCHEMA), path / "trials.parquet")
