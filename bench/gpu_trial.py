"""GPU trial benchmark: how close tlsweep trials get to what the GPU can do, with 1, 2 and 4 trials sharing one GPU.

    .venv/bin/python bench/gpu_trial.py [--backbones resnet18 resnet50] [--image-size 128] [--trials 1 2 4]
                                        [--train-images 8192] [--epochs 3] [--batch-size 128]
    .venv/bin/python bench/gpu_trial.py --cpu-smoke      # no GPU: the same code on CPU, tiny, NOT a GPU figure

For each backbone it measures, in one run:
- the limit: the model's pure forward + backward + SGD step (bf16 autocast, channels_last, cuDNN autotuning) on
  random tensors already on the device, in training images/s;
- k = 1, 2, 4 concurrent trials (one process each, as Ray runs fractional-GPU trials), each a full ``run_trial``
  (dataset staged on the device once, augmentation ``flip`` and normalization on the device, bf16 autocast, no host
  sync per step, batched evaluation on the device) on a generated uint8 dataset: training images/s per trial
  (from the epochs after the first, which pays for cuDNN autotuning; an epoch's time includes its validation
  pass), their sum, and the sum as a fraction of the limit (goal: >= 0.8); plus each trial's peak GPU memory next
  to tlsweep's per-trial estimate (``tlsweep.training.device.estimate_trial_bytes``).
Under 5 minutes on one H200-class GPU with the defaults. Without CUDA it exits with status 2 unless --cpu-smoke.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from typing import Any


def _dataset(n_train: int, n_eval: int, size: int, seed: int) -> Any:
    import torch

    from tlsweep.data.types import DatasetTensors, SplitTensors

    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> SplitTensors:
        labels = torch.randint(0, 8, (n,), generator=generator)
        images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
        return SplitTensors(images, labels, [])

    return DatasetTensors(split(n_train), split(n_eval), split(n_eval), [f"c{i}" for i in range(8)])


def limit(backbone: str, size: int, batch_size: int, device_name: str, steps: int, threads: int) -> float:
    """Training images/s of the bare model: forward + backward + SGD step on tensors already on the device."""
    import torch

    from tlsweep.training.backbones import create_model

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    if threads > 0:
        torch.set_num_threads(threads)  # as the trials (CPU smoke mode only)
    torch.backends.cudnn.benchmark = True
    model = create_model(backbone, 8, seed=0).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, size, size, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 8, (batch_size,), device=device)
    criterion = torch.nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = criterion(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(max(3, steps // 5)):
        step()
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def _trial(index: int, settings: dict[str, Any], start: Any, results: Any) -> None:
    import torch

    from tlsweep.training.config import TrialConfig
    from tlsweep.training.device import dataset_bytes, estimate_trial_bytes
    from tlsweep.training.loop import run_trial

    data = _dataset(settings["train_images"], settings["eval_images"], settings["image_size"], seed=index)
    config = TrialConfig(
        backbone=settings["backbone"],
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        eval_batch_size=512,
        lr=0.01,
        augmentation="flip",
        seed=index,
        device=settings["device"],
        num_threads=settings["threads"],
    )
    estimate = estimate_trial_bytes(config, 8, settings["image_size"], dataset_bytes(data))
    cuda = settings["device"] == "cuda"
    if cuda:
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
    start.wait()  # every trial process is ready: they train concurrently
    started = time.perf_counter()
    result = run_trial(config, data)
    wall = time.perf_counter() - started
    steady = result.history[1:] or result.history
    seconds = sum(row["epoch_time_s"] for row in steady)
    results.put(
        {
            "index": index,
            "images_per_s": len(data.train) * len(steady) / seconds,
            "wall_s": wall,
            "peak_bytes": torch.cuda.max_memory_reserved() if cuda else 0,
            "estimate_bytes": estimate,
            "status": result.status,
        }
    )


def concurrent_trials(k: int, settings: dict[str, Any]) -> list[dict[str, Any]]:
    context = mp.get_context("spawn")
    start = context.Barrier(k)
    results = context.Queue()
    processes = [context.Process(target=_trial, args=(i, settings, start, results)) for i in range(k)]
    for process in processes:
        process.start()
    rows = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode:
            raise SystemExit(f"a trial process failed with exit code {process.exitcode}")
    return sorted(rows, key=lambda row: row["index"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--trials", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--train-images", type=int, default=8192)
    parser.add_argument("--eval-images", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50, help="timed steps of the bare-model limit")
    parser.add_argument("--cpu-smoke", action="store_true", help="run tiny on CPU: checks the code, measures no GPU")
    args = parser.parse_args()

    import torch

    settings: dict[str, Any] = {
        "image_size": args.image_size,
        "train_images": args.train_images,
        "eval_images": args.eval_images,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "device": "cuda",
        "threads": 0,
    }
    if not torch.cuda.is_available():
        if not args.cpu_smoke:
            print(
                "bench/gpu_trial.py measures a GPU, and CUDA is not available here: no figure is produced. "
                "Run it on a machine with an NVIDIA GPU, or pass --cpu-smoke to check the code on CPU "
                "(tiny sizes, not a GPU measurement).",
                file=sys.stderr,
            )
            raise SystemExit(2)
        print("CPU SMOKE MODE: tiny sizes on CPU to check the code path; these are NOT GPU figures.")
        args.backbones, args.trials, args.steps = ["resnet_tiny"], [1, 2], 10
        settings.update(
            image_size=32, train_images=256, eval_images=64, epochs=2, batch_size=64, device="cpu", threads=1
        )
    else:
        print(
            f"GPU: {torch.cuda.get_device_name(0)}, "
            f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
        )
    size = settings["image_size"]
    print(
        f"{settings['train_images']} train images at {size} px, batch {settings['batch_size']}, "
        f"{settings['epochs']} epochs (the first not timed), augmentation flip, bf16 autocast on CUDA"
    )
    summary = []
    for backbone in args.backbones:
        started = time.perf_counter()
        bare = limit(backbone, size, settings["batch_size"], settings["device"], args.steps, settings["threads"])
        print(f"\n{backbone}: bare forward+backward limit {bare:,.0f} images/s")
        print(
            f"  {'trials/GPU':>10} {'img/s per trial':>16} {'total img/s':>12} {'of limit':>9} "
            f"{'peak GiB':>9} {'estimate GiB':>12}"
        )
        for k in args.trials:
            rows = concurrent_trials(k, {**settings, "backbone": backbone})
            total = sum(row["images_per_s"] for row in rows)
            per_trial = ", ".join(f"{row['images_per_s']:,.0f}" for row in rows)
            peak = max(row["peak_bytes"] for row in rows) / 2**30
            estimate = max(row["estimate_bytes"] for row in rows) / 2**30
            print(f"  {k:>10} {per_trial:>16} {total:>12,.0f} {total / bare:>8.2f}x {peak:>9.2f} {estimate:>12.2f}")
            summary.append(
                {
                    "backbone": backbone,
                    "trials_per_gpu": k,
                    "per_trial": [r["images_per_s"] for r in rows],
                    "total": total,
                    "limit": bare,
                    "fraction": total / bare,
                    "peak_gib": peak,
                    "estimate_gib": estimate,
                    "statuses": [r["status"] for r in rows],
                }
            )
        print(f"  ({time.perf_counter() - started:.0f} s)")
    print(
        "\nJSON "
        + json.dumps({"device": settings["device"], "cpu_smoke": settings["device"] == "cpu", "results": summary})
    )


if __name__ == "__main__":
    main()
