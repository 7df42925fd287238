"""How many training images a dataset spec gives, known before any image is decoded (for ``tlsweep validate``)."""

from __future__ import annotations

from pathlib import Path

from tlsweep.data.config import CsvDatasetSpec, DatasetSpec, ImageFolderDatasetSpec, SyntheticDatasetSpec
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
