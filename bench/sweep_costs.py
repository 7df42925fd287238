"""Sweep-cost benchmark: what a small demo-like sweep costs beyond its epochs, measured in one run.

    .venv/bin/python bench/sweep_costs.py [--identities 60] [--trials-per-cell 2] [--seeds 2] [--overhead-trials 8]

Part 1 runs ``sweeps/demo.yaml`` shrunk by ``--set`` overrides (one train fraction, epochs 2, a small generated
dataset, a 1-epoch pretraining) end to end on a private local Ray instance, then reads the results and Ray's
storage:

* checkpoints reported per minute of training and bytes of checkpoints written per trial (counted inside the
  trials: the bench wraps the trainable and logs the size of every checkpoint it hands ``tune.report``), and bytes
  left per trial (Ray's directory vs the Parquet results) under the spec's checkpoint policy (``checkpoints:``;
  change it with ``--set checkpoints.every='{epochs: 1}'`` to compare);
* the efficiency of each phase and of the whole sweep: Σ epoch time ÷ (wall × slots), wall from the first trial's
  start to the last trial's end (phase) or to the end of the last phase (sweep).

Part 2: ``--overhead-trials`` one-epoch tune trials through the engine with one slot vs the same trial configs run one
after the other by ``run_trial`` in this process: the difference per trial is the engine's per-trial overhead; and
the time per trial outside its epochs through the engine (everything but training and validation: model build,
test evaluation, reports, Ray's hand-over to the next trial).
CPU only; the figures depend on the machine's load (say so when you quote them).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _spec(work: Path, name: str, args: argparse.Namespace, extra: list[str]) -> Any:
    from tlsweep.spec_load import load_spec

    sets = [
        f"name={name}",
        f"dataset.root={work / 'synth-age'}",
        f"dataset.n_identities={args.identities}",
        f"model.pretrained.checkpoint={work / 'source.pt'}",
        f"model.pretrain.dataset.root={work / 'synth-source'}",
        f"model.pretrain.dataset.n_identities={args.identities}",
        "model.pretrain.epochs=1",
        "design.factors.train_fraction=[0.3]",
        "design.factors.epochs=[2]",
        f"design.budget.trials_per_cell={args.trials_per_cell}",
        f"confirm.seeds={args.seeds}",
        "resources.max_concurrent_trials=2",
        *extra,
    ]
    return load_spec(REPO / "sweeps" / "demo.yaml", sets)


def _counting_trainable(log_dir: str) -> Any:
    """``sweep_trainable`` that appends the byte size of every checkpoint it reports to a file in ``log_dir`` (this
    function is pickled by value: the bench runs as ``__main__``)."""

    def sweep_trainable(config: dict[str, Any], payload: dict[str, Any]) -> Any:
        from ray import tune

        from tlsweep.engine import trainable

        real_report = tune.report

        def report(metrics: dict[str, Any], *, checkpoint: Any = None, **kwargs: Any) -> Any:
            if checkpoint is not None:
                size = sum(p.stat().st_size for p in Path(checkpoint.path).rglob("*") if p.is_file())
                with open(Path(log_dir) / f"{os.getpid()}.log", "a") as fh:
                    fh.write(f"{size}\n")
            return real_report(metrics, checkpoint=checkpoint, **kwargs)

        tune.report = report
        try:
            return trainable.sweep_trainable(config, payload)
        finally:
            tune.report = real_report

    sweep_trainable.__name__ = "sweep_trainable"
    return sweep_trainable


def _tree_bytes(root: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in root.rglob(pattern) if p.is_file())


def _span(rows: list[dict[str, Any]]) -> tuple[float, float]:
    starts = [r["finished_at"].timestamp() - r["wall_time_s"] for r in rows]
    ends = [r["finished_at"].timestamp() for r in rows]
    return min(starts), max(ends)


def costs(work: Path, args: argparse.Namespace) -> None:
    from tlsweep.engine import trainable
    from tlsweep.engine.run import run_sweep
    from tlsweep.results.store import ResultsStore

    spec = _spec(work, "costs", args, args.set)
    print(f"checkpoint policy: {spec.checkpoints.model_dump()}")
    log_dir = work / "checkpoint-log"
    log_dir.mkdir()
    original = trainable.sweep_trainable
    trainable.sweep_trainable = _counting_trainable(str(log_dir))  # run_sweep looks the name up when it starts
    try:
        started = time.time()
        outcome = run_sweep(
            spec, storage=str(work / "runs"), wandb_mode="disabled", num_cpus=2, live=False, report=False
        )
        ended = time.time()
    finally:
        trainable.sweep_trainable = original
    sizes = [int(line) for path in log_dir.glob("*.log") for line in path.read_text().split()]
    root = Path(outcome.location)
    store = ResultsStore(root)
    trials = store.read_trials().to_pylist()
    epochs = store.read_epochs().to_pylist()
    epoch_time: dict[str, float] = {}
    for row in epochs:
        epoch_time[row["trial_id"]] = epoch_time.get(row["trial_id"], 0.0) + (row["epoch_time_s"] or 0.0)
    n, n_epochs = len(trials), len(epochs)
    training_s = sum(epoch_time.values())
    checkpoints, written = len(sizes), sum(sizes)
    ray_left, parquet_left = _tree_bytes(root / "ray"), _tree_bytes(root, "*.parquet")
    slots = spec.resources.max_concurrent_trials
    print(
        f"sweep: {n} trials, {n_epochs} epochs, {training_s:.1f} s of epochs, {slots} slots, "
        f"{ended - started:.1f} s wall (with Ray start-up and data)"
    )
    print(f"checkpoints per minute of training: {checkpoints / (training_s / 60):.1f}")
    print(
        f"checkpoint bytes written per trial: {written / n / 1e6:.2f} MB ({checkpoints} checkpoints, "
        f"{written / 1e6:.2f} MB in all)"
    )
    print(
        f"bytes left per trial: ray/ {ray_left / n / 1e6:.3f} MB, Parquet results {parquet_left / n / 1e3:.2f} kB "
        f"(ray/ ÷ results = {ray_left / max(parquet_left, 1):.0f})"
    )
    overall_start = None
    last_end = 0.0
    for phase in ("tune", "confirm"):
        rows = [r for r in trials if r["phase"] == phase]
        if not rows:
            continue
        start, end = _span(rows)
        overall_start = start if overall_start is None else min(overall_start, start)
        last_end = max(last_end, end)
        busy = sum(epoch_time.get(r["trial_id"], 0.0) for r in rows)
        inside = sum(r["wall_time_s"] - epoch_time.get(r["trial_id"], 0.0) for r in rows) / len(rows)
        print(
            f"{phase:>8}: efficiency {busy / ((end - start) * slots):.2f} (Σ epochs {busy:.1f} s ÷ "
            f"{end - start:.1f} s × {slots}); inside a trial outside its epochs {inside:.2f} s"
        )
    if overall_start is not None:
        print(
            f"   sweep: efficiency {training_s / ((last_end - overall_start) * slots):.2f} "
            f"(first trial start to last trial end)"
        )
    if getattr(outcome, "efficiency", None) is not None:  # printed by `tlsweep run` since one Tuner runs both phases
        print(
            f"   sweep: efficiency {outcome.efficiency:.3f} as tlsweep run reports it (Σ epochs ÷ slots × first "
            f"trial's training start to last record); {outcome.busy_s / (slots * outcome.tuner_wall_s):.3f} over "
            f"the whole Tuner.fit ({outcome.tuner_wall_s - outcome.trials_span_s:.1f} s of worker start-up and stop)"
        )


def overhead(work: Path, args: argparse.Namespace) -> None:
    from tlsweep.data.loading import load_dataset
    from tlsweep.engine.run import run_sweep
    from tlsweep.results.store import ResultsStore
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.loop import run_trial

    n = args.overhead_trials
    spec = _spec(
        work,
        "overhead",
        args,
        [
            "design.factors.epochs=[1]",
            "design.factors.init=[scratch, checkpoint]",
            f"design.budget.trials_per_cell={n // 2}",
            "confirm.seeds=1",
            "resources.max_concurrent_trials=1",
        ],
    )
    outcome = run_sweep(spec, storage=str(work / "runs"), wandb_mode="disabled", num_cpus=2, live=False, report=False)
    store = ResultsStore(outcome.location)
    rows = [r for r in store.read_trials().to_pylist() if r["phase"] == "tune"]
    rows.sort(key=lambda r: r["finished_at"])
    start, end = _span(rows)
    engine_s = end - start
    ids = {r["trial_id"] for r in rows}
    epochs_s = sum(e["epoch_time_s"] or 0.0 for e in store.read_epochs().to_pylist() if e["trial_id"] in ids)
    data = load_dataset(spec.dataset, image_size=spec.model.image_size)
    configs = [TrialConfig.from_dict(json.loads(r["params_json"])["config"]) for r in rows]
    t0 = time.perf_counter()
    for config in configs:
        run_trial(config, data)
    alone_s = time.perf_counter() - t0
    print(
        f"overhead: {len(rows)} one-epoch trials: engine {engine_s:.2f} s (first start to last end, 1 slot), "
        f"same trials in one process {alone_s:.2f} s; per-trial overhead {(engine_s - alone_s) / len(rows):.3f} s"
    )
    print(
        f"outside epochs: {(engine_s - epochs_s) / len(rows):.3f} s per trial through the engine (model build, "
        f"test evaluation, reports, Ray's hand-over; Σ epochs {epochs_s:.2f} s), "
        f"{(alone_s - epochs_s) / len(rows):.3f} s of it also in one process"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=60, help="generated identities (x10 images)")
    parser.add_argument("--trials-per-cell", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--overhead-trials", type=int, default=8)
    parser.add_argument("--skip", choices=["costs", "overhead"], action="append", default=[])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="spec override for the costs sweep, e.g. checkpoints.every='{epochs: 1}'",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tlsweep-bench-costs-") as tmp:
        if "costs" not in args.skip:
            costs(Path(tmp), args)
        if "overhead" not in args.skip:
            overhead(Path(tmp), args)


if __name__ == "__main__":
    main()
