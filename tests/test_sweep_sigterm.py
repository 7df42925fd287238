"""SIGTERM to a running sweep's driver stops it as Ctrl-C does: exit 130, the "Resume with" line, nothing
half-done recorded (it used to die inside Ray's handlers with exit -6 and no resume line)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from sweep_fixtures import tiny_spec_dict

from tlsweep.engine.signals import SigtermAsSigint
from tlsweep.results.store import ResultsStore


def test_sigterm_is_delivered_as_sigint_inside_the_block_only() -> None:
    seen: list[int] = []
    before_int = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    before_term = signal.getsignal(signal.SIGTERM)
    try:
        with SigtermAsSigint():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert seen == [signal.SIGINT]
        assert signal.getsignal(signal.SIGTERM) == before_term
    finally:
        signal.signal(signal.SIGINT, before_int)


@pytest.mark.timeout(400)
def test_a_sigterm_d_driver_stops_cleanly_with_the_resume_line(tiny_assets, tmp_path) -> None:
    spec_dict = tiny_spec_dict(tiny_assets, tmp_path / "runs", name="termed")
    spec_dict["design"]["factors"]["epochs"] = [2]
    spec_dict["confirm"]["seeds"] = 4
    path = tmp_path / "termed.yaml"
    path.write_text(yaml.safe_dump(spec_dict))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "tlsweep", "run", str(path), "--num-cpus", "2", "--no-report"]
    results = tmp_path / "runs" / "termed"
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (results / "trials.parquet").exists() or (results / "parts").exists():
                if ResultsStore(results).read_trials().num_rows >= 2:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)  # the driver only, as a scheduler or `kill PID` would
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # this test's own process group
            proc.wait()
    assert proc.returncode == 130, output[-2000:]
    assert f"Resume with:\n  tlsweep run {path}" in output and "Traceback" not in output
    rows = ResultsStore(results).read_trials().to_pylist()
    assert rows and {r["status"] for r in rows} <= {"ok", "diverged", "pruned"}
