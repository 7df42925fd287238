"""``tlsweep dashboard DIR``: the real optuna-dashboard server on a free loopback port, read over its JSON API;
the cross-arm studies it adds to the journal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import wsgiref.simple_server
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pyarrow.parquet as pq
import pytest
from cli_exit import run_tlsweep
from report_fixtures import simulate_results

from tlsweep.results.store import ResultsStore
from tlsweep.tracking.arm_views import view_name
from tlsweep.tracking.optuna_mirror import JOURNAL_FILE, open_study_mirror, study_name
from tlsweep.tracking.study_dashboard import (
    StudyDashboardError,
    _storage,
    add_arm_views,
    keep_views_current,
    prepare_journal,
)

REPO = Path(__file__).resolve().parents[1]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback traffic only


def _get(url: str) -> Any:
    with _NO_PROXY.open(url, timeout=30) as response:
        return json.loads(response.read())


def _start(*args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """``tlsweep dashboard ARGS`` in a subprocess; returns it, the URL it printed and the lines before it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlsweep", "dashboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
    )
    lines = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("optuna-dashboard: "):
            return proc, line.split()[1], lines
    proc.kill()
    proc.wait(timeout=30)
    raise AssertionError("tlsweep dashboard printed no URL:\n" + "".join(lines))


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()  # the process this test started, by its id
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def test_the_dashboard_lists_every_study_with_the_trials_of_the_parquet(tmp_path: Path) -> None:
    root = simulate_results(
        tmp_path / "r",
        seeds=2,
        trials_per_cell=3,
        status_of=lambda phase, cell, arm, seed, index: "failed" if index == 1 else "ok",
    )
    proc, url, printed = _start(str(root))
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard")
        base = url.removesuffix("/dashboard")
        summaries = _get(f"{base}/api/studies")["study_summaries"]
        rows = pq.read_table(root / "trials.parquet").to_pylist()
        expected = Counter(study_name(r["phase"], r["cell_id"], r["arm"]) for r in rows)
        views = {view_name(r["phase"], r["cell_id"]) for r in rows}
        arm_studies = [s for s in summaries if s["study_name"] not in views]
        assert sorted(s["study_name"] for s in arm_studies) == sorted(expected)
        seen: Counter[str] = Counter()
        values: dict[str, tuple[str, Any]] = {}  # trial id -> arm, value in its arm study
        for summary in arm_studies:
            detail = _get(f"{base}/api/studies/{summary['study_id']}")
            seen[summary["study_name"]] = len(detail["trials"])
            ids = {attr["key"]: attr["value"] for attr in detail["trials"][0]["user_attrs"]}
            assert {"trial_id", "seed", "cell_id", "arm"} <= set(ids)
            for trial in detail["trials"]:
                attrs = {attr["key"]: attr["value"] for attr in trial["user_attrs"]}
                values[attrs["trial_id"]] = (attrs["arm"], trial.get("values"))
        assert seen == expected

        # per phase × cell one study with every arm's trials, arm a categorical parameter
        by_name = {s["study_name"]: s["study_id"] for s in summaries}
        objective = {r["trial_id"]: r for r in rows}
        assert views <= set(by_name) and len(summaries) == len(expected) + len(views) == 24
        for name in views:
            detail = _get(f"{base}/api/studies/{by_name[name]}")
            arm_studies_of = [name.removesuffix("|all arms") + f"|arm={arm}" for arm in ("checkpoint", "scratch")]
            assert len(detail["trials"]) == sum(expected[arm_study] for arm_study in arm_studies_of)
            for trial in detail["trials"]:
                attrs = {attr["key"]: attr["value"] for attr in trial["user_attrs"]}
                params = {p["name"]: p["param_external_value"] for p in trial["params"]}
                assert (params["arm"], trial.get("values")) == values[attrs["trial_id"]]
                assert params["arm"] == attrs["arm"] and attrs["cell_id"] in name
                row = objective[attrs["trial_id"]]
                assert trial.get("values") == (None if row["status"] == "failed" else [pytest.approx(row["objective"])])
            arm_dist = {p["name"]: p["distribution"] for p in detail["union_search_space"]}["arm"]
            assert arm_dist["type"] == "CategoricalDistribution"
            (importances,) = _get(f"{base}/api/studies/{by_name[name]}/param_importances")["param_importances"]
            assert "arm" in {importance["name"] for importance in importances}
            compare = f"{url}/compare-studies?ids={','.join(str(by_name[a]) for a in arm_studies_of)}"
            assert any(
                name in line and f"{url}/studies/{by_name[name]}" in line and compare in line for line in printed
            )
        with _NO_PROXY.open(url, timeout=30) as page:  # the dashboard's own page is served too
            assert page.status == 200
    finally:
        _stop(proc)
    assert proc.returncode is not None
    assert (root / JOURNAL_FILE).is_file()  # built from trials.parquet, kept for the next start


def test_a_directory_without_results_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tlsweep", "dashboard", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "spec.resolved.yaml: not found" in proc.stderr and "tlsweep run" in proc.stderr


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=2)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "tlsweep", "dashboard", str(root), "--port", str(port)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            timeout=120,
        )
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def _view_trials(journal: Path) -> dict[str, list[str]]:
    """Cross-arm study name -> the trial ids it holds, read by Optuna itself."""
    storage = _storage(journal)
    return {
        summary.study_name: [t.user_attrs["trial_id"] for t in storage.get_all_trials(summary._study_id)]
        for summary in storage.get_all_studies()
        if summary.study_name.endswith("|all arms")
    }


def test_the_cross_arm_studies_are_kept_once_and_the_journal_check_still_refuses_damage(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=2)
    store = ResultsStore(root)
    trials = store.read_trials()
    built = prepare_journal(root)
    first = add_arm_views(built)
    journal = root / JOURNAL_FILE
    views = _view_trials(journal)
    assert len(first) == len(views) == 8 and built.studies == 16
    by_cell = Counter(view_name(r["phase"], r["cell_id"]) for r in trials.to_pylist())
    assert Counter({name: len(ids) for name, ids in views.items()}) == by_cell
    assert sorted(i for ids in views.values() for i in ids) == sorted(trials.column("trial_id").to_pylist())

    again = prepare_journal(root)  # a second start adds nothing, and the check reads the views as no trials
    assert (again.studies, again.trials, again.lacks) == (built.studies, built.trials, None)
    assert add_arm_views(again) == first
    assert _view_trials(journal) == views

    # the driver resuming the sweep reads the views as no trials of its own: nothing set aside, nothing added
    mirror = open_study_mirror(store.read_spec(), store)
    assert mirror.enabled and mirror.sync(trials, store.read_epochs()) == 0
    assert not list(root.glob(f"{JOURNAL_FILE}.mismatched-*"))

    # a view holding a trial twice is built again, whole
    name = first[0].name
    study = optuna.load_study(study_name=name, storage=_storage(journal))
    study.add_trial(study.trials[0])
    assert len(_view_trials(journal)[name]) == len(views[name]) + 1
    assert add_arm_views(prepare_journal(root))[0].trials == len(views[name]) and _view_trials(journal) == views

    # the journal-vs-Parquet check still refuses a damaged journal (every line twice)
    journal.write_bytes(b"".join(line + line for line in journal.read_bytes().splitlines(keepends=True)))
    with pytest.raises(StudyDashboardError, match=r"trials recorded more than once.*--rebuild"):
        prepare_journal(root)
    rebuilt = prepare_journal(root, rebuild=True)
    assert rebuilt.built and rebuilt.studies == 16 and not _view_trials(journal)
    add_arm_views(rebuilt)
    assert _view_trials(journal) == views


def test_the_cross_arm_studies_follow_a_running_sweep(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=2)
    store = ResultsStore(root)
    trials, epochs = store.read_trials(), store.read_epochs()
    mirror = open_study_mirror(store.read_spec(), store)  # the driver, part way through
    mirror.sync(trials.slice(0, 10), epochs)
    journal = prepare_journal(root)
    assert journal.lacks is not None and sum(view.trials for view in add_arm_views(journal)) == 10
    stop = keep_views_current(journal.path, journal.arms, every_s=0.05)
    try:
        mirror.sync(trials, epochs)  # the rest of the sweep
        deadline = time.monotonic() + 30
        while sum(map(len, _view_trials(journal.path).values())) < trials.num_rows and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
    views = _view_trials(journal.path)
    assert sorted(i for ids in views.values() for i in ids) == sorted(trials.column("trial_id").to_pylist())


def test_a_journal_the_dashboard_cannot_add_to_is_served_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=2)
    prepare_journal(root)
    from tlsweep.tracking import study_dashboard

    def read_only(journal: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(journal.path))

    def interrupted(self: Any, *args: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C as soon as it serves

    monkeypatch.setattr(study_dashboard, "add_arm_views", read_only)
    monkeypatch.setattr(wsgiref.simple_server.WSGIServer, "serve_forever", interrupted)
    code, out, err = run_tlsweep(["dashboard", root], capsys, monkeypatch)
    assert code == 0 and err == "" and not _view_trials(root / JOURNAL_FILE)
    assert "Note: no cross-arm studies (PermissionError: [Errno 13] Permission denied" in out
    assert "optuna-dashboard: http://127.0.0.1:" in out
