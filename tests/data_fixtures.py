"""Tiny on-disk datasets for the data-layer tests: a few PNGs in the CSV layout or an ImageFolder tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")


def write_image(path: Path, value: int, *, size: tuple[int, int] = (10, 8), mode: str = "RGB") -> Path:
    """A small image whose pixels encode ``value`` (so tests can tell images apart after decoding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    pixels[0, 0, :3] = value % 256
    image = Image.fromarray(pixels, "RGBA")
    image.convert(mode).save(path)
    return path


def write_csv_dataset(
    root: Path,
    per_split: int = 4,
    labels: str = "abcd",
    *,
    header: str = "image_path,age_class",
    bare_names: bool = True,
) -> Path:
    """custom_{split}_dataset.csv + {split}_images/ with ``per_split`` RGB images per split, labels cycling."""
    value = 0
    for split in SPLITS:
        lines = [header]
        for i in range(per_split):
            name = f"F{i:04d}_AGE_D_18_a{i}.png"
            write_image(root / f"{split}_images" / name, value)
            value += 1
            path = name if bare_names or i % 2 else f"{split}_images/{name}"
            lines.append(f"{path},{labels[i % len(labels)]}")
        (root / f"custom_{split}_dataset.csv").write_text("\n".join(lines) + "\n")
    return root


def write_imagefolder(root: Path, classes: dict[str, int], *, splits: tuple[str, ...] = ()) -> Path:
    """root/<split>/<class>/*.png for each split (or root/<class>/*.png without splits)."""
    value = 0
    for split in splits or ("",):
        for name, count in classes.items():
            for i in range(count):
                write_image((root / split / name if split else root / name) / f"{name}_{i}.png", value)
                value += 1
    return root
