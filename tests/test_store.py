"""Results locations, the local disk's atomic writes, and the pure row functions (``rows_to_table``, ``merge_rows``).

What every backend promises (round trips, schema checks, merges, text files, copies) is in ``store_contract.py``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from store_contract import UTC, epoch_row, trial_row

from tlsweep.errors import StoreError
from tlsweep.results import atomic as atomic_module
from tlsweep.results.location import Location, ray_storage_args, resolve_location
from tlsweep.results.schema import EPOCHS_SCHEMA, TRIALS_SCHEMA
from tlsweep.results.store import ResultsStore, merge_rows, rows_to_table

# ---- locations --------------------------------------------------------------------------------------------


def test_relative_local_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    location = resolve_location("runs/demo")
    assert location.uri == (tmp_path / "runs" / "demo").resolve().as_posix()
    assert location.path == location.uri
    assert location.is_local
    assert isinstance(location.filesystem, pafs.LocalFileSystem)
    assert resolve_location(Path("runs/demo")).uri == location.uri
    assert resolve_location(f"file://{location.uri}").uri == location.uri


def test_join_keeps_filesystem_and_rejects_escapes(tmp_path: Path) -> None:
    location = resolve_location(tmp_path)
    joined = location.join("report", "figures")
    assert joined.path == f"{tmp_path.resolve().as_posix()}/report/figures"
    assert joined.filesystem is location.filesystem
    for bad in ("..", "a/../b", ""):
        with pytest.raises(StoreError, match="relative name"):
            location.join(bad)


def test_gs_uri_resolves_offline() -> None:
    location = resolve_location("gcs://my-bucket/prefix/demo/")
    assert location.uri == "gs://my-bucket/prefix/demo"
    assert location.path == "my-bucket/prefix/demo"
    assert type(location.filesystem).__name__ == "GcsFileSystem"
    assert not location.is_local
    assert location.join("ray").uri == "gs://my-bucket/prefix/demo/ray"


@pytest.mark.parametrize("uri", ["hdfs://namenode/runs", "http://example.org/runs", "ftp://host/x"])
def test_unknown_scheme_names_uri_and_accepted_forms(uri: str) -> None:
    with pytest.raises(StoreError) as info:
        resolve_location(uri)
    assert uri in str(info.value)
    assert "s3://bucket/prefix" in str(info.value) and "gs://bucket/prefix" in str(info.value)


def test_s3_uri_without_bucket_is_refused() -> None:
    with pytest.raises(StoreError, match="no bucket name"):
        resolve_location("s3:///prefix")


def test_ray_storage_args_local(tmp_path: Path) -> None:
    args = ray_storage_args(resolve_location(tmp_path / "demo"))
    assert args == {"storage_path": f"{(tmp_path / 'demo').resolve().as_posix()}/ray", "storage_filesystem": None}


# ---- atomicity --------------------------------------------------------------------------------------------


def test_failed_rename_keeps_old_file_and_cleans_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultsStore(tmp_path)
    old = rows_to_table([trial_row("old")], TRIALS_SCHEMA)
    store.write_trials(old)
    seen_during_write: list[list[str]] = []

    def failing_replace(src: str, dst: str) -> None:
        assert Path(src).name.startswith(".tmp-") and Path(src).parent == Path(dst).parent
        assert Path(src).stat().st_size > 0
        seen_during_write.append(store.read_trials().column("trial_id").to_pylist())
        seen_during_write.append(ds.dataset(tmp_path, format="parquet").files)
        raise OSError("disk gone")

    monkeypatch.setattr(atomic_module.os, "replace", failing_replace)
    with pytest.raises(StoreError, match=r"cannot write .*trials.parquet: disk gone"):
        store.write_trials(rows_to_table([trial_row("new")], TRIALS_SCHEMA))
    assert seen_during_write[0] == ["old"]  # readers see the old version while the temp file exists
    assert seen_during_write[1] == [f"{tmp_path.as_posix()}/trials.parquet"]  # datasets skip ".tmp-" files
    monkeypatch.undo()
    assert store.read_trials().equals(old)
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]


def test_crash_between_temp_write_and_rename_leaves_old_file(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.write_trials(rows_to_table([trial_row("old")], TRIALS_SCHEMA))
    script = textwrap.dedent(
        f"""
        import os
        from tlsweep.results import atomic
        from tlsweep.results.schema import TRIALS_SCHEMA
        from tlsweep.results.store import ResultsStore, rows_to_table
        atomic.os.replace = lambda src, dst: os._exit(9)   # the process dies before the rename
        row = {{"trial_id": "new", "sweep": "demo"}}
        ResultsStore({str(tmp_path)!r}).write_trials(rows_to_table([row], TRIALS_SCHEMA))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and leftovers[0].endswith(".parquet")
    assert store.read_trials().column("trial_id").to_pylist() == ["old"]
    assert ds.dataset(tmp_path, format="parquet").to_table().column("trial_id").to_pylist() == ["old"]
    store.write_trials(rows_to_table([trial_row("new")], TRIALS_SCHEMA))
    assert store.read_trials().column("trial_id").to_pylist() == ["new"]


def test_text_writes_are_atomic_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultsStore(tmp_path)
    store.write_text("spec.resolved.yaml", "v1\n")
    monkeypatch.setattr(atomic_module.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(StoreError, match="boom"):
        store.write_text("spec.resolved.yaml", "v2\n")
    monkeypatch.undo()
    assert store.read_text("spec.resolved.yaml") == "v1\n"
    assert os.listdir(tmp_path) == ["spec.resolved.yaml"]


# ---- rows_to_table ----------------------------------------------------------------------------------------


def test_rows_to_table_coercions() -> None:
    naive = dt.datetime(2026, 11, 22, 8, 30)
    aware = dt.datetime(2026, 11, 22, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    table = rows_to_table(
        [
            trial_row("a", best_val_acc=math.nan, freeze_depth=math.nan, finished_at=naive, epochs=np.int64(5)),
            trial_row("b", best_val_acc=np.float32(0.25), freeze_depth=3.0, finished_at=aware, seed=2**40),
            {"trial_id": "c"},
        ],
        TRIALS_SCHEMA,
    )
    assert table.schema.equals(TRIALS_SCHEMA)
    rows = table.to_pylist()
    assert math.isnan(rows[0]["best_val_acc"]) and table.column("best_val_acc").null_count == 1
    assert rows[0]["freeze_depth"] is None and rows[1]["freeze_depth"] == 3
    assert rows[0]["finished_at"] == dt.datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    assert rows[1]["finished_at"] == dt.datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    assert rows[0]["epochs"] == 5 and rows[1]["seed"] == 2**40 and rows[1]["best_val_acc"] == 0.25
    assert rows[2]["sweep"] is None and rows[2]["status"] is None
    assert rows_to_table([], EPOCHS_SCHEMA).equals(EPOCHS_SCHEMA.empty_table())


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"trial_id": "a", "val_accuracy": 0.5, "extra2": 1}, "row 0 has key\\(s\\) 'extra2', 'val_accuracy'"),
        ({"trial_id": "a", "epoch": 2.5}, "row 0, column 'epoch': 2.5 is not a whole number"),
        ({"trial_id": "a", "epoch": True}, "column 'epoch': got a bool"),
        ({"trial_id": "a", "epoch": "3"}, "row 0, column 'epoch': value '3' \\(str\\) does not fit type int32"),
        ({"trial_id": "a", "epoch": 2**31}, "column 'epoch'.*does not fit type int32"),
        ({"trial_id": 7}, "column 'trial_id': value 7 \\(int\\) does not fit type string"),
    ],
)
def test_rows_to_table_refuses_bad_rows(row: dict[str, object], message: str) -> None:
    with pytest.raises(StoreError, match=message):
        rows_to_table([row], EPOCHS_SCHEMA)


def test_rows_to_table_points_at_the_offending_row() -> None:
    rows = [epoch_row("a", 1, 0.1), epoch_row("a", 2, 0.2), {**epoch_row("a", 3, 0.3), "val_acc": "high"}]
    with pytest.raises(StoreError, match="row 2, column 'val_acc'"):
        rows_to_table(rows, EPOCHS_SCHEMA)


# ---- merge_rows -------------------------------------------------------------------------------------------


def test_merge_rows_upserts_without_duplicates() -> None:
    existing = rows_to_table([trial_row("c"), trial_row("a", status="failed"), trial_row("b")], TRIALS_SCHEMA)
    new = rows_to_table(
        [trial_row("a", status="ok", attempts=2), trial_row("d"), trial_row("d", best_val_acc=0.9)], TRIALS_SCHEMA
    )
    merged = merge_rows(existing, new, key=["trial_id"])
    assert merged.schema.equals(TRIALS_SCHEMA)
    assert merged.column("trial_id").to_pylist() == ["a", "b", "c", "d"]
    by_id = {row["trial_id"]: row for row in merged.to_pylist()}
    assert by_id["a"]["status"] == "ok" and by_id["a"]["attempts"] == 2
    assert by_id["d"]["best_val_acc"] == 0.9
    assert merge_rows(merged, new, key=["trial_id"]).equals(merged)  # idempotent
    assert merge_rows(TRIALS_SCHEMA.empty_table(), existing, key=["trial_id"]).column("trial_id").to_pylist() == [
        "a",
        "b",
        "c",
    ]


def test_merge_rows_composite_key_is_sorted_deterministically() -> None:
    existing = rows_to_table([epoch_row("b", 2, 0.2), epoch_row("b", 1, 0.1), epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA)
    new = rows_to_table([epoch_row("b", 2, 0.25), epoch_row("a", 10, 0.6)], EPOCHS_SCHEMA)
    merged = merge_rows(existing, new, key=["trial_id", "epoch"])
    assert [(r["trial_id"], r["epoch"], r["val_acc"]) for r in merged.to_pylist()] == [
        ("a", 1, 0.5),
        ("a", 10, 0.6),
        ("b", 1, 0.1),
        ("b", 2, 0.25),
    ]
    shuffled = merge_rows(new, existing.take([2, 0, 1]), key=["trial_id", "epoch"])
    assert shuffled.column("trial_id").to_pylist() == merged.column("trial_id").to_pylist()


def test_merge_rows_refuses_other_schemas_and_unknown_keys() -> None:
    trials = rows_to_table([trial_row("a")], TRIALS_SCHEMA)
    epochs = rows_to_table([epoch_row("a", 1, 0.1)], EPOCHS_SCHEMA)
    with pytest.raises(StoreError, match="different schemas"):
        merge_rows(trials, epochs, key=["trial_id"])
    with pytest.raises(StoreError, match="key column\\(s\\) run_id"):
        merge_rows(trials, trials, key=["run_id"])


def test_location_prints_as_its_uri(tmp_path: Path) -> None:
    location = resolve_location(tmp_path)
    assert isinstance(location, Location)
    assert str(location) == location.uri


def test_a_reader_sees_whole_versions_while_the_driver_replaces_the_file(tmp_path: Path) -> None:
    import threading

    store = ResultsStore(tmp_path)
    store.write_trials(rows_to_table([trial_row("t0")], TRIALS_SCHEMA))
    stop = threading.Event()

    def keep_replacing() -> None:
        n = 1
        while not stop.is_set():  # versions of different sizes, so a mixed footer and body cannot line up
            store.write_trials(rows_to_table([trial_row(f"t{i}") for i in range(n % 7 + 1)], TRIALS_SCHEMA))
            n += 1

    writer = threading.Thread(target=keep_replacing)
    writer.start()
    errors: list[str] = []
    try:
        for _ in range(300):
            try:
                rows = store.read_trials().num_rows
                assert 1 <= rows <= 7
                store.read_metadata("trials")
            except StoreError as exc:
                errors.append(str(exc))
    finally:
        stop.set()
        writer.join()
    assert errors == []
