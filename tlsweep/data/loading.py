"""``load_dataset``: any dataset spec → decoded, cached, memory-mapped train/val/test tensors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tlsweep.data.cache import CacheNotWritableError, load_or_build_split
from tlsweep.data.dataset_check import label_problems, raise_errors
from tlsweep.data.dataset_spec import CsvDatasetSpec, DatasetSpec, SyntheticDatasetSpec
from tlsweep.data.listing import csv_entries, display_name, imagefolder_listing, listing_notes, missing_root_message
from tlsweep.data.presets import SPLITS
from tlsweep.errors import DataError

if TYPE_CHECKING:
    from tlsweep.data.types import DatasetTensors

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".tlsweep-cache"


def load_dataset(
    spec: DatasetSpec, *, image_size: int, cache_dir: str | Path | None = None, workers: int | None = None
) -> DatasetTensors:
    """Decode (once) and memory-map the three splits of a dataset as uint8 N×3×image_size×image_size tensors.

    Args:
        spec: the dataset (``SweepSpec.dataset``, or ``tlsweep.data.dataset_spec.parse_dataset_spec({...})``); a
            synthetic dataset is generated first when missing.
        image_size: images are resized to this square size.
        cache_dir: where the decoded tensors are cached (default ``<root>/.tlsweep-cache``).
        workers: decoding processes (default: all usable cores).

    Returns:
        ``DatasetTensors`` with ``train``, ``val`` and ``test`` splits (images, labels, files), the class names,
        whether labels are ordinal, and the dataset's name.

    Raises:
        DataError: naming files, rows and values of bad data.
    """
    if image_size <= 0:
        raise DataError(f"image_size must be positive, got {image_size}")
    if isinstance(spec, SyntheticDatasetSpec):
        from tlsweep.data.synth import ensure_generated

        ensure_generated(spec)
        csv_spec = CsvDatasetSpec.model_validate(
            {
                "root": spec.root,
                "preset": "korean_face_age" if spec.task == "age" else "synthetic_source",
                "name": spec.name or f"synthetic-{spec.task}",
            }
        )
        return load_dataset(csv_spec, image_size=image_size, cache_dir=cache_dir, workers=workers)
    root = Path(spec.root)
    if not root.is_dir():
        raise DataError(missing_root_message(spec))
    notes: list[str] = []
    if isinstance(spec, CsvDatasetSpec):
        entries, class_names = csv_entries(spec), spec.class_names
    else:
        entries, class_names, listing = imagefolder_listing(spec)
        notes = listing_notes(listing)
    problems = label_problems(entries, class_names, source=str(root))
    raise_errors(problems, source=str(root))
    for note in [*notes, *(p.message for p in problems)]:
        log.warning("%s", note)
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir(root)
    splits = {}
    extra = {"root": str(root), "cache_dir": str(cache), "format": spec.format}
    for split in SPLITS:
        try:
            cached = load_or_build_split(
                entries[split], split=split, image_size=image_size, cache_dir=cache, workers=workers
            )
        except CacheNotWritableError as exc:
            if cache_dir is not None:
                raise
            fallback = user_cache_dir(root)
            log.warning("%s; using %s instead", str(exc).split("; make it")[0], fallback)
            cache = fallback
            extra["cache_dir"] = str(cache)
            cached = load_or_build_split(
                entries[split], split=split, image_size=image_size, cache_dir=cache, workers=workers
            )
        splits[split] = cached.tensors
        extra[f"{split}_cache"] = cached.path.name
    from tlsweep.data.types import DatasetTensors

    return DatasetTensors(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        class_names=list(class_names),
        ordinal=bool(spec.ordinal),
        name=spec.name or root.name,
        extra=extra,
    )


def user_cache_dir(root: Path) -> Path:
    """The per-user tensor cache of a dataset: ``$XDG_CACHE_HOME/tlsweep/<root path>`` (default ``~/.cache``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tlsweep" / display_name(root.resolve().as_posix().strip("/")).replace("/", "__")


def _default_cache_dir(root: Path) -> Path:
    cache = root / CACHE_DIRNAME
    if cache.is_dir() or (not cache.exists() and os.access(root, os.W_OK)):
        return cache
    fallback = user_cache_dir(root)
    why = "is not a directory" if cache.exists() else f"cannot be created ({root} is not writable)"
    log.warning("the tensor cache %s %s; using %s instead", cache, why, fallback)
    return fallback
