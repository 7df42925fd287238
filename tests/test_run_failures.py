"""A sweep that could not do its job says so: every trial of a phase failed → `tlsweep run` exits non-zero with the
first error and where the details are (no report); some failed → the end of the run says how many and why.
Fakes only: the outcome of ``run_sweep`` is built by hand, no Ray starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tlsweep.cli import cli
from tlsweep.engine import run as engine_run
from tlsweep.engine.run import SweepOutcome, failure_summary

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sweeps" / "demo.yaml"


def _row(phase: str, status: str, error: str | None = None) -> dict[str, Any]:
    return {"phase": phase, "status": status, "error": error}


def test_failure_summary_counts_and_ranks_reasons_per_phase() -> None:
    rows = [
        _row("tune", "ok"),
        _row("tune", "failed", "ValueError: bad   lr\n"),
        _row("tune", "pruned"),
        _row("tune", "failed", "ValueError: bad lr"),
        _row("tune", "failed", "OSError: disk full"),
        _row("confirm", "ok"),
        _row("confirm", "diverged"),
    ]
    [tune] = failure_summary(rows)
    assert (tune.phase, tune.failed, tune.recorded, tune.every_trial) == ("tune", 3, 5, False)
    assert tune.reasons == (("ValueError: bad lr", 2), ("OSError: disk full", 1))
    assert tune.first_error == "ValueError: bad lr"
    text = tune.describe("/r/demo")
    assert text.startswith("tune phase: 3 of 5 trials failed: ValueError: bad lr (2×); OSError: disk full (1×)")
    assert "/r/demo/trials" in text and "/r/demo/ray/sweep-*/tune-*/" in text


def test_a_phase_whose_every_trial_failed_is_the_outcomes_failure() -> None:
    rows = [_row("tune", "failed", None), _row("tune", "failed", "KeyError: 'x'")]
    outcome = SweepOutcome(location="/r", trials_recorded=2, counts={}, failures=failure_summary(rows))
    assert outcome.failed is not None and outcome.failed.every_trial
    assert outcome.failed.first_error == "no error message recorded"
    assert SweepOutcome(location="/r", trials_recorded=0, counts={}, failures=failure_summary([])).failed is None


def _fake_run(monkeypatch: pytest.MonkeyPatch, outcome: SweepOutcome) -> None:
    def fake(spec: Any, **kwargs: Any) -> SweepOutcome:
        return outcome

    monkeypatch.setattr(engine_run, "run_sweep", fake)


def test_run_exits_non_zero_with_the_first_error_when_every_trial_of_a_phase_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [_row("tune", "failed", "UnknownNameError: backbone 'resnet_tiyn' is not registered")] * 4
    _fake_run(
        monkeypatch,
        SweepOutcome(location="/r/demo", trials_recorded=4, counts={"tune": 4}, failures=failure_summary(rows)),
    )
    result = CliRunner().invoke(cli, ["run", str(DEMO)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "the sweep could not do its job: tune phase: every trial failed" in result.output
    assert "first error: UnknownNameError: backbone 'resnet_tiyn' is not registered" in result.output
    assert "/r/demo/trials" in result.output and "no report was written" in result.output


def test_run_reports_how_many_trials_failed_and_why_when_some_did(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_row("tune", "ok")] * 6 + [_row("confirm", "ok")] * 3 + [_row("confirm", "failed", "[x] died")] * 2
    _fake_run(
        monkeypatch,
        SweepOutcome(
            location="/r/demo",
            trials_recorded=11,
            counts={},
            failures=failure_summary(rows),
            report_path="/r/demo/report/report.md",
        ),
    )
    result = CliRunner().invoke(cli, ["run", str(DEMO)])
    assert result.exit_code == 0, result.output
    assert "failed trials confirm phase: 2 of 5 trials failed: [x] died (2×)" in " ".join(result.output.split())
    assert result.output.rstrip().endswith("/r/demo/report/report.md")
