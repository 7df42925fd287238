"""The progress view: expected counts per study, the board's counts, its table and the ``status.json`` document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ray_fakes import confirm_trial, demo_spec, tune_trial
from rich.console import Console

from tlsweep.design import cell_id, studies, study_key, study_trial_counts, trial_counts
from tlsweep.engine import progress as progress_module
from tlsweep.engine.progress import Progress, StatusBoard


def _row(planned, status: str = "ok", best: float | None = 0.5, wall: float | None = 10.0) -> dict[str, Any]:
    return {
        "trial_id": planned.trial_id,
        "phase": planned.phase,
        "cell_id": planned.cell_id,
        "arm": planned.arm,
        "status": status,
        "best_val_acc": best,
        "wall_time_s": wall,
    }


def _text(board: StatusBoard, **kwargs: Any) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(board.table(title="demo", **kwargs))
    return console.export_text()


def _cells(text: str) -> list[list[str]]:
    """The table's rows (header included) as lists of cell texts."""
    lines = [line.strip().replace("┃", "│") for line in text.splitlines()]
    return [[cell.strip() for cell in line[1:-1].split("│")] for line in lines if line.startswith("│")]


def test_expected_counts_give_every_study_its_tune_budget_and_confirm_seeds() -> None:
    spec = demo_spec(design__budget__trials_per_cell=4, confirm__configs=["best", "recipe"], confirm__seeds=3)
    counts = study_trial_counts(spec)
    planned_studies = studies(spec)
    assert len(counts) == 2 * len(planned_studies) == 16
    for levels in planned_studies:
        assert counts[("tune", cell_id(levels), levels["init"])] == 4
        assert counts[("confirm", cell_id(levels), levels["init"])] == 6
    assert sum(n for (phase, _, _), n in counts.items() if phase == "tune") == trial_counts(spec)["tune"]
    assert sum(n for (phase, _, _), n in counts.items() if phase == "confirm") == trial_counts(spec)["confirm"]


def test_the_board_counts_outcomes_and_keeps_the_best_of_finished_trials_only() -> None:
    spec = demo_spec()
    board = StatusBoard(study_trial_counts(spec))
    planned = [tune_trial(spec, study=0, tune_index=i) for i in range(3)]
    line = board.line("tune", planned[0].cell_id, planned[0].arm)
    line.running.update(p.trial_id for p in planned)
    board.add_row(_row(planned[0], "ok", 0.4))
    board.add_row(_row(planned[1], "pruned", 0.9))  # stopped early: not a finished config's score
    board.add_row(_row(planned[2], "diverged", float("nan")))
    assert (line.done, line.failed, line.diverged, line.pruned) == (3, 0, 1, 1)
    assert line.running == set() and line.best == 0.4
    board.add_row(_row(tune_trial(spec, study=0, tune_index=1), "failed", None, wall=None))
    board.add_row(_row(tune_trial(spec, study=0, tune_index=2), "diverged", 0.45))
    assert (line.done, line.failed, line.diverged) == (5, 1, 2) and line.best == 0.45
    assert line.wall == [10.0, 10.0, 10.0, 10.0]

    stray = board.line("tune", "unknown-cell", "scratch")  # a row the spec did not plan (an older spec)
    assert stray.expected == 0 and stray.done == 0


def test_eta_is_the_mean_wall_time_of_what_is_left_over_the_concurrency() -> None:
    board = StatusBoard({("tune", "c", "scratch"): 4, ("confirm", "c", "scratch"): 2})
    assert board.eta_s(concurrency=2) is None  # nothing finished yet: unknown
    spec = demo_spec()
    planned = tune_trial(spec, study=4)
    board.add_row({**_row(planned, wall=30.0), "cell_id": "c"})
    board.add_row({**_row(planned, wall=90.0), "cell_id": "c"})
    assert board.eta_s(concurrency=2) == pytest.approx(4 * 60.0 / 2)
    assert board.eta_s(concurrency=0) == pytest.approx(4 * 60.0)
    done = StatusBoard({("tune", "c", "scratch"): 1})
    done.add_row({**_row(planned), "cell_id": "c"})
    assert done.eta_s(concurrency=1) == 0.0


def test_the_table_has_one_line_per_study_tune_first() -> None:
    spec = demo_spec()
    board = StatusBoard(study_trial_counts(spec))
    first = tune_trial(spec, study=0)
    board.add_row(_row(first, "ok", 0.5, wall=120.0))
    board.line("confirm", first.cell_id, first.arm).running.add("x")
    text = _text(board, concurrency=2)
    # 23 tune and 64 confirm trials left, 2 minutes each, 2 at a time
    assert text.splitlines()[0].split() == ["demo", "ETA", "87.0", "min"]
    header, *body = _cells(text)
    assert header == ["phase", "cell", "arm", "done", "running", "failed", "diverged", "pruned", "best val"]
    assert len(body) == len(study_trial_counts(spec))
    assert [row[0] for row in body] == ["tune"] * 8 + ["confirm"] * 8
    assert ["tune", first.cell_id, first.arm, "1/3", "0", "0", "0", "0", "0.500"] in body
    assert ["confirm", first.cell_id, first.arm, "0/8", "1", "0", "0", "0", "—"] in body
    assert _text(StatusBoard(study_trial_counts(spec)), concurrency=1).splitlines()[0].split() == ["demo", "ETA", "—"]


def test_status_document_lists_running_trials_until_they_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "time", lambda: clock[0])
    spec = demo_spec()
    documents: list[dict[str, Any]] = []
    board = StatusBoard(study_trial_counts(spec))
    progress = Progress(
        board,
        title="demo · tune",
        concurrency=2,
        live=False,
        write_status=lambda text: documents.append(json.loads(text)),
    )
    planned = tune_trial(spec, study=2, tune_index=1)
    with progress:
        assert documents[-1]["running"] == [] and documents[-1]["finished"] is False
        progress.started(planned)
        (running,) = documents[-1]["running"]
        assert running["meta"] == planned.meta() and running["study"] == study_key(planned.levels)
        assert running["epoch"] == 0 and running["phase"] == "tune" and running["started_at"] == 1000.0
        writes = len(documents)
        progress.epoch(planned, 1, 0.3)  # refreshed at most once a second
        assert len(documents) == writes
        clock[0] += 2
        progress.epoch(planned, 2, 0.4)
        assert len(documents) == writes + 1 and documents[-1]["running"][0]["epoch"] == 2
        progress.retried(planned)
        progress.finished(planned, _row(planned))
        assert documents[-1]["running"] == []
    assert board.line("tune", planned.cell_id, planned.arm).done == 1
    progress.finish()
    assert documents[-1]["finished"] is True and documents[-1]["phase"] == "demo · tune"
    assert documents[-1]["updated_at"] == 1002.0


def test_a_trial_still_running_when_the_driver_stops_is_handed_out_again(tmp_path: Path) -> None:
    from tlsweep.engine.run import STATUS_FILE, pending_trials
    from tlsweep.results.store import ResultsStore

    spec = demo_spec()
    store = ResultsStore(tmp_path)
    progress = Progress(
        StatusBoard(study_trial_counts(spec)),
        title="demo",
        concurrency=1,
        live=False,
        write_status=lambda text: store.write_text(STATUS_FILE, text),
    )
    cut_short, recorded = tune_trial(spec, study=1, tune_index=2), tune_trial(spec, study=3, tune_index=1)
    confirm = confirm_trial(spec, study=2)
    for planned in (cut_short, recorded, confirm):
        progress.started(planned)
    progress.finish()
    assert pending_trials(store, "tune", {recorded.trial_id}) == [cut_short]
    assert pending_trials(store, "confirm", set()) == [confirm]


def test_status_command_prints_the_board_of_a_results_directory(tmp_path: Path) -> None:
    import yaml

    from tlsweep.cli import cli
    from tlsweep.results.schema import TRIALS_SCHEMA
    from tlsweep.results.store import SPEC_FILE, ResultsStore, rows_to_table

    spec = demo_spec()
    store = ResultsStore(tmp_path / "demo")
    store.write_text(SPEC_FILE, yaml.safe_dump({**spec.resolved(), "tlsweep": {"spec_hash": spec.result_hash()}}))
    planned = tune_trial(spec, study=0)
    store.write_trials(rows_to_table([{**_row(planned), "sweep": "demo"}], TRIALS_SCHEMA))
    result = CliRunner().invoke(cli, ["status", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "demo (not running)" in result.output
    assert ["tune", planned.cell_id, planned.arm, "1/3", "0", "0", "0", "0", "0.500"] in _cells(result.output)
    assert "slot efficiency" not in result.output
    figures = {"efficiency": 0.95, "busy_s": 19.0, "trials_span_s": 10.0, "tuner_wall_s": 14.0, "slots": 2}
    store.write_text("status.json", json.dumps({"updated_at": 0, "finished": True, "running": [], **figures}))
    result = CliRunner().invoke(cli, ["status", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "last run: slot efficiency 0.950: Σ epoch time 19.0 s ÷ (2 slots × 10.0 s" in " ".join(result.output.split())


def test_the_efficiency_line_names_its_figures_and_ray_s_start_separately() -> None:
    from tlsweep.engine.progress import efficiency_line

    figures = {"efficiency": 0.9, "busy_s": 180.0, "trials_span_s": 100.0, "tuner_wall_s": 110.0, "slots": 2}
    line = efficiency_line(figures)
    assert line is not None and line.startswith("slot efficiency 0.900: Σ epoch time 180.0 s ÷ (2 slots × 100.0 s")
    assert "stopping Ray Tune took 10.0 s more" in line and "(0.818 counting that)" in line
    assert "Ray Tune" not in (efficiency_line({**figures, "tuner_wall_s": None}) or "")
    for broken in (
        {},
        {**figures, "trials_span_s": 0},
        {**figures, "efficiency": "high"},
        {**figures, "slots": True},
        {**figures, "busy_s": None},
    ):
        assert efficiency_line(broken) is None
