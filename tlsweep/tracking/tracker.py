"""Mirror trials to Weights & Biases from the sweep driver, on a background thread that can never hold a sweep up.

One W&B run per trial: ``id`` = trial id (``resume="allow"``, so a resumed trial continues its run), ``group`` =
sweep name, ``job_type`` = phase, a flat scalar config, per-epoch metrics with ``step`` = epoch and the final
numbers in the summary. The driver calls the ``Tracker`` methods; they only enqueue. A daemon thread owns every
wandb call, catches every exception (one warning per kind) and degrades an unreachable server to offline. It waits
for a quiet moment (no event for ``_SETTLE_S``, at most ``_SETTLE_MAX_S``) before each wandb call: the driver
enqueues while it hands a slot to the next trial, and ``wandb.init``/``finish`` there would slow that hand-over.
"""

from __future__ import annotations

import abc
import logging
import queue
import shlex
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tlsweep.tracking.wandb_settings import WandbSettings, api_key_configured, resolve_mode

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run

    from tlsweep.tracking.wandb_sweep import SweepRecord

_log = logging.getLogger("tlsweep.tracking")

_QUEUE_SIZE = 10_000
_POLL_S = 0.1
_SETTLE_S = 0.15  # W&B work waits (up to _SETTLE_MAX_S) until the driver has been quiet this long: see _work
_SETTLE_MAX_S = 1.0


class Tracker(abc.ABC):
    """Receives the life of each trial from the sweep driver.

    **Contract.** Every method is safe to call from the driver thread, returns quickly and never raises;
    failures are logged once per kind. Calls for one trial arrive in order: ``trial_started``, any number of
    ``trial_epoch``, ``trial_finished``. A trial whose start was missed (a restored driver) is started on its
    first event. ``close`` is idempotent and waits at most its timeout.
    """

    @abc.abstractmethod
    def trial_started(self, trial_id: str, *, name: str, config: dict[str, object], job_type: str) -> None:
        """A trial began (or began again after a retry or a resume)."""

    @abc.abstractmethod
    def trial_epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None:
        """One epoch's metrics, logged with ``step = epoch``."""

    @abc.abstractmethod
    def trial_finished(self, trial_id: str, *, summary: dict[str, object], status: str) -> None:
        """A trial ended; ``summary`` holds the objective and final metrics, ``status`` its outcome."""

    @abc.abstractmethod
    def close(self, timeout_s: float | None = None, *, complete: bool = False) -> None:
        """Flush and finish every run, waiting at most ``timeout_s`` seconds (None: the configured bound).

        ``complete``: the sweep ran to its end, so its W&B Sweep (if any) is marked finished.
        """

    @abc.abstractmethod
    def sync_command(self) -> str | None:
        """The one ``wandb sync`` command that uploads the offline runs, or None when there is nothing to sync."""

    def sweep_url(self) -> str | None:
        """The URL of the W&B Sweep the runs joined, when one is known."""
        return None

    @property
    @abc.abstractmethod
    def mode(self) -> str:
        """``online``, ``offline`` or ``disabled``: where runs go now (online may have degraded to offline)."""


class NullTracker(Tracker):
    """Mode ``disabled``: does nothing and writes nothing."""

    @property
    def mode(self) -> str:
        return "disabled"

    def trial_started(self, trial_id: str, *, name: str, config: dict[str, object], job_type: str) -> None:
        pass

    def trial_epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def trial_finished(self, trial_id: str, *, summary: dict[str, object], status: str) -> None:
        pass

    def close(self, timeout_s: float | None = None, *, complete: bool = False) -> None:
        pass

    def sync_command(self) -> str | None:
        return None


def flatten_config(config: Mapping[str, object], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested dicts become dotted keys; only scalars (bool, int, float, str, numpy scalars) are kept."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
            continue
        scalar = _scalar(value)
        if scalar is not None:
            flat[name] = scalar
    return flat


def _scalar(value: object) -> bool | int | float | str | None:
    if isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    if type(value).__module__ == "numpy" and callable(item):
        try:
            result = item()
        except (TypeError, ValueError):
            return None
        return result if isinstance(result, (bool, int, float, str)) else None
    return None


def _numeric_metrics(metrics: Mapping[str, object]) -> dict[str, float]:
    """Metric values as floats (NaN and inf included: a diverged run shows as such); non-numbers are dropped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        scalar = _scalar(value)
        if isinstance(scalar, (bool, int, float)):
            out[str(key)] = float(scalar)
    return out


_RESERVED_IN_RUN_IDS = ":;,#?/'"


def wandb_run_id(trial_id: str) -> str:
    """The W&B run id of a trial: the trial id, with the characters W&B reserves (``:;,#?/'``) and whitespace
    replaced by ``-`` (deterministic, so a resumed trial finds its run again)."""
    return "".join("-" if char in _RESERVED_IN_RUN_IDS or char.isspace() else char for char in trial_id.strip())


def sync_command_for(results_dir: Path) -> str:
    """``wandb sync <results_dir>/wandb``: uploads every not-yet-synced offline run in that directory."""
    return f"wandb sync {shlex.quote(str(Path(results_dir).absolute() / 'wandb'))}"


class _WarnOnce:
    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, kind: str, message: str, *args: object) -> None:
        with self._lock:
            if kind in self._seen:
                return
            self._seen.add(kind)
        self._logger.warning(message, *args)


def run_settings(settings: WandbSettings, *, sweep_id: str | None = None) -> Any:
    """wandb.Settings for a mirror run: bounded init/finish, no console capture, no system metrics, quiet; in the
    W&B Sweep ``sweep_id`` when one is known (through the settings: ``WANDB_SWEEP_ID`` would make ``wandb.init``
    ignore project, entity and run id)."""
    import wandb

    return wandb.Settings(
        sweep_id=sweep_id,
        init_timeout=settings.init_timeout_s,
        finish_timeout=settings.finish_timeout_s,
        console="off",
        silent=True,
        x_disable_stats=True,
        x_disable_meta=True,
        x_save_requirements=False,
        save_code=False,
        disable_git=True,
        disable_job_creation=True,
    )


class ModeState:
    """The mode runs are started in; an online mode turns offline for good once the server proves unreachable."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.server_answered = False  # probed once; later online inits skip the probe
        if mode == "offline":
            quiet_wandb_analytics()

    def go_offline(self) -> None:
        self.mode = "offline"
        quiet_wandb_analytics()


def quiet_wandb_analytics() -> None:
    """Stop wandb's own usage analytics (OpenTelemetry export to the W&B server) for this process.

    wandb skips them for offline runs only when the whole process is offline; a sweep that is offline through
    tlsweep's settings (or after an unreachable server) otherwise blocks at exit for ~10 s per export attempt.
    """
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except Exception:  # noqa: BLE001 - wandb internals moved: nothing to quiet
        pass


def wandb_base_url() -> str:
    """The W&B server URL as wandb itself resolves it (``WANDB_BASE_URL``, settings files, default)."""
    from wandb.sdk import wandb_setup

    return str(wandb_setup.singleton().settings.base_url)


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP answer: its status (0 for a TLS error), reason, content type and the start of its body."""

    status: int
    reason: str
    content_type: str
    body: bytes


def http_answer(request: urllib.request.Request, timeout_s: float) -> HttpAnswer | str:
    """The answer to ``request`` within ``timeout_s``, or why none came.

    Any HTTP status is an answer, and so is a TLS error (wandb may trust a CA that urllib does not); refused
    connections, DNS failures and silence are not.
    """
    import http.client
    import ssl
    import urllib.error

    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            content_type = response.headers.get("Content-Type", "")
            return HttpAnswer(response.status, str(response.reason), content_type, response.read(65536))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, str(exc.reason), "", b"")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            return HttpAnswer(0, str(exc.reason), "", b"")
        if isinstance(exc.reason, TimeoutError):
            return f"no answer within {timeout_s:g} s"
        return str(exc.reason)
    except ssl.SSLError as exc:
        return HttpAnswer(0, str(exc), "", b"")
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"


def unreachable_reason(base_url: str, timeout_s: float) -> str | None:
    """Why the server at ``base_url`` gives no HTTP answer within ``timeout_s`` (:func:`http_answer`), or None."""
    if not urlsplit(base_url).hostname:
        return f"the URL {base_url!r} has no host"
    answer = http_answer(urllib.request.Request(base_url, method="GET"), timeout_s)
    return answer if isinstance(answer, str) else None


def init_run(
    settings: WandbSettings,
    *,
    state: ModeState,
    results_dir: Path,
    warn: _WarnOnce,
    sweep_id: str | None = None,
    **init_kwargs: Any,
) -> Run:
    """``wandb.init`` in ``state.mode``. Online, the server is probed first: when it cannot be reached within
    ``init_timeout_s`` (or the online init fails) ``state.mode`` turns ``offline`` and the run starts offline.

    NOTE: a failed online ``wandb.init`` leaves its run id registered in wandb-core for the rest of the process
    (and releasing it can hang wandb-core), hence the HTTP probe first. Should the online init still fail, the
    offline retry of that one id fails with "run ID ... is in use": that trial is not mirrored, later ones are.
    """
    import wandb

    common: dict[str, Any] = dict(
        project=settings.project,
        entity=settings.entity,
        dir=str(results_dir),
        resume="allow",
        reinit="create_new",
        settings=run_settings(settings, sweep_id=sweep_id),
        **init_kwargs,
    )
    if state.mode == "online":
        base_url = wandb_base_url()
        if not api_key_configured():  # wandb would prompt for a key on the driver's terminal
            reason: str | None = "no API key is configured; run `wandb login` or set WANDB_API_KEY"
        elif state.server_answered:
            reason = None
        else:
            reason = unreachable_reason(base_url, settings.init_timeout_s)
        state.server_answered = reason is None
        if reason is None:
            try:
                return wandb.init(mode="online", **common)
            except Exception as exc:  # noqa: BLE001 - any failure to reach W&B means offline
                reason = f"{type(exc).__name__}: {_first_line(exc)}"
        state.go_offline()
        warn(
            "degraded",
            "W&B: cannot log online to %s (%s); logging offline to %s instead. Upload later with: %s",
            base_url,
            reason,
            Path(results_dir) / "wandb",
            sync_command_for(results_dir),
        )
    return wandb.init(mode="offline", **common)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


@dataclass
class SweepLink:
    """The W&B Sweep a tracker's runs join (``tlsweep.tracking.wandb_sweep``).

    ``config`` is the sweep config (``sweep_config(spec)``); ``record`` the sweep an earlier run of the same sweep
    created (reused: a resume keeps its sweep); ``on_record`` is called, on the tracker's thread, with the record
    of a sweep the tracker created, so the driver stores it with the results.
    """

    config: dict[str, Any]
    record: SweepRecord | None = None
    on_record: Callable[[SweepRecord], None] | None = None


class WandbTracker(Tracker):
    """Mirrors trials to W&B (mode ``online`` or ``offline``) from one background thread.

    The queue holds at most ``queue_size`` events; when it is full new events are dropped with one warning,
    so a stalled W&B never grows memory or blocks the driver.

    With a ``sweep`` link, every run joins one W&B Sweep. Online, the first run creates it (or reuses and reopens
    the recorded one) after the server answered; ``close(complete=True)`` marks it finished. Offline, runs carry
    the recorded sweep id when there is one, and ``tlsweep wandb sync`` creates the sweep when there is none.
    A sweep that cannot be created costs only the Sweep page: the runs are logged as before.
    """

    def __init__(
        self,
        settings: WandbSettings,
        *,
        sweep_name: str,
        results_dir: Path,
        mode: str,
        queue_size: int = _QUEUE_SIZE,
        sweep: SweepLink | None = None,
    ) -> None:
        if mode not in ("online", "offline"):
            raise ValueError(f"WandbTracker needs mode online or offline, but got {mode!r}; use NullTracker")
        self._settings = settings
        self._sweep_name = sweep_name
        self._results_dir = Path(results_dir)
        self._state = ModeState(mode)
        self._queue: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue(maxsize=queue_size)
        self._warn = _WarnOnce(_log)
        self._runs: dict[str, Run] = {}
        self._failed: set[str] = set()
        self._stop = threading.Event()
        self._closed = False
        self._dropped = 0
        self._last_put = 0.0
        self._sweep = sweep
        self._sweep_record: SweepRecord | None = sweep.record if sweep is not None else None
        self._sweep_online = False  # the server confirmed (or created) the sweep in this run
        self._sweep_tried = False
        self._complete = False
        self._thread = threading.Thread(target=self._work, name="tlsweep-wandb", daemon=True)
        self._thread.start()

    @property
    def mode(self) -> str:
        """``online``, or ``offline`` (as configured, or after an unreachable server degraded it)."""
        return self._state.mode

    @property
    def sweep_record(self) -> SweepRecord | None:
        """The W&B Sweep the runs join (created, reused or recorded), or None when there is none (yet)."""
        return self._sweep_record

    def sweep_url(self) -> str | None:
        record = self._sweep_record
        return record.url if record is not None else None

    # -- driver side: enqueue only ------------------------------------------------------------------------------

    def trial_started(self, trial_id: str, *, name: str, config: dict[str, object], job_type: str) -> None:
        try:
            self._put("start", trial_id, {"name": name, "config": flatten_config(config), "job_type": job_type})
        except Exception as exc:  # noqa: BLE001 - the mirror never breaks a sweep
            self._warn(f"enqueue:{type(exc).__name__}", "W&B mirror: could not queue a trial start: %r", exc)

    def trial_epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None:
        try:
            self._put("epoch", trial_id, {"epoch": int(epoch), "metrics": _numeric_metrics(metrics)})
        except Exception as exc:  # noqa: BLE001
            self._warn(f"enqueue:{type(exc).__name__}", "W&B mirror: could not queue an epoch: %r", exc)

    def trial_finished(self, trial_id: str, *, summary: dict[str, object], status: str) -> None:
        try:
            self._put("finish", trial_id, {"summary": flatten_config(summary), "status": str(status)})
        except Exception as exc:  # noqa: BLE001
            self._warn(f"enqueue:{type(exc).__name__}", "W&B mirror: could not queue a trial end: %r", exc)

    def close(self, timeout_s: float | None = None, *, complete: bool = False) -> None:
        try:
            timeout = self._settings.finish_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
            if not self._closed:
                self._complete = bool(complete)
            self._closed = True
            self._stop.set()
            self._thread.join(timeout)
            if self._dropped:
                _log.warning("W&B mirror: %d events were dropped while W&B was slow", self._dropped)
            if self._thread.is_alive():
                self._warn(
                    "close-timeout",
                    "W&B mirror: still busy after %.0f s; leaving it behind. Local W&B data is in %s%s",
                    timeout,
                    self._results_dir / "wandb",
                    f"; upload it with: {self.sync_command()}" if self.sync_command() else "",
                )
        except Exception as exc:  # noqa: BLE001
            self._warn(f"close:{type(exc).__name__}", "W&B mirror: error while closing: %r", exc)

    def sync_command(self) -> str | None:
        return sync_command_for(self._results_dir) if self._state.mode == "offline" else None

    def _put(self, kind: str, trial_id: str, payload: dict[str, Any]) -> None:
        if self._closed:
            self._warn("after-close", "W&B mirror: events after close() are ignored (first: %s %s)", kind, trial_id)
            return
        try:
            self._last_put = time.monotonic()
            self._queue.put_nowait((kind, str(trial_id), payload))
        except queue.Full:
            self._dropped += 1
            self._warn(
                "queue-full",
                "W&B mirror: %d events waiting; dropping new ones so the sweep is not held up "
                "(Parquet still has every number)",
                self._queue.maxsize,
            )

    # -- worker side: every wandb call happens here -------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                kind, trial_id, payload = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    break
                continue
            # The driver enqueues as it hands a slot from one trial to the next; wandb.init/finish then would hold
            # the interpreter the driver needs for that hand-over, so the mirror waits for a quiet moment.
            waited = 0.0
            while not self._stop.is_set() and waited < _SETTLE_MAX_S and time.monotonic() - self._last_put < _SETTLE_S:
                time.sleep(_SETTLE_S / 3)
                waited += _SETTLE_S / 3
            self._handle(kind, trial_id, payload)
        self._finish_open_runs()
        if self._complete:
            self._finish_sweep()

    def _handle(self, kind: str, trial_id: str, payload: dict[str, Any]) -> None:
        try:
            if kind == "start":
                self._start(trial_id, **payload)
            elif kind == "epoch":
                self._epoch(trial_id, **payload)
            elif kind == "finish":
                self._finish(trial_id, **payload)
        except Exception as exc:  # noqa: BLE001 - W&B failures are logged, never raised
            self._warn(
                f"{kind}:{type(exc).__name__}",
                "W&B mirror: %s of trial %s failed (%s: %s); the sweep continues and Parquet keeps every number",
                kind,
                trial_id,
                type(exc).__name__,
                _first_line(exc),
            )

    def _start(self, trial_id: str, *, name: str, config: dict[str, Any], job_type: str | None) -> None:
        run = self._runs.get(trial_id)
        if run is not None:
            run.config.update(config, allow_val_change=True)
            return
        self._failed.discard(trial_id)
        self._ensure_sweep()
        try:
            run = init_run(
                self._settings,
                state=self._state,
                results_dir=self._results_dir,
                warn=self._warn,
                sweep_id=self._sweep_record.sweep_id if self._sweep_record is not None else None,
                id=wandb_run_id(trial_id),
                name=name,
                group=self._sweep_name,
                job_type=job_type,
                config=config,
                tags=list(self._settings.tags),
            )
        except Exception:
            self._failed.add(trial_id)
            raise
        self._runs[trial_id] = run

    def _run_for(self, trial_id: str) -> Run | None:
        if trial_id in self._failed:
            return None
        run = self._runs.get(trial_id)
        if run is None:
            self._start(trial_id, name=trial_id, config={}, job_type=None)
            run = self._runs.get(trial_id)
        return run

    def _epoch(self, trial_id: str, *, epoch: int, metrics: dict[str, float]) -> None:
        run = self._run_for(trial_id)
        if run is not None:
            run.log(metrics, step=epoch)

    def _finish(self, trial_id: str, *, summary: dict[str, Any], status: str) -> None:
        run = self._run_for(trial_id)
        if run is None:
            return
        self._runs.pop(trial_id, None)
        run.summary.update({**summary, "status": status})
        run.finish(exit_code=1 if status in ("error", "failed") else 0)

    # -- the W&B Sweep ----------------------------------------------------------------------------------------

    def _ensure_sweep(self) -> None:
        """Online, once: reuse (and reopen) the recorded sweep, or create one. Failures only cost the Sweep page."""
        if self._sweep is None or self._sweep_tried or self._state.mode != "online":
            return
        self._sweep_tried = True
        if not api_key_configured():
            return  # init_run goes offline and says why
        if not self._state.server_answered:
            if unreachable_reason(wandb_base_url(), self._settings.init_timeout_s) is not None:
                return  # init_run goes offline and says why
            self._state.server_answered = True
        from tlsweep.tracking import wandb_sweep

        try:
            record = self._sweep_record
            api = wandb_sweep.public_api(
                entity=record.entity if record else self._settings.entity,
                project=record.project if record else self._settings.project,
                timeout_s=self._settings.init_timeout_s,
            )
            found = wandb_sweep.find_sweep(api, record) if record is not None else None
            if record is not None and found is not None:
                if str(found.get("state", "")).upper() != "RUNNING":
                    wandb_sweep.set_sweep_state(api, record, "RUNNING")
                self._sweep_online = True
                return
            if record is not None:
                _log.warning("W&B: the recorded sweep %s no longer exists; creating a new one", record.sweep_id)
            record = wandb_sweep.create_sweep(
                api, self._sweep.config, entity=self._settings.entity, project=self._settings.project
            )
            self._sweep_record, self._sweep_online = record, True
            _log.info("W&B sweep: %s", record.url or record.sweep_id)
            if self._sweep.on_record is not None:
                self._sweep.on_record(record)
        except Exception as exc:  # noqa: BLE001 - the Sweep page is a view; the runs are logged regardless
            self._warn(
                "sweep",
                "W&B: could not create or reopen the W&B Sweep (%s: %s); runs are logged without it",
                type(exc).__name__,
                _first_line(exc),
            )

    def _finish_sweep(self) -> None:
        self._ensure_sweep()  # a resume with nothing left to run still closes its sweep
        if not (self._sweep_online and self._sweep_record is not None and self._state.mode == "online"):
            return
        from tlsweep.tracking import wandb_sweep

        try:
            record = self._sweep_record
            api = wandb_sweep.public_api(
                entity=record.entity, project=record.project, timeout_s=self._settings.init_timeout_s
            )
            wandb_sweep.set_sweep_state(api, record, "FINISHED")
        except Exception as exc:  # noqa: BLE001
            self._warn(
                "sweep-finish", "W&B: could not mark the sweep finished (%s: %s)", type(exc).__name__, _first_line(exc)
            )

    def _finish_open_runs(self) -> None:
        """Runs of trials that never finished (an interrupted sweep) end as failed; a resume continues them."""
        for trial_id in list(self._runs):
            run = self._runs.pop(trial_id)
            try:
                run.finish(exit_code=1)
            except Exception as exc:  # noqa: BLE001
                self._warn(
                    f"finish-open:{type(exc).__name__}", "W&B mirror: could not finish run %s: %r", trial_id, exc
                )


def make_tracker(
    settings: WandbSettings,
    *,
    sweep_name: str,
    results_dir: Path,
    mode_override: str | None = None,
    sweep: SweepLink | None = None,
) -> Tracker:
    """The tracker for a sweep: ``NullTracker`` when the resolved mode is ``disabled``, else ``WandbTracker``.

    Raises:
        SpecError: ``mode_override`` is not a W&B mode.
    """
    mode = resolve_mode(settings, mode_override)
    if mode == "disabled":
        return NullTracker()
    try:
        import wandb  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken wandb install must not stop a sweep
        _log.warning("W&B mirror disabled: wandb cannot be imported (%s)", exc)
        return NullTracker()
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    return WandbTracker(settings, sweep_name=sweep_name, results_dir=Path(results_dir), mode=mode, sweep=sweep)
