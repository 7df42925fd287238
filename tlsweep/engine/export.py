"""``tlsweep export RESULTS --best``: one model per arm to take home, from a finished sweep's kept checkpoints.

Per arm, the confirm trials of the selected (``best``) config in one cell (by default the cell with the largest train
fraction, then the most epochs: the most data the sweep trained on) are ranked by the objective (validation, never
test); the median one's kept checkpoint (or the chosen seed's) becomes ``<out>/<arm>/model.pt``: the best-validation
weights of a whole classifier with its class names, image size, config and metrics, the format ``tlsweep train``
writes (``tlsweep predict --checkpoint`` reads it). ``config.json`` and ``metrics.json`` lie beside it, and for a
torchvision or timm backbone with a linear head ``weights.pt``: a plain state dict that loads strictly into the
library's own model (``torchvision.models.resnet18(num_classes=K)``, ``timm.create_model('resnet50',
num_classes=K)``; ``config.json`` says which under ``weights.load_into``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsweep.design import PlannedTrial
from tlsweep.errors import StoreError
from tlsweep.results.location import RAY_SUBDIR
from tlsweep.results.store import ResultsStore

METRIC_COLUMNS = (
    "objective",
    "best_val_acc",
    "best_val_loss",
    "best_epoch",
    "test_acc",
    "test_balanced_acc",
    "test_loss",
    "test_off_by_one",
    "test_mae",
)


@dataclass(frozen=True)
class ExportedModel:
    arm: str
    cell_id: str
    trial_id: str
    seed: int
    path: Path
    how: str  # "median of N seeds by <objective>" or "seed S"
    load_into: str | None = None  # the library call whose model loads <path>/weights.pt; None: no weights.pt


def _default_cell(rows: list[dict[str, Any]]) -> str:
    """The cell with the largest train fraction, then the most epochs."""
    best = max(rows, key=lambda r: (float(r["train_fraction"] or 0), int(r["epochs"] or 0)))
    return str(best["cell_id"])


def choose_trials(
    rows: list[dict[str, Any]], *, mode: str, cell: str | None = None, seed: int | None = None
) -> dict[str, tuple[dict[str, Any], str]]:
    """Per arm, the confirm trial to export from ``rows`` (trials-table rows) and how it was chosen.

    Raises:
        StoreError: no finished confirm trial of a selected config, an unknown cell or a seed not run.
    """
    confirmed = [r for r in rows if r["phase"] == "confirm" and r["config_kind"] == "best" and r["status"] == "ok"]
    if not confirmed:
        raise StoreError("no finished confirm trial of a selected config to export; let the sweep finish first")
    cells = sorted({str(r["cell_id"]) for r in confirmed})
    chosen_cell = cell or _default_cell(confirmed)
    if chosen_cell not in cells:
        raise StoreError(f"cell {chosen_cell!r} has no finished confirm trial; cells: {', '.join(cells)}")
    chosen: dict[str, tuple[dict[str, Any], str]] = {}
    for arm in sorted({str(r["arm"]) for r in confirmed}):
        mine = [r for r in confirmed if r["arm"] == arm and r["cell_id"] == chosen_cell]
        if seed is not None:
            picked = [r for r in mine if int(r["seed"]) == seed]
            if not picked:
                seeds = ", ".join(str(r["seed"]) for r in sorted(mine, key=lambda r: r["seed"]))
                raise StoreError(f"arm {arm} has no finished confirm trial with seed {seed} in {chosen_cell}; {seeds}")
            chosen[arm] = (picked[0], f"seed {seed}")
            continue
        ranked = sorted(mine, key=lambda r: (float(r["objective"]), int(r["seed"])), reverse=mode == "max")
        chosen[arm] = (ranked[(len(ranked) - 1) // 2], f"median of {len(ranked)} seeds by the objective")
    return chosen


def _planned(row: dict[str, Any]) -> PlannedTrial:
    """The plan of a recorded trial (its trials-table row)."""
    recorded = json.loads(row["params_json"])
    return PlannedTrial(
        trial_id=row["trial_id"],
        phase=row["phase"],
        levels=recorded["levels"],
        config_kind=row["config_kind"],
        seed=int(row["seed"]),
        params=recorded["tuned"],
        tune_index=row["tune_index"],
        replicate=row["replicate"],
    )


def export_best(
    results: str | Path, out: Path | None = None, *, cell: str | None = None, seed: int | None = None
) -> list[ExportedModel]:
    """Write one model per arm of the sweep at ``results`` into ``out`` (default ``<results>/export``).

    Raises:
        StoreError: nothing to export, or a chosen trial kept no checkpoint (the spec's ``checkpoints.keep``).
    """
    from tlsweep.engine.trainable import previous_state, trial_dirname
    from tlsweep.training.predict import save_library_weights, save_trained_model, sweep_checkpoint_model

    store = ResultsStore(results)
    spec = store.read_spec()
    local = store.local_dir()
    if out is None:
        if local is None:
            raise StoreError(f"{store.location.uri} is remote storage: give --out DIR for the exported models")
        out = local / "export"
    rows = store.read_trials().to_pylist()
    exported = []
    for arm, (row, how) in choose_trials(rows, mode=spec.objective.mode, cell=cell, seed=seed).items():
        state = previous_state(store.location.join(RAY_SUBDIR), "confirm", trial_dirname(_planned(row)))
        if state is None:
            raise StoreError(
                f"trial {row['trial_id']} (arm {arm}, {row['cell_id']}, seed {row['seed']}) kept no checkpoint under "
                f"{store.location.join(RAY_SUBDIR).uri}: the spec's checkpoints.keep is {spec.checkpoints.keep!r}; "
                "export needs `checkpoints: {keep: best}` (or confirm, all) when the sweep runs"
            )
        model = sweep_checkpoint_model(state, Path(f"{row['trial_id']}/state.pt"))
        metrics = {key: row.get(key) for key in METRIC_COLUMNS}
        info = {"arm": arm, "cell_id": row["cell_id"], "trial_id": row["trial_id"], "seed": row["seed"], "chosen": how}
        target = out / arm
        save_trained_model(
            target / "model.pt",
            arch=model["arch"],
            state_dict=model["state_dict"],
            class_names=model["class_names"],
            image_size=model["image_size"],
            init=model["init"],
            extra={"config": model["config"], "metrics": metrics, "trial": info},
        )
        plain = save_library_weights(target / "weights.pt", arch=model["arch"], state_dict=model["state_dict"])
        if plain is not None:
            info["weights"] = {"file": "weights.pt", "load_into": plain}
        (target / "config.json").write_text(json.dumps({**info, "config": model["config"]}, indent=2) + "\n")
        (target / "metrics.json").write_text(json.dumps({**info, **metrics}, indent=2, default=str) + "\n")
        exported.append(
            ExportedModel(arm, str(row["cell_id"]), str(row["trial_id"]), int(row["seed"]), target, how, plain)
        )
    return exported
