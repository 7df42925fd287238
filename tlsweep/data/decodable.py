"""``undecodable_images``: every image of a dataset opens as an image, before any sweep decodes it.

``tlsweep validate`` reads each file's header and size (fast: no pixels); ``--full-decode`` decodes every image as the
tensor cache will (``tlsweep.data.cache.decode_image``), which also finds files cut short after their header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from tlsweep.data.cache import ImageEntry, decode_image, default_workers
from tlsweep.data.dataset_check import DatasetProblem
from tlsweep.data.dataset_spec import CsvDatasetSpec, DatasetSpec, ImageFolderDatasetSpec
from tlsweep.data.presets import SPLITS
from tlsweep.errors import DataError

MAX_LISTED = 10


def header_problem(entry: ImageEntry) -> str | None:
    """Why ``entry``'s file is not an image with a size (Pillow reads the header only), or None."""
    from PIL import Image

    try:
        with Image.open(entry.path) as image:
            width, height = image.size
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file to report
        return f"{type(exc).__name__}: {exc}"
    return None if width > 0 and height > 0 else f"its size is {width}×{height}"


def decode_problem(entry: ImageEntry) -> str | None:
    """Why ``entry``'s file does not decode as the tensor cache decodes it, or None."""
    try:
        decode_image(entry.path, 8)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file to report
        return f"{type(exc).__name__}: {exc}"
    return None


def undecodable_images(spec: DatasetSpec, *, full: bool = False, workers: int | None = None) -> list[DatasetProblem]:
    """One error listing the images of ``spec`` that do not open (``full``: do not decode); [] when all do.

    A dataset that cannot be listed (``tlsweep.data.dataset_check.check_dataset`` reports why) or a synthetic one (generated
    by tlsweep) has nothing to check here.
    """
    from tlsweep.data.listing import csv_entries, imagefolder_entries

    try:
        if isinstance(spec, CsvDatasetSpec):
            entries: Mapping[str, Sequence[ImageEntry]] = csv_entries(spec)
        elif isinstance(spec, ImageFolderDatasetSpec):
            entries, _ = imagefolder_entries(spec)
        else:
            return []
    except DataError:
        return []
    listed = [entry for split in SPLITS for entry in entries.get(split, ()) if entry.path.is_file()]
    check = decode_problem if full else header_problem
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        reasons = list(pool.map(check, listed, chunksize=64))
    bad = [(entry, reason) for entry, reason in zip(listed, reasons, strict=True) if reason is not None]
    if not bad:
        return []
    shown = "\n".join(
        f"    {entry.rel}{f' ({entry.origin})' if entry.origin != entry.rel else ''}: {reason}"
        for entry, reason in bad[:MAX_LISTED]
    )
    more = f"\n    and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    how = "decode" if full else "open as images (header and size read)"
    return [
        DatasetProblem(
            "error",
            f"{spec.root}: {len(bad)} of {len(listed)} image(s) do not {how}; fix or remove these files (or their CSV "
            f"rows):\n{shown}{more}",
        )
    ]
