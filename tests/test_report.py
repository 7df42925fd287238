"""The report end to end on simulated results directories written with the exact Parquet schemas."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.stats
from click.testing import CliRunner
from pandas.testing import assert_frame_equal
from report_fixtures import filter_trials, simulate_results
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from tlsweep.errors import StoreError
from tlsweep.report import ReportResult, build_report
from tlsweep.report.load import load_results
from tlsweep.results.store import ResultsStore

FAST = 999  # bootstrap resamples in tests


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportResult]:
    root = simulate_results(
        tmp_path_factory.mktemp("demo") / "demo",
        train_fractions=(0.1, 0.3, 1.0),
        epochs=(2, 6),
        seeds=8,
        noise_sd=0.005,
        seed_sd=0.01,
    )
    return root, build_report(root, seed=1, n_resamples=FAST)


def _sign_flip_p(d: np.ndarray) -> float:
    flips = np.array(list(itertools.product([1, -1], repeat=d.size))) * d
    return float(np.mean(flips.mean(axis=1) >= d.mean() - 1e-12))


def test_report_files_are_written_and_self_contained(demo: tuple[Path, ReportResult]) -> None:
    root, result = demo
    assert result.markdown_path == root / "report" / "report.md"
    html = result.html_path.read_text()
    assert html.count("data:image/png;base64,") == len(result.figures) >= 4
    assert 'src="figures/' not in html and "<table>" in html
    for name in ("accuracy_vs_fraction", "difference_heatmap", "validation_curves", "tuning_curves"):
        assert result.figures[name].stat().st_size > 10_000
    markdown = result.markdown_path.read_text()
    for heading in (
        "## Verdict",
        "(B) Equal tuning budget",
        "(A) Fixed recipe",
        "## The whole design",
        "## Seeds and power",
        "## Tuning fairness",
        "## Attrition",
        "## Caveats and what could not be computed",
    ):
        assert heading in markdown


def test_report_numbers_equal_those_recomputed_from_parquet(demo: tuple[Path, ReportResult]) -> None:
    root, result = demo
    trials = pq.read_table(root / "trials.parquet").to_pandas()
    best = trials[(trials["phase"] == "confirm") & (trials["config_kind"] == "best")]
    table = result.cell_table.set_index("cell_id")
    p_values = {}
    for cell, rows in best.groupby("cell_id"):
        a = rows[rows["arm"] == "checkpoint"].set_index("seed")["test_acc"].sort_index()
        b = rows[rows["arm"] == "scratch"].set_index("seed")["test_acc"].sort_index()
        assert list(a.index) == list(b.index)
        row = table.loc[cell]
        assert row["n_pairs"] == len(a) == 8
        assert row["difference"] == pytest.approx((a - b).mean())
        assert row["ratio"] == pytest.approx(a.mean() / b.mean())
        assert row["d_z"] == pytest.approx((a - b).mean() / (a - b).std(ddof=1))
        assert row["p_value"] == pytest.approx(scipy.stats.ttest_rel(a, b, alternative="greater").pvalue)
        assert row["robust_p_value"] == pytest.approx(_sign_flip_p((a - b).to_numpy()))
        assert row["tost_p_value"] == pytest.approx(ttost_paired(a.to_numpy(), b.to_numpy(), -0.02, 0.02)[0])
        assert row["difference_low"] <= row["difference"] <= row["difference_high"]
        interval = scipy.stats.ttest_rel(a, b).confidence_interval(0.95)  # the t interval of the deciding test
        assert (row["difference_low"], row["difference_high"]) == pytest.approx((interval.low, interval.high))
        p_values[cell] = (row["p_value"], scipy.stats.ttest_rel(a, b, alternative="less").pvalue)
    cells = list(p_values)
    # one Holm family of both directions: 2 one-sided tests per cell
    holm = multipletests([p_values[c][0] for c in cells] + [p_values[c][1] for c in cells], method="holm")[1]
    for cell, expected, opposite in zip(cells, holm[: len(cells)], holm[len(cells) :], strict=True):
        assert table.loc[cell, "p_adjusted"] == pytest.approx(expected)
        assert table.loc[cell, "opposite_p_adjusted"] == pytest.approx(opposite)
    markdown = result.markdown_path.read_text()
    first = table.iloc[0]
    assert f"{first['difference'] * 100:+.1f} [{first['difference_low'] * 100:+.1f}" in markdown


def test_report_verdicts_follow_the_simulated_truth(demo: tuple[Path, ReportResult]) -> None:
    _, result = demo
    table = result.cell_table.set_index(["train_fraction", "epochs"])
    assert table.loc[(0.1, 2), "verdict"] == "supported"  # true advantage 25 points
    assert table.loc[(1.0, 6), "verdict"] == "equivalent"  # true advantage 0 with tiny noise
    assert result.overall.label == "supported"
    assert "Crossover: scratch is first equivalent" in result.crossover
    assert set(result.cell_verdicts) == set(result.cell_table["cell_id"])
    assert all(v.sentence.startswith("At train fraction") for v in result.cell_verdicts.values())
    assert not result.model.empty and "treated:log2_fraction" in set(result.model["term"])
    shrink = result.model.set_index("term").loc["treated:log2_fraction", "estimate"]
    assert shrink < 0  # the simulated advantage shrinks with data
    assert "shrinks per doubling of the training data" in result.markdown_path.read_text()
    assert set(result.attrition.columns) >= {"ok", "diverged", "failed", "total"}
    assert len(result.tuning) == 12 and result.tuning["trials"].eq(4).all()


def test_report_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", train_fractions=(0.1,), epochs=(2, 6), seeds=6, trials_per_cell=3)
    first = build_report(root, out_dir=tmp_path / "one", seed=3, n_resamples=FAST, formats=("md",))
    second = build_report(root, out_dir=tmp_path / "two", seed=3, n_resamples=FAST, formats=("md",))
    assert first.html_path is None and not (tmp_path / "one" / "report.html").exists()
    np.testing.assert_array_equal(first.cell_table["difference_low"], second.cell_table["difference_low"])
    assert (tmp_path / "one" / "report.md").read_text().split("## Figures")[0] == (
        tmp_path / "two" / "report.md"
    ).read_text().split("## Figures")[0].replace(str(tmp_path / "two"), str(tmp_path / "one"))


def _build(root: Path) -> tuple[ReportResult, str]:
    result = build_report(root, n_resamples=200)
    return result, result.markdown_path.read_text()


def test_one_seed_renders_and_says_what_it_could_not_compute(tmp_path: Path) -> None:
    result, markdown = _build(simulate_results(tmp_path / "r", seeds=1, trials_per_cell=2))
    assert set(result.cell_table["verdict"]) == {"inconclusive"}
    assert "only 1 complete pair (a paired test needs 2)" in markdown
    assert result.overall.label == "inconclusive"
    assert result.html_path.exists()


def test_missing_arm(tmp_path: Path) -> None:
    root = simulate_results(
        tmp_path / "r",
        arms=("checkpoint",),
        seeds=4,
        trials_per_cell=2,
        hypothesis={"compare": {"init": ["checkpoint", "scratch"]}},
    )
    result, markdown = _build(root)
    assert "the baseline arm has no usable runs" in markdown
    assert "arm 'scratch' of the hypothesis has no trials" in markdown
    assert result.overall.label == "inconclusive"


def test_all_diverged_arm_counts_at_chance(tmp_path: Path) -> None:
    def status(phase: str, cell: str, arm: str, seed: int, index: int | None) -> str:
        return "diverged" if arm == "scratch" else "ok"

    result, _markdown = _build(simulate_results(tmp_path / "r", seeds=8, status_of=status))
    table = result.cell_table
    assert np.allclose(table["mean_baseline"], 0.125)
    assert (table["verdict"] == "supported").all()
    attrition = result.attrition
    assert attrition.loc[attrition["arm"] == "scratch", "diverged"].gt(0).all()


def test_all_diverged_both_arms_is_inconclusive(tmp_path: Path) -> None:
    def status(phase: str, cell: str, arm: str, seed: int, index: int | None) -> str:
        return "diverged" if cell == "train_fraction=0.1|epochs=2" else "ok"

    result, markdown = _build(simulate_results(tmp_path / "r", seeds=8, status_of=status))
    row = result.cell_table.set_index("cell_id").loc["train_fraction=0.1|epochs=2"]
    assert row["verdict"] == "inconclusive" and row["difference"] == 0
    assert "identical for every seed" in markdown


def test_single_cell(tmp_path: Path) -> None:
    result, markdown = _build(simulate_results(tmp_path / "r", train_fractions=(0.1,), epochs=(2,), seeds=6))
    assert len(result.cell_table) == 1 and result.cell_table["verdict"].iloc[0] == "supported"
    assert "neither train_fraction nor epochs varies" in markdown
    assert "accuracy_vs_fraction" in result.figures


def test_nan_and_failed_runs_drop_their_pair_not_the_pairing(tmp_path: Path) -> None:
    def status(phase: str, cell: str, arm: str, seed: int, index: int | None) -> str:
        if phase == "confirm" and arm == "scratch" and seed == 1000:
            return "nan" if cell.startswith("train_fraction=0.1") else "failed"
        return "ok"

    result, markdown = _build(simulate_results(tmp_path / "r", seeds=8, status_of=status))
    table = result.cell_table
    assert (table["design"] == "paired").all() and (table["n_pairs"] == 7).all() and (table["dropped_runs"] == 1).all()
    assert "have no test_acc value (NaN)" in markdown
    assert "Runs left out for lack of a partner seed (analysed as complete pairs)" in markdown
    failed = result.attrition[(result.attrition["phase"] == "confirm") & (result.attrition["arm"] == "scratch")]
    assert failed["failed"].sum() == 4  # 2 cells × (best, recipe)
    assert failed["missing metric"].sum() == 4


def test_declared_metric_direction_and_correction_are_used(tmp_path: Path) -> None:
    hypothesis = {
        "metric": "test_balanced_acc",
        "compare": {"init": ["checkpoint", "scratch"]},
        "direction": "two-sided",
        "alpha": 0.01,
        "correction": "bonferroni",
        "equivalence_margin": 0.05,
    }
    root = simulate_results(tmp_path / "r", train_fractions=(0.1, 1.0), epochs=(2,), seeds=9, hypothesis=hypothesis)
    result, markdown = _build(root)
    trials = pq.read_table(root / "trials.parquet").to_pandas()
    rows = trials[
        (trials["phase"] == "confirm")
        & (trials["config_kind"] == "best")
        & (trials["cell_id"] == "train_fraction=0.1|epochs=2")
    ]
    a = rows[rows["arm"] == "checkpoint"].sort_values("seed")["test_balanced_acc"].to_numpy()
    b = rows[rows["arm"] == "scratch"].sort_values("seed")["test_balanced_acc"].to_numpy()
    row = result.cell_table.set_index("cell_id").loc["train_fraction=0.1|epochs=2"]
    assert row["p_value"] == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue)
    assert row["p_adjusted"] == pytest.approx(min(1.0, 2 * row["p_value"]))
    assert result.cell_table.set_index("epochs").loc[2, "verdict"].tolist() == ["supported", "equivalent"]
    assert "Bonferroni over the primary family of 2 cell(s)" in markdown and "±5 points" in markdown


def test_five_seeds_decide_with_the_t_test_and_flag_the_exact_floor(tmp_path: Path) -> None:
    """5 paired seeds, 4 cells: the exact sign-flip floor 1/32 is above the smallest threshold 0.05/8, so it cannot
    confirm a decision; the t-test decides and the verdict says the robust test does not confirm it."""
    result, markdown = _build(simulate_results(tmp_path / "r", seeds=5))
    table = result.cell_table.set_index(["train_fraction", "epochs"])
    assert table.loc[(0.1, 2), "verdict"] == "supported"  # true advantage 25 points
    assert not table["robust_reachable"].any() and (table["needed_replicates"] == 8).all()
    assert "insufficient replicates" not in markdown
    assert "exact sign-flip test does not confirm this (its floor 0.0312 with 5 pairs" in markdown


def test_tune_only_and_missing_spec(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", configs=(), write_spec=False, trials_per_cell=3)
    result, markdown = _build(root)
    assert result.cell_table.empty and result.overall.label == "inconclusive"
    assert "spec.resolved.yaml is missing" in markdown and "tuning_curves" in result.figures


def test_missing_or_empty_results_raise_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist; run `tlsweep run SPEC` first"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"holds no trials.parquet"):
        build_report(tmp_path / "empty")
    root = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=1)
    filter_trials(root, lambda frame: frame["phase"] == "nothing")
    with pytest.raises(StoreError, match="holds no trials yet"):
        build_report(root)


def test_cli_report(tmp_path: Path) -> None:
    from tlsweep.cli import cli

    root = simulate_results(tmp_path / "r", train_fractions=(0.1,), seeds=6, trials_per_cell=2)
    out = CliRunner().invoke(cli, ["report", str(root), "--out", str(tmp_path / "out"), "--format", "md"])
    assert out.exit_code == 0, out.output
    assert f"wrote {tmp_path / 'out' / 'report.md'}" in out.output and "verdict: supported" in out.output
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "run `tlsweep run SPEC` first" in missing.output
    bad = CliRunner().invoke(cli, ["report", str(root), "--format", "pdf"])
    assert bad.exit_code == 2 and "md,html" in bad.output


@pytest.mark.parametrize("entry", ["library", "cli"])
def test_report_imports_neither_torch_nor_ray(tmp_path: Path, entry: str) -> None:
    root = simulate_results(tmp_path / "r", train_fractions=(0.1,), epochs=(2,), seeds=6, trials_per_cell=2)
    if entry == "library":
        call = f"from tlsweep.report import build_report; build_report(Path({str(root)!r}), n_resamples=100)"
    else:
        call = f"from tlsweep.cli import cli; cli.main(['report', {str(root)!r}], standalone_mode=False)"
    code = (
        "import sys; from pathlib import Path\n"
        + call
        + "\nheavy = sorted(m for m in ('torch', 'ray', 'torchvision') if m in sys.modules)"
        "\nassert not heavy, heavy"
        "\nassert 'matplotlib.pyplot' not in sys.modules"
        " or sys.modules['matplotlib'].get_backend().lower() == 'agg'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_results_in_part_files_load_like_the_single_files(tmp_path: Path) -> None:
    """A running (or killed) sweep's appended parts load as the same tables as the compacted files."""
    root = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=2)
    whole = load_results(root)
    store = ResultsStore(root)
    trials, epochs = store.read_trials(), store.read_epochs()
    (root / "trials.parquet").unlink()
    (root / "epochs.parquet").unlink()
    store.append_trials(trials.slice(0, 5))  # rows split over two parts, one of them repeated
    store.append_trials(trials.slice(3))
    store.append_epochs(epochs)
    parts = load_results(root)
    key = ["trial_id"]
    assert_frame_equal(
        parts.trials.sort_values(key).reset_index(drop=True), whole.trials.sort_values(key).reset_index(drop=True)
    )
    assert len(parts.epochs) == len(whole.epochs)


def test_diverged_runs_are_named_with_a_sensitivity_check(tmp_path: Path) -> None:
    """No advantage among healthy runs; 3 of 8 scratch runs of one cell diverge (scored at chance): the verdict
    names them and says what the cell reads without them."""

    def status(phase: str, cell: str, arm: str, seed: int, index: int | None) -> str:
        diverged = phase == "confirm" and arm == "scratch" and seed < 1003 and cell == "train_fraction=0.1|epochs=2"
        return "diverged" if diverged else "ok"

    root = simulate_results(tmp_path / "r", seeds=8, status_of=status, effect=0.0, configs=("best",))
    result, markdown = _build(root)
    row = result.cell_table.set_index("cell_id").loc["train_fraction=0.1|epochs=2"]
    assert row["diverged"] == "scratch: 3" and row["verdict_without_diverged"] in LABELS
    sentence = result.cell_verdicts["train_fraction=0.1|epochs=2"].sentence
    assert "Diverged: 3 scratch run(s), scored at chance;" in sentence
    assert ("the verdict holds without them" in sentence) == (row["verdict_without_diverged"] == row["verdict"])
    others = result.cell_table[result.cell_table["cell_id"] != "train_fraction=0.1|epochs=2"]
    assert (others["diverged"] == "").all() and others["verdict_without_diverged"].isna().all()
    assert "Diverged:" in markdown


LABELS = {"supported", "not supported", "equivalent", "inconclusive"}
