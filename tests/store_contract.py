"""The results store's contract, run over every storage backend (optuna's ``StorageTestCase`` pattern).

``StoreContract`` holds the tests; its ``backend`` fixture is parametrized over ``BACKENDS`` (a local directory and an
S3 bucket on moto's server), so ``tests/test_store_contract.py`` runs each test once per backend. What only one
backend promises (renames on a local disk, S3 endpoints and multipart uploads) stays in ``test_store.py`` and
``test_storage_s3.py``. Also home to the row builders those files share.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tlsweep.errors import StoreError
from tlsweep.results import store as store_module
from tlsweep.results.location import Location, resolve_location
from tlsweep.results.schema import EPOCHS_SCHEMA, TRIALS_SCHEMA
from tlsweep.results.store import ResultsStore, merge_rows, rows_to_table

UTC = dt.timezone.utc
BACKENDS = ("local", "s3")


def trial_row(trial_id: str, **overrides: object) -> dict[str, object]:
    """A complete ``trials.parquet`` row of a finished confirm trial."""
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
    """An ``epochs.parquet`` row."""
    return {"sweep": "demo", "trial_id": trial_id, "phase": "tune", "epoch": epoch, "val_acc": val_acc}


def same_rows(left: pa.Table, right: pa.Table) -> bool:
    """Equal rows, NaN equal to NaN."""

    def plain(table: pa.Table) -> list[dict[str, object]]:
        return [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in table.to_pylist()
        ]

    return plain(left) == plain(right)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@dataclass(frozen=True)
class Backend:
    """One storage backend under test: a root location for results directories and ways to look behind the store."""

    name: str
    root: Location
    local_root: Path | None  # the root on the local disk, for what ``local_dir()`` must answer; None when remote

    def store(self, name: str = "demo") -> ResultsStore:
        return ResultsStore(self.root.join(name))

    def expected_local_dir(self, name: str = "demo") -> Path | None:
        return None if self.local_root is None else (self.local_root / name).resolve()

    def files(self, store: ResultsStore) -> list[str]:
        """Every file below the store's directory (hidden ones included), relative to it, sorted."""
        location = store.location
        selector = pafs.FileSelector(location.path, recursive=True, allow_not_found=True)
        infos = location.filesystem.get_file_info(selector)
        return sorted(i.path[len(location.path) + 1 :] for i in infos if i.type == pafs.FileType.File)

    def put_bytes(self, store: ResultsStore, name: str, data: bytes) -> None:
        """Write a file into the store's directory behind the store's back (a foreign or an older file)."""
        target = store.location.join(name)
        if target.is_local:
            Path(target.path).parent.mkdir(parents=True, exist_ok=True)
        with target.filesystem.open_output_stream(target.path) as stream:
            stream.write(data)


class StoreContract:
    """What ``ResultsStore`` promises on every backend."""

    @pytest.fixture(params=BACKENDS)
    def backend(self, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        if request.param == "local":
            return Backend("local", resolve_location(tmp_path / "runs"), local_root=tmp_path / "runs")
        bucket = request.getfixturevalue("s3_env")  # skipped, with the reason, when moto is not installed
        return Backend("s3", resolve_location(bucket.uri("runs")), local_root=None)

    # ---- missing files ---------------------------------------------------------------------------------------

    def test_absent_results_read_as_empty_tables(self, backend: Backend) -> None:
        store = backend.store("nothing")
        assert not store.exists()
        assert store.read_trials().schema.equals(TRIALS_SCHEMA) and store.read_trials().num_rows == 0
        assert store.read_epochs().schema.equals(EPOCHS_SCHEMA) and store.read_epochs().num_rows == 0
        assert store.read_text("spec.resolved.yaml") is None
        assert store.read_metadata("trials.parquet") == {}
        assert store.local_dir() == backend.expected_local_dir("nothing")
        assert backend.files(store) == []

    def test_an_absent_store_downloads_as_an_empty_directory(self, backend: Backend, tmp_path: Path) -> None:
        copy = backend.store("nothing").download(tmp_path / "copy")
        assert copy == (tmp_path / "copy").resolve() and list(copy.iterdir()) == []

    def test_exists_means_trials_or_a_resolved_spec(self, backend: Backend) -> None:
        only_epochs = backend.store("epochs-only")
        only_epochs.write_epochs(rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA))
        only_epochs.write_text("status.json", "{}")
        assert not only_epochs.exists()
        with_spec = backend.store("spec")
        with_spec.write_text("spec.resolved.yaml", "name: demo\n")
        assert with_spec.exists()
        with_trials = backend.store("trials")
        with_trials.write_trials(rows_to_table([trial_row("a")], TRIALS_SCHEMA))
        assert with_trials.exists()

    # ---- round trips -----------------------------------------------------------------------------------------

    def test_trials_epochs_text_and_metadata_round_trip(self, backend: Backend) -> None:
        store = backend.store()
        trials = rows_to_table(
            [trial_row("b"), trial_row("a", status="diverged", best_val_acc=math.nan)], TRIALS_SCHEMA
        )
        epochs = rows_to_table([epoch_row("a", 1, 0.3), epoch_row("a", 2, 0.4)], EPOCHS_SCHEMA)
        meta = {"spec_hash": "abc123", "tlsweep": "0.1.0", "ray": "2.60.0", "torch": "2.14.1"}
        store.write_trials(trials, metadata=meta)
        store.write_epochs(epochs)
        store.write_text("spec.resolved.yaml", "name: demo\nseeds: 5\n")

        assert store.exists()
        back = store.read_trials()
        assert back.schema.equals(TRIALS_SCHEMA)
        assert same_rows(back, trials)
        assert math.isnan(back.column("best_val_acc")[1].as_py())
        assert store.read_epochs().equals(epochs)
        assert store.read_metadata("trials.parquet") == meta
        assert store.read_metadata("trials") == meta
        assert store.read_metadata("epochs.parquet") == {}
        assert store.read_text("spec.resolved.yaml") == "name: demo\nseeds: 5\n"
        assert backend.files(store) == ["epochs.parquet", "spec.resolved.yaml", "trials.parquet"]

        store.write_trials(trials.slice(0, 1), metadata={"spec_hash": "def456"})
        assert store.read_trials().num_rows == 1
        assert store.read_metadata("trials.parquet") == {"spec_hash": "def456"}

    def test_a_table_without_nulls_reads_back_equal(self, backend: Backend) -> None:
        store = backend.store()
        trials = rows_to_table(
            [
                {"sweep": "demo", "trial_id": i, "phase": "tune", "status": "ok", "best_val_acc": 0.5}
                for i in ("t2", "t1")
            ],
            TRIALS_SCHEMA,
        )
        store.write_trials(trials, metadata={"spec_hash": "abc", "tlsweep": "0.1.0"})
        assert store.read_trials().equals(trials)
        assert store.read_metadata("trials") == {"spec_hash": "abc", "tlsweep": "0.1.0"}

    def test_safe_casts_are_applied_on_write(self, backend: Backend) -> None:
        store = backend.store()
        table = rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA)
        widened = table.set_column(EPOCHS_SCHEMA.get_field_index("epoch"), "epoch", pa.array([1], pa.int64())).select(
            list(reversed(EPOCHS_SCHEMA.names))
        )
        store.write_epochs(widened)
        assert store.read_epochs().equals(table)

    # ---- merge / dedupe --------------------------------------------------------------------------------------

    def test_merged_rows_are_written_back_without_duplicates(self, backend: Backend) -> None:
        store = backend.store()
        store.write_trials(
            rows_to_table([trial_row("t2"), trial_row("t1")], TRIALS_SCHEMA), metadata={"spec_hash": "a"}
        )
        new = rows_to_table([trial_row("t1", status="failed"), trial_row("t3", status="failed")], TRIALS_SCHEMA)
        merged = merge_rows(store.read_trials(), new, key=["trial_id"])
        store.write_trials(merged)
        back = store.read_trials()
        assert back.column("trial_id").to_pylist() == ["t1", "t2", "t3"]
        assert back.column("status").to_pylist() == ["failed", "ok", "failed"]
        assert store.read_metadata("trials") == {}  # the merged write above carried no metadata
        store.write_trials(merge_rows(back, new, key=["trial_id"]))
        assert store.read_trials().equals(back)  # merging the same rows again changes nothing

        epochs = rows_to_table([epoch_row("t1", 1, 0.1), epoch_row("t1", 2, 0.2)], EPOCHS_SCHEMA)
        store.write_epochs(epochs)
        again = rows_to_table([epoch_row("t1", 2, 0.25), epoch_row("t1", 3, 0.3)], EPOCHS_SCHEMA)
        store.write_epochs(merge_rows(store.read_epochs(), again, key=["trial_id", "epoch"]))
        assert [(r["epoch"], r["val_acc"]) for r in store.read_epochs().to_pylist()] == [(1, 0.1), (2, 0.25), (3, 0.3)]

    # ---- schema checks ---------------------------------------------------------------------------------------

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
    def test_schema_mismatch_is_refused_with_the_column_name(self, backend: Backend, change, message: str) -> None:
        store = backend.store()
        table = change(rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA))
        with pytest.raises(StoreError, match=message):
            store.write_epochs(table)
        assert "epochs.parquet" not in backend.files(store)
        assert backend.files(store) == []

    def test_foreign_parquet_file_is_reported_on_read(self, backend: Backend) -> None:
        store = backend.store()
        backend.put_bytes(store, "trials.parquet", parquet_bytes(pa.table({"trial_id": ["a"], "whatever": [1]})))
        with pytest.raises(StoreError, match=r"trials.parquet does not match.*missing column"):
            store.read_trials()
        backend.put_bytes(store, "epochs.parquet", b"not parquet")
        with pytest.raises(StoreError, match=r"epochs.parquet is not a readable Parquet file"):
            store.read_epochs()

    def test_metadata_must_be_strings(self, backend: Backend) -> None:
        table = rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA)
        with pytest.raises(StoreError, match="must map str to str"):
            backend.store().write_epochs(table, metadata={"seeds": 5})  # type: ignore[dict-item]

    def test_files_of_an_older_schema_read_with_the_new_nullable_columns_null(self, backend: Backend) -> None:
        store = backend.store()
        table = rows_to_table([{"sweep": "s", "trial_id": "t1", "phase": "tune", "status": "ok"}], TRIALS_SCHEMA)
        older = table.drop_columns(["resumed_from_epoch"])
        backend.put_bytes(store, "trials.parquet", parquet_bytes(older))
        read = store.read_trials()
        assert read.schema == TRIALS_SCHEMA.remove_metadata() and read["resumed_from_epoch"].null_count == 1
        assert read["trial_id"].to_pylist() == ["t1"]
        backend.put_bytes(store, "trials.parquet", parquet_bytes(table.append_column("surprise", pa.array([1]))))
        with pytest.raises(StoreError, match="unexpected column"):
            store.read_trials()

    # ---- text files ------------------------------------------------------------------------------------------

    def test_text_files_round_trip_as_utf8_also_below_the_root(self, backend: Backend) -> None:
        store = backend.store()
        store.write_text("status.json", '{"phase": "demo · tune"}\n')
        store.write_text("notes/readme.md", "β ≥ 0 ✓\n")
        assert store.read_text("status.json") == '{"phase": "demo · tune"}\n'
        assert store.read_text("notes/readme.md") == "β ≥ 0 ✓\n"
        assert store.read_text("notes") is None  # a directory is not a text file
        assert store.read_text("absent.txt") is None
        backend.put_bytes(store, "latin1.txt", "größe".encode("latin-1"))
        with pytest.raises(StoreError, match=r"latin1.txt is not UTF-8 text"):
            store.read_text("latin1.txt")

    # ---- atomic replacement ----------------------------------------------------------------------------------

    def test_a_write_replaces_the_whole_file_and_leaves_nothing_else(self, backend: Backend) -> None:
        store = backend.store()
        store.write_trials(rows_to_table([trial_row(f"t{i}") for i in range(50)], TRIALS_SCHEMA))
        store.write_trials(rows_to_table([trial_row("only")], TRIALS_SCHEMA))
        assert store.read_trials().column("trial_id").to_pylist() == ["only"]
        store.write_text("spec.resolved.yaml", "v1\n" * 1000)
        store.write_text("spec.resolved.yaml", "v2\n")
        assert store.read_text("spec.resolved.yaml") == "v2\n"
        assert backend.files(store) == ["spec.resolved.yaml", "trials.parquet"]  # no temp file left behind

    def test_a_failed_serialisation_never_replaces_the_file(
        self, backend: Backend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = backend.store()
        store.write_trials(rows_to_table([trial_row("old")], TRIALS_SCHEMA))

        def failing_write_table(table, where, **kwargs) -> None:
            where.write(b"PAR1 half a file")
            raise OSError("serialisation failed midway")

        monkeypatch.setattr(store_module.pq, "write_table", failing_write_table)
        with pytest.raises(OSError, match="serialisation failed midway"):
            store.write_trials(rows_to_table([trial_row("new")], TRIALS_SCHEMA))
        monkeypatch.undo()
        assert store.read_trials().column("trial_id").to_pylist() == ["old"]
        assert backend.files(store) == ["trials.parquet"]

    # ---- copies ----------------------------------------------------------------------------------------------

    def test_download_and_upload_dir(self, backend: Backend, tmp_path: Path) -> None:
        store = backend.store()
        store.write_trials(rows_to_table([trial_row("a")], TRIALS_SCHEMA), metadata={"spec_hash": "abc"})
        store.write_epochs(rows_to_table([epoch_row("a", 1, 0.4)], EPOCHS_SCHEMA))
        store.write_text("spec.resolved.yaml", "name: demo\n")
        backend.put_bytes(store, "ray/exp/tuner.pkl", b"not copied by download")
        report = tmp_path / "made-report"
        (report / "figures").mkdir(parents=True)
        (report / "report.md").write_text("# v1\n")
        (report / "figures" / "old.png").write_bytes(b"png")
        (report / "figures" / "effect.png").write_bytes(b"png")
        store.upload_dir(report, "report")
        (report / "figures" / "old.png").unlink()
        (report / "report.md").write_text("# v2\n")
        store.upload_dir(report, "report")
        assert "report/figures/old.png" not in backend.files(store)  # replaced, not merged
        assert backend.files(store) == [
            "epochs.parquet",
            "ray/exp/tuner.pkl",
            "report/figures/effect.png",
            "report/report.md",
            "spec.resolved.yaml",
            "trials.parquet",
        ]

        copy = store.download(tmp_path / "copy")
        assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == [
            "epochs.parquet",
            "report",
            "report/figures",
            "report/figures/effect.png",
            "report/report.md",
            "spec.resolved.yaml",
            "trials.parquet",
        ]
        assert (copy / "report" / "report.md").read_text() == "# v2\n"
        assert ResultsStore(copy).read_trials().equals(store.read_trials())
        assert ResultsStore(copy).read_metadata("trials") == {"spec_hash": "abc"}
        with pytest.raises(StoreError, match="belongs to the sweep's own state"):
            store.upload_dir(report, "ray")
        with pytest.raises(StoreError, match="it is not a directory"):
            store.upload_dir(tmp_path / "no-such-dir", "report")

    # ---- appended part files and compaction --------------------------------------------------------------------

    def test_appended_parts_read_as_one_upserted_table(self, backend: Backend) -> None:
        store = backend.store()
        store.write_trials(rows_to_table([trial_row("b"), trial_row("a")], TRIALS_SCHEMA), metadata={"v": "0.1"})
        first = store.append_trials(rows_to_table([trial_row("c")], TRIALS_SCHEMA), metadata={"v": "0.2"})
        second = store.append_trials(
            rows_to_table([trial_row("a", status="failed")], TRIALS_SCHEMA), metadata={"v": "0.3"}
        )
        assert (first, second) == ("parts/trials/part-0000000000.parquet", "parts/trials/part-0000000001.parquet")
        assert store.part_names("trials.parquet") == [first, second]
        back = store.read_trials()
        assert back.schema.equals(TRIALS_SCHEMA)
        assert back.column("trial_id").to_pylist() == ["a", "b", "c"]  # upserted by key, sorted by it
        assert back.column("status").to_pylist() == ["failed", "ok", "ok"]  # the newest part wins
        assert store.read_metadata("trials") == {"v": "0.3"}
        store.append_epochs(rows_to_table([epoch_row("a", 1, 0.1), epoch_row("a", 2, 0.2)], EPOCHS_SCHEMA))
        store.append_epochs(rows_to_table([epoch_row("a", 2, 0.25)], EPOCHS_SCHEMA))
        assert [(r["epoch"], r["val_acc"]) for r in store.read_epochs().to_pylist()] == [(1, 0.1), (2, 0.25)]

        # a second writer (a resumed driver) continues the sequence instead of overwriting a part
        again = backend.store()
        assert again.append_trials(rows_to_table([trial_row("d")], TRIALS_SCHEMA)).endswith("part-0000000002.parquet")
        assert store.read_trials().column("trial_id").to_pylist() == ["a", "b", "c", "d"]

    def test_parts_alone_make_a_table_that_exists(self, backend: Backend) -> None:
        store = backend.store()
        store.append_epochs(rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA))
        assert not store.exists()  # epochs alone are no results
        store.append_trials(rows_to_table([trial_row("a")], TRIALS_SCHEMA), metadata={"spec_hash": "h"})
        assert store.exists() and store.read_trials().column("trial_id").to_pylist() == ["a"]
        assert store.read_metadata("trials.parquet") == {"spec_hash": "h"}
        assert backend.files(store) == ["parts/epochs/part-0000000000.parquet", "parts/trials/part-0000000000.parquet"]

    def test_compaction_folds_the_parts_into_the_single_files(self, backend: Backend, tmp_path: Path) -> None:
        store = backend.store()
        store.write_epochs(rows_to_table([epoch_row("a", 1, 0.1)], EPOCHS_SCHEMA))  # a file of the old layout
        for i in range(5):
            store.append_trials(
                rows_to_table([trial_row(f"t{i % 3}", attempts=i)], TRIALS_SCHEMA), metadata={"n": str(i)}
            )
            store.append_epochs(rows_to_table([epoch_row(f"t{i % 3}", 1, i / 10)], EPOCHS_SCHEMA))
        copy = store.download(tmp_path / "copy")  # a copy taken mid-phase carries the parts
        trials, epochs = store.read_trials(), store.read_epochs()
        assert ResultsStore(copy).read_trials().equals(trials) and ResultsStore(copy).read_epochs().equals(epochs)
        store.compact()
        assert backend.files(store) == ["epochs.parquet", "trials.parquet"]
        assert store.read_trials().equals(trials) and store.read_epochs().equals(epochs)
        assert store.read_trials().column("attempts").to_pylist() == [3, 4, 2]
        assert store.read_metadata("trials") == {"n": "4"}  # the newest part's metadata is kept
        # the compacted file is the whole table for any Parquet reader
        with store.location.filesystem.open_input_file(store.location.join("trials.parquet").path) as handle:
            assert pq.read_table(handle).column("trial_id").to_pylist() == ["t0", "t1", "t2"]
        store.compact(metadata={"spec_hash": "x"})  # nothing to fold: unchanged
        assert store.read_metadata("trials") == {"n": "4"}

    def test_a_compaction_cut_short_leaves_the_same_table(self, backend: Backend) -> None:
        store = backend.store()
        for version in ("v1", "v2", "v3"):
            store.append_trials(rows_to_table([trial_row("a", error=version), trial_row(version)], TRIALS_SCHEMA))
        whole = store.read_trials()
        parts = store.part_names("trials.parquet")
        # killed after writing trials.parquet and deleting only the oldest part (parts go oldest first)
        store._write_parquet("trials.parquet", whole, None)
        store._delete_parts("trials.parquet", parts[:1])
        assert store.read_trials().equals(whole)
        assert store.read_trials().column("error").to_pylist()[0] == "v3"

    def test_a_reader_racing_a_compaction_reads_again(self, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
        store = backend.store()
        store.append_trials(rows_to_table([trial_row("a")], TRIALS_SCHEMA))
        store.append_trials(rows_to_table([trial_row("b")], TRIALS_SCHEMA))
        listed = store.part_names("trials.parquet")
        real = ResultsStore.part_names
        reader_listings: list[int] = []

        def stale_listing(self: ResultsStore, name: str) -> list[str]:
            if self is not store:  # the compacting process
                return real(self, name)
            reader_listings.append(1)
            if len(reader_listings) == 1:  # listed just before another process compacted
                backend.store().compact()
                return listed
            return real(self, name)

        monkeypatch.setattr(ResultsStore, "part_names", stale_listing)
        assert store.read_trials().column("trial_id").to_pylist() == ["a", "b"]
        assert len(reader_listings) == 2  # listed, found a part gone, listed again
        assert backend.files(store) == ["trials.parquet"]

    def test_replacing_a_table_drops_its_parts(self, backend: Backend) -> None:
        store = backend.store()
        store.append_trials(rows_to_table([trial_row("a"), trial_row("b")], TRIALS_SCHEMA))
        store.append_epochs(rows_to_table([epoch_row("a", 1, 0.5)], EPOCHS_SCHEMA))
        store.write_trials(rows_to_table([trial_row("b")], TRIALS_SCHEMA))
        assert store.read_trials().column("trial_id").to_pylist() == ["b"]
        assert store.part_names("trials.parquet") == [] and len(store.part_names("epochs.parquet")) == 1

    def test_a_part_of_another_schema_is_refused_on_write_and_named_on_read(self, backend: Backend) -> None:
        store = backend.store()
        with pytest.raises(StoreError, match="unexpected column"):
            store.append_trials(rows_to_table([trial_row("a")], TRIALS_SCHEMA).append_column("x", pa.array([1])))
        assert backend.files(store) == []
        backend.put_bytes(store, "parts/trials/part-0000000007.parquet", b"not parquet")
        with pytest.raises(StoreError, match=r"part-0000000007.parquet is not a readable Parquet file"):
            store.read_trials()
