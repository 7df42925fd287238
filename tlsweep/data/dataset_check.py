"""``check_dataset``: list a dataset (files and labels, never pixels) and report what would make a sweep on it wrong.

Errors stop a sweep before any work: a missing root, split or metadata file, unreadable CSVs, listed images that
do not exist, symlinks that dangle,
loop or leave the root, fewer than two classes with training images, a split without images. Warnings are printed
and the sweep goes on: classes without training images, a class missing from val or test, the same file (by content)
in train and in val or test, images in nested class folders, file names that are not UTF-8.

``tlsweep validate`` runs it by default (``--no-data-check`` skips it); ``load_dataset`` runs the cheap part (all
but the duplicate search) every time it loads a dataset.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tlsweep.data.cache import ImageEntry
from tlsweep.data.dataset_spec import CsvDatasetSpec, DatasetSpec, ImageFolderDatasetSpec, SyntheticDatasetSpec
from tlsweep.data.listing import csv_entries, imagefolder_listing, listing_notes, missing_root_message
from tlsweep.data.presets import SPLITS
from tlsweep.errors import DataError

# Duplicate search: only files whose byte size occurs in train and in val/test are hashed, at most this many bytes
# in all; past the bound the search stops and says so.
MAX_HASHED_BYTES = 2 * 1024**3
_MAX_LISTED = 5


@dataclass(frozen=True)
class DatasetProblem:
    """One finding of :func:`check_dataset`: ``error`` stops a sweep, ``warning`` is reported."""

    level: Literal["error", "warning"]
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def check_dataset(spec: DatasetSpec, *, max_hashed_bytes: int = MAX_HASHED_BYTES) -> list[DatasetProblem]:
    """List ``spec``'s dataset and report its problems, errors first (an empty list: nothing found).

    Reads directory listings, the CSV files and (for the duplicate search) the bytes of train files whose size
    equals that of a val or test file; never decodes an image. A synthetic dataset not generated yet has nothing
    to check.
    """
    if isinstance(spec, SyntheticDatasetSpec):
        return []
    root = Path(spec.root)
    if not root.is_dir():
        return [DatasetProblem("error", missing_root_message(spec))]
    notes: list[str] = []
    try:
        if isinstance(spec, CsvDatasetSpec):
            entries, class_names = csv_entries(spec), list(spec.class_names)
        else:
            assert isinstance(spec, ImageFolderDatasetSpec)
            entries, class_names, listing = imagefolder_listing(spec)
            notes = listing_notes(listing)
    except DataError as exc:
        return [DatasetProblem("error", str(exc))]
    problems = missing_files(entries) + label_problems(entries, class_names, source=str(root))
    problems += [DatasetProblem("warning", note) for note in notes]
    problems += duplicate_problems(entries, max_hashed_bytes=max_hashed_bytes)
    return sorted(problems, key=lambda p: p.level != "error")


def missing_files(entries: Mapping[str, Sequence[ImageEntry]]) -> list[DatasetProblem]:
    """Images listed (in a CSV) that are not regular files: one error naming each with its CSV line."""
    missing = [
        f"{entry.rel} ({entry.origin})"
        for split in SPLITS
        for entry in entries.get(split, ())
        if not entry.path.is_file()
    ]
    if not missing:
        return []
    return [
        DatasetProblem(
            "error",
            f"{len(missing)} listed image(s) are missing or not regular files: "
            f"{_listed(missing)}; fix or remove these rows",
        )
    ]


def label_problems(
    entries: Mapping[str, Sequence[ImageEntry]], class_names: Sequence[str], *, source: str
) -> list[DatasetProblem]:
    """What the labels of a listed dataset say: splits without images and single-class data (errors); classes
    without training images and classes missing from val or test (warnings)."""
    problems: list[DatasetProblem] = []
    for split in SPLITS:
        if not entries.get(split):
            problems.append(DatasetProblem("error", f"{source}: split '{split}' has no images"))
    counts = {split: _class_counts(entries.get(split, ()), len(class_names)) for split in SPLITS}
    trained = [i for i, n in enumerate(counts["train"]) if n > 0]
    if entries.get("train") and len(trained) < 2:
        only = ", ".join(repr(class_names[i]) for i in trained) or "none"
        problems.append(
            DatasetProblem(
                "error",
                f"{source}: only {len(trained)} class has training images ({only}) of {len(class_names)} declared; a "
                "classifier needs at least two classes — add images of the other classes",
            )
        )
        return problems
    empty = [class_names[i] for i, n in enumerate(counts["train"]) if n == 0]
    if empty:
        problems.append(
            DatasetProblem(
                "warning",
                f"{source}: {len(empty)} class(es) have no training images: {_listed(empty)}; the model still has an "
                "output for each, which it can never learn",
            )
        )
    for split in ("val", "test"):
        missing = [class_names[i] for i in trained if counts[split][i] == 0]
        if missing and entries.get(split):
            problems.append(
                DatasetProblem(
                    "warning",
                    f"{source}: {len(missing)} class(es) with training images have none in {split}: {_listed(missing)}; "
                    f"{split} accuracy says nothing about them",
                )
            )
    return problems


def duplicate_problems(
    entries: Mapping[str, Sequence[ImageEntry]], *, max_hashed_bytes: int = MAX_HASHED_BYTES
) -> list[DatasetProblem]:
    """Files with identical bytes in train and in val or test (a leak that inflates every arm's score).

    Only files whose size occurs both in train and in the other split are hashed, at most ``max_hashed_bytes``.
    """
    sizes: dict[str, dict[int, list[ImageEntry]]] = {}
    for split in SPLITS:
        by_size: dict[int, list[ImageEntry]] = defaultdict(list)
        for entry in entries.get(split, ()):
            try:
                by_size[os.stat(entry.path).st_size].append(entry)
            except OSError:
                continue  # missing files are reported when the data is loaded
        sizes[split] = by_size
    budget = max_hashed_bytes
    digests: dict[Path, str] = {}
    stopped = False

    def digest(entry: ImageEntry, size: int) -> str | None:
        nonlocal budget, stopped
        if entry.path in digests:
            return digests[entry.path]
        if size > budget:
            stopped = True
            return None
        budget -= size
        try:
            with open(entry.path, "rb") as fh:
                digests[entry.path] = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError:
            return None
        return digests[entry.path]

    problems = []
    for other in ("val", "test"):
        pairs: list[str] = []
        for size, held_out in sizes[other].items():
            train = sizes["train"].get(size)
            if not train or stopped:
                continue
            train_by_digest: dict[str, ImageEntry] = {}
            for entry in train:
                value = digest(entry, size)
                if value is not None:
                    train_by_digest.setdefault(value, entry)
            for entry in held_out:
                value = digest(entry, size)
                if value is not None and value in train_by_digest:
                    pairs.append(f"{entry.rel} = {train_by_digest[value].rel}")
        if pairs:
            problems.append(
                DatasetProblem(
                    "warning",
                    f"{len(pairs)} {other} file(s) are byte-for-byte copies of training files: {_listed(pairs)}; "
                    f"{other} scores of every arm are inflated — remove the copies from one of the splits",
                )
            )
    if stopped:
        problems.append(
            DatasetProblem(
                "warning",
                f"the search for files shared by train and val/test stopped after hashing "
                f"{max_hashed_bytes / 1024**2:.0f} MiB; duplicates beyond that were not looked for",
            )
        )
    return problems


def raise_errors(problems: Sequence[DatasetProblem], *, source: str) -> None:
    """Raise one DataError listing every error of ``problems`` (warnings are left to the caller)."""
    errors = [p.message for p in problems if p.level == "error"]
    if len(errors) == 1:
        raise DataError(errors[0])
    if errors:
        raise DataError(f"{len(errors)} problem(s) with the dataset {source}:\n  " + "\n  ".join(errors))


def _class_counts(entries: Sequence[ImageEntry], k: int) -> list[int]:
    counts = [0] * k
    for entry in entries:
        if 0 <= entry.label < k:
            counts[entry.label] += 1
    return counts


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
