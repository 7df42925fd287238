"""One spec from load to report: the saved spec is a valid spec, and the report tests what `tlsweep validate` prints.

Also the results of tlsweep 0.1.0 (provenance in a `tlsweep:` block of spec.resolved.yaml) still report and resume.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from report_fixtures import simulate_results
from shipped_specs import shipped_params

from tlsweep.cli import cli
from tlsweep.design import trial_counts
from tlsweep.engine.run import check_resume, sweep_provenance
from tlsweep.errors import StoreError
from tlsweep.report import build_report
from tlsweep.report.load import load_results
from tlsweep.results.store import PROVENANCE_FILE, SPEC_FILE, SWEEP_ENTRIES, ResultsStore
from tlsweep.spec import SweepSpec
from tlsweep.spec_load import load_spec, parse_spec

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))

# Two pretrained arms and no hypothesis.compare: the default comparison (first pretrained level vs scratch, else
# the last level) makes imagenet the treated arm. The report once re-derived it and tested checkpoint > imagenet.
PRETRAINED_PAIR = """\
name: pretrained_pair
dataset: {format: synthetic, root: data/age}
model: {backbone: resnet18, pretrained: {checkpoint: backbone.pt}}  # an architecture with ImageNet weights
design:
  factors: {init: [imagenet, checkpoint], train_fraction: [0.1, 1.0], epochs: [2]}
  tune: {lr: {type: float, low: 1.0e-4, high: 1.0, log: true}}
  recipe: {lr: 0.01}
  budget: {trials_per_cell: 2}
confirm: {seeds: 8, configs: [best]}
"""


def _validate_output(path: Path) -> str:
    # the shipped specs' datasets are not on this machine: check the spec, not the data
    result = CliRunner().invoke(cli, ["validate", str(path), "--no-data-check"])
    assert result.exit_code == 0, result.output
    return result.output


def _claim(spec: SweepSpec) -> str:
    """The comparison as `tlsweep validate` words it."""
    treated, baseline = spec.compared_arms[0].pair
    return f"{spec.hypothesis.metric} {treated} {spec.hypothesis.direction} than {baseline}"


def _to_old_layout(root: Path) -> None:
    """Rewrite a results directory the way tlsweep 0.1.0 wrote it: provenance in the spec's `tlsweep:` block."""
    provenance = json.loads((root / PROVENANCE_FILE).read_text())
    (root / PROVENANCE_FILE).unlink()
    document = yaml.safe_load((root / SPEC_FILE).read_text())
    document["tlsweep"] = {
        key: provenance[key] for key in ("spec_hash", "source", "versions", "trial_counts", "compared_arms")
    }
    (root / SPEC_FILE).write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.mark.parametrize("source", shipped_params(["pretrained_pair"]))
def test_the_report_tests_the_comparison_validate_prints(tmp_path: Path, source: Path | str) -> None:
    if source == "pretrained_pair":
        source = tmp_path / "pretrained_pair.yaml"
        source.write_text(PRETRAINED_PAIR)
    spec = load_spec(source)
    root = simulate_results(tmp_path / spec.name, spec=spec)
    results = load_results(root)
    hypothesis = results.hypothesis
    assert (hypothesis.treated, hypothesis.baseline) == spec.compared_arms[0].pair
    assert (hypothesis.metric, hypothesis.direction, hypothesis.alpha, hypothesis.correction, hypothesis.margin) == (
        spec.hypothesis.metric,
        spec.hypothesis.direction,
        spec.hypothesis.alpha,
        spec.hypothesis.correction,
        spec.hypothesis.equivalence_margin,
    )
    assert results.spec == spec and results.cell_factors == spec.cell_factors()
    assert results.trials_per_cell == spec.design.budget.trials_per_cell
    # the same words from the spec file and from the copy saved with the results, itself a valid spec
    assert _claim(spec) in _validate_output(Path(source))
    assert _claim(spec) in _validate_output(root / SPEC_FILE)


def test_two_pretrained_arms_without_compare_test_the_first_against_the_second(tmp_path: Path) -> None:
    (tmp_path / "pair.yaml").write_text(PRETRAINED_PAIR)
    spec = load_spec(tmp_path / "pair.yaml")
    assert [c.pair for c in spec.compared_arms] == [("imagenet", "checkpoint")]
    assert "test_acc imagenet greater than checkpoint" in _validate_output(tmp_path / "pair.yaml")
    root = simulate_results(tmp_path / "r", spec=spec, noise_sd=0.005, seed_sd=0.01)
    result = build_report(root, n_resamples=200, formats=("md",))
    trials = pq.read_table(root / "trials.parquet").to_pandas()
    best = trials[(trials["phase"] == "confirm") & (trials["config_kind"] == "best")]
    means = best.groupby(["cell_id", "arm"])["test_acc"].mean()
    table = result.cell_table.set_index("cell_id")
    for cell, row in table.iterrows():
        assert row["mean_treated"] == pytest.approx(means[(cell, "imagenet")])
        assert row["mean_baseline"] == pytest.approx(means[(cell, "checkpoint")])
    assert table.loc["train_fraction=0.1|epochs=2", "verdict"] == "supported"  # the simulated advantage: imagenet
    markdown = result.markdown_path.read_text()
    assert "Claim: imagenet > checkpoint" in markdown
    assert "compared imagenet (treated) with checkpoint" in markdown


@pytest.mark.parametrize("path", shipped_params())
def test_the_saved_spec_is_a_valid_spec_and_the_provenance_lies_beside_it(tmp_path: Path, path: Path) -> None:
    spec = load_spec(path)
    store = ResultsStore(tmp_path / spec.name)
    store.write_spec(spec, sweep_provenance(spec, source=str(path)))  # what run_sweep writes
    saved = yaml.safe_load((tmp_path / spec.name / SPEC_FILE).read_text())
    assert "tlsweep" not in saved
    assert load_spec(tmp_path / spec.name / SPEC_FILE) == spec == store.read_spec()
    provenance = store.read_provenance()
    assert provenance is not None and provenance.spec_hash == spec.result_hash()
    assert provenance.source == str(path) and provenance.compared_arms == tuple(c.pair for c in spec.compared_arms)
    assert (
        provenance.trial_counts == trial_counts(spec) and provenance.versions["tlsweep"] == provenance.tlsweep_version
    )
    assert json.loads((tmp_path / spec.name / PROVENANCE_FILE).read_text())["spec_hash"] == spec.result_hash()


def test_old_layout_still_reports_resumes_and_shows_status(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "demo", seeds=8, trials_per_cell=2, train_fractions=(0.1,))
    store = ResultsStore(root)
    spec = store.read_spec()
    _to_old_layout(root)
    assert not (root / PROVENANCE_FILE).exists() and "tlsweep" in yaml.safe_load((root / SPEC_FILE).read_text())

    assert store.read_spec() == spec
    provenance = store.read_provenance()
    assert provenance is not None and provenance.spec_hash == spec.result_hash()
    assert (
        provenance.compared_arms == tuple(c.pair for c in spec.compared_arms) and provenance.tlsweep_version == "0.1.0"
    )
    result = build_report(root, n_resamples=200, formats=("md",))
    assert result.spec == spec and result.overall.label == "supported"
    status = CliRunner().invoke(cli, ["status", str(root)])
    assert status.exit_code == 0, status.output
    assert "not running" in status.output and "demo" in status.output

    check_resume(spec, store, new=False)  # the same spec resumes
    data = json.loads(json.dumps(spec.resolved()))
    data["confirm"]["seeds"] = 3
    with pytest.raises(StoreError, match=r"holds results of a different spec; changed:\n  confirm\.seeds: 8 → 3"):
        check_resume(parse_spec(data), store, new=False)


def test_resume_without_a_provenance_compares_the_saved_spec(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "demo", seeds=2, trials_per_cell=1)
    store = ResultsStore(root)
    spec = store.read_spec()
    (root / PROVENANCE_FILE).unlink()
    assert store.read_provenance() is None
    check_resume(spec, store, new=False)
    data = json.loads(json.dumps(spec.resolved()))
    data["design"]["budget"]["trials_per_cell"] = 5
    with pytest.raises(StoreError, match=r"design\.budget\.trials_per_cell: 1 → 5"):
        check_resume(parse_spec(data), store, new=False)


def test_a_recorded_hash_that_differs_refuses_even_an_equal_spec(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "demo", seeds=2, trials_per_cell=1)
    store = ResultsStore(root)
    spec = store.read_spec()
    provenance = json.loads((root / PROVENANCE_FILE).read_text())
    (root / PROVENANCE_FILE).write_text(json.dumps({**provenance, "spec_hash": "0" * 16}))
    with pytest.raises(StoreError, match=r"changed:\n  \(spec hash differs\)"):
        check_resume(spec, store, new=False)


def test_missing_or_unreadable_spec_and_provenance_name_the_file_and_the_fix(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    with pytest.raises(StoreError, match=rf"{re.escape(str(tmp_path / SPEC_FILE))}: not found; .*`tlsweep run SPEC`"):
        store.read_spec()
    assert store.read_provenance() is None
    status = CliRunner().invoke(cli, ["status", str(tmp_path)])
    assert status.exit_code != 0 and f"{tmp_path / SPEC_FILE}: not found" in status.output

    (tmp_path / SPEC_FILE).write_text("name: [unclosed\n")
    with pytest.raises(
        StoreError, match=rf"(?s){re.escape(str(tmp_path / SPEC_FILE))}:2: not valid YAML: .*rerun `tlsweep run SPEC`"
    ):
        store.read_spec()
    (tmp_path / SPEC_FILE).write_text("name: demo\ndesign: {factors: {init: [scratch]}}\n")
    with pytest.raises(StoreError, match=r"invalid sweep spec .*\n  dataset: required field is missing"):
        store.read_spec()
    with pytest.raises(StoreError, match=r"different spec; changed:\n  .*spec\.resolved\.yaml: invalid sweep spec"):
        check_resume(load_spec(SWEEPS[0]), store, new=False)

    (tmp_path / PROVENANCE_FILE).write_text("{not json")
    with pytest.raises(StoreError, match=rf"{re.escape(str(tmp_path / PROVENANCE_FILE))}: not valid JSON .*delete it"):
        store.read_provenance()
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps({"source": "x.yaml"}))
    with pytest.raises(StoreError, match=rf"{re.escape(str(tmp_path / PROVENANCE_FILE))}: no `spec_hash` string"):
        store.read_provenance()
    (tmp_path / PROVENANCE_FILE).unlink()
    (tmp_path / SPEC_FILE).write_text("name: demo\ntlsweep: {versions: {}}\n")
    with pytest.raises(StoreError, match=r"spec\.resolved\.yaml \(its `tlsweep:` block\): no `spec_hash`.*remove"):
        store.read_provenance()


def test_the_provenance_is_part_of_the_sweeps_own_state(tmp_path: Path) -> None:
    assert PROVENANCE_FILE in SWEEP_ENTRIES and SPEC_FILE in SWEEP_ENTRIES
    root = simulate_results(tmp_path / "demo", seeds=2, trials_per_cell=1)
    upload = tmp_path / "upload"
    upload.mkdir()
    with pytest.raises(StoreError, match="belongs to the sweep's own state"):
        ResultsStore(root).upload_dir(upload, PROVENANCE_FILE)
    copy = ResultsStore(root).download(tmp_path / "copy")
    assert (copy / PROVENANCE_FILE).read_text() == (root / PROVENANCE_FILE).read_text()
