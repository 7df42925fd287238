"""The results store on the local filesystem: locations, round trips, schema checks, atomic writes, upserts."""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from tlsweep.errors import StoreError
from tlsweep.results import atomic as atomic_module
from tlsweep.results.location import Location, ray_storage_args, resolve_location
from tlsweep.results.schema import EPOCHS_SCHEMA, TRIALS_SCHEMA
from tlsweep.results.store import ResultsStore, merge_rows, rows_to_table

UTC = dt.timezone.utc


def trial_row(trial_id: str, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "sweep": "demo",
        "trial_id": trial_id,
        "phase": "confirm",
        "cell_id": "train_fraction=0.1|epochs=2",
        "config_kind": "best",
        "replicate": 0,
        "seed": 1234,
        "arm": "imagenet",
        "init": "imagenet",
        "train_fraction": 0.1,
        "epochs": 2,
        "freeze_depth": None,
        "lr": 0.01,
        "params_json": '{"lr": 0.01}',
        "status": "ok",
        "attempts": 1,
        "best_val_acc": 0.5,
        "test_acc": 0.48,
        "finished_at": dt.datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
    }
    row.update(overrides)
    return row


def epoch_row(trial_id: str, epoch: int, val_acc: float) -> dict[str, object]:
    return {"sweep": "demo", "trial_id": trial_id, "phase": "tune", "epoch": epoch, "val_acc": val_acc}


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


# ---- round trips ------------------------------------------------------------------------------------------


def test_absent_results_read_as_empty_tables(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "nothing")
    assert not store.exists()
    assert store.read_trials().schema.equals(TRIALS_SCHEMA) and store.read_trials().num_rows == 0
    assert store.read_epochs().schema.equals(EPOCHS_SCHEMA) and store.read_epochs().num_rows == 0
    assert store.read_text("spec.resolved.yaml") is None
    assert store.read_metadata("trials.parquet") == {}
    assert store.local_dir() == (tmp_path / "nothing").resolve()


def test_trials_epochs_text_and_metadata_round_trip(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "runs" / "demo"))
    trials = rows_to_table([trial_row("b"), trial_row("a", status="diverged", best_val_acc=math.nan)], TRIALS_SCHEMA)
    epochs = rows_to_table([epoch_row("a", 1, 0.3), epoch_row("a", 2, 0.4)], EPOCHS_SCHEMA)
    meta = {"spec_hash": "abc123", "tlsweep": "0.1.0", "ray": "2.60.0", "torch": "2.14.1"}
    store.write_trials(trials, metadata=meta)
    store.write_epochs(epochs)
    store.write_text("spec.resolved.yaml", "name: demo\nseeds: 5\n")

    assert store.exists()
    back = store.read_trials()
    assert back.schema.equals(TRIALS_SCHEMA)
    assert _same_rows(back, trials)
    assert math.isnan(back.column("best_val_acc")[1].as_py())
    assert store.read_epochs().equals(epochs)
    assert store.read_metadata("trials.parquet") == meta
    assert store.read_metadata("trials") == meta
    assert store.read_metadata("epochs.parquet") == {}
    assert store.read_text("spec.resolved.yaml") == "name: demo\nseeds: 5\n"
    assert sorted(p.name for p in store.local_dir().iterdir()) == [
        "epochs.parquet",
        "spec.resolved.yaml",
        "trials.parquet",
    ]

    store.write_trials(trials.slice(0, 1), metadata={"spec_hash": "def456"})
    assert store.read_trials().num_rows == 1
    assert store.read_metadata("trials.parquet") == {"spec_hash": "def456"}


def _same_rows(left: pa.Table, right: pa.Table) -> bool:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in left.to_pylist()
    ] == [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in right.to_pylist()
    ]


def test_safe_casts_are_applied_on_write(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    table = rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA)
    widened = table.set_column(
        EPOCHS_SCHEMA.get_field_index("epoch"), "epoch", pa.array([1], pa.int64())
    ).select(list(reversed(EPOCHS_SCHEMA.names)))
    store.write_epochs(widened)
    assert store.read_epochs().equals(table)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.append_column("surprise", pa.array([1])), "unexpected column\\(s\\) surprise"),
        (lambda t: t.drop_columns(["val_acc"]), "missing column\\(s\\) val_acc"),
        (
            lambda t: t.set_column(t.schema.get_field_index("epoch"), "epoch", pa.array(["one"])),
            "column 'epoch' has type string, expected int32",
        ),
        (
            lambda t: t.set_column(t.schema.get_field_index("epoch"), "epoch", pa.array([2**40], pa.int64())),
            "column 'epoch' has type int64, expected int32",
        ),
    ],
)
def test_schema_mismatch_is_refused_with_the_column_name(tmp_path: Path, change, message: str) -> None:
    store = ResultsStore(tmp_path)
    table = change(rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA))
    with pytest.raises(StoreError, match=message):
        store.write_epochs(table)
    assert not (tmp_path / "epochs.parquet").exists()
    assert not list(tmp_path.iterdir())


def test_foreign_parquet_file_is_reported_on_read(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"trial_id": ["a"], "whatever": [1]}), tmp_path / "trials.parquet")
    with pytest.raises(StoreError, match=r"trials.parquet does not match.*missing column"):
        ResultsStore(tmp_path).read_trials()
    (tmp_path / "epochs.parquet").write_bytes(b"not parquet")
    with pytest.raises(StoreError, match=r"epochs.parquet is not a readable Parquet file"):
        ResultsStore(tmp_path).read_epochs()


def test_metadata_must_be_strings(tmp_path: Path) -> None:
    table = rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA)
    with pytest.raises(StoreError, match="must map str to str"):
        ResultsStore(tmp_path).write_epochs(table, metadata={"seeds": 5})  # type: ignore[dict-item]


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


# ---- copies -----------------------------------------------------------------------------------------------


def test_download_and_upload_dir(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results")
    store.write_trials(rows_to_table([trial_row("a")], TRIALS_SCHEMA))
    store.write_text("spec.resolved.yaml", "name: demo\n")
    (tmp_path / "results" / "ray" / "exp").mkdir(parents=True)
    (tmp_path / "results" / "ray" / "exp" / "tuner.pkl").write_bytes(b"x")
    report = tmp_path / "made-report"
    (report / "figures").mkdir(parents=True)
    (report / "report.md").write_text("# v1\n")
    (report / "figures" / "old.png").write_bytes(b"png")
    store.upload_dir(report, "report")
    (report / "figures" / "old.png").unlink()
    (report / "report.md").write_text("# v2\n")
    store.upload_dir(report, "report")
    assert not (tmp_path / "results" / "report" / "figures" / "old.png").exists()  # replaced, not merged

    copy = store.download(tmp_path / "copy")
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == [
        "report",
        "report/figures",
        "report/report.md",
        "spec.resolved.yaml",
        "trials.parquet",
    ]
    assert (copy / "report" / "report.md").read_text() == "# v2\n"
    assert ResultsStore(copy).read_trials().equals(store.read_trials())
    with pytest.raises(StoreError, match="belongs to the sweep's own state"):
        store.upload_dir(report, "ray")


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


def test_files_of_an_older_schema_read_with_the_new_nullable_columns_null(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tlsweep.results.schema import TRIALS_SCHEMA
    from tlsweep.results.store import ResultsStore, rows_to_table

    table = rows_to_table([{"sweep": "s", "trial_id": "t1", "phase": "tune", "status": "ok"}], TRIALS_SCHEMA)
    older = table.drop_columns(["resumed_from_epoch"])
    pq.write_table(older, tmp_path / "trials.parquet")
    read = ResultsStore(tmp_path).read_trials()
    assert read.schema == TRIALS_SCHEMA.remove_metadata() and read["resumed_from_epoch"].null_count == 1
    assert read["trial_id"].to_pylist() == ["t1"]
    pq.write_table(table.append_column("surprise", pa.array([1])), tmp_path / "trials.parquet")
    with pytest.raises(StoreError, match="unexpected column"):
        ResultsStore(tmp_path).read_trials()
