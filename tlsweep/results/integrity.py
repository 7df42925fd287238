"""Check a results directory when it is read: nothing is reported, or shown as progress, from results that are not
what a sweep writes.

``check_trials`` / ``check_epochs`` look at the values (the schema itself is checked by the store on every read):
required columns non-null, known phases and statuses, unique trial ids, accuracies in [0, 1], counts and losses not
negative. ``check_spec`` compares ``spec.resolved.yaml`` with what was recorded when the trials were written: the
result hash in the Parquet metadata and ``provenance.json``, and the hypothesis ``provenance.json`` holds. Each
raises :class:`StoreError` naming the file, the column, the offending values and the fix; a paired-subset mismatch
across arms is returned as a warning (the measurements are real, the pairing the paired test assumes is not).

pyarrow only: the report, ``tlsweep status`` and any reader can call it without pandas, torch or Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from tlsweep.errors import StoreError
from tlsweep.results.schema import PHASES, STATUSES
from tlsweep.results.store import PROVENANCE_FILE, SPEC_FILE, TRIALS_FILE, ResultsStore, hypothesis_record
from tlsweep.spec import diff_resolved

if TYPE_CHECKING:
    from tlsweep.spec import SweepSpec

_FIX = "the file was edited or damaged after the sweep wrote it: restore it, or rerun the sweep with --new"
_SHOWN = 5

# column -> (lowest, highest) allowed for non-null, non-NaN values; None: unbounded on that side
TRIAL_RANGES: dict[str, tuple[float | None, float | None]] = {
    "best_val_acc": (0.0, 1.0),
    "final_val_acc": (0.0, 1.0),
    "test_acc": (0.0, 1.0),
    "test_balanced_acc": (0.0, 1.0),
    "test_off_by_one": (0.0, 1.0),
    "chance": (0.0, 1.0),
    "best_val_loss": (0.0, None),
    "test_loss": (0.0, None),
    "test_mae": (0.0, None),
    "train_fraction": (0.0, 1.0),
    "num_classes": (2, None),
    "n_train": (0, None),
    "n_val": (0, None),
    "n_test": (0, None),
    "epochs_run": (0, None),
    "best_epoch": (0, None),  # 0 when the run diverged
    "optimizer_steps": (0, None),
    "wall_time_s": (0.0, None),
    "attempts": (1, None),
    "replicate": (0, None),
    "tune_index": (0, None),
}
EPOCH_RANGES: dict[str, tuple[float | None, float | None]] = {
    "epoch": (1, None),
    "step": (0, None),
    "train_acc": (0.0, 1.0),
    "val_acc": (0.0, 1.0),
    "train_loss": (0.0, None),
    "val_loss": (0.0, None),
    "epoch_time_s": (0.0, None),
}
_TRIAL_REQUIRED = ("trial_id", "phase", "cell_id", "arm", "status")
_EPOCH_REQUIRED = ("trial_id", "epoch")


def check_trials(table: pa.Table, *, source: str) -> list[str]:
    """Check the values of a trials table; returns warnings (paired subsets that differ across arms).

    Raises:
        StoreError: a required value is missing, a phase or status is unknown, a trial id occurs twice, or a value
            is out of its range (an accuracy outside [0, 1], a negative count...); names ``source`` and the rows.
    """
    problems = _required(table, _TRIAL_REQUIRED)
    problems += _known(table, "phase", PHASES) + _known(table, "status", STATUSES)
    problems += _unique(table, ["trial_id"])
    problems += _ranges(table, TRIAL_RANGES)
    _raise(problems, source)
    return _subset_warnings(table, source)


def check_epochs(table: pa.Table, *, source: str) -> None:
    """Check the values of an epochs table (required keys, unique (trial id, epoch), ranges).

    Raises:
        StoreError: as :func:`check_trials`.
    """
    problems = _required(table, _EPOCH_REQUIRED) + _known(table, "phase", PHASES)
    problems += _unique(table, ["trial_id", "epoch"])
    problems += _ranges(table, EPOCH_RANGES)
    _raise(problems, source)


def check_spec(store: ResultsStore, spec: SweepSpec) -> None:
    """``spec`` (read from ``spec.resolved.yaml``) is the spec the results were recorded with.

    Its result hash must equal the ``spec_hash`` in the trials' Parquet metadata and in ``provenance.json``, and its
    hypothesis the one ``provenance.json`` recorded when the sweep last ran: the report tests the hypothesis that
    was declared before the results were seen, so an ``alpha`` (or metric, direction, margin, region) edited into
    the file afterwards is refused, not silently used.

    Raises:
        StoreError: naming the files, what differs and the fix.
    """
    spec_uri = store.location.join(SPEC_FILE).uri
    current = spec.result_hash()
    recorded = store.read_metadata(TRIALS_FILE).get("spec_hash")
    if recorded is not None and recorded != current:
        raise StoreError(
            f"{spec_uri} does not match the spec the trials were recorded with: its result hash is {current}, "
            f"{store.location.join(TRIALS_FILE).uri} records {recorded}; the file was edited after the sweep ran. "
            "Restore it (the sweep's own spec file, rerun with `tlsweep run SPEC`, rewrites it)"
        )
    provenance = store.read_provenance()
    if provenance is None:
        return
    provenance_uri = store.location.join(PROVENANCE_FILE).uri
    if provenance.spec_hash != current:
        raise StoreError(
            f"{spec_uri} does not match {provenance_uri}: result hash {current} vs {provenance.spec_hash}; the "
            "spec was edited after the sweep ran. Restore it (rerunning `tlsweep run SPEC` with the sweep's spec "
            "rewrites it)"
        )
    if provenance.hypothesis is not None:
        changed = diff_resolved(provenance.hypothesis, hypothesis_record(spec), prefix="hypothesis.")
        if changed:
            raise StoreError(
                f"{spec_uri}: the hypothesis was edited after the sweep ran ({'; '.join(changed[:_SHOWN])}; "
                f"{provenance_uri} records the one declared before the results were seen). A report tests that "
                "one: restore it; to test another, change the sweep spec and rerun `tlsweep run SPEC`, which "
                "records the change"
            )


# ---- checks ------------------------------------------------------------------------------------------------------
def _raise(problems: Sequence[str], source: str) -> None:
    if problems:
        raise StoreError(f"{source}: " + "; ".join(problems) + f"; {_FIX}")


def _required(table: pa.Table, columns: Sequence[str]) -> list[str]:
    problems = []
    for name in columns:
        nulls = table.column(name).null_count
        if nulls:
            problems.append(f"{nulls} row(s) have no {name!r}")
    return problems


def _known(table: pa.Table, column: str, allowed: Sequence[str]) -> list[str]:
    values = table.column(column)
    unknown = pc.filter(values, pc.invert(pc.fill_null(pc.is_in(values, value_set=pa.array(allowed)), True)))
    if len(unknown) == 0:
        return []
    distinct = sorted(set(unknown.to_pylist()))
    return [
        f"{len(unknown)} row(s) have an unknown {column} ({_listed([repr(v) for v in distinct])}; known: "
        f"{', '.join(allowed)})"
    ]


def _unique(table: pa.Table, keys: list[str]) -> list[str]:
    if table.num_rows == 0:
        return []
    counts = table.select(keys).group_by(keys, use_threads=False).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if repeated.num_rows == 0:
        return []
    shown = [
        "/".join(str(row[k]) for k in keys) + f" ({row['count_all']}×)" for row in repeated.slice(0, _SHOWN).to_pylist()
    ]
    more = f" and {repeated.num_rows - _SHOWN} more" if repeated.num_rows > _SHOWN else ""
    label = " + ".join(keys)
    return [
        f"duplicated {label}: {', '.join(shown)}{more} — each must occur once (a duplicate would be counted "
        "twice in the statistics)"
    ]


def _ranges(table: pa.Table, ranges: dict[str, tuple[float | None, float | None]]) -> list[str]:
    problems = []
    for name, (low, high) in ranges.items():
        column = table.column(name)
        if pa.types.is_floating(column.type):
            column = pc.filter(column, pc.invert(pc.fill_null(pc.is_nan(column), True)))
        column = column.drop_null()
        if len(column) == 0:
            continue
        bad = [v for v in column.to_pylist() if (low is not None and v < low) or (high is not None and v > high)]
        if bad:
            bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
            problems.append(f"{len(bad)} value(s) of {name!r} outside {bounds} ({_listed([repr(v) for v in bad])})")
    return problems


def _subset_warnings(table: pa.Table, source: str) -> list[str]:
    """Confirm-phase seeds whose training subset differs between arms of one cell (paired tests assume equal)."""
    confirm = table.filter(
        pc.and_(pc.equal(table.column("phase"), "confirm"), pc.invert(pc.is_null(table.column("subset_hash"))))
    )
    if confirm.num_rows == 0:
        return []
    grouped = confirm.select(["cell_id", "seed", "subset_hash"]).group_by(["cell_id", "seed"], use_threads=False)
    distinct = grouped.aggregate([("subset_hash", "count_distinct")])
    split = distinct.filter(pc.greater(distinct.column("subset_hash_count_distinct"), 1))
    if split.num_rows == 0:
        return []
    shown = [f"{row['cell_id']} seed {row['seed']}" for row in split.slice(0, _SHOWN).to_pylist()]
    more = f" and {split.num_rows - _SHOWN} more" if split.num_rows > _SHOWN else ""
    return [
        f"{source}: {split.num_rows} paired confirm seed(s) trained the arms on different training subsets "
        f"(subset_hash differs: {', '.join(shown)}{more}); the paired comparison assumes the same subset in "
        "every arm, so treat its p-values there with caution"
    ]


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")
