"""Stand-ins for what Ray Tune hands the engine's callbacks, searchers and schedulers, for tests without Ray running.

``FakeTrial`` carries exactly the attributes of ``ray.tune.experiment.Trial`` that tlsweep reads; the result helpers
build the dicts the trainable reports (one per epoch, then one with ``final=True``). Nothing here starts Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tlsweep.design import PlannedTrial, plan_tune_trial, studies, trial_config
from tlsweep.engine.trainable import trial_message
from tlsweep.spec import SweepSpec
from tlsweep.spec_load import parse_spec

REPO = Path(__file__).resolve().parents[1]
HISTORY_KEYS = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s")


def demo_spec(**changes: Any) -> SweepSpec:
    """``sweeps/demo.yaml`` with ``section__key=value`` changes (``failures__node_loss_requeues=1``)."""
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return parse_spec(data)


@dataclass
class FakeTrial:
    """The attributes of a Ray Tune ``Trial`` that tlsweep's recorder, scheduler and node-loss check read."""

    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)
    status: str = "RUNNING"
    num_failures: int = 0
    error_file: str | None = None
    error_msg: str | None = None
    pickled_error_file: str | None = None

    @classmethod
    def of(cls, spec: SweepSpec, planned: PlannedTrial, trial_id: str, **attributes: Any) -> FakeTrial:
        """The Ray trial running ``planned``, with the config the searchers hand out."""
        config = trial_config(spec, planned.levels, planned.params, planned.seed, num_threads=1)
        payload = trial_message(planned, config, spec.objective.metric)
        return cls(trial_id=trial_id, config=payload, **attributes)


def tune_trial(spec: SweepSpec, study: int = 0, tune_index: int = 0, lr: float = 0.05) -> PlannedTrial:
    """Tune trial ``tune_index`` of the spec's ``study``-th study."""
    return plan_tune_trial(spec, studies(spec)[study], tune_index, {"lr": lr, "augmentation": "none"})


def confirm_trial(spec: SweepSpec, study: int = 0, replicate: int = 0) -> PlannedTrial:
    """A confirm trial (replicate ``replicate``) of the spec's ``study``-th study."""
    tuned = tune_trial(spec, study)
    return PlannedTrial(
        trial_id=f"confirm-{study}-{replicate}",
        phase="confirm",
        levels=tuned.levels,
        config_kind="best",
        seed=1000 + replicate,
        params=tuned.params,
        replicate=replicate,
    )


def epoch_result(epoch: int, val_acc: float, *, val_loss: float = 1.0, node_id: str = "node-a") -> dict[str, Any]:
    """What the trainable reports after each epoch."""
    return {
        "epoch": epoch,
        "step": 10 * epoch,
        "train_loss": 2.0 / epoch,
        "train_acc": val_acc + 0.05,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": 0.05,
        "epoch_time_s": 0.5,
        "val_metric": val_acc,
        "node_id": node_id,
        "training_iteration": epoch,
    }


def final_result(history: list[dict[str, Any]], *, status: str = "ok", **changes: Any) -> dict[str, Any]:
    """The trainable's last report: ``final=True``, the whole epoch history, the test metrics."""
    best = max(history, key=lambda h: h["val_acc"]) if history else None
    result: dict[str, Any] = {
        "final": True,
        "status": status,
        "best_val_acc": best["val_acc"] if best else 0.125,
        "best_val_loss": best["val_loss"] if best else float("inf"),
        "best_epoch": best["epoch"] if best else 0,
        "final_val_acc": history[-1]["val_acc"] if history else 0.125,
        "test_acc": 0.41,
        "test_balanced_acc": 0.4,
        "test_loss": 1.5,
        "test_mae": 0.9,
        "test_off_by_one": 0.7,
        "chance": 0.125,
        "num_classes": 8,
        "n_train": 100,
        "n_val": 40,
        "n_test": 40,
        "subset_hash": "abc",
        "epochs_run": len(history),
        "optimizer_steps": 10 * len(history),
        "wall_time_s": 3.0,
        "history": [{k: h[k] for k in HISTORY_KEYS} for h in history],
        "resumed_from_epoch": None,
        "node_id": "node-a",
        "hostname": "host-a",
        "epoch": len(history),
    }
    result["objective"] = result["best_val_acc"]
    result["val_metric"] = result["objective"]
    result.update(changes)
    return result
