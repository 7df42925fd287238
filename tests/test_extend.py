"""Extending a finished sweep reuses its recorded trials (issue 24, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import simulate_results

from tlsweep.engine.extend import extension_changes
from tlsweep.engine.run import check_resume
from tlsweep.errors import StoreError
from tlsweep.results.store import PROVENANCE_FILE, ResultsStore
from tlsweep.spec_load import parse_spec


def _changed(spec, **changes):
    data = json.loads(json.dumps(spec.resolved()))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return parse_spec(data)


def test_more_seeds_trials_or_levels_extend_a_sweep_and_anything_else_is_refused(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "demo", seeds=2, trials_per_cell=1)
    store = ResultsStore(root)
    spec = store.read_spec()
    fractions = spec.design.factors["train_fraction"]
    more = _changed(
        spec,
        confirm__seeds=4,
        design__budget__trials_per_cell=3,
        design__factors__train_fraction=[*fractions, 0.75],
    )
    assert extension_changes(spec, more) == [
        "confirm.seeds: 2 → 4",
        "design.budget.trials_per_cell: 1 → 3",
        "design.factors.train_fraction: + [0.75]",
    ]
    for refused in (
        _changed(spec, confirm__seeds=1),
        _changed(spec, design__factors__train_fraction=fractions[1:]),
        _changed(spec, confirm__seeds=4, design__recipe__lr=0.5),
        spec,
    ):
        assert extension_changes(spec, refused) is None
    old_hash = spec.result_hash()
    check_resume(more, store, new=False)  # accepted: recorded in the provenance
    check_resume(more, store, new=False)  # again, as after a driver that died before writing the new spec: once
    (extension,) = json.loads((root / PROVENANCE_FILE).read_text())["extensions"]
    assert extension["from"] == old_hash and extension["to"] == more.result_hash()
    assert extension["changes"][0] == "confirm.seeds: 2 → 4"
    with pytest.raises(StoreError, match=r"confirm\.seeds: 2 → 1"):
        check_resume(_changed(spec, confirm__seeds=1), store, new=False)


@pytest.mark.ray
@pytest.mark.slow
def test_adding_two_seeds_to_a_finished_sweep_runs_two_per_cell_and_arm(ray_local, tiny_assets, tmp_path: Path) -> None:
    from sweep_fixtures import smallest_spec_dict

    from tlsweep.design import studies
    from tlsweep.engine.run import run_sweep

    data = smallest_spec_dict(tiny_assets, tmp_path / "runs", name="extended")
    first = run_sweep(parse_spec(data), live=False, report=False)
    before = ResultsStore(tmp_path / "runs" / "extended").read_trials().to_pylist()
    assert first.trials_recorded == len(before) == 4
    data["confirm"]["seeds"] += 2
    extended = parse_spec(data)
    second = run_sweep(extended, live=False, report=False)
    after = ResultsStore(tmp_path / "runs" / "extended").read_trials().to_pylist()
    new = [r for r in after if r["trial_id"] not in {b["trial_id"] for b in before}]
    assert second.trials_recorded == len(new) == 2 * len(studies(extended)) == 4  # 2 seeds × 1 cell × 2 arms
    assert {r["phase"] for r in new} == {"confirm"} and {r["replicate"] for r in new} == {1, 2}
    provenance = ResultsStore(tmp_path / "runs" / "extended").read_provenance()
    assert provenance is not None and provenance.spec_hash == extended.result_hash()
    assert [e["changes"] for e in provenance.extensions] == [["confirm.seeds: 1 → 3"]]
