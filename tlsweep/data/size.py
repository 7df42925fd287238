"""How many training images a dataset spec gives, and the size its images come in, known before any image is decoded
(``tlsweep validate``, ``tlsweep data cache``)."""

from __future__ import annotations

from pathlib import Path

from tlsweep.data.dataset_spec import CsvDatasetSpec, DatasetSpec, ImageFolderDatasetSpec, SyntheticDatasetSpec
from tlsweep.errors import DataError


def train_size(spec: DatasetSpec) -> tuple[int | None, str]:
    """(training images, where the number comes from); ``None`` with the reason when it cannot be known yet.

    Synthetic datasets are counted from their parameters (identity-disjoint splits, as ``tlsweep.data.synth``
    draws them); CSV and ImageFolder datasets from their files when ``root`` exists (file listing only, nothing
    decoded).
    """
    if isinstance(spec, SyntheticDatasetSpec):
        from tlsweep.data.synth import TASK_DEFAULTS

        default_ids, default_per = TASK_DEFAULTS[spec.task]
        n_ids = int(spec.n_identities or default_ids)
        per = int(spec.images_per_identity or default_per)
        n_val = max(1, round(spec.split_fractions[1] * n_ids))
        n_test = max(1, round(spec.split_fractions[2] * n_ids))
        return max(n_ids - n_val - n_test, 0) * per, "generated dataset parameters"
    if not Path(spec.root).exists():
        return None, f"dataset.root {spec.root} does not exist yet"
    try:
        if isinstance(spec, CsvDatasetSpec):
            from tlsweep.data.listing import csv_entries

            return len(csv_entries(spec)["train"]), f"{Path(spec.root) / spec.splits['train']}"
        if isinstance(spec, ImageFolderDatasetSpec):
            from tlsweep.data.listing import imagefolder_entries

            entries, _ = imagefolder_entries(spec)
            return len(entries["train"]), f"the image files under {spec.root}"
    except DataError as exc:
        return None, f"the dataset cannot be listed ({str(exc)[:120]})"
    return None, "unknown dataset format"


MAX_NATURAL_SIZE = 224  # ImageNet's training size: a larger image is resized down to it unless asked otherwise


def natural_image_size(spec: CsvDatasetSpec | ImageFolderDatasetSpec) -> tuple[int, str]:
    """The side the images of ``spec`` come in, and where that was read: a generated dataset's resolution, else the
    shorter side of the first training image (its header only), at most :data:`MAX_NATURAL_SIZE`.

    Raises:
        DataError: the dataset cannot be listed, or its first training image cannot be read.
    """
    from PIL import Image

    from tlsweep.data.listing import csv_entries, imagefolder_entries
    from tlsweep.data.synth import read_manifest

    manifest = read_manifest(Path(spec.root)) or {}
    resolution = (manifest.get("params") or {}).get("resolution")
    if isinstance(resolution, int) and resolution > 0:
        return resolution, f"the resolution {Path(spec.root)} was generated at"
    entries = csv_entries(spec) if isinstance(spec, CsvDatasetSpec) else imagefolder_entries(spec)[0]
    if not entries.get("train"):
        raise DataError(f"{spec.root}: no training images to read a size from; give --image-size")
    first = entries["train"][0]
    try:
        with Image.open(first.path) as image:
            side = min(image.size)
    except Exception as exc:  # noqa: BLE001 - any reader failure: the file is named with the reason
        raise DataError(
            f"{first.path}: cannot read its size ({type(exc).__name__}: {exc}); give --image-size"
        ) from None
    capped = f", at most {MAX_NATURAL_SIZE}" if side > MAX_NATURAL_SIZE else ""
    return min(side, MAX_NATURAL_SIZE), f"the shorter side of {first.rel}{capped}"
