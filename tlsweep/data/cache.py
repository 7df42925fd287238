"""Decode-once tensor cache: each split is decoded and resized once into a uint8 ``.npy`` and memory-mapped on load.

Key = sha256 of (format version, preprocessing parameters, every file's relative path, size, mtime and label), so a
changed, added or removed file (or a relabelled row) invalidates the entry. Files are written atomically
(``tlsweep.results.atomic``), the JSON sidecar last: two processes building the same entry at once both succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlsweep.errors import DataError
from tlsweep.results.atomic import atomic_write, atomic_write_bytes

if TYPE_CHECKING:
    from tlsweep.data.types import SplitTensors

CACHE_VERSION = 2  # 2: EXIF orientation applied, 16-bit/float images scaled (0.2.0)
RESIZE = "pil-bilinear-stretch"  # resize to image_size x image_size, aspect ratio not kept (as Resize((s, s)))


class CacheNotWritableError(DataError):
    """The tensor cache directory cannot be written (read-only, a file in the way, no space)."""


@dataclass(frozen=True)
class ImageEntry:
    """One image of a split: where it is, its class index, and where it was declared (for error messages)."""

    path: Path
    rel: str  # path relative to the dataset root, recorded in SplitTensors.files
    label: int
    origin: str  # e.g. "custom_train_dataset.csv line 7"


@dataclass(frozen=True)
class CachedSplit:
    tensors: SplitTensors
    path: Path  # the .npy holding the images
    hit: bool  # True when nothing was decoded


_INT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _to_uint8_gray(img: Any) -> Any:
    """A single-channel 16-bit, 32-bit integer or float image as 8-bit ``L``, scaled instead of clipped.

    16-bit and non-negative integer images up to 65535 map their full 16-bit range onto 0..255 (``v / 257``);
    float images in [0, 1] are multiplied by 255 and those in [0, 255] kept; any other range (negative values,
    integers beyond 16 bits, floats beyond 255) is stretched linearly from its own minimum and maximum. Non-finite
    floats count as 0.
    """
    from PIL import Image

    values = np.asarray(img)
    if img.mode == "F" or values.dtype.kind == "f":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low >= 0.0 and high <= 1.0:
            scaled = values * 255.0
        elif low >= 0.0 and high <= 255.0:
            scaled = values
        else:
            scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    else:
        values = values.astype(np.int64)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low >= 0 and high <= 65535:
            scaled = values / 257.0
        else:
            scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros(values.shape)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _decode(path: str, image_size: int) -> np.ndarray:
    """Decode one image as RGB, resized to image_size x image_size: uint8 array 3 x H x W.

    The EXIF orientation is applied (a photo is seen the way a viewer shows it); 16-bit, 32-bit integer and float
    images are scaled to 0..255 (``_to_uint8_gray``), not clipped; palette, grey+alpha and alpha images are
    composited over white; CMYK, YCbCr, 1-bit and the other modes are converted by Pillow.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()
        img = ImageOps.exif_transpose(opened)
        if img.mode in ("I", "F", *_INT16_MODES):
            img = _to_uint8_gray(img)
        if img.mode != "RGB":
            if img.mode in ("RGBA", "LA", "P", "PA", "La", "RGBa") or "transparency" in img.info:
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            img = img.convert("RGB")
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def cache_key(fingerprints: Sequence[tuple[str, int, int, int]], image_size: int) -> str:
    payload = {"version": CACHE_VERSION, "image_size": image_size, "channels": 3, "resize": RESIZE}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode())
    for rel, size, mtime_ns, label in fingerprints:
        digest.update(f"{rel}\0{size}\0{mtime_ns}\0{label}\n".encode())
    return digest.hexdigest()


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _bad_file_error(split: str, bad: list[tuple[ImageEntry, str]]) -> DataError:
    lines = [f"  {entry.rel} ({entry.origin}): {reason}" for entry, reason in bad]
    return DataError(
        f"{len(bad)} unreadable image(s) in split '{split}'; fix or remove these files/rows:\n" + "\n".join(lines)
    )


def _memory_map(images_path: Path, meta: dict[str, Any]) -> SplitTensors:
    import torch

    from tlsweep.data.types import SplitTensors

    # copy-on-write map: pages are shared between processes, and torch gets a writable array (no warning)
    images = np.load(images_path, mmap_mode="c")
    labels = np.asarray(meta["labels"], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        image_tensor = torch.from_numpy(images)
    return SplitTensors(images=image_tensor, labels=torch.from_numpy(labels), files=[str(f) for f in meta["files"]])


def load_or_build_split(
    entries: Sequence[ImageEntry],
    *,
    split: str,
    image_size: int,
    cache_dir: Path,
    workers: int | None = None,
) -> CachedSplit:
    """Return the split's tensors from the cache, decoding (once, in a thread pool) only on a miss."""
    bad: list[tuple[ImageEntry, str]] = []
    fingerprints = []
    for entry in entries:
        try:
            st = entry.path.stat()
        except OSError as exc:
            bad.append((entry, f"cannot read file ({exc.strerror or exc})"))
            continue
        if not entry.path.is_file():
            bad.append((entry, "not a regular file"))
            continue
        fingerprints.append((entry.rel, st.st_size, st.st_mtime_ns, entry.label))
    if not bad and not entries:
        raise DataError(f"split '{split}' has no images")

    key = cache_key(fingerprints, image_size)[:24]
    stem = f"{split}-{image_size}px-{key}"
    images_path = cache_dir / f"{stem}.npy"
    meta_path = cache_dir / f"{stem}.json"
    if not bad and meta_path.is_file() and images_path.is_file():
        meta = json.loads(meta_path.read_text())
        return CachedSplit(_memory_map(images_path, meta), images_path, hit=True)

    good = [e for e in entries if not any(e is b for b, _ in bad)] if bad else list(entries)

    def build(tmp: Path) -> None:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(good), 3, image_size, image_size))
        decode_errors: list[tuple[ImageEntry, str] | None] = [None] * len(good)

        def decode_range(out: np.ndarray, start: int, stop: int) -> None:
            for i in range(start, stop):
                try:
                    out[i] = _decode(str(good[i].path), image_size)
                except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file to report
                    decode_errors[i] = (good[i], f"{type(exc).__name__}: {exc}")

        chunk = 64
        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            jobs = [pool.submit(decode_range, array, s, min(s + chunk, len(good))) for s in range(0, len(good), chunk)]
            for job in jobs:
                job.result()
        bad.extend(e for e in decode_errors if e is not None)
        if bad:
            order = {id(e): i for i, e in enumerate(entries)}
            bad.sort(key=lambda item: order[id(item[0])])
            raise _bad_file_error(split, bad)
        array.flush()
        del array

    try:
        atomic_write(images_path, build)
    except OSError as exc:
        raise CacheNotWritableError(
            f"cannot write the tensor cache in {cache_dir}: {exc}; make it writable or pass another cache_dir"
        ) from exc
    meta = {
        "version": CACHE_VERSION,
        "key": key,
        "split": split,
        "image_size": image_size,
        "resize": RESIZE,
        "files": [e.rel for e in good],
        "labels": [e.label for e in good],
    }
    try:
        atomic_write_bytes(meta_path, json.dumps(meta).encode())
    except OSError as exc:
        raise CacheNotWritableError(
            f"cannot write the tensor cache in {cache_dir}: {exc}; make it writable or pass another cache_dir"
        ) from exc
    return CachedSplit(_memory_map(images_path, meta), images_path, hit=False)


def decode_image(path: str | Path, image_size: int) -> np.ndarray:
    """Decode one image exactly as the cache does (RGB, alpha over white, bilinear resize): uint8 3×H×W."""
    return _decode(str(path), image_size)
