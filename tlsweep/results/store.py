"""The results store: a sweep's Parquet files and text files on a local disk or an object store.

The driver is the only writer. Every write replaces a whole file atomically, so a reader (``tlsweep status``,
``tlsweep report``, a resumed driver) sees either the old or the new version, never a partial one:

* Local filesystem: ``tlsweep.results.atomic.atomic_write_bytes``: the file is written as
  ``.tmp-<uuid>.<name>`` in the same directory, flushed to disk and renamed over the target with ``os.replace``
  (atomic within one directory on POSIX, also on NFS). A crash in between leaves the old file and a hidden temp
  file that every reader ignores.
* Object stores (S3, GCS): the bytes are first serialised in memory, then written through
  ``open_output_stream``. An S3 object (single PUT or multipart upload) and a GCS object (resumable upload)
  become visible only when the upload is completed on ``close()``, and then replace the old object as a
  whole; a driver killed before that leaves the old object untouched. Serialising first matters: pyarrow's
  S3 stream completes the upload when it is closed, even on an error path, so a Parquet writer that failed
  midway must never be writing into it.

Appending (the sweep driver, O(1) per trial): :meth:`ResultsStore.append_trials` / :meth:`append_epochs` write a new
small *part file* ``parts/trials/part-<seq>.parquet`` (never touching the others), and
:meth:`ResultsStore.compact` folds the parts into ``trials.parquet`` / ``epochs.parquet`` at the end of each phase.
The table is always the compacted file upserted with the parts in sequence order (the last row of a key wins);
:meth:`read_trials` / :meth:`read_epochs` return exactly that, and a directory without parts (a finished sweep, or
one written by tlsweep 0.1) is its single file. Compaction writes the new file before it deletes the parts it
holds, oldest first, so a crash at any point leaves the same table; a reader that finds a part gone mid-read (it
was just compacted) reads again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from tlsweep.errors import SpecError, StoreError
from tlsweep.results.atomic import TMP_PREFIX, atomic_write_bytes
from tlsweep.results.location import RAY_SUBDIR, Location, resolve_location
from tlsweep.results.schema import ADDED_COLUMNS, EPOCHS_SCHEMA, TRIALS_SCHEMA
from tlsweep.spec import SweepSpec
from tlsweep.spec_load import parse_resolved_spec, split_resolved

TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
SPEC_FILE = "spec.resolved.yaml"  # the exact spec of the sweep, itself a valid spec
PROVENANCE_FILE = "provenance.json"  # how the results came about: spec hash, source, versions, trial counts
OPTUNA_JOURNAL_FILE = "optuna.journal"  # every study in Optuna's storage (tlsweep.tracking.optuna_mirror)
WANDB_RECORD_FILE = "wandb.json"  # the W&B Sweep that mirrors the sweep (tlsweep.tracking.wandb_sweep)
REPORT_DIR = "report"
PARTS_DIR = "parts"  # parts/trials/part-<seq>.parquet, parts/epochs/...: rows appended since the last compaction
# The sweep's own top-level entries: only the driver writes them (an upload never replaces one).
SWEEP_ENTRIES = (
    TRIALS_FILE,
    EPOCHS_FILE,
    SPEC_FILE,
    PROVENANCE_FILE,
    OPTUNA_JOURNAL_FILE,
    WANDB_RECORD_FILE,
    RAY_SUBDIR,
    PARTS_DIR,
)

_PARQUET_SCHEMAS: dict[str, pa.Schema] = {TRIALS_FILE: TRIALS_SCHEMA, EPOCHS_FILE: EPOCHS_SCHEMA}
TABLE_KEYS: dict[str, list[str]] = {TRIALS_FILE: ["trial_id"], EPOCHS_FILE: ["trial_id", "epoch"]}
_PART_PREFIX, _PART_DIGITS = "part-", 10
_READ_ATTEMPTS = 5  # a reader racing a compaction reads again; each retry means a compaction finished meanwhile
_ARROW_SCHEMA_KEY = b"ARROW:schema"


@dataclass(frozen=True)
class Provenance:
    """Where a sweep's results come from, saved beside the spec as ``provenance.json``.

    ``spec_hash`` is :meth:`SweepSpec.result_hash` of the spec the results belong to; a resumed sweep must match
    it. ``versions`` maps library names (tlsweep, python, torch, ray, ...) to the versions that wrote them.
    """

    spec_hash: str
    tlsweep_version: str | None = None
    source: str | None = None  # the spec file the sweep was started from
    versions: dict[str, str] = field(default_factory=dict)
    trial_counts: dict[str, int] = field(default_factory=dict)  # planned trials per phase
    compared_arms: tuple[tuple[str, str], ...] | None = None  # the comparisons: (treated, baseline) each
    # the resolved hypothesis block the sweep last ran with (a hand edit of spec.resolved.yaml is refused by the
    # report; tlsweep.results.integrity.check_spec); None in results written before 0.2.0
    hypothesis: dict[str, Any] | None = None
    # each time a finished or interrupted sweep was extended (more seeds, cells or tune trials; its recorded trials
    # reused): {"from": old hash, "to": new hash, "changes": [...], "at": ISO time}, oldest first
    extensions: tuple[dict[str, Any], ...] = ()
    # the dataset's class names in label-index order (the order of the trials' test_class_acc and test_confusion);
    # None in older results (the report then shows class indices)
    class_names: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec_hash": self.spec_hash,
            "tlsweep_version": self.tlsweep_version,
            "source": self.source,
            "versions": dict(self.versions),
            "trial_counts": dict(self.trial_counts),
            "compared_arms": [list(pair) for pair in self.compared_arms] if self.compared_arms else None,
            "hypothesis": self.hypothesis,
            "extensions": [dict(extension) for extension in self.extensions],
            "class_names": list(self.class_names) if self.class_names is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str, fix: str) -> Provenance:
        """Read the mapping written by :meth:`to_dict` (or the legacy ``tlsweep:`` block of the spec).

        Raises:
            StoreError: ``data`` lacks the spec hash or holds values of the wrong kind; names ``source`` and ``fix``.
        """
        if not isinstance(data, dict) or not isinstance(data.get("spec_hash"), str) or not data["spec_hash"]:
            raise StoreError(f"{source}: no `spec_hash` string in the sweep's provenance; {fix}")
        versions, counts, arms = data.get("versions") or {}, data.get("trial_counts") or {}, data.get("compared_arms")
        if not isinstance(versions, dict) or not isinstance(counts, dict):
            raise StoreError(f"{source}: `versions` and `trial_counts` must be mappings; {fix}")
        if isinstance(arms, list) and len(arms) == 2 and all(isinstance(arm, str) for arm in arms):
            arms = [arms]  # tlsweep <= 0.1: the one pair [treated, baseline]
        if arms is not None and not (
            isinstance(arms, list)
            and all(
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(a, str) for a in pair) for pair in arms
            )
        ):
            raise StoreError(f"{source}: `compared_arms` must be [[treated, baseline], ...], got {arms!r}; {fix}")
        hypothesis = data.get("hypothesis")
        if hypothesis is not None and not isinstance(hypothesis, dict):
            raise StoreError(f"{source}: `hypothesis` must be a mapping, got {type(hypothesis).__name__}; {fix}")
        try:
            counts = {str(k): int(v) for k, v in counts.items()}
        except (TypeError, ValueError):
            raise StoreError(
                f"{source}: `trial_counts` must map phases to whole numbers, got {counts!r}; {fix}"
            ) from None
        names = data.get("class_names")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise StoreError(f"{source}: `class_names` must be a list of strings, got {names!r}; {fix}")
        version = data.get("tlsweep_version", versions.get("tlsweep"))
        return cls(
            spec_hash=data["spec_hash"],
            tlsweep_version=None if version is None else str(version),
            source=None if data.get("source") is None else str(data["source"]),
            versions={str(k): str(v) for k, v in versions.items()},
            trial_counts=counts,
            compared_arms=tuple((str(pair[0]), str(pair[1])) for pair in arms) if arms else None,
            hypothesis=hypothesis,
            extensions=tuple(e for e in data.get("extensions") or [] if isinstance(e, dict)),
            class_names=tuple(names) if names is not None else None,
        )


def hypothesis_record(spec: SweepSpec) -> dict[str, Any]:
    """The hypothesis block of ``spec`` as recorded in ``provenance.json`` (what a hand edit is compared with)."""
    record: dict[str, Any] = spec.resolved()["hypothesis"]
    return record


class ResultsStore:
    """Reads and writes one sweep's results directory (``runs/<name>`` or ``s3://bucket/prefix/<name>``)."""

    def __init__(self, location: Location | str | Path) -> None:
        self.location: Location = location if isinstance(location, Location) else resolve_location(location)
        self._next_part: dict[str, int] = {}  # table file -> sequence number of its next part (this writer's)

    def __repr__(self) -> str:
        return f"ResultsStore({self.location.uri!r})"

    # ---- queries -------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the location already holds results (``trials.parquet`` or its parts) or a resolved spec."""
        return self._is_file(TRIALS_FILE) or self._is_file(SPEC_FILE) or bool(self.part_names(TRIALS_FILE))

    def local_dir(self) -> Path | None:
        """The results directory when it is on the local filesystem, else None."""
        return Path(self.location.path) if self.location.is_local else None

    # ---- Parquet -------------------------------------------------------------------------------------------
    def read_trials(self) -> pa.Table:
        """The trials table (:data:`TRIALS_SCHEMA`): ``trials.parquet`` upserted with its parts, one row per
        trial id, sorted by it (empty when nothing was written yet)."""
        return self._read_table(TRIALS_FILE)

    def read_epochs(self) -> pa.Table:
        """The epochs table (:data:`EPOCHS_SCHEMA`): ``epochs.parquet`` upserted with its parts, one row per
        (trial id, epoch), sorted by them (empty when nothing was written yet)."""
        return self._read_table(EPOCHS_FILE)

    def conflicting_trials(self) -> list[str]:
        """Trial ids recorded as finished (ok or diverged) more than once, in the file or its parts, with different
        numbers: a re-recording the upsert would otherwise let win silently."""
        schema = _PARQUET_SCHEMAS[TRIALS_FILE]
        tables = (self._read_parquet(n, schema) for n in (TRIALS_FILE, *self.part_names(TRIALS_FILE)))
        found = [t for t in tables if t is not None]
        if len(found) < 2:
            return []
        table = pa.concat_tables(found)
        finished = table.filter(pc.is_in(table.column("status"), pa.array(["ok", "diverged"])))
        columns = [c for c in ("test_acc", "objective", "best_val_acc") if c in finished.schema.names]
        counts = finished.group_by("trial_id", use_threads=False).aggregate([(c, "count_distinct") for c in columns])
        mask = None
        for c in columns:
            more = pc.greater(counts.column(f"{c}_count_distinct"), 1)
            mask = more if mask is None else pc.or_(mask, more)
        return sorted(counts.filter(mask).column("trial_id").to_pylist()) if mask is not None else []

    def write_trials(self, table: pa.Table, *, metadata: Mapping[str, str] | None = None) -> None:
        """Replace the whole trials table with ``table`` (validated against :data:`TRIALS_SCHEMA`): write
        ``trials.parquet``, then delete its parts."""
        self._write_parquet(TRIALS_FILE, table, metadata)
        self._delete_parts(TRIALS_FILE, self.part_names(TRIALS_FILE))

    def write_epochs(self, table: pa.Table, *, metadata: Mapping[str, str] | None = None) -> None:
        """Replace the whole epochs table with ``table`` (validated against :data:`EPOCHS_SCHEMA`): write
        ``epochs.parquet``, then delete its parts."""
        self._write_parquet(EPOCHS_FILE, table, metadata)
        self._delete_parts(EPOCHS_FILE, self.part_names(EPOCHS_FILE))

    def append_trials(self, table: pa.Table, *, metadata: Mapping[str, str] | None = None) -> str:
        """Upsert ``table``'s rows into the trials table by writing one new part file (cost independent of the
        rows already recorded). Returns the part's name below the results directory."""
        return self._append(TRIALS_FILE, table, metadata)

    def append_epochs(self, table: pa.Table, *, metadata: Mapping[str, str] | None = None) -> str:
        """Upsert ``table``'s rows into the epochs table by writing one new part file (see :meth:`append_trials`)."""
        return self._append(EPOCHS_FILE, table, metadata)

    def compact(self, *, metadata: Mapping[str, str] | None = None) -> None:
        """Fold the parts of both tables into ``trials.parquet`` and ``epochs.parquet`` (epochs first).

        The result reads exactly as before; a table without parts is left untouched. ``metadata`` replaces the
        files' key-value metadata; by default the newest part's is kept.
        """
        for name in (EPOCHS_FILE, TRIALS_FILE):
            parts = self.part_names(name)
            if not parts:
                continue
            table = self._read_table(name)
            self._write_parquet(name, table, metadata if metadata is not None else self.read_metadata(name))
            self._delete_parts(name, parts)

    def part_names(self, name: str) -> list[str]:
        """The part files of ``trials.parquet`` or ``epochs.parquet`` not yet compacted, oldest first."""
        directory = self._parts_dir(name)
        selector = pafs.FileSelector(self._path(directory), allow_not_found=True, recursive=False)
        with _storage_errors("list", self._uri(directory), self.location):
            infos = self.location.filesystem.get_file_info(selector)
        return sorted(
            f"{directory}/{i.base_name}"
            for i in infos
            if i.type == pafs.FileType.File
            and i.base_name.startswith(_PART_PREFIX)
            and i.base_name.endswith(".parquet")
        )

    def read_metadata(self, name: str) -> dict[str, str]:
        """The key-value metadata of a table (``"trials.parquet"`` or ``"trials"``): its newest part's, else the
        compacted file's.

        Returns an empty dict when the table does not exist. Arrow's own schema entry is left out.
        """
        file_name = name if name.endswith(".parquet") else f"{name}.parquet"
        candidates = (
            [*reversed(self.part_names(file_name)), file_name] if file_name in _PARQUET_SCHEMAS else [file_name]
        )
        for candidate in candidates:
            if not self._is_file(candidate):
                continue
            try:
                with self._open_input(candidate) as handle:
                    raw = pq.read_metadata(handle).metadata or {}
            except FileNotFoundError:  # a part compacted since it was listed: the compacted file has its metadata
                continue
            except (OSError, pa.ArrowInvalid) as exc:
                raise StoreError(f"{self._uri(candidate)} is not a readable Parquet file: {exc}") from exc
            return {key.decode(): value.decode() for key, value in raw.items() if key != _ARROW_SCHEMA_KEY}
        return {}

    # ---- text files ----------------------------------------------------------------------------------------
    def read_text(self, name: str) -> str | None:
        """A UTF-8 text file of the results directory (``"spec.resolved.yaml"``), or None when absent."""
        if not self._is_file(name):
            return None
        with _storage_errors("read", self._uri(name), self.location):
            with self.location.filesystem.open_input_stream(self._path(name)) as stream:
                data = stream.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StoreError(f"{self._uri(name)} is not UTF-8 text: {exc}") from exc

    def write_text(self, name: str, text: str) -> None:
        """Replace a text file of the results directory atomically."""
        self._write_bytes(name, text.encode("utf-8"))

    def read_bytes(self, name: str) -> bytes | None:
        """A file of the results directory (``"optuna.journal"``) as bytes, or None when absent."""
        if not self._is_file(name):
            return None
        with _storage_errors("read", self._uri(name), self.location):
            with self.location.filesystem.open_input_stream(self._path(name)) as stream:
                data: bytes = stream.read()
        return data

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace a file of the results directory atomically (on object stores: when the upload completes)."""
        self._write_bytes(name, data)

    # ---- the spec and its provenance ------------------------------------------------------------------------
    def has_spec(self) -> bool:
        """True when the results directory holds the sweep's resolved spec."""
        return self._is_file(SPEC_FILE)

    def read_spec(self) -> SweepSpec:
        """The ``SweepSpec`` the results were written with (``spec.resolved.yaml``; the old layout too).

        Raises:
            StoreError: the file is missing or is not a valid spec; the message names it and the fix.
        """
        uri = self._uri(SPEC_FILE)
        text = self.read_text(SPEC_FILE)
        if text is None:
            raise StoreError(
                f"{uri}: not found; is {self.location.uri} a results directory written by "
                "`tlsweep run`? Start a sweep with `tlsweep run SPEC`."
            )
        try:
            return parse_resolved_spec(text, source=uri)
        except SpecError as exc:
            raise StoreError(str(exc)) from None

    def read_provenance(self) -> Provenance | None:
        """The results' provenance: ``provenance.json``, else the ``tlsweep:`` block of an old-layout spec.

        Returns None when the directory holds neither (no sweep has written here, or the files were made by hand).

        Raises:
            StoreError: a provenance exists but cannot be read; the message names the file and the fix.
        """
        uri = self._uri(PROVENANCE_FILE)
        fix = "delete it: a resumed sweep then compares spec.resolved.yaml field by field instead"
        text = self.read_text(PROVENANCE_FILE)
        if text is not None:
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise StoreError(f"{uri}: not valid JSON ({exc}); {fix}") from None
            return Provenance.from_dict(data, source=uri, fix=fix)
        spec_text = self.read_text(SPEC_FILE)
        if spec_text is None:
            return None
        spec_uri = self._uri(SPEC_FILE)
        try:
            _, legacy = split_resolved(spec_text, source=spec_uri)
        except SpecError as exc:
            raise StoreError(str(exc)) from None
        if legacy is None:
            return None
        return Provenance.from_dict(
            legacy,
            source=f"{spec_uri} (its `tlsweep:` block)",
            fix="remove the block: a resumed sweep then compares the spec field by field",
        )

    def write_spec(self, spec: SweepSpec, provenance: Provenance) -> None:
        """Save the resolved spec and its provenance (the provenance first: a spec is never left without it).

        The provenance records ``spec``'s hypothesis block when it does not hold one already.
        """
        if provenance.hypothesis is None:
            provenance = dataclasses.replace(provenance, hypothesis=hypothesis_record(spec))
        self.write_text(PROVENANCE_FILE, json.dumps(provenance.to_dict(), indent=2) + "\n")
        self.write_text(SPEC_FILE, yaml.safe_dump(spec.resolved(), sort_keys=False))

    # ---- copies --------------------------------------------------------------------------------------------
    def download(self, dest: Path) -> Path:
        """Copy the results (every top-level file, ``report/`` and uncompacted ``parts/``, not Ray's state) into the
        local ``dest``."""
        dest = Path(dest).expanduser().resolve()
        dest.mkdir(parents=True, exist_ok=True)
        if self.location.is_local and Path(self.location.path) == dest:
            return dest
        local = pafs.LocalFileSystem()
        filesystem = self.location.filesystem
        with _storage_errors("download", self.location.uri, self.location):
            for info in self._list_top_level():
                base = info.base_name
                if base.startswith((TMP_PREFIX, ".")):
                    continue
                target = dest / base
                if info.type == pafs.FileType.File:
                    pafs.copy_files(info.path, target.as_posix(), filesystem, local)
                elif info.type == pafs.FileType.Directory and base in (REPORT_DIR, PARTS_DIR):
                    target.mkdir(parents=True, exist_ok=True)
                    pafs.copy_files(info.path, target.as_posix(), filesystem, local)
        return dest

    def upload_dir(self, src: Path, name: str) -> None:
        """Replace ``<location>/<name>`` with a copy of the local directory ``src`` (e.g. the report)."""
        src = Path(src).expanduser().resolve()
        if not src.is_dir():
            raise StoreError(f"cannot upload {src}: it is not a directory")
        target = self.location.join(name)
        top = name.strip("/").split("/")[0]
        if top in SWEEP_ENTRIES:
            raise StoreError(f"refusing to replace {target.uri}: it belongs to the sweep's own state")
        if target.is_local and Path(target.path) == src:
            return
        filesystem = self.location.filesystem
        with _storage_errors("upload to", target.uri, self.location):
            info = filesystem.get_file_info(target.path)
            if info.type == pafs.FileType.File:
                raise StoreError(f"cannot upload {src} to {target.uri}: a file of that name exists there")
            if info.type == pafs.FileType.Directory:
                filesystem.delete_dir(target.path)
            if target.is_local:
                filesystem.create_dir(target.path, recursive=True)
            pafs.copy_files(src.as_posix(), target.path, pafs.LocalFileSystem(), filesystem)

    # ---- internals -----------------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return self.location.join(name).path

    def _uri(self, name: str) -> str:
        return self.location.join(name).uri

    def _is_file(self, name: str) -> bool:
        with _storage_errors("look up", self._uri(name), self.location):
            return self.location.filesystem.get_file_info(self._path(name)).type == pafs.FileType.File

    def _list_top_level(self) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.location.path, allow_not_found=True, recursive=False)
        return self.location.filesystem.get_file_info(selector)

    def _open_input(self, name: str) -> pa.NativeFile:
        """One handle for a whole read: reopening by path could mix the footer of one version of a file being
        replaced with the pages of the next."""
        return self.location.filesystem.open_input_file(self._path(name))

    def _parts_dir(self, name: str) -> str:
        return f"{PARTS_DIR}/{name.removesuffix('.parquet')}"

    def _read_table(self, name: str) -> pa.Table:
        """The compacted file upserted with the parts; read again when a part vanished (compacted meanwhile)."""
        schema = _PARQUET_SCHEMAS[name]
        for _ in range(_READ_ATTEMPTS):
            parts = self.part_names(name)  # list first: a part compacted after this is already in the file read next
            try:
                tables = [self._read_parquet(file_name, schema) for file_name in (name, *parts)]
            except FileNotFoundError:
                continue
            found = [t for t in tables if t is not None]
            if not found:
                return schema.empty_table()
            if not parts:
                return found[0]
            merged = found[0]
            for table in found[1:]:
                merged = pa.concat_tables([merged, table])
            return merge_rows(schema.empty_table(), merged, key=TABLE_KEYS[name])
        raise StoreError(
            f"{self._uri(name)}: its parts kept changing while being read ({_READ_ATTEMPTS} attempts); "
            "is a second driver compacting these results? Read again when it is done"
        )

    def _read_parquet(self, name: str, schema: pa.Schema) -> pa.Table | None:
        """One file as a table of ``schema``; None when absent. Raises FileNotFoundError only for a part that was
        listed and vanished before it was opened."""
        is_part = name.startswith(f"{PARTS_DIR}/")
        if not is_part and not self._is_file(name):
            return None
        try:
            with self._open_input(name) as handle:
                table = pq.read_table(handle)
        except FileNotFoundError:
            if is_part:
                raise
            return None
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"{self._uri(name)} is not a readable Parquet file: {exc}") from exc
        return conform_table(table, schema, source=self._uri(name), fill_missing=True)

    def _append(self, name: str, table: pa.Table, metadata: Mapping[str, str] | None) -> str:
        if name not in self._next_part:
            existing = self.part_names(name)
            last = existing[-1].rsplit("/", 1)[-1] if existing else None
            self._next_part[name] = int(last[len(_PART_PREFIX) : -len(".parquet")]) + 1 if last else 0
        sequence = self._next_part[name]
        part = f"{self._parts_dir(name)}/{_PART_PREFIX}{sequence:0{_PART_DIGITS}d}.parquet"
        self._write_parquet(part, table, metadata, schema=_PARQUET_SCHEMAS[name])
        self._next_part[name] = sequence + 1
        return part

    def _delete_parts(self, name: str, parts: list[str]) -> None:
        """Delete compacted parts oldest first: what a crash leaves is a suffix, which re-applies harmlessly."""
        filesystem = self.location.filesystem
        for part in parts:
            with _storage_errors("delete", self._uri(part), self.location):
                with contextlib.suppress(FileNotFoundError):
                    filesystem.delete_file(self._path(part))

    def _write_parquet(
        self, name: str, table: pa.Table, metadata: Mapping[str, str] | None, *, schema: pa.Schema | None = None
    ) -> None:
        schema = schema if schema is not None else _PARQUET_SCHEMAS[name]
        table = conform_table(table, schema, source=f"the table written to {self._uri(name)}")
        if metadata:
            for key, value in metadata.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise StoreError(f"metadata for {self._uri(name)} must map str to str, got {key!r}: {value!r}")
            table = table.replace_schema_metadata(dict(metadata))
        else:
            table = table.replace_schema_metadata(None)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self._write_bytes(name, sink.getvalue().to_pybytes())

    def _write_bytes(self, name: str, data: bytes) -> None:
        target = self._path(name)
        with _storage_errors("write", self._uri(name), self.location):
            if self.location.is_local:
                atomic_write_bytes(Path(target), data, durable=True)
                return
            with self.location.filesystem.open_output_stream(target) as stream:
                stream.write(data)


@contextlib.contextmanager
def _storage_errors(action: str, uri: str, location: Location) -> Iterator[None]:
    """Turn the filesystem's OSError into a StoreError that names the file and what to check."""
    try:
        yield
    except OSError as exc:
        hint = (
            "check that the directory is writable and the disk has space"
            if location.is_local
            else "check that the bucket exists and that these credentials (environment, ~/.aws or the instance "
            "profile / service account) may read and write it"
        )
        raise StoreError(f"cannot {action} {uri}: {exc} ({hint})") from exc


def conform_table(table: pa.Table, schema: pa.Schema, *, source: str, fill_missing: bool = False) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order and types.

    Columns are reordered and cast when the cast is safe (no overflow, no truncation). Extra columns, unsafe
    casts and (unless ``fill_missing``) missing columns raise :class:`StoreError` naming ``source``, the column
    and both types. ``fill_missing`` reads files of an older tlsweep that lack a column added since
    (``tlsweep.results.schema.ADDED_COLUMNS``): the column comes back all null.
    """
    if fill_missing:
        for field in schema:
            if field.name not in table.schema.names and field.name in ADDED_COLUMNS:
                table = table.append_column(field, pa.nulls(table.num_rows, type=field.type))
    names = set(table.schema.names)
    if len(names) != len(table.schema.names):
        duplicated = sorted({n for n in table.schema.names if table.schema.names.count(n) > 1})
        raise StoreError(f"{source}: duplicated column(s) {', '.join(duplicated)}")
    missing = [name for name in schema.names if name not in names]
    extra = [name for name in table.schema.names if name not in set(schema.names)]
    if missing or extra:
        details = []
        if missing:
            details.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            details.append(f"unexpected column(s) {', '.join(extra)}")
        raise StoreError(
            f"{source} does not match the tlsweep results schema: {'; '.join(details)} "
            "(results written by another tlsweep version? rerun the sweep with --new into a fresh location)"
        )
    columns = []
    for field in schema:
        column = table.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise StoreError(
                    f"{source}: column {field.name!r} has type {column.type}, expected {field.type}, "
                    f"and cannot be converted safely ({exc})"
                ) from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema.remove_metadata())


def rows_to_table(rows: Iterable[Mapping[str, object]], schema: pa.Schema) -> pa.Table:
    """Build a table of ``schema`` from dicts keyed by column name.

    A missing key (or None) is null; a key the schema does not have raises :class:`StoreError`. NaN stays NaN in
    float columns and becomes null in integer columns (the way pandas spells a missing int); a float with a
    fractional part in an integer column is an error. Naive datetimes in timestamp columns are taken as UTC.
    """
    rows = list(rows)
    allowed = set(schema.names)
    for index, row in enumerate(rows):
        extra = [key for key in row if key not in allowed]
        if extra:
            raise StoreError(
                f"row {index} has key(s) {', '.join(map(repr, sorted(extra)))} that are not columns of the "
                f"results schema (columns: {', '.join(schema.names)})"
            )
    arrays = [_column_array(field, [row.get(field.name) for row in rows]) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema.remove_metadata())


def _column_array(field: pa.Field, values: list[object]) -> pa.Array:
    if pa.types.is_integer(field.type):
        values = [_integer_value(field.name, index, value) for index, value in enumerate(values)]
    try:
        return pa.array(values, type=field.type, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        pass
    for index, value in enumerate(values):  # find the first offending value for the message
        try:
            pa.array([value], type=field.type, from_pandas=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as exc:
            raise StoreError(
                f"row {index}, column {field.name!r}: value {value!r} ({type(value).__name__}) does not fit "
                f"type {field.type} ({exc})"
            ) from exc
    raise StoreError(f"column {field.name!r}: values do not fit type {field.type}")


def _integer_value(column: str, index: int, value: object) -> object:
    if isinstance(value, bool):
        raise StoreError(f"row {index}, column {column!r}: got a bool ({value}) where an integer is expected")
    if isinstance(value, float) or type(value).__name__ in ("float16", "float32", "float64"):
        number = float(value)  # type: ignore[arg-type]
        if math.isnan(number):
            return None
        if not number.is_integer():
            raise StoreError(f"row {index}, column {column!r}: {value!r} is not a whole number")
        return int(number)
    return value


def merge_rows(existing: pa.Table, new: pa.Table, *, key: list[str]) -> pa.Table:
    """Upsert ``new`` into ``existing``: rows of ``new`` replace rows with the same ``key``; others are kept.

    Within ``new`` the last row of a key wins. The result has no duplicated key and is sorted by ``key``
    (ascending, nulls last), so equal inputs always give byte-identical files.
    """
    if not key:
        raise StoreError("merge_rows needs at least one key column")
    if not existing.schema.equals(new.schema, check_metadata=False):
        raise StoreError(
            "merge_rows: the two tables have different schemas; build both with rows_to_table or read them "
            f"from the store (existing: {existing.schema.names}, new: {new.schema.names})"
        )
    missing = [name for name in key if name not in new.schema.names]
    if missing:
        raise StoreError(f"merge_rows: key column(s) {', '.join(missing)} are not in the table")
    combined = pa.concat_tables([existing, new.replace_schema_metadata(existing.schema.metadata)])
    if combined.num_rows == 0:
        return combined
    position = "__tlsweep_row__"
    while position in combined.schema.names:
        position += "_"
    numbered = combined.append_column(position, pa.array(range(combined.num_rows), pa.int64()))
    last = numbered.group_by(key, use_threads=False).aggregate([(position, "max")])
    merged = combined.take(last.column(f"{position}_max"))
    return merged.sort_by([(name, "ascending") for name in key])
