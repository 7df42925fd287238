"""Both arms of a demo-like spec at chosen cells, in one process and without Ray: test accuracy per arm, the paired
difference, optimizer steps and CPU seconds per run, and what the whole sweep would cost at those CPU seconds.

    .venv/bin/python bench/demo_cells.py [--spec sweeps/demo.yaml] [--seeds 2] [--set KEY=VALUE ...]
        [--cell FRACTION,EPOCHS[,LR_PRETRAINED,LR_SCRATCH]] ...

This is how the demo's design was chosen (``sweeps/demo.yaml``'s comments): generate the spec's data, pretrain its
checkpoint (both into ``--data-dir``, reused when present), then call ``tlsweep.training.loop.run_trial`` for each
arm, cell and seed with the spec's settings (the recipe, ``freeze_depth`` included) at a fixed learning rate per arm
(no tuning). Without ``--cell`` it runs every cell of the spec. CPU seconds are this process's (``time.process_time``,
one torch thread as a sweep trial with ``cpus_per_trial: 1``), so they hold on a busy machine as well; the sweep
estimate multiplies them by the trials per study (tune + confirm seeds) and divides by ``max_concurrent_trials``.
It leaves out the data generation, pretraining, Ray start-up and the report.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=REPO / "sweeps" / "demo.yaml")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="spec override KEY=VALUE")
    parser.add_argument("--cell", action="append", default=[], help="FRACTION,EPOCHS[,LR_PRETRAINED,LR_SCRATCH]")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lr-pretrained", type=float, default=0.1)
    parser.add_argument("--lr-scratch", type=float, default=0.05)
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    args = parser.parse_args()

    import tlsweep
    from tlsweep.data.loading import load_dataset
    from tlsweep.design import trial_config
    from tlsweep.engine.run import pretrain_trial_config
    from tlsweep.training.loop import pretrain, run_trial

    spec = tlsweep.load_spec(args.spec, args.sets)
    checkpoint = args.data_dir / Path(str(spec.model.pretrained.checkpoint)).name
    sets = [
        *args.sets,
        f"dataset.root={args.data_dir / Path(spec.dataset.root).name}",
        f"model.pretrained.checkpoint={checkpoint}",
    ]
    if spec.model.pretrain is not None:
        sets.append(f"model.pretrain.dataset.root={args.data_dir / Path(spec.model.pretrain.dataset.root).name}")
    spec = tlsweep.load_spec(args.spec, sets)
    data = load_dataset(spec.dataset, image_size=spec.model.image_size)
    if not checkpoint.exists():
        if spec.model.pretrain is None:
            raise SystemExit(f"{checkpoint} does not exist and {args.spec} has no model.pretrain block")
        started = time.process_time()
        source = load_dataset(spec.model.pretrain.dataset, image_size=spec.model.image_size)
        metrics = pretrain(pretrain_trial_config(spec, num_threads=1).replace(device="cpu"), source, checkpoint)
        print(
            f"pretrained {checkpoint}: source val acc {metrics['best_val_acc']:.3f}, "
            f"{time.process_time() - started:.0f} CPU s"
        )

    factors = spec.design.factors
    if args.cell:
        cells = [c.split(",") for c in args.cell]
    else:
        cells = [[str(f), str(e)] for f in factors["train_fraction"] for e in factors["epochs"]]
    arms = [str(a) for a in factors["init"]]
    per_study = spec.design.budget.trials_per_cell + spec.confirm.seeds
    print(f"{'cell':>14} {'arm':>10} {'test acc %':>10} {'steps':>6} {'CPU s/run':>9}   (seeds 0..{args.seeds - 1})")
    total_cpu = 0.0
    for cell in cells:
        fraction, epochs = float(cell[0]), int(cell[1])
        lrs = (
            {arms[0]: float(cell[2]), arms[1]: float(cell[3])}
            if len(cell) == 4
            else {a: args.lr_scratch if a == "scratch" else args.lr_pretrained for a in arms}
        )
        accs: dict[str, list[float]] = {}
        for arm in arms:
            cpu: list[float] = []
            steps = 0
            for seed in range(args.seeds):
                levels: dict[str, Any] = {"init": arm, "train_fraction": fraction, "epochs": epochs}
                config = trial_config(spec, levels, {"lr": lrs[arm]}, seed, num_threads=1).replace(device="cpu")
                started = time.process_time()
                result = run_trial(config, data)
                cpu.append(time.process_time() - started)
                accs.setdefault(arm, []).append(100 * result.test_acc)
                steps = result.optimizer_steps
            total_cpu += statistics.mean(cpu) * per_study
            print(
                f"{fraction:>7} × {epochs:>2} ep {arm:>10} {statistics.mean(accs[arm]):>10.1f} {steps:>6} "
                f"{statistics.mean(cpu):>9.1f}   lr {lrs[arm]}: {', '.join(f'{a:.1f}' for a in accs[arm])}"
            )
        diffs = [a - b for a, b in zip(accs[arms[0]], accs[arms[1]], strict=True)]
        print(f"{'':>14} {'Δ':>10} {statistics.mean(diffs):>+10.1f} points ({arms[0]} − {arms[1]})")
    slots = max(1, spec.resources.max_concurrent_trials or 1)
    print(
        f"sweep estimate: {per_study} trials per study × these CPU s = {total_cpu:.0f} CPU s, "
        f"{total_cpu / slots / 60:.1f} min on {slots} slots (without data, pretraining, Ray start-up, report)"
    )


if __name__ == "__main__":
    main()
