"""What a run and `tlsweep status` print where nobody watches a terminal (issue 24, item 8 of the issue)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from ray_fakes import demo_spec, tune_trial
from rich.console import Console

from tlsweep.design import study_trial_counts
from tlsweep.engine.progress import PROGRESS_LINES, Progress, StatusBoard
from tlsweep.engine.sweep_environment import TOKEN_AUTH_LOGGER, sweep_settings


def test_a_run_logged_to_a_file_prints_a_progress_line_every_few_trials() -> None:
    spec = demo_spec()
    board = StatusBoard(study_trial_counts(spec))
    out = io.StringIO()
    progress = Progress(board, title="demo", concurrency=2, write_status=lambda text: None, console=Console(file=out))
    total = sum(line.expected for line in board.lines.values())
    with progress:
        for key, line in board.lines.items():
            for _ in range(line.expected):
                planned = tune_trial(spec, study=0)
                progress.finished(planned, {"trial_id": "x", "phase": key[0], "cell_id": key[1], "arm": key[2]})
    lines = [line for line in out.getvalue().splitlines() if "trials (" in line]
    assert total == 88 and len(lines) == 88 // 5 + 1  # every ceil(88 / PROGRESS_LINES) = 5 trials, and the last
    assert PROGRESS_LINES == 20
    assert lines[-1].endswith(f"demo: {total}/{total} trials (tune 24/24, confirm 64/64), 0 failed, ETA 0.0 min")
    assert "┃" not in out.getvalue()  # no table redrawn into the file


def test_a_piped_status_table_keeps_every_column(tmp_path: Path) -> None:
    from tlsweep.cli import cli
    from tlsweep.results.schema import TRIALS_SCHEMA
    from tlsweep.results.store import SPEC_FILE, ResultsStore, rows_to_table

    long_arm = "frozen_source_features_with_a_linear_head_on_the_age_labels"
    spec = demo_spec(
        design__factors={"train_fraction": [0.1], "epochs": [2], "augmentation": ["none", "flip_color"]},
        design__arms={long_arm: {"init": "checkpoint", "freeze_depth": 5}, "scratch": {"init": "scratch"}},
        design__tune={"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
        design__recipe={"lr": 0.05},
        hypothesis__compare={"control": "scratch"},
    )
    store = ResultsStore(tmp_path / "demo")
    store.write_text(SPEC_FILE, yaml.safe_dump({**spec.resolved(), "tlsweep": {"spec_hash": spec.result_hash()}}))
    planned = tune_trial(spec, study=0)
    row = {"trial_id": planned.trial_id, "phase": "tune", "cell_id": planned.cell_id, "arm": planned.arm}
    store.write_trials(rows_to_table([{**row, "status": "ok", "best_val_acc": 0.5, "sweep": "demo"}], TRIALS_SCHEMA))
    result = CliRunner().invoke(cli, ["status", str(tmp_path / "demo")])  # stdout is not a terminal
    assert result.exit_code == 0, result.output
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.output.splitlines() if "│" in line]
    assert ["tune", planned.cell_id, long_arm, "1/3", "0", "0", "0", "0", "0.500"] in rows


def test_rays_token_authentication_notice_is_left_out_of_a_sweep(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(TOKEN_AUTH_LOGGER)
    with caplog.at_level(logging.WARNING, logger=TOKEN_AUTH_LOGGER), sweep_settings():
        logger.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
        logger.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
    assert [r.getMessage().split(".")[0] for r in caplog.records] == [
        "Token authentication is disabled for this Ray cluster"
    ]
