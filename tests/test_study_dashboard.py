"""``tlsweep dashboard DIR``: the real optuna-dashboard server on a free loopback port, read over its JSON API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from report_fixtures import simulate_results

from tlsweep.tracking.optuna_mirror import JOURNAL_FILE, study_name

REPO = Path(__file__).resolve().parents[1]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback traffic only


def _get(url: str) -> Any:
    with _NO_PROXY.open(url, timeout=30) as response:
        return json.loads(response.read())


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``tlsweep dashboard ARGS`` in a subprocess; returns it and the URL it printed."""
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
            return proc, line.split()[1]
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
    proc, url = _start(str(root))
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard")
        base = url.removesuffix("/dashboard")
        summaries = _get(f"{base}/api/studies")["study_summaries"]
        rows = pq.read_table(root / "trials.parquet").to_pylist()
        expected = Counter(study_name(r["phase"], r["cell_id"], r["arm"]) for r in rows)
        assert sorted(s["study_name"] for s in summaries) == sorted(expected)
        seen: Counter[str] = Counter()
        for summary in summaries:
            detail = _get(f"{base}/api/studies/{summary['study_id']}")
            seen[summary["study_name"]] = len(detail["trials"])
            ids = {attr["key"]: attr["value"] for attr in detail["trials"][0]["user_attrs"]}
            assert {"trial_id", "seed", "cell_id", "arm"} <= set(ids)
        assert seen == expected
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
