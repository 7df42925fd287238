"""The report reads a study as a region and a trend: each rule pinned by a small hand-made results table.

Simulated accuracy = baseline(fraction, epochs) + effect(fraction, epochs) for the treated arm + a seed effect shared
by both arms + run noise (tests/report_fixtures.py). Noise is small, so each cell's decision is the simulated truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from report_fixtures import simulate_results, spec_dict

from tlsweep.design import MIN_OPTIMIZER_STEPS, cell_steps, optimizer_steps
from tlsweep.errors import SpecError
from tlsweep.report import build_report
from tlsweep.report.analysis import Analysis, analyse
from tlsweep.report.health import CellHealth, cell_health, edge_optima
from tlsweep.report.load import load_results
from tlsweep.report.verdicts import Verdict, cell_verdict, crossover, crossover_cells, overall_verdict
from tlsweep.spec_load import parse_spec

CHANCE = 0.125
FRACTIONS, EPOCHS = (0.1, 0.3, 1.0), (2, 6)


@dataclass
class Read:
    analysis: Analysis
    health: dict[str, CellHealth]
    overall: Verdict
    crossover: str
    labels: dict[tuple[float, int], str]  # (fraction, epochs) → cell verdict label


def _read(root: Path) -> Read:
    results = load_results(root)
    analysis = analyse(results, rng=np.random.default_rng(0), n_resamples=200)
    health = cell_health(results)
    family = analysis.primary
    assert family is not None
    labels = {
        (c.levels["train_fraction"], c.levels["epochs"]): cell_verdict(c, results, family, health.get(c.cell_id)).label
        for c in family.cells
    }
    return Read(
        analysis,
        health,
        overall_verdict(family, results, health=health, trends=analysis.trends),
        crossover(family, results, health),
        labels,
    )


def _simulate(tmp_path: Path, effect: dict[tuple[float, int], float], *, baseline: Any = None, **kwargs: Any) -> Path:
    return simulate_results(
        tmp_path / "r",
        train_fractions=FRACTIONS,
        epochs=EPOCHS,
        seeds=8,
        trials_per_cell=2,
        configs=("best",),
        noise_sd=0.004,
        seed_sd=0.01,
        effect=lambda f, e: effect[(f, e)],
        baseline=baseline,
        **kwargs,
    )


SHRINKING = {(0.1, 2): 0.25, (0.1, 6): 0.18, (0.3, 2): 0.15, (0.3, 6): 0.08, (1.0, 2): 0.05, (1.0, 6): 0.0}


def test_a_reversal_outside_the_region_is_named_and_is_a_crossover(tmp_path: Path) -> None:
    effect = {**SHRINKING, (1.0, 6): -0.05}
    read = _read(_simulate(tmp_path, effect))
    assert read.labels[(1.0, 6)] == "not supported (reversed)"
    assert read.overall.kind == "supported" and read.overall.label == "supported"  # the region holds
    assert "scratch wins (a reversal) at train fraction 1 × 6 epochs" in read.overall.sentence
    assert (
        "scratch overtakes checkpoint (significant in the other direction) first at train fraction 1 with 6 "
        "epochs" in read.crossover
    )


def test_a_reversal_in_the_region_makes_the_overall_verdict_reversed(tmp_path: Path) -> None:
    effect = {key: -0.05 if key == (0.1, 2) else 0.1 for key in SHRINKING}
    read = _read(_simulate(tmp_path, effect))
    assert read.overall.kind == "reversed"
    assert read.overall.label == "reversed at train fraction 0.1 × 2 epochs"
    assert read.overall.sentence.startswith(
        "The hypothesis (checkpoint > scratch on test_acc in its region, train fraction 0.1 × 2 epochs) is reversed:"
    )


def test_equivalence_in_the_region_with_wins_elsewhere_is_supported_only_there(tmp_path: Path) -> None:
    effect = {key: 0.0 if key == (0.1, 2) else 0.1 for key in SHRINKING}
    read = _read(_simulate(tmp_path, effect))
    assert read.labels[(0.1, 2)] == "equivalent (caught up)"
    assert read.overall.kind == "supported only at"
    assert read.overall.label.startswith("supported only at train fraction 0.1 × 6 epochs, ")
    assert (
        "Crossover: scratch is first equivalent to checkpoint (within ±2 points, TOST) at train fraction 0.1 "
        "with 2 epochs" in read.crossover
    )


def test_equivalent_everywhere(tmp_path: Path) -> None:
    read = _read(_simulate(tmp_path, dict.fromkeys(SHRINKING, 0.0)))
    assert set(read.labels.values()) == {"equivalent (caught up)"}
    assert read.overall.kind == "equivalent (caught up)"
    assert "scratch has caught up everywhere" in read.overall.sentence


def test_the_real_study_region_at_chance_reversal_and_undecided_cells(tmp_path: Path) -> None:
    """The study that motivated issue 13: every arm at chance in the smallest cell, the pretrained arm far ahead in
    one small-data cell, scratch significantly ahead in the largest cell, the rest undecided."""
    effect = {(0.1, 2): 0.0, (0.1, 6): 0.30, (0.3, 2): 0.008, (0.3, 6): 0.008, (1.0, 2): -0.008, (1.0, 6): -0.04}

    def baseline(fraction: float, epochs: int) -> float:
        return CHANCE if (fraction, epochs) == (0.1, 2) else 0.4 + 0.1 * fraction

    root = simulate_results(
        tmp_path / "r",
        train_fractions=FRACTIONS,
        epochs=EPOCHS,
        seeds=8,
        trials_per_cell=2,
        configs=("best",),
        noise_sd=0.01,
        seed_sd=0.005,
        effect=lambda f, e: effect[(f, e)],
        baseline=baseline,
        hypothesis={"compare": {"init": ["checkpoint", "scratch"]}, "equivalence_margin": 0.01},
    )
    read = _read(root)
    assert read.labels[(0.1, 2)] == "uninformative (at chance)"
    assert read.labels[(0.1, 6)] == "supported" and read.labels[(1.0, 6)] == "not supported (reversed)"
    assert read.overall.kind == "supported only at"
    assert read.overall.label == "supported only at train fraction 0.1 × 6 epochs"
    sentence = read.overall.sentence
    assert "train fraction 0.1 × 2 epochs is uninformative (every arm at chance) and left out" in sentence
    assert "scratch wins (a reversal) at train fraction 1 × 6 epochs" in sentence
    assert "the data cannot decide at" in sentence and "no informative cell lies in the region" in sentence
    assert (
        "overtakes checkpoint (significant in the other direction) first at train fraction 1 with 6 epochs"
        in read.crossover
    )
    # the uninformative cell is neither a catch-up nor an overtake point
    found = crossover_cells(read.analysis.primary, load_results(root), read.health)
    assert all(
        c.levels != {"train_fraction": 0.1, "epochs": 2}
        for groups in found.values()
        for cells in groups.values()
        for c in cells
    )
    # the whole report says it too
    result = build_report(root, n_resamples=200, formats=("md",))
    markdown = result.markdown_path.read_text()
    assert "**Overall: supported only at train fraction 0.1 × 6 epochs.**" in markdown
    assert (
        "## Design health" in markdown
        and "Uninformative (no arm above chance by more than 1 points, or than 1.96 standard errors): train "
        "fraction 0.1, 2 epochs"
        in markdown
    )
    row = result.cell_table.set_index(["train_fraction", "epochs"]).loc[(0.1, 2)]
    assert not row["informative"] and row["verdict"] == "inconclusive"
    assert "uninformative (at chance)" in markdown


def test_a_mixed_declared_region_is_supported_only_in_part(tmp_path: Path) -> None:
    effect = {**SHRINKING, (0.1, 6): 0.0}
    read = _read(_simulate(tmp_path, effect, region={"train_fraction": [0.1], "epochs": [2, 6]}))
    assert read.labels[(0.1, 2)] == "supported" and read.labels[(0.1, 6)] == "equivalent (caught up)"
    assert read.overall.kind == "supported only at"
    assert "in its region, train fraction 0.1 × 2/6 epochs" in read.overall.sentence
    # the same data with the default region (0.1 × 2 epochs) is supported
    default = _read(_simulate(tmp_path / "default", effect))
    assert default.overall.kind == "supported"


def test_the_shrinking_trend_is_tested_on_cells_in_points(tmp_path: Path) -> None:
    read = _read(_simulate(tmp_path, SHRINKING))
    trends = {t.term: t for t in read.analysis.trends}
    assert set(trends) == {"treated:log2_fraction", "treated:epochs"}
    assert all(t.shrinks and t.points < 0 and t.p_adjusted <= 0.05 for t in trends.values())
    # the cell is the unit: 6 cell means, 3 parameters, 3 residual df
    model = read.analysis.model
    assert model.n_cells == 6 and model.df == 3
    table = model.coefficients.set_index("term")
    p_one = [table.loc[term, "p"] / 2 for term in trends]  # one-sided in the predicted direction
    assert sorted(t.p_shrinks for t in trends.values()) == pytest.approx(sorted(p_one))
    # one Holm family over both directions of both terms (4 one-sided tests)
    assert max(t.p_adjusted for t in trends.values()) == pytest.approx(min(1.0, max(4 * min(p_one), 3 * max(p_one))))
    assert "the checkpoint advantage shrinks per doubling of the training data (-" in read.overall.sentence
    assert "points; Holm p" in read.overall.sentence


def test_a_growing_advantage_is_claimed_as_growing_not_shrinking(tmp_path: Path) -> None:
    growing = {(f, e): 0.05 + 0.05 * np.log2(f / 0.1) + 0.01 * e for f, e in SHRINKING}
    read = _read(_simulate(tmp_path, growing))
    trends = {t.term: t for t in read.analysis.trends}
    assert trends["treated:log2_fraction"].points > 0 and not trends["treated:log2_fraction"].shrinks
    assert trends["treated:log2_fraction"].p_shrinks > 0.95 and trends["treated:log2_fraction"].claim == "grows"
    assert "the checkpoint advantage grows per doubling of the training data (+" in read.overall.sentence


def test_too_few_cells_for_a_trend_test_are_said_so(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", train_fractions=(0.1, 1.0), epochs=(2, 6), seeds=6, trials_per_cell=2)
    read = _read(root)
    assert read.analysis.trends == [] and not read.analysis.model.fitted
    assert "too few cells for a trend test: 4 cells and 3 parameters leave 1 residual df" in read.analysis.model.method


def test_edge_of_range_optimum_is_flagged(tmp_path: Path) -> None:
    root = _simulate(tmp_path, SHRINKING, best_lr=0.9)  # the spec's range is lr ∈ [1e-4, 1] (log)
    edges = edge_optima(load_results(root))
    assert len(edges) == 12 and {e.edge for e in edges} == {"upper"} and {e.parameter for e in edges} == {"lr"}
    assert "widen design.tune.lr (raise high)" in edges[0].sentence()
    assert edge_optima(load_results(_simulate(tmp_path / "mid", SHRINKING, best_lr=0.01))) == []


def test_region_in_the_spec_is_validated(tmp_path: Path) -> None:
    data = spec_dict(tmp_path, train_fractions=(0.1, 1.0), epochs=(2, 6))
    spec = parse_spec(data)
    assert spec.hypothesis.region is None and spec.hypothesis_region() == {"train_fraction": [0.1], "epochs": [2]}
    data["hypothesis"]["region"] = {"train_fraction": [0.1, 1.0]}
    assert parse_spec(data).hypothesis_region() == {"train_fraction": [0.1, 1.0]}
    for region, message in (
        ({"train_fraction": [0.5]}, r"hypothesis.region.train_fraction: \[0.5\] are not levels"),
        ({"init": ["scratch"]}, "hypothesis.region.init: not a cell factor"),
        ({}, "give at least one factor"),
    ):
        data["hypothesis"]["region"] = region
        with pytest.raises(SpecError, match=message):
            parse_spec(data)


def test_optimizer_steps_match_the_training_loop() -> None:
    assert optimizer_steps(1740, 0.1, 64, 2) == (174, 6)  # ceil(174 / 64) = 3 per epoch
    assert optimizer_steps(65, 1.0, 64, 1) == (65, 1)  # a last batch of one image is dropped
    assert optimizer_steps(26, 1.0, 32, 2) == (26, 2)  # the real study's smallest cell: two steps


def test_validate_prints_steps_per_cell_and_warns_below_the_minimum(tmp_path: Path) -> None:
    import yaml

    from tlsweep.cli import cli

    data = spec_dict(tmp_path, train_fractions=(0.01, 1.0), epochs=(2, 6))
    data["dataset"].update({"n_identities": 100, "images_per_identity": 10})
    data["model"]["batch_size"] = 32
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "backbone.pt").touch()  # the checkpoint arm's file: validate checks that it is on this machine
    spec = parse_spec(data)
    import torch

    from tlsweep.training.backbones import create_model

    # validate checks that the arm's weights are on this machine and fit its backbone
    torch.save(create_model(spec.model.backbone, 2).state_dict(), tmp_path / "backbone.pt")
    steps = {(c.levels["train_fraction"], c.levels["epochs"]): c.steps for c in cell_steps(spec, 700)}
    assert steps == {(0.01, 2): 2, (0.01, 6): 6, (1.0, 2): 44, (1.0, 6): 132}
    out = CliRunner().invoke(cli, ["validate", str(path)])
    assert out.exit_code == 0, out.output
    assert "optimizer steps per run (700 training images from generated dataset parameters; batch 32)" in out.output
    assert "train_fraction 0.01, epochs 2: 7 images × 2 epochs → 2 steps" in out.output
    assert f"2 cell(s) give fewer than {MIN_OPTIMIZER_STEPS} optimizer steps" in out.output
    assert "more epochs (design.factors.epochs), a smaller batch (model.batch_size) or a larger fraction" in out.output
    assert "hypothesis region: train_fraction [0.01] × epochs [2]" in out.output


def test_validate_prints_each_family_and_warns_when_the_robust_test_cannot_reach_it() -> None:
    """The ants/bees study: 6 cells × 3 comparisons = 18 tests in one family of 36 one-sided tests. With 8 seeds
    the t-test decides and validate warns that the exact test's floor 1/2^8 cannot reach 0.05/36."""
    from tlsweep.cli import cli

    spec = Path(__file__).resolve().parents[1] / "sweeps" / "ants_bees.yaml"
    args = ["validate", str(spec), "--no-data-check", "--set", "confirm.seeds=8", "--set", "confirm.configs=[best]"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "primary family: 6 cell(s) × 3 comparison(s) = 18 tests, both directions in one holm family (36 " in text
    assert "smallest threshold 0.00139" in text and "the t-test detects d_z ≥ 2.00 at 80% power" in text
    assert "warning: with 8 paired seeds the exact sign-flip test cannot reach the primary family's" in text
    assert "confirm.seeds: 10" in text
    out = CliRunner().invoke(cli, ["validate", str(spec), "--no-data-check"])  # the shipped 10 seeds reach it
    assert out.exit_code == 0 and "warning: with" not in out.output, out.output


def test_a_margin_large_against_the_error_rate_is_warned_about(tmp_path: Path) -> None:
    """At 99 % accuracy a ±3-point margin admits four times the errors: the report says so."""
    root = simulate_results(
        tmp_path / "r",
        train_fractions=(0.1,),
        epochs=(2,),
        seeds=6,
        trials_per_cell=2,
        configs=("best",),
        baseline=lambda f, e: 0.985,
        effect=0.005,
        noise_sd=0.001,
        seed_sd=0.001,
        hypothesis={"compare": {"init": ["checkpoint", "scratch"]}, "equivalence_margin": 0.03},
    )
    from tlsweep.report import build_report

    text = build_report(root, n_resamples=0, formats=("md",)).markdown_path.read_text()
    assert "the equivalence margin ±3 points is large against the error rate there (1.0 % at 99.0 % accuracy)" in text
    import re

    assert re.search(r"making 4\.\d× the other's errors", " ".join(text.split()))
