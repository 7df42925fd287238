"""SIGTERM to a running sweep's driver stops it as Ctrl-C does, and two Ctrl-C 0.5 s apart too: exit 130, the "Resume
with" line, no traceback, nothing half-done recorded (SIGTERM used to end it inside Ray's handlers with exit -6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _stopped(
    command: list[str], env: dict[str, str], results: Path, rows: int, *signals: signal.Signals
) -> tuple[int, str]:
    """Start the sweep, wait for ``rows`` recorded trials, send ``signals`` 0.5 s apart; its exit code and output."""
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if ((results / "trials.parquet").exists() or (results / "parts").exists()) and ResultsStore(
                results
            ).read_trials().num_rows >= rows:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep finished before it could be stopped"
        for index, signum in enumerate(signals):
            if index:
                time.sleep(0.5)
            proc.send_signal(signum)  # the driver only, as a scheduler, `kill PID` or Ctrl-C would
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # this test's own process group
            proc.wait()
    return proc.returncode, output


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_sigterm_and_a_double_sigint_stop_the_driver_cleanly_with_the_resume_line(tiny_assets, tmp_path) -> None:
    spec_dict = tiny_spec_dict(tiny_assets, tmp_path / "runs", name="termed")
    spec_dict["design"]["factors"]["epochs"] = [2]
    spec_dict["confirm"]["seeds"] = 4
    path = tmp_path / "termed.yaml"
    path.write_text(yaml.safe_dump(spec_dict))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "tlsweep", "run", str(path), "--num-cpus", "2", "--no-report"]
    results = tmp_path / "runs" / "termed"
    recorded = 0
    for signals in ((signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)):
        code, output = _stopped(command, env, results, recorded + 2, *signals)
        assert code == 130, output[-2000:]
        assert f"Resume with:\n  tlsweep run {path}" in output and "Traceback" not in output, output[-2000:]
        rows = ResultsStore(results).read_trials().to_pylist()
        assert len(rows) > recorded and {r["status"] for r in rows} <= {"ok", "diverged", "pruned"}
        recorded = len(rows)
