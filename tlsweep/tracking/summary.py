"""The report's summary run: its tables, figures and verdict, logged as one W&B run of the sweep's group."""

from __future__ import annotations

import hashlib
import html
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsweep.tracking.tracker import ModeState, _WarnOnce, init_run
from tlsweep.tracking.wandb_settings import WandbSettings, resolve_mode

if TYPE_CHECKING:
    import pandas

_log = logging.getLogger("tlsweep.tracking")


def report_run_id(sweep_name: str) -> str:
    """A stable run id per sweep, so re-rendering the report updates one summary run instead of adding more."""
    return "report-" + hashlib.sha1(sweep_name.encode()).hexdigest()[:12]


def dataframe_to_table(frame: pandas.DataFrame) -> Any:
    """A ``wandb.Table`` of the frame; a meaningful index becomes leading columns, missing values become None."""
    import pandas as pd
    import wandb

    if not isinstance(frame.index, pd.RangeIndex) or any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    columns = [str(column) for column in frame.columns]
    rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    return wandb.Table(columns=columns, data=[[_plain(value) for value in row] for row in rows])


def _plain(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return str(value)


def log_report_summary(
    settings: WandbSettings,
    *,
    sweep_name: str,
    results_dir: Path,
    tables: dict[str, pandas.DataFrame],
    figures: list[Path],
    verdict: str,
    mode_override: str | None = None,
) -> str | None:
    """Log the report as a W&B run (``job_type="report"``, group = sweep name): one ``wandb.Table`` per table under
    ``table/<name>``, one ``wandb.Image`` per figure under ``figure/<stem>``, the verdict in the summary and as text.

    Runs offline into ``results_dir/wandb`` when so configured (or when the server cannot be reached within
    ``init_timeout_s``). Waits at most ``init_timeout_s + finish_timeout_s`` and never raises.

    Returns:
        The run's URL (online) or its local directory (offline); None when disabled or when logging failed.
    """
    warn = _WarnOnce(_log)
    try:
        mode = resolve_mode(settings, mode_override)
    except Exception as exc:  # noqa: BLE001 - the report must never fail because of W&B
        warn("mode", "W&B report summary skipped: %s", exc)
        return None
    if mode == "disabled":
        return None
    outcome: list[str | None] = []

    def work() -> None:
        try:
            outcome.append(
                _log_summary(
                    settings,
                    mode=mode,
                    sweep_name=sweep_name,
                    results_dir=Path(results_dir),
                    tables=tables,
                    figures=figures,
                    verdict=verdict,
                    warn=warn,
                )
            )
        except Exception as exc:  # noqa: BLE001
            warn(
                "summary", "W&B report summary failed (%s: %s); the report itself is complete", type(exc).__name__, exc
            )

    worker = threading.Thread(target=work, name="tlsweep-wandb-report", daemon=True)
    worker.start()
    bound = settings.init_timeout_s * 3 + settings.finish_timeout_s
    worker.join(bound)
    if worker.is_alive():
        warn("summary-timeout", "W&B report summary still busy after %.0f s; leaving it behind", bound)
        return None
    return outcome[0] if outcome else None


def _log_summary(
    settings: WandbSettings,
    *,
    mode: str,
    sweep_name: str,
    results_dir: Path,
    tables: dict[str, pandas.DataFrame],
    figures: list[Path],
    verdict: str,
    warn: _WarnOnce,
) -> str | None:
    import wandb

    results_dir.mkdir(parents=True, exist_ok=True)
    state = ModeState(mode)
    run = init_run(
        settings,
        state=state,
        results_dir=results_dir,
        warn=warn,
        id=report_run_id(sweep_name),
        name=f"{sweep_name} report",
        group=sweep_name,
        job_type="report",
        tags=list(settings.tags),
    )
    try:
        payload: dict[str, Any] = {}
        for name, frame in tables.items():
            try:
                payload[f"table/{name}"] = dataframe_to_table(frame)
            except Exception as exc:  # noqa: BLE001 - one bad table does not lose the others
                warn(f"table:{name}", "W&B report summary: table %r skipped (%s)", name, exc)
        for figure in figures:
            try:
                payload[f"figure/{Path(figure).stem}"] = wandb.Image(str(figure))
            except Exception as exc:  # noqa: BLE001
                warn(f"figure:{figure}", "W&B report summary: figure %s skipped (%s)", figure, exc)
        payload["verdict"] = wandb.Html(f"<pre>{html.escape(verdict)}</pre>")
        run.log(payload)
        run.summary["verdict_text"] = verdict
        location = run.url if state.mode == "online" else run.settings.sync_dir
    finally:
        run.finish()
    return location
