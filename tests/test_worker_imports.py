"""Trials import the installed tlsweep whatever folder the sweep starts from (issue 24, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from sweep_fixtures import smallest_spec_dict

pytestmark = pytest.mark.ray


def test_a_sweep_started_beside_a_tlsweep_folder_and_a_data_folder_runs_every_trial(tiny_assets, tmp_path) -> None:
    # Ray puts the driver's folder first on every worker's sys.path: without the worker setup hook each trial
    # would import this package instead of the installed one, and die
    here = tmp_path / "home"
    (here / "tlsweep" / "data").mkdir(parents=True)
    (here / "tlsweep" / "__init__.py").write_text('raise ImportError("the tlsweep folder of the current folder")\n')
    (here / "data").mkdir()
    spec = smallest_spec_dict(tiny_assets, tmp_path / "runs", name="shadowed")
    path = tmp_path / "shadowed.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    # -P: the driver itself does not put the current folder on its path, as the `tlsweep` console script does not
    command = [sys.executable, "-P", "-m", "tlsweep", "run", str(path), "--num-cpus", "2", "--no-report"]
    done = subprocess.run(command, cwd=here, env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pq.read_table(tmp_path / "runs" / "shadowed" / "trials.parquet").to_pylist()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
