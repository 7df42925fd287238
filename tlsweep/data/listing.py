"""Listing a dataset's images without decoding one: CSV rows or an ImageFolder tree → image entries per split and
class names, with every problem found named (file, line, value, fix)."""

from __future__ import annotations

import codecs
import contextlib
import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlsweep.data.cache import ImageEntry
from tlsweep.data.dataset_spec import CsvDatasetSpec, DatasetSpec, ImageFolderDatasetSpec
from tlsweep.data.presets import PRESETS, SPLITS
from tlsweep.errors import DataError

_MAX_ROW_ERRORS = 50


def listing_notes(listing: _Listing) -> list[str]:
    """Warnings about an ImageFolder listing: images found in nested folders, file names that are not UTF-8."""
    notes = []
    if listing.nested:
        shown = ", ".join(f"{folder} ({n})" for folder, n in list(listing.nested.items())[:5])
        more = f" and {len(listing.nested) - 5} more" if len(listing.nested) > 5 else ""
        notes.append(
            f"{sum(listing.nested.values())} image(s) are in folders nested below their class folder "
            f"({shown}{more}); they count as images of that class, as in torchvision's ImageFolder"
        )
    if listing.undecodable:
        shown = ", ".join(listing.undecodable[:5])
        notes.append(
            f"{len(listing.undecodable)} file name(s) are not UTF-8 text ({shown}); they are read, and "
            "recorded with \\x escapes"
        )
    return notes


def missing_root_message(spec: DatasetSpec) -> str:
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


def _shown(value: str, limit: int = 80) -> str:
    """``repr(value)``, shortened for an error message (a 200 KB CSV field is not echoed back whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}...' ({len(value)} characters)"


def _short_list(values: Sequence[str]) -> list[str]:
    return [v if len(v) <= 60 else f"{v[:40]}... ({len(v)} characters)" for v in values]


def display_name(path: str | os.PathLike[str]) -> str:
    """A file name as text that is valid UTF-8: bytes that are not UTF-8 (a latin-1 name) become ``\\xe9`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_undecodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@contextlib.contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    """Let the csv module read fields up to ``limit`` characters (its default, 128 KiB, raises on longer ones)."""
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


_CSV_FIELD_LIMIT = 16 * 1024 * 1024
_MAX_PATH_BYTES, _MAX_NAME_BYTES = 4096, 255  # Linux's PATH_MAX and NAME_MAX


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
        encoding = "utf-8-sig" if codecs.lookup(spec.encoding).name == "utf-8" else spec.encoding
        try:
            with csv_path.open(newline="", encoding=encoding) as fh, _csv_field_limit(_CSV_FIELD_LIMIT):
                reader = csv.DictReader(fh)
                columns = reader.fieldnames or []
                for column in (spec.path_column, spec.label_column):
                    if column not in columns:
                        raise DataError(
                            f"{csv_path}: missing column {column!r} (header has {_short_list(columns)}); set "
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
                            f"{csv_path} line {line}: unknown label {_shown(raw_label)} in column "
                            f"{spec.label_column!r}; known labels: {sorted(spec.label_map)}"
                        )
                        continue
                    path, why = _resolve_image(root, image_dir, raw_path, spec.follow_symlinks_outside_root)
                    if path is None:
                        problems.append(f"{csv_path} line {line}: image path {_shown(raw_path)} {why}")
                        continue
                    rel = os.path.relpath(path, root)
                    entries.append(ImageEntry(path=path, rel=rel, label=spec.label_map[raw_label], origin=where))
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{csv_path}: not {spec.encoding} text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} "
                f"cannot be decoded); save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or set dataset.encoding "
                "to its encoding (latin-1, cp1252, ...)"
            ) from None
        except csv.Error as exc:
            raise DataError(f"{csv_path}: not a readable CSV file ({exc}); fix the file") from None
        out[split] = entries
    if problems:
        shown = problems[:_MAX_ROW_ERRORS]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise DataError(f"{len(problems)} bad row(s) in the dataset CSVs:\n  " + "\n  ".join(shown) + more)
    return out


def _resolve_image(root: Path, image_dir: Path, raw: str, outside_ok: bool) -> tuple[Path | None, str]:
    """A bare name relative to the split's image dir, or a path relative to root, and why not when None: the path
    leaves root (by name, or through a symlink unless ``outside_ok``), or it is a dangling symlink or a loop."""
    if "\x00" in raw:
        return None, "contains a NUL byte; fix the CSV"
    longest = max((len(part.encode()) for part in Path(raw).parts), default=0)
    if len(raw.encode()) > _MAX_PATH_BYTES or longest > _MAX_NAME_BYTES:
        return None, (
            f"is {len(raw.encode())} bytes long with a {longest}-byte name (a path holds at most {_MAX_PATH_BYTES} "
            f"bytes, a name {_MAX_NAME_BYTES}); fix the CSV"
        )
    candidates = [Path(os.path.normpath(c)) for c in (image_dir / raw, root / raw)]
    inside = [c for c in candidates if _inside(root, c)]
    if not inside:
        return None, f"escapes the dataset root {root}"
    for candidate in inside:
        if candidate.exists():
            if not outside_ok and not _inside(Path(os.path.realpath(root)), Path(os.path.realpath(candidate))):
                return None, (
                    f"is a symlink to {os.path.realpath(candidate)}, outside the dataset root {root}; copy the "
                    "image into the root, or set dataset.follow_symlinks_outside_root: true"
                )
            return candidate, ""
        if candidate.is_symlink():
            return None, f"is a dangling symlink or a symlink loop ({candidate}); fix or remove the link"
    return inside[0], ""  # missing: reported by the cache together with its CSV line


@dataclass
class _Listing:
    """What listing an ImageFolder tree found besides its images: problems (errors) and notes (warnings)."""

    root: Path
    real_root: str
    outside_ok: bool
    extensions: frozenset[str]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nested: dict[str, int] = field(default_factory=dict)  # nested folder (relative to root) -> images found in it
    undecodable: list[str] = field(default_factory=list)

    def follow(self, path: Path) -> Path | None:
        """``path`` itself, or None (with a problem recorded) when it is a symlink that dangles, loops or leaves
        the root (unless allowed)."""
        if not path.is_symlink():
            return path
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            self.problems.append(f"{display_name(path)}: dangling symlink (to {os.readlink(path)!r}); fix or remove it")
            return None
        except (OSError, RuntimeError):
            self.problems.append(f"{display_name(path)}: symlink loop; remove the link")
            return None
        if not self.outside_ok and not _inside(Path(self.real_root), target):
            self.problems.append(
                f"{display_name(path)}: symlink to {display_name(target)}, outside the dataset root {self.root}; copy "
                "the files into the root, or set dataset.follow_symlinks_outside_root: true"
            )
            return None
        return path

    def class_dirs(self, folder: Path) -> list[Path]:
        """The visible sub-folders of ``folder`` (symlinks to folders included, once checked)."""
        found = []
        for child in sorted(folder.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_symlink() and self.follow(child) is None:
                continue
            if child.is_dir():
                if _is_undecodable(child.name):
                    raise DataError(
                        f"{display_name(child)}: a class folder name that is not UTF-8 text; rename the folder"
                    )
                found.append(child)
        return found

    def images(self, class_dir: Path) -> list[Path]:
        """Every image below ``class_dir``, nested folders included, in the order torchvision's ImageFolder lists
        them (folders sorted by path, files sorted within each), following symlinks that stay inside the root;
        loops are reported."""
        found: list[tuple[str, list[Path]]] = []
        self._walk(class_dir, found, {os.path.realpath(class_dir)})
        found.sort(key=lambda item: item[0])
        return [path for _, paths in found for path in paths]

    def _walk(self, folder: Path, found: list[tuple[str, list[Path]]], chain: set[str]) -> None:
        try:
            children = sorted(folder.iterdir())
        except OSError as exc:
            self.problems.append(f"{display_name(folder)}: cannot list the folder ({exc.strerror or exc})")
            return
        here: list[Path] = []
        for child in children:
            if child.name.startswith(".") or self.follow(child) is None:
                continue
            if child.is_dir():
                real = os.path.realpath(child)
                if real in chain:
                    self.problems.append(
                        f"{display_name(child)}: symlink loop (leads back to {display_name(real)}); remove the link"
                    )
                    continue
                self._walk(child, found, chain | {real})
            elif child.is_file() and child.suffix.lower() in self.extensions:
                if _is_undecodable(child.name):
                    self.undecodable.append(display_name(child))
                here.append(child)
        found.append((str(folder), here))
        if here and len(chain) > 1:
            self.nested[display_name(os.path.relpath(folder, self.root))] = len(here)


def _listing(spec: ImageFolderDatasetSpec) -> _Listing:
    root = Path(spec.root)
    return _Listing(
        root=root,
        real_root=os.path.realpath(root),
        outside_ok=spec.follow_symlinks_outside_root,
        extensions=frozenset(e.lower() for e in spec.extensions),
    )


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
    """The three splits of an ImageFolder tree and its class names (sorted class folders of train, or of root).

    Images in nested folders below a class folder belong to that class, as in torchvision's ``ImageFolder``.

    Raises:
        DataError: no classes or images; a class folder unknown to train; symlinks that dangle, loop or leave the root
            (unless ``follow_symlinks_outside_root``) — every such link listed.
    """
    files, class_names, _ = imagefolder_listing(spec)
    return files, class_names


def imagefolder_listing(spec: ImageFolderDatasetSpec) -> tuple[dict[str, list[ImageEntry]], list[str], _Listing]:
    root = Path(spec.root)
    listing = _listing(spec)
    split_dirs = {s: root / spec.split_dirs[s] for s in SPLITS}
    present = {s for s, d in split_dirs.items() if d.is_dir()}
    if "train" in present:
        class_names = [d.name for d in listing.class_dirs(split_dirs["train"])]
        scan_roots = {s: split_dirs[s] for s in present}
    elif present:
        named = " and ".join(f"{spec.split_dirs[s]}/" for s in sorted(present, reverse=True))
        raise DataError(
            f"{root}: has {named} but no {spec.split_dirs['train']}/ (its class folders would be read as classes "
            f"named {', '.join(sorted(spec.split_dirs[s] for s in present))}); add {split_dirs['train']}/<class>/"
            f"<images>, or put the class folders directly under {root} to let tlsweep split them"
        )
    else:
        class_names = [d.name for d in listing.class_dirs(root)]
        scan_roots = {"all": root}
    if not class_names:
        _raise_listing_problems(listing)
        raise DataError(
            f"{root}: no class folders found; expected {root}/<class>/<images> or {root}/train/<class>/<images>"
        )
    index = {name: i for i, name in enumerate(class_names)}
    files: dict[str, list[ImageEntry]] = {}
    for split, folder in scan_roots.items():
        entries: list[ImageEntry] = []
        listed_once = split in ("train", "all")  # their class folders were listed (and their links checked) above
        class_dirs = [folder / name for name in class_names] if listed_once else listing.class_dirs(folder)
        for class_dir in class_dirs:
            if class_dir.name not in index:
                raise DataError(
                    f"{class_dir}: class folder {class_dir.name!r} does not exist under "
                    f"{split_dirs['train']}; known classes: {class_names}"
                )
            for path in listing.images(class_dir):
                rel = display_name(os.path.relpath(path, root))
                entries.append(ImageEntry(path=path, rel=rel, label=index[class_dir.name], origin=rel))
        _raise_listing_problems(listing)
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
    return files, class_names, listing


def _raise_listing_problems(listing: _Listing) -> None:
    if listing.problems:
        shown = listing.problems[:_MAX_ROW_ERRORS]
        more = f"\n  ... and {len(listing.problems) - len(shown)} more" if len(listing.problems) > len(shown) else ""
        raise DataError(
            f"{len(listing.problems)} problem(s) listing the dataset {listing.root}:\n  " + "\n  ".join(shown) + more
        )
