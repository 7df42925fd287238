"""After the fact: a sweep's offline W&B runs uploaded and made the runs of its W&B Sweep (``tlsweep wandb sync``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tlsweep.errors import TlsweepError
from tlsweep.results.store import ResultsStore
from tlsweep.tracking import server_check, wandb_settings, wandb_sweep
from tlsweep.tracking.summary import report_run_id
from tlsweep.tracking.wandb_sweep import SweepRecord, read_sweep_record, sweep_config, write_sweep_record


class WandbSyncError(TlsweepError):
    """Offline runs cannot be uploaded into a W&B Sweep here (no runs, no key, server unreachable, upload failed)."""


def offline_run_dirs(results_dir: Path) -> list[Path]:
    """The offline run directories the tracker wrote (``<results>/wandb/offline-run-<time>-<run id>``)."""
    return sorted((Path(results_dir) / "wandb").glob("offline-run-*"))


def run_id_of(run_dir: Path) -> str:
    return run_dir.name.split("-", 3)[3]


def upload_offline_runs(run_dirs: list[Path], timeout_s: float) -> None:
    """``wandb sync`` of these run directories (W&B's own uploader, in a child process).

    Raises:
        WandbSyncError: the upload failed; the message carries the last line of wandb's output (keys masked).
    """
    command = [sys.executable, "-m", "wandb", "sync", *map(str, run_dirs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WandbSyncError(
            f"`wandb sync` did not finish within {timeout_s:g} s; rerun with a larger --timeout"
        ) from exc
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        last = server_check.redact(lines[-1])[:300] if lines else "no output"
        raise WandbSyncError(f"`wandb sync` failed (exit {done.returncode}: {last}); {server_check.WHAT_TO_CHECK}")


def sync_to_sweep(results_dir: Path, *, timeout_s: float = 600.0, finish: bool = True) -> SweepRecord:
    """Upload the offline runs under ``results_dir`` and make them the W&B Sweep's runs.

    The recorded sweep (``wandb.json``) is reused when the server still has it; otherwise one is created and
    recorded. Runs written before the sweep id was known join through W&B's prior-runs filter (after the upload,
    so the server has them). ``finish`` marks the sweep finished (run it after the sweep ended).

    Raises:
        StoreError: ``results_dir`` holds no sweep (no ``spec.resolved.yaml``) or an unreadable ``wandb.json``.
        WandbSyncError: no offline runs, no API key, an unreachable server or a failed upload.
    """
    results_dir = Path(results_dir)
    store = ResultsStore(results_dir)
    spec = store.read_spec()
    record = read_sweep_record(store)
    run_dirs = offline_run_dirs(results_dir)
    if not run_dirs:
        raise WandbSyncError(
            f"{results_dir / 'wandb'}: no offline W&B runs to upload (a sweep run with --wandb offline, or one "
            "whose W&B server was unreachable, writes them there)"
        )
    if not wandb_settings.api_key_configured():
        raise WandbSyncError("no W&B API key is configured; run `wandb login` or set WANDB_API_KEY, then rerun")
    base_url = server_check.check_server(WandbSyncError, min(timeout_s, 30.0))
    wandb_block = spec.tracking.wandb
    try:
        api = wandb_sweep.public_api(
            entity=record.entity if record else wandb_block.entity,
            project=record.project if record else wandb_block.project,
            timeout_s=min(timeout_s, 60.0),
        )
        upload_offline_runs(run_dirs, timeout_s)
        report_run = report_run_id(spec.name)
        runs = sorted({run_id_of(d) for d in run_dirs} - {report_run})
        config = sweep_config(spec)
        found = wandb_sweep.find_sweep(api, record) if record is not None else None
        if record is not None and found is not None:
            wandb_sweep.add_runs(api, config, found, record, runs)
        else:
            record = wandb_sweep.create_sweep(
                api, config, entity=wandb_block.entity, project=wandb_block.project, prior_runs=runs
            )
            write_sweep_record(store, record)
        if finish:
            wandb_sweep.set_sweep_state(api, record, "FINISHED")
    except TlsweepError:
        raise
    except Exception as exc:  # noqa: BLE001 - wandb's errors, whatever their class, become one line
        raise server_check.server_error(WandbSyncError, base_url, exc, "syncing the sweep") from None
    return record
