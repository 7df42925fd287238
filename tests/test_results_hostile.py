"""Results directories damaged or edited after a sweep wrote them: ``tlsweep report`` and ``tlsweep status`` exit 2
with a message naming the file and what is wrong — never a traceback, never a report built on them.

Each corpus entry starts from simulated results (``tests.report_fixtures``, no Ray, no training) and breaks one thing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_exit import run_tlsweep
from report_fixtures import simulate_results

from tlsweep.errors import StoreError
from tlsweep.report.load import load_results
from tlsweep.results.integrity import check_epochs, check_trials
from tlsweep.results.schema import EPOCHS_SCHEMA, TRIALS_SCHEMA
from tlsweep.results.store import PROVENANCE_FILE, SPEC_FILE, TRIALS_FILE, ResultsStore


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_results(
        tmp_path_factory.mktemp("pristine") / "demo", seeds=3, trials_per_cell=2, train_fractions=(0.5,), epochs=(2,)
    )


def _copy(pristine: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "demo"
    shutil.copytree(pristine, root)
    return root


def _edit_trials(root: Path, change: Callable[[list[dict]], list[dict]], **metadata: str) -> None:
    rows = change(pq.read_table(root / TRIALS_FILE).to_pylist())
    table = pa.Table.from_pylist(rows, schema=TRIALS_SCHEMA)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, root / TRIALS_FILE)


def _set(rows: list[dict], index: int, **values: object) -> list[dict]:
    rows[index] = {**rows[index], **values}
    return rows


def _first_confirm(rows: list[dict]) -> int:
    return next(i for i, r in enumerate(rows) if r["phase"] == "confirm" and r["status"] == "ok")


def _edit_spec(root: Path, change: Callable[[dict], None]) -> None:
    import yaml

    data = yaml.safe_load((root / SPEC_FILE).read_text())
    change(data)
    (root / SPEC_FILE).write_text(yaml.safe_dump(data, sort_keys=False))


# name -> (how to break the directory, what the message must say: a format string over {root})
CORPUS: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty spec": (
        lambda r: (r / SPEC_FILE).write_text(""),
        "{root}/spec.resolved.yaml: a sweep spec must be a YAML mapping at the top level, got NoneType",
    ),
    "list spec": (
        lambda r: (r / SPEC_FILE).write_text("- 1\n- 2\n"),
        "{root}/spec.resolved.yaml: a sweep spec must be a YAML mapping at the top level, got list",
    ),
    "binary spec": (
        lambda r: (r / SPEC_FILE).write_bytes(b"name: \xff\xfe\n"),
        "{root}/spec.resolved.yaml is not UTF-8 text",
    ),
    "truncated parquet": (
        lambda r: (r / TRIALS_FILE).write_bytes((r / TRIALS_FILE).read_bytes()[:300]),
        "{root}/trials.parquet is not a readable Parquet file",
    ),
    "parquet of another schema": (
        lambda r: pq.write_table(pa.table({"x": [1]}), r / TRIALS_FILE),
        "{root}/trials.parquet does not match the tlsweep results schema: missing column(s) sweep, trial_id",
    ),
    "duplicated trial id": (
        lambda r: _edit_trials(r, lambda rows: [*rows, rows[3]]),
        "{root}/trials.parquet: duplicated trial_id: ",
    ),
    "accuracy above 1": (
        lambda r: _edit_trials(r, lambda rows: _set(rows, _first_confirm(rows), test_acc=20.51)),
        "{root}/trials.parquet: 1 value(s) of 'test_acc' outside [0.0, 1.0] (20.51)",
    ),
    "negative count": (
        lambda r: _edit_trials(r, lambda rows: _set(rows, 0, n_train=-5)),
        "1 value(s) of 'n_train' outside >= 0 (-5)",
    ),
    "unknown status": (
        lambda r: _edit_trials(r, lambda rows: _set(rows, 0, status="finished")),
        "{root}/trials.parquet: 1 row(s) have an unknown status ('finished'; known: ok, diverged, pruned, failed)",
    ),
    "unknown phase": (
        lambda r: _edit_trials(r, lambda rows: _set(rows, 1, phase="warmup")),
        "1 row(s) have an unknown phase ('warmup'; known: tune, confirm)",
    ),
    "missing trial id": (
        lambda r: _edit_trials(r, lambda rows: _set(rows, 2, trial_id=None)),
        "1 row(s) have no 'trial_id'",
    ),
    "alpha edited": (
        lambda r: _edit_spec(r, lambda d: d["hypothesis"].update(alpha=0.2)),
        "{root}/spec.resolved.yaml: the hypothesis was edited after the sweep ran (hypothesis.alpha: 0.05 → 0.2",
    ),
    "result field edited": (
        lambda r: _edit_spec(r, lambda d: d["confirm"].update(seeds=30)),
        "{root}/spec.resolved.yaml does not match {root}/provenance.json: result hash",
    ),
    "spec hash in parquet differs": (
        lambda r: _edit_trials(r, lambda rows: rows, spec_hash="0123456789abcdef"),
        "{root}/spec.resolved.yaml does not match the spec the trials were recorded with: its result hash is",
    ),
    "garbled provenance": (
        lambda r: (r / PROVENANCE_FILE).write_text("{not json"),
        "{root}/provenance.json: not valid JSON",
    ),
    "provenance counts not numbers": (
        lambda r: (r / PROVENANCE_FILE).write_text(json.dumps({"spec_hash": "x", "trial_counts": {"tune": "many"}})),
        "{root}/provenance.json: `trial_counts` must map phases to whole numbers",
    ),
}


@pytest.mark.parametrize("command", ["report", "status"])
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_broken_results_exit_2_naming_the_file(
    pristine: Path,
    tmp_path: Path,
    case: str,
    command: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _copy(pristine, tmp_path)
    breaker, expected = CORPUS[case]
    breaker(root)
    code, out, err = run_tlsweep([command, root], capsys, monkeypatch)
    assert code == 2, out + err
    assert expected.format(root=root) in err, err
    assert not (root / "report" / "report.md").exists(), "no report is built on broken results"


def test_the_pristine_corpus_base_reports_and_shows_status(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(pristine, tmp_path)
    assert run_tlsweep(["report", root, "--format", "md"], capsys, monkeypatch)[0] == 0
    code, out, _ = run_tlsweep(["status", root], capsys, monkeypatch)
    assert code == 0 and "confirm" in out


def test_report_dir_being_a_file_is_an_error_before_any_work(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(pristine, tmp_path)
    (root / "report").write_text("in the way")
    code, _, err = run_tlsweep(["report", root], capsys, monkeypatch)
    assert code == 2 and f"{root / 'report'} is a file, not a directory" in err and "--out" in err
    code, _, err = run_tlsweep(["report", root, "--out", root / "report" / "sub"], capsys, monkeypatch)
    assert code == 2 and "cannot create the report directory" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{garbled", "status.json: not valid JSON"),
        ("[1, 2]", "status.json: expected a JSON object, got list"),
        ('{"updated_at": "yesterday"}', "`updated_at` must be a number"),
        ('{"updated_at": 1, "running": [{"phase": "tune"}]}', "`running` must be a list of objects with phase, study"),
    ],
)
def test_garbled_status_json_is_named(
    pristine: Path,
    tmp_path: Path,
    text: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _copy(pristine, tmp_path)
    (root / "status.json").write_text(text)
    code, _, err = run_tlsweep(["status", root], capsys, monkeypatch)
    assert code == 2 and f"{root / 'status.json'}" in err and expected in err, err


def test_paired_subset_mismatch_is_flagged_in_the_report_and_status(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(pristine, tmp_path)
    rows = pq.read_table(root / TRIALS_FILE).to_pylist()
    assert all(r["subset_hash"] for r in rows if r["phase"] == "confirm"), "the simulation records subset hashes"
    index = _first_confirm(rows)
    _edit_trials(root, lambda rs: _set(rs, index, subset_hash="someotherhash"))
    message = (
        f"1 paired confirm seed(s) trained the arms on different training subsets (subset_hash differs: "
        f"{rows[index]['cell_id']} seed {rows[index]['seed']})"
    )
    assert any(message in note for note in load_results(root).notes)
    code, _, err = run_tlsweep(["status", root], capsys, monkeypatch)
    assert code == 0 and message in err
    assert run_tlsweep(["report", root, "--format", "md"], capsys, monkeypatch)[0] == 0
    assert "different training subsets" in (root / "report" / "report.md").read_text()


def test_a_rerun_with_a_changed_hypothesis_records_it(pristine: Path, tmp_path: Path) -> None:
    """Changing the hypothesis through the sweep (write_spec, as `tlsweep run` does) is not an edit."""
    from tlsweep.spec_load import parse_spec

    root = _copy(pristine, tmp_path)
    store = ResultsStore(root)
    data = store.read_spec().resolved()
    data["hypothesis"]["alpha"] = 0.1
    provenance = store.read_provenance()
    assert provenance is not None and provenance.hypothesis is not None
    store.write_spec(parse_spec(data), __import__("dataclasses").replace(provenance, hypothesis=None))
    assert load_results(root).hypothesis.alpha == 0.1


def test_old_provenance_without_a_hypothesis_is_still_read(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    provenance = json.loads((root / PROVENANCE_FILE).read_text())
    del provenance["hypothesis"]
    (root / PROVENANCE_FILE).write_text(json.dumps(provenance))
    _edit_spec(root, lambda d: d["hypothesis"].update(alpha=0.2))
    assert load_results(root).hypothesis.alpha == 0.2  # nothing recorded to compare with (results of tlsweep 0.1)


def test_value_checks_accept_what_a_sweep_writes_and_name_the_rest() -> None:
    ok = pa.Table.from_pylist(
        [
            {
                "trial_id": "a",
                "phase": "tune",
                "cell_id": "c",
                "arm": "scratch",
                "status": "diverged",
                "best_val_acc": float("nan"),
                "best_val_loss": float("inf"),
                "chance": 0.125,
                "num_classes": 8,
            },
            {"trial_id": "b", "phase": "confirm", "cell_id": "c", "arm": "scratch", "status": "ok", "test_acc": 1.0},
        ],
        schema=TRIALS_SCHEMA,
    )
    assert check_trials(ok, source="t") == []
    bad = pa.Table.from_pylist(
        [
            {
                "trial_id": "a",
                "phase": "tune",
                "cell_id": "c",
                "arm": "x",
                "status": "ok",
                "best_val_acc": float("inf"),
                "num_classes": 1,
            }
        ],
        schema=TRIALS_SCHEMA,
    )
    with pytest.raises(StoreError, match=r"'best_val_acc' outside \[0.0, 1.0\] \(inf\).*'num_classes' outside >= 2"):
        check_trials(bad, source="t")
    epochs = pa.Table.from_pylist(
        [{"trial_id": "a", "epoch": 1, "val_acc": 0.5}, {"trial_id": "a", "epoch": 1, "val_acc": 0.6}],
        schema=EPOCHS_SCHEMA,
    )
    with pytest.raises(StoreError, match=r"duplicated trial_id \+ epoch: a/1 \(2×\)"):
        check_epochs(epochs, source="e")
