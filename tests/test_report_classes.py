"""The report's per-class section: each arm's per-class test accuracy per cell, the paired difference per comparison,
and a confusion-matrix figure per arm; old results without the columns and diverged runs are said, not fatal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from report_fixtures import set_confusions, simulate_results

from tlsweep.cli import cli
from tlsweep.errors import TlsweepError
from tlsweep.report import build_report
from tlsweep.report.classes import row_normalised
from tlsweep.results.store import Provenance, ResultsStore

NAMES = ["cat", "dog", "bird"]
# (arm, seed) → test confusion (row = true class); per-class accuracy = diagonal / row total
CONFUSIONS = {
    ("checkpoint", 1000): [[3, 1, 0], [0, 2, 2], [1, 0, 3]],  # 0.75, 0.5, 0.75
    ("checkpoint", 1001): [[4, 0, 0], [1, 3, 0], [0, 2, 2]],  # 1.0, 0.75, 0.5
    ("checkpoint", 1002): [[2, 2, 0], [0, 4, 0], [0, 0, 4]],  # 0.5, 1.0, 1.0
    ("scratch", 1000): [[2, 2, 0], [2, 2, 0], [2, 0, 2]],  # 0.5, 0.5, 0.5
    ("scratch", 1001): [[1, 3, 0], [0, 4, 0], [0, 4, 0]],  # 0.25, 1.0, 0.0
}


def _diverged(phase: str, cell: str, arm: str, seed: int, index: int | None) -> str:
    return "diverged" if phase == "confirm" and arm == "scratch" and seed == 1002 else "ok"


def _confusion(row: dict[str, Any]) -> list[list[int]] | None:
    if row["phase"] != "confirm" or row["status"] != "ok":
        return None
    return CONFUSIONS[(row["arm"], row["seed"])]


def _tiny(path: Path, **kwargs: Any) -> Path:
    options: dict[str, Any] = dict(
        train_fractions=(1.0,), epochs=(2,), seeds=3, trials_per_cell=2, num_classes=3, configs=("best",)
    )
    return simulate_results(path, **{**options, **kwargs})


def _section(markdown: str) -> str:
    return markdown[markdown.index("## Per-class accuracy") : markdown.index("## Hypothesis and design")]


def test_per_class_numbers_equal_a_hand_computation(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "r", status_of=_diverged, class_names=NAMES)
    set_confusions(root, _confusion)
    result = build_report(root, n_resamples=0)
    view = result.classes
    assert view is not None and view.named and view.class_names == NAMES
    accuracy = view.accuracy.set_index(["arm", "class"])
    assert accuracy.loc[("checkpoint", "cat"), "mean"] == pytest.approx(0.75)
    assert accuracy.loc[("checkpoint", "bird"), "mean"] == pytest.approx(0.75)
    assert accuracy.loc[("scratch", "cat"), "mean"] == pytest.approx(0.375)  # the diverged seed is left out
    assert accuracy.loc[("scratch", "bird"), "mean"] == pytest.approx(0.25)
    assert accuracy.loc[("checkpoint", "dog"), "seeds"] == 3 and accuracy.loc[("scratch", "dog"), "seeds"] == 2
    differences = view.differences.set_index("class")
    # seeds 1000 and 1001 are the pairs: (0.25 + 0.75) / 2, (0 − 0.25) / 2, (0.25 + 0.5) / 2
    assert differences["difference"].tolist() == pytest.approx([0.5, -0.125, 0.375])
    assert set(differences["pairs"]) == {2}
    section = _section(result.markdown_path.read_text())
    assert "Descriptive only" in section and "(`train_fraction=1.0|epochs=2`)" in section
    assert "| class | checkpoint (n=3) | scratch (n=2) | Δ checkpoint − scratch (2 pairs) |" in section
    assert "| cat | 75.0 | 37.5 | +50.0 |" in section and "| dog | 75.0 | 75.0 | -12.5 |" in section
    assert "checkpoint" not in " ".join(line for line in section.splitlines() if "diverged" in line)
    assert "scratch: 1 of 3 confirm run(s) have no per-class accuracy (1 diverged)" in section
    assert result.confusion_cell == "train_fraction=1.0|epochs=2"


def test_confusion_figures_are_written_referenced_and_embedded(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "r", status_of=_diverged, class_names=NAMES)
    set_confusions(root, _confusion)
    result = build_report(root, n_resamples=0)
    for arm in ("checkpoint", "scratch"):
        path = result.figures[f"confusion_{arm}"]
        assert path == root / "report" / "figures" / f"confusion_{arm}.png" and path.stat().st_size > 5_000
    markdown = result.markdown_path.read_text()
    section = _section(markdown)
    assert "![confusion_checkpoint](figures/confusion_checkpoint.png)" in section
    assert "![confusion_scratch](figures/confusion_scratch.png)" in section
    assert markdown.count("figures/confusion_checkpoint.png") == 1  # not repeated under "Figures"
    assert markdown.index("## The picture") < markdown.index("## Per-class accuracy")
    assert markdown.index("## Per-class accuracy") < markdown.index("(B) Equal tuning budget")
    html = result.html_path.read_text()
    assert html.count("data:image/png;base64,") == len(result.figures) and 'src="figures/' not in html


def test_the_confusion_figure_sums_seeds_and_normalises_rows(tmp_path: Path) -> None:
    from tlsweep.report.classes import summed_confusion
    from tlsweep.report.load import load_results

    root = _tiny(tmp_path / "r", status_of=_diverged, class_names=NAMES)
    set_confusions(root, _confusion)
    results = load_results(root)
    drawn = {c.arm: c for c in summed_confusion(results, "train_fraction=1.0|epochs=2", 3)}
    assert drawn["checkpoint"].seeds == 3 and drawn["scratch"].seeds == 2
    assert drawn["checkpoint"].counts.tolist() == [[9, 3, 0], [1, 9, 2], [1, 2, 9]]
    shares = row_normalised(np.array([[3.0, 1.0], [0.0, 0.0]]))
    assert shares[0].tolist() == [0.75, 0.25] and np.isnan(shares[1]).all()


def test_old_results_without_the_columns_still_report(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "r")
    table = pq.read_table(root / "trials.parquet")
    pq.write_table(table.drop_columns(["test_class_acc", "test_confusion"]), root / "trials.parquet")
    result = build_report(root, n_resamples=0)
    assert result.classes is not None and result.classes.empty and result.confusion_cell is None
    assert not any(name.startswith("confusion_") for name in result.figures)
    section = _section(result.markdown_path.read_text())
    assert "No per-class accuracy: no confirm run records test_class_acc" in section


def test_class_indices_stand_in_when_names_are_not_recorded(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "r", status_of=_diverged)
    set_confusions(root, _confusion)
    result = build_report(root, n_resamples=0)
    assert result.classes is not None and not result.classes.named
    assert result.classes.class_names == ["class 0", "class 1", "class 2"]
    section = _section(result.markdown_path.read_text())
    assert "| class 0 | 75.0 | 37.5 | +50.0 |" in section
    assert "the class names are not recorded in these results" in section


def test_an_arm_whose_runs_all_diverged_is_said_not_fatal(tmp_path: Path) -> None:
    root = _tiny(
        tmp_path / "r",
        class_names=NAMES,
        status_of=lambda phase, cell, arm, seed, index: "diverged" if phase == "confirm" and arm == "scratch" else "ok",
    )
    set_confusions(root, _confusion)
    result = build_report(root, n_resamples=0)
    assert "confusion_checkpoint" in result.figures and "confusion_scratch" not in result.figures
    section = _section(result.markdown_path.read_text())
    assert "| class | checkpoint (n=3) | scratch (n=0) | Δ checkpoint − scratch (0 pairs) |" in section
    assert "| cat | 75.0 | – | – |" in section
    assert "scratch: 3 of 3 confirm run(s) have no per-class accuracy (3 diverged)" in section


def test_the_reader_picks_the_confusion_cell(tmp_path: Path) -> None:
    root = simulate_results(
        tmp_path / "r", seeds=3, trials_per_cell=2, num_classes=3, configs=("best",), class_names=NAMES
    )
    set_confusions(root, lambda row: CONFUSIONS[("checkpoint", row["seed"])] if row["phase"] == "confirm" else None)
    assert build_report(root, n_resamples=0).confusion_cell == "train_fraction=1.0|epochs=6"  # most data
    picked = build_report(root, n_resamples=0, confusion_cell="train_fraction=0.1|epochs=2")
    assert picked.confusion_cell == "train_fraction=0.1|epochs=2"
    assert "Confusion matrices in train fraction 0.1, 2 epochs" in picked.markdown_path.read_text()
    with pytest.raises(TlsweepError, match="not a cell of these results; choose one of"):
        build_report(root, n_resamples=0, confusion_cell="train_fraction=0.5")
    run = CliRunner().invoke(cli, ["report", str(root), "--confusion-cell", "nope"])
    assert run.exit_code == 2 and "'nope' is not a cell" in run.output and "Traceback" not in run.output


def test_provenance_keeps_the_class_names(tmp_path: Path) -> None:
    provenance = Provenance(spec_hash="abc", class_names=("cat", "dog"))
    again = Provenance.from_dict(provenance.to_dict(), source="p", fix="f")
    assert again.class_names == ("cat", "dog")
    assert Provenance.from_dict({"spec_hash": "abc"}, source="p", fix="f").class_names is None
    root = _tiny(tmp_path / "r", class_names=NAMES)
    assert ResultsStore(root).read_provenance().class_names == tuple(NAMES)


def test_unreadable_or_odd_sized_per_class_values_are_left_out_and_named(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "r", class_names=NAMES, status_of=_diverged)
    set_confusions(root, _confusion)
    table = pq.read_table(root / "trials.parquet").to_pylist()
    for row in table:
        if row["phase"] == "confirm" and row["arm"] == "checkpoint" and row["seed"] == 1001:
            row["test_class_acc"], row["test_confusion"] = "[0.5, 0.5]", "[[1, 1], [1, 1]]"
        if row["phase"] == "confirm" and row["arm"] == "checkpoint" and row["seed"] == 1002:
            row["test_class_acc"], row["test_confusion"] = "not json", "{}"
    import pyarrow as pa

    from tlsweep.results.schema import TRIALS_SCHEMA

    pq.write_table(pa.Table.from_pylist(table, schema=TRIALS_SCHEMA), root / "trials.parquet")
    result = build_report(root, n_resamples=0)
    section = _section(result.markdown_path.read_text())
    assert "| cat | 75.0 | 37.5 | +25.0 |" in section  # only seed 1000 is left for checkpoint
    assert "checkpoint: 1 of 3 confirm run(s) have no per-class accuracy; left out" in section
    assert "checkpoint: 1 confirm run(s) record a number of classes other than 3; left out" in section
    assert "![confusion_checkpoint]" in section
