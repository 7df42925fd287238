"""Frozen-feature benchmark: seconds per trial and training images/s with the frozen layers' activations stored
once and reused (tlsweep.training.frozen_features) vs today's path (frozen layers run every step), measured in one
run on CPU, for a full-body freeze (linear probe, freeze_depth 5) and a partial freeze, on resnet_tiny at 32 px and
resnet18 at 64 px; with the cache's memory and the metrics of both paths.

    .venv/bin/python bench/frozen_features.py [--epochs 5] [--identities 120] [--threads 1] [--quick]

A generated age dataset (tlsweep's synthetic faces) is written to a temporary directory first. The frozen body is a
fixed random initialization saved as a checkpoint (no ImageNet weights are needed; what is compared is the cost of
the same computation, and that the two paths agree). For each case three trials run with the same settings:
uncached, cached with an empty cache ("first": it computes the features), cached again ("reuse": every later trial
of a sweep with that prefix, any seed, lr or epochs). "sweep" is the mean per trial over a cell of 24 trials
(16 tune + 8 confirm) sharing one prefix: (first + 23 reuse) / 24.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--identities", type=int, default=120, help="synthetic identities (x6 images each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="resnet_tiny only")
    parser.add_argument(
        "--dtype",
        choices=["auto", "float16", "float32"],
        default="auto",
        help="storage: auto = float16 feature vectors, float32 feature maps (tlsweep's default)",
    )
    parser.add_argument(
        "--only", default="", help="run the cases whose name contains this (e.g. 'resnet18 64px depth 4')"
    )
    args = parser.parse_args()

    from tlsweep.data.dataset_spec import parse_dataset_spec
    from tlsweep.data.loading import load_dataset
    from tlsweep.training import frozen_features
    from tlsweep.training.backbones import backbone_state_dict, create_model
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.loop import run_trial

    cases = [("resnet_tiny", 32, 5), ("resnet_tiny", 32, 3), ("resnet18", 64, 5), ("resnet18", 64, 4)]
    if args.quick:
        cases = cases[:2]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"torch {torch.__version__}, {args.threads} thread(s), {args.epochs} epochs, storage {args.dtype}")
        print(f"{'case':<26} {'path':<9} {'s/trial':>8} {'img/s':>8} {'ratio':>7} {'test_acc':>8} {'val_loss':>9}")
        datasets = {}
        for backbone, size, depth in cases:
            if args.only not in f"{backbone} {size}px depth {depth}":
                continue
            if size not in datasets:
                started = time.perf_counter()
                spec = {
                    "format": "synthetic",
                    "task": "age",
                    "seed": 0,
                    "resolution": size,
                    "n_identities": args.identities,
                    "images_per_identity": 6,
                    "root": str(root / f"age{size}"),
                }
                datasets[size] = load_dataset(parse_dataset_spec(spec), image_size=size, workers=1)
                data = datasets[size]
                print(
                    f"# dataset {size} px: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test "
                    f"({time.perf_counter() - started:.1f}s to generate)"
                )
            data = datasets[size]
            name = f"{backbone} {size}px depth {depth}"
            if args.only not in name:
                continue
            checkpoint = root / f"{backbone}.pt"
            if not checkpoint.exists():
                torch.save({"backbone": backbone_state_dict(create_model(backbone, 8, seed=0))}, checkpoint)
            cache = frozen_features.FeatureCache(root / f"cache-{backbone}-{depth}", max_bytes=8 * 2**30)
            frozen_features._CACHE = cache
            config = TrialConfig(
                backbone=backbone,
                init=f"checkpoint:{checkpoint}",
                freeze_depth=depth,
                epochs=args.epochs,
                batch_size=64,
                lr=0.05,
                augmentation="flip",
                seed=0,
                num_threads=args.threads,
                device="cpu",
                feature_cache_dtype=args.dtype,
            )
            seen = len(data.train) * args.epochs
            rows = {}
            for path, trial in (
                ("uncached", config.replace(feature_cache=False)),
                ("first", config),
                ("reuse", config),
            ):
                started = time.perf_counter()
                result = run_trial(trial, data)
                rows[path] = (time.perf_counter() - started, result)
            base = rows["uncached"][0]
            for path, (seconds, result) in rows.items():
                print(
                    f"{name:<26} {path:<9} {seconds:8.2f} {seen / seconds:8.0f} {base / seconds:6.1f}x "
                    f"{result.test_acc:8.4f} {result.best_val_loss:9.4f}"
                )
            sweep = (rows["first"][0] + 23 * rows["reuse"][0]) / 24
            diff = abs(rows["reuse"][1].test_acc - rows["uncached"][1].test_acc) * 100
            print(
                f"{name:<26} {'sweep':<9} {sweep:8.2f} {seen / sweep:8.0f} {base / sweep:6.1f}x   "
                f"|Δ test_acc| {diff:.2f} points; cache {cache.size_bytes() / 2**20:.1f} MiB "
                f"({len(cache.entries())} entries, computed {cache.computed})"
            )


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    main()
