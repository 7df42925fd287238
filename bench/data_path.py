"""Data-path benchmark: images/s of a per-epoch PIL + torchvision.transforms DataLoader (as in the original studies)
vs tlsweep's decode-once tensor cache + iterate_batches + TensorAugment("flip"), measured in one run.

    .venv/bin/python bench/data_path.py [--root DIR] [--image-size 64] [--epochs 3] [--batch-size 64]

Without --root a generated age dataset (128 px, like custom_korean_family_dataset_resolution_128) is written to
a temporary directory first. Both pipelines read the training split and yield normalized float32 batches.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def baseline_loader(root: Path, image_size: int, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    from PIL import Image
    from torchvision import transforms

    from tlsweep.data.augment import IMAGENET_MEAN, IMAGENET_STD
    from tlsweep.data.presets import AGE_LABEL_MAP

    class CsvImages(torch.utils.data.Dataset):
        def __init__(self) -> None:
            with (root / "custom_train_dataset.csv").open(newline="") as fh:
                self.rows = [(r["image_path"], AGE_LABEL_MAP[r["age_class"]]) for r in csv.DictReader(fh)]
            self.transform = transforms.Compose(
                [
                    transforms.Resize((image_size, image_size)),
                    transforms.RandomHorizontalFlip(),
                    transforms.ToTensor(),
                    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
                ]
            )

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            name, label = self.rows[i]
            with Image.open(root / "train_images" / name) as img:
                return self.transform(img.convert("RGB")), label

    return torch.utils.data.DataLoader(CsvImages(), batch_size=batch_size, shuffle=True, num_workers=workers)


def time_epochs(epochs: int, run_epoch) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    seen, start = 0, time.perf_counter()
    for epoch in range(epochs):
        seen += run_epoch(epoch)
    return time.perf_counter() - start, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="a dataset in layout 1 (default: generate one)")
    parser.add_argument("--resolution", type=int, default=128, help="resolution of the generated dataset")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the baseline")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads of the main process (DataLoader workers always use 1)",
    )
    args = parser.parse_args()

    from tlsweep.data.augment import TensorAugment
    from tlsweep.data.batches import iterate_batches
    from tlsweep.data.dataset_spec import CsvDatasetSpec
    from tlsweep.data.loading import load_dataset
    from tlsweep.data.synth import generate_dataset

    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="tlsweep-bench-"))
    try:
        root = args.root
        if root is None:
            start = time.perf_counter()
            root = generate_dataset(scratch / "age", task="age", resolution=args.resolution)
            print(f"generated {root} ({args.resolution}px) in {time.perf_counter() - start:.1f} s")
        spec = CsvDatasetSpec(root=root)

        loader = baseline_loader(root, args.image_size, args.batch_size, args.workers)

        def baseline_epoch(_: int) -> int:
            n = 0
            for images, _labels in loader:
                n += images.shape[0]
            return n

        start = time.perf_counter()
        data = load_dataset(spec, image_size=args.image_size, cache_dir=scratch / "cache")
        build = time.perf_counter() - start
        start = time.perf_counter()
        data = load_dataset(spec, image_size=args.image_size, cache_dir=scratch / "cache")
        reopen = time.perf_counter() - start
        augment, generator = TensorAugment("flip"), torch.Generator().manual_seed(0)
        indices = np.arange(len(data.train))

        def tlsweep_epoch(_: int) -> int:
            n = 0
            for images, _labels in iterate_batches(
                data.train, indices, args.batch_size, shuffle=True, generator=generator
            ):
                batch = augment(images, generator)
                n += batch.shape[0]
            return n

        base_time, base_n = time_epochs(args.epochs, baseline_epoch)
        ours_time, ours_n = time_epochs(args.epochs, tlsweep_epoch)
        base_rate, ours_rate = base_n / base_time, ours_n / ours_time
        n_total = len(data.train) + len(data.val) + len(data.test)
        print(
            f"train split: {len(data.train)} images, {args.image_size}x{args.image_size}, batch {args.batch_size}, "
            f"{args.epochs} epochs each, torch threads {args.threads}"
        )
        print(
            f"(a) PIL + torchvision.transforms DataLoader, num_workers={args.workers}: "
            f"{base_rate:9.0f} images/s ({base_time:.2f} s)"
        )
        print(
            f"(b) tlsweep cache + iterate_batches + TensorAugment('flip'):       "
            f"{ours_rate:9.0f} images/s ({ours_time:.2f} s)"
        )
        print(f"ratio (b)/(a): {ours_rate / base_rate:.1f}x")
        print(
            f"one-time cache build: {build:.2f} s for {n_total} images ({n_total / build:.0f} images/s); "
            f"re-open (memory map, hashing {n_total} file stats): {reopen:.3f} s"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
