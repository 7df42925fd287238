"""The report's reader refuses to test what the design does not have: duplicated seeds, foreign cells and config
kinds, replicates outside the adaptive plan, and trials re-recorded with other numbers are left out and named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from report_fixtures import simulate_results, spec_dict

from tlsweep.report.load import load_results
from tlsweep.results.schema import TRIALS_SCHEMA
from tlsweep.results.store import ResultsStore
from tlsweep.spec_load import parse_spec


def _adaptive(tmp_path: Path) -> Path:
    data = spec_dict(tmp_path / "r", seeds=4, configs=("best",))
    data["confirm"]["adaptive"] = {"max_seeds": 12, "batch": 4}
    return simulate_results(tmp_path / "r", spec=parse_spec(data))


def _edit(root: Path, change: Any) -> None:
    frame = pq.read_table(root / "trials.parquet").to_pandas()
    frame = change(frame)
    pq.write_table(pa.Table.from_pandas(frame, schema=TRIALS_SCHEMA, preserve_index=False), root / "trials.parquet")


def _confirm_row(frame: Any, **changes: Any) -> Any:
    row = frame[(frame["phase"] == "confirm") & (frame["arm"] == "checkpoint")].iloc[[0]].copy()
    for key, value in changes.items():
        row[key] = value
    return row


def _notes(root: Path) -> str:
    return " ".join(load_results(root).notes)


@pytest.mark.parametrize(
    "changes,expected",
    [
        (dict(trial_id="dup-seed", test_acc=1.0), "record one seed of a cell and arm twice under different trial ids"),
        (dict(trial_id="late", replicate=20, seed=5020), "have a replicate beyond adaptive.max_seeds (12)"),
        (dict(trial_id="no-replicate", replicate=None, seed=5030), "have no replicate number"),
        (
            dict(trial_id="foreign", cell_id="train_fraction=0.5|epochs=2", train_fraction=0.5, seed=5040),
            "lie in no cell of the design (4 cells)",
        ),
        (dict(trial_id="recipe-row", config_kind="recipe", seed=5050), "have a config kind the spec does not confirm"),
    ],
)
def test_rows_outside_the_design_are_left_out_and_named(tmp_path: Path, changes: dict, expected: str) -> None:
    import pandas as pd

    root = _adaptive(tmp_path)
    before = load_results(root).trials
    _edit(root, lambda frame: pd.concat([frame, _confirm_row(frame, **changes)], ignore_index=True))
    results = load_results(root)
    notes = " ".join(results.notes)
    assert expected in notes and changes["trial_id"] in notes
    assert changes["trial_id"] not in set(results.trials["trial_id"])
    if changes["trial_id"] == "dup-seed":  # neither record of the duplicated seed is used
        assert len(results.trials) == len(before) - 1
    else:
        assert len(results.trials) == len(before)


def test_a_part_re_recording_a_finished_trial_is_left_out(tmp_path: Path) -> None:
    root = _adaptive(tmp_path)
    store = ResultsStore(root)
    table = store.read_trials()
    frame = table.to_pandas()
    row = frame[(frame["phase"] == "confirm") & (frame["arm"] == "checkpoint")].iloc[[0]].copy()
    row["test_acc"] = 0.99
    store.append_trials(pa.Table.from_pandas(row, schema=TRIALS_SCHEMA, preserve_index=False))
    assert store.conflicting_trials() == [row["trial_id"].iloc[0]]
    results = load_results(root)
    assert row["trial_id"].iloc[0] not in set(results.trials["trial_id"])
    assert "were recorded as finished more than once with different numbers" in " ".join(results.notes)
    # the same numbers recorded again are no conflict
    again = frame[frame["trial_id"] == frame["trial_id"].iloc[-1]]
    fresh = _adaptive(tmp_path / "fresh")
    ResultsStore(fresh).append_trials(pa.Table.from_pandas(again, schema=TRIALS_SCHEMA, preserve_index=False))
    assert ResultsStore(fresh).conflicting_trials() == []
