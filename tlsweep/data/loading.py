"""``load_dataset``: any dataset spec → decoded, cached, memory-mapped train/val/test tensors."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tlsweep.data.cache import ImageEntry, load_or_build_split
from tlsweep.data.config import CsvDatasetSpec, DatasetSpec, ImageFolderDatasetSpec, SyntheticDatasetSpec
from tlsweep.data.presets import PRESETS, SPLITS
from tlsweep.errors import DataError

if TYPE_CHECKING:
    from tlsweep.data.types import DatasetTensors

CACHE_DIRNAME = ".tlsweep-cache"
_MAX_ROW_ERRORS = 50


def load_dataset(
    spec: DatasetSpec, *, image_size: int, cache_dir: str | Path | None = None, workers: int | None = None
) -> DatasetTensors:
    """Decode (once) and memory-map the three splits of a dataset as uint8 N×3×image_size×image_size tensors.

    Args:
        spec: the dataset (``SweepSpec.dataset``, or ``tlsweep.data.config.parse_dataset_spec({...})``); a
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
        csv_spec = CsvDatasetSpec.model_validate({
            "root": spec.root,
            "preset": "korean_face_age" if spec.task == "age" else "synthetic_source",
            "name": spec.name or f"synthetic-{spec.task}",
        })
        return load_dataset(csv_spec, image_size=image_size, cache_dir=cache_dir, workers=workers)
    root = Path(spec.root)
    if not root.is_dir():
        raise DataError(_missing_root_message(spec))
    if isinstance(spec, CsvDatasetSpec):
        entries, class_names = csv_entries(spec), spec.class_names
    else:
        entries, class_names = imagefolder_entries(spec)
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir(root)
    splits = {}
    extra = {"root": str(root), "cache_dir": str(cache), "format": spec.format}
    for split in SPLITS:
        cached = load_or_build_split(entries[split], split=split, image_size=image_size, cache_dir=cache, workers=workers)
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


def _default_cache_dir(root: Path) -> Path:
    cache = root / CACHE_DIRNAME
    if cache.is_dir() or os.access(root, os.W_OK):
        return cache
    return Path.home() / ".cache" / "tlsweep" / root.resolve().as_posix().strip("/").replace("/", "__")


def _missing_root_message(spec: DatasetSpec) -> str:
    root = Path(spec.root)
    if isinstance(spec, CsvDatasetSpec):
        expected = ", ".join([*spec.splits.values(), *(f"{d}/" for d in spec.image_dirs.values())])
        how = PRESETS[spec.preset].how_to_get if spec.preset in PRESETS else ""
        how = how or "put the dataset there, or pass `--set dataset.root=...`"
        return f"dataset root {root} does not exist; expected {expected} there. {how[0].upper()}{how[1:]}."
    return (
        f"dataset root {root} does not exist; expected either {root}/train/<class>/<images> (+ val/, test/) or "
        f"{root}/<class>/<images>. Put the images there, or pass `--set dataset.root=...`."
    )


def _inside(root: Path, candidate: Path) -> bool:
    root_n = os.path.normpath(os.path.abspath(root))
    cand_n = os.path.normpath(os.path.abspath(candidate))
    return os.path.commonpath([root_n, cand_n]) == root_n


def csv_entries(spec: CsvDatasetSpec) -> dict[str, list[ImageEntry]]:
    """Read the three CSVs; every row problem (escape, unknown label, empty path) is collected into one DataError."""
    root = Path(spec.root)
    out: dict[str, list[ImageEntry]] = {}
    problems: list[str] = []
    for split in SPLITS:
        csv_path = root / spec.splits[split]
        image_dir = root / spec.image_dirs[split]
        if not csv_path.is_file():
            raise DataError(
                f"{csv_path}: missing metadata file for split '{split}'; expected a CSV with columns "
                f"{spec.path_column},{spec.label_column} (dataset.splits.{split} names it)"
            )
        entries: list[ImageEntry] = []
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            for column in (spec.path_column, spec.label_column):
                if column not in columns:
                    raise DataError(
                        f"{csv_path}: missing column {column!r} (header has {columns}); set "
                        f"dataset.path_column/dataset.label_column or fix the header"
                    )
            for row in reader:
                line = reader.line_num
                where = f"{csv_path.name} line {line}"
                raw_path = (row.get(spec.path_column) or "").strip()
                raw_label = (row.get(spec.label_column) or "").strip()
                if not raw_path:
                    problems.append(f"{csv_path} line {line}: empty {spec.path_column!r}")
                    continue
                if raw_label not in spec.label_map:
                    problems.append(
                        f"{csv_path} line {line}: unknown label {raw_label!r} in column {spec.label_column!r}; "
                        f"known labels: {sorted(spec.label_map)}"
                    )
                    continue
                path = _resolve_image(root, image_dir, raw_path)
                if path is None:
                    problems.append(
                        f"{csv_path} line {line}: image path {raw_path!r} escapes the dataset root {root}"
                    )
                    continue
                rel = os.path.relpath(path, root)
                entries.append(ImageEntry(path=path, rel=rel, label=spec.label_map[raw_label], origin=where))
        out[split] = entries
    if problems:
        shown = problems[:_MAX_ROW_ERRORS]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise DataError(f"{len(problems)} bad row(s) in the dataset CSVs:\n  " + "\n  ".join(shown) + more)
    return out


def _resolve_image(root: Path, image_dir: Path, raw: str) -> Path | None:
    """A bare name relative to the split's image dir, or a path relative to root; None when it leaves root."""
    candidates = [Path(os.path.normpath(c)) for c in (image_dir / raw, root / raw)]
    inside = [c for c in candidates if _inside(root, c)]
    if not inside:
        return None
    for candidate in inside:
        if candidate.exists():
            return candidate
    return inside[0]  # missing: reported by the cache together with its CSV line


def _list_images(folder: Path, extensions: Sequence[str]) -> list[Path]:
    exts = {e.lower() for e in extensions}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split indices per class by a seeded permutation; every part gets ≥1 per class when the class is big enough."""
    parts: list[list[int]] = [[] for _ in fractions]
    rng = np.random.default_rng(seed)
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n = len(idx)
        counts = [int(np.floor(f * n)) for f in fractions]
        for k in range(len(counts)):  # give each part one example first, where possible
            if counts[k] == 0 and n >= len(fractions):
                counts[k] = 1
        while sum(counts) > n:
            counts[int(np.argmax(counts))] -= 1
        counts[0] += n - sum(counts)
        start = 0
        for k, c in enumerate(counts):
            parts[k].extend(idx[start : start + c].tolist())
            start += c
    return [np.array(sorted(p), dtype=np.int64) for p in parts]


def imagefolder_entries(spec: ImageFolderDatasetSpec) -> tuple[dict[str, list[ImageEntry]], list[str]]:
    root = Path(spec.root)
    split_dirs = {s: root / spec.split_dirs[s] for s in SPLITS}
    present = {s for s, d in split_dirs.items() if d.is_dir()}
    if "train" in present:
        class_names = [d.name for d in _class_dirs(split_dirs["train"])]
        scan_roots = {s: split_dirs[s] for s in present}
    else:
        class_names = [d.name for d in _class_dirs(root)]
        scan_roots = {"all": root}
    if not class_names:
        raise DataError(
            f"{root}: no class folders found; expected {root}/<class>/<images> or {root}/train/<class>/<images>"
        )
    index = {name: i for i, name in enumerate(class_names)}
    files: dict[str, list[ImageEntry]] = {}
    for split, folder in scan_roots.items():
        entries: list[ImageEntry] = []
        for class_dir in _class_dirs(folder):
            if class_dir.name not in index:
                raise DataError(
                    f"{class_dir}: class folder {class_dir.name!r} does not exist under "
                    f"{split_dirs['train']}; known classes: {class_names}"
                )
            for path in _list_images(class_dir, spec.extensions):
                rel = os.path.relpath(path, root)
                entries.append(ImageEntry(path=path, rel=rel, label=index[class_dir.name], origin=rel))
        if not entries:
            raise DataError(f"{folder}: no images with extensions {list(spec.extensions)}")
        files[split] = entries

    if "all" in files:
        pool = files.pop("all")
        labels = np.array([e.label for e in pool])
        ratios = spec.split_ratios
        parts = _stratified_split(labels, (ratios.train, ratios.val, ratios.test), spec.split_seed)
        for split, part in zip(SPLITS, parts, strict=False):
            files[split] = [pool[i] for i in part]
    else:
        missing = [s for s in ("val", "test") if s not in files]
        if len(missing) == 2:
            raise DataError(
                f"{root}: found {split_dirs['train']} but neither {split_dirs['val']} nor {split_dirs['test']}"
            )
        if missing:
            donor = "test" if missing[0] == "val" else "val"
            pool = files[donor]
            labels = np.array([e.label for e in pool])
            first, second = _stratified_split(labels, (0.5, 0.5), spec.split_seed)
            files[donor] = [pool[i] for i in first]
            files[missing[0]] = [pool[i] for i in second]
    return files, class_names
