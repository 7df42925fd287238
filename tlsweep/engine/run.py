"""``run_sweep``: the product's main job. Data → (pretrain) → tune phase → confirm phase → Parquet → report.

Ray Tune runs the trials (function trainable, per-trial resources, bounded concurrency, retries from per-epoch
checkpoints); ``tlsweep.engine.searchers.SweepSearcher`` decides what runs, both phases in one Tuner (one Optuna
study per cell × arm with an equal budget; each study's confirm trials as soon as its tune budget is recorded, later
looks of an adaptive confirm phase once every cell finished the previous one);
``tlsweep.engine.recorder.ResultsRecorder`` on the driver is the single writer of the results. A rerun of the same spec
resumes from the recorded trials: finished trials are replayed, never rerun.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import ray
from ray import tune
from rich.console import Console

from tlsweep import __version__
from tlsweep.data.loading import load_dataset
from tlsweep.data.types import DatasetTensors
from tlsweep.design import (
    ConfirmStep,
    PlannedTrial,
    plan_confirm_step,
    studies,
    study_trial_counts,
    trial_config,
    trial_counts,
    tune_complete_studies,
)
from tlsweep.engine import trainable
from tlsweep.engine.asha import PerStudyASHA
from tlsweep.engine.capacity import pending_trials_limit, planned_concurrency, preflight
from tlsweep.engine.extend import extension_changes, extension_history, record_extension
from tlsweep.engine.progress import Progress, StatusBoard
from tlsweep.engine.recorder import ResultsRecorder
from tlsweep.engine.searchers import SweepSearcher
from tlsweep.engine.signals import SigtermAsSigint
from tlsweep.engine.status import STATUS_FILE, StatusDocument
from tlsweep.engine.sweep_environment import sweep_settings
from tlsweep.engine.worker_setup import worker_runtime_env
from tlsweep.errors import StoreError, WeightsError
from tlsweep.results.atomic import atomic_write_bytes
from tlsweep.results.location import RAY_SUBDIR, Location, ray_storage_args, resolve_location
from tlsweep.results.store import Provenance, ResultsStore
from tlsweep.spec import SweepSpec, diff_resolved
from tlsweep.spec_paths import relative_result_hash
from tlsweep.tracking.optuna_mirror import StudyMirror, open_study_mirror
from tlsweep.tracking.tracker import SweepLink, Tracker, make_tracker
from tlsweep.tracking.wandb_sweep import read_sweep_record, sweep_config, write_sweep_record
from tlsweep.training.config import TrialConfig, pretrain_config
from tlsweep.training.device import check_gpu_fit, dataset_bytes, estimate_trial_bytes
from tlsweep.training.references import check_spec_references
from tlsweep.training.weights import check_spec_weights

log = logging.getLogger(__name__)
SWEEP_EXPERIMENT_PREFIX = "sweep-"  # Ray experiments of one run (both phases); "tune-"/"confirm-" before 0.2.0


@dataclass(frozen=True)
class PhaseFailures:
    """The failed trials of one phase of a sweep's results: how many of how many, and why (most frequent first)."""

    phase: str
    failed: int
    recorded: int
    reasons: tuple[tuple[str, int], ...]  # (error message, trials), most frequent first
    first_error: str  # the error of the first failed trial recorded

    @property
    def every_trial(self) -> bool:
        return self.failed == self.recorded > 0

    def describe(self, location: str) -> str:
        """``"tune: 3 of 8 trials failed: ValueError: x (2), ..."`` and where the details are."""
        head = ("every trial" if self.every_trial else f"{self.failed} of {self.recorded} trials") + " failed"
        why = "; ".join(f"{message} ({count}×)" for message, count in self.reasons[:3])
        more = f"; and {len(self.reasons) - 3} other error(s)" if len(self.reasons) > 3 else ""
        return (
            f"{self.phase} phase: {head}: {why}{more}\n  details: the `error` column of {location}/trials "
            f"(status `failed`) and each trial's error.txt under {location}/{RAY_SUBDIR}/sweep-*/{self.phase}-*/"
        )


def failure_summary(rows: list[dict[str, Any]]) -> list[PhaseFailures]:
    """The phases of ``rows`` (trials-table rows) with failed trials, in phase order (tune, then confirm)."""
    summaries = []
    for phase in ("tune", "confirm"):
        mine = [row for row in rows if row.get("phase") == phase]
        failed = [row for row in mine if row.get("status") == "failed"]
        if not failed:
            continue
        reasons: dict[str, int] = {}
        for row in failed:
            message = " ".join(str(row.get("error") or "no error message recorded").split())[:300]
            reasons[message] = reasons.get(message, 0) + 1
        ranked = tuple(sorted(reasons.items(), key=lambda item: -item[1]))
        first = " ".join(str(failed[0].get("error") or "no error message recorded").split())[:300]
        summaries.append(PhaseFailures(phase, len(failed), len(mine), ranked, first))
    return summaries


@dataclass
class SweepOutcome:
    location: str
    trials_recorded: int
    counts: dict[str, int]
    skipped: list[str] = field(default_factory=list)
    failures: list[PhaseFailures] = field(default_factory=list)  # phases with failed trials (all recorded rows)
    interrupted: bool = False
    report_path: str | None = None
    wandb_sync: str | None = None
    wandb_sweep_url: str | None = None
    wall_time_s: float = 0.0
    efficiency: float | None = None  # Σ epoch time ÷ (slots × first trial start → last trial end), this run's trials
    busy_s: float = 0.0  # Σ epoch time of the trials this run recorded
    trials_span_s: float | None = None  # first trial start → last trial recorded
    tuner_wall_s: float | None = None  # the whole Tuner.fit: also Ray's start-up before the first trial and its stop
    slots: int = 0  # trials run at once

    @property
    def efficiency_figures(self) -> dict[str, Any]:
        """The slot-efficiency figures as ``status.json`` stores them and ``engine.progress.efficiency_line`` reads them."""
        return {
            "efficiency": self.efficiency,
            "busy_s": self.busy_s,
            "trials_span_s": self.trials_span_s,
            "tuner_wall_s": self.tuner_wall_s,
            "slots": self.slots,
        }

    @property
    def failed(self) -> PhaseFailures | None:
        """The first phase whose every recorded trial failed: the sweep could not do its job (no report)."""
        return next((phase for phase in self.failures if phase.every_trial), None)


def library_versions() -> dict[str, str]:
    versions = {"tlsweep": __version__, "python": platform.python_version()}
    for dist in ("torch", "torchvision", "ray", "optuna", "pyarrow", "pandas", "wandb"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def results_location(spec: SweepSpec, storage: str | None = None) -> Location:
    return resolve_location(storage or spec.storage).join(spec.name)


def check_storage_writable(location: Location) -> None:
    """Create ``location``'s directory and write and delete a small file there.

    Raises:
        StoreError: naming the location, the filesystem's reason and the fix.
    """
    probe = location.join(f".tlsweep-write-check-{uuid.uuid4().hex}")
    report = location.join("report")
    try:
        if location.filesystem.get_file_info(report.path).type == pafs.FileType.File:
            raise StoreError(
                f"{report.uri} is a file; the report is written into a folder of that name: move the file aside"
            )
        location.filesystem.create_dir(location.path, recursive=True)
        with location.filesystem.open_output_stream(probe.path) as stream:
            stream.write(b"tlsweep")
        location.filesystem.delete_file(probe.path)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(
            f"results storage {location.uri} is not writable ({exc}); choose a writable place with "
            "--storage or the spec's `storage`, or fix its permissions or credentials"
        ) from None


def sweep_provenance(
    spec: SweepSpec,
    *,
    source: str | None,
    extensions: tuple[dict[str, Any], ...] = (),
    class_names: Sequence[str] | None = None,
) -> Provenance:
    """What ``provenance.json`` records about a run of ``spec`` started from the file ``source`` (the extensions of
    the sweep so far, ``tlsweep.engine.extend``, and the dataset's class names in label order)."""
    return Provenance(
        spec_hash=spec.result_hash(),
        tlsweep_version=__version__,
        source=source,
        versions=library_versions(),
        trial_counts=trial_counts(spec),
        compared_arms=tuple(c.pair for c in spec.compared_arms),
        extensions=extensions,
        class_names=tuple(class_names) if class_names is not None else None,
    )


def wandb_sweep_link(spec: SweepSpec, store: ResultsStore) -> SweepLink:
    """The W&B Sweep of ``spec``'s trials: its config, the sweep recorded by an earlier run (reused), and how a new
    one is recorded (``wandb.json`` beside the results). An unreadable record is replaced, with a warning."""
    try:
        record = read_sweep_record(store)
    except StoreError as exc:
        log.warning("%s", exc)
        record = None
    return SweepLink(config=sweep_config(spec), record=record, on_record=lambda rec: write_sweep_record(store, rec))


def check_resume(spec: SweepSpec, store: ResultsStore, *, new: bool) -> None:
    """Refuse to mix results of a changed spec into an existing results directory (unless ``new``).

    The recorded spec hash (``provenance.json``, or the ``tlsweep:`` block of an old-layout spec) decides; without
    one, the saved spec itself is hashed.
    """
    if not store.has_spec():
        return
    provenance = store.read_provenance()
    accepted = {spec.result_hash(), relative_result_hash(spec, Path.cwd())}  # also results of un-anchored paths
    if provenance is not None and provenance.spec_hash in accepted:
        return
    try:
        old: SweepSpec | None = store.read_spec()
    except StoreError as exc:
        old, changes = None, [str(exc).splitlines()[0]]
    if old is not None:
        if provenance is None and old.result_hash() in accepted:
            return
        if not new and (added := extension_changes(old, spec)) is not None:  # more seeds, cells, tune trials
            record_extension(store, provenance.spec_hash if provenance else old.result_hash(), spec, added)
            log.warning("extending %s: %s", store.location.uri, "; ".join(added))
            return
        changes = diff_resolved(old.result_fields(), spec.result_fields())
    if not new:
        listed = "\n  ".join(changes[:20]) or "(spec hash differs)"
        raise StoreError(
            f"{store.location.uri} holds results of a different spec; changed:\n  {listed}\n"
            "Results of different specs are not mixed. Rerun with --new to start over (the old results are kept "
            "beside it), or restore the spec, or give the sweep another name."
        )
    local = store.local_dir()
    if local is None:
        raise StoreError(
            f"--new on remote storage ({store.location.uri}) would overwrite results; give the sweep another name "
            "(--set name=...) or another --storage prefix"
        )
    archived = local.with_name(f"{local.name}.replaced-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
    shutil.move(str(local), archived)
    log.warning("moved the previous results to %s", archived)


def _prepare_checkpoint(spec: SweepSpec, console: Console, num_threads: int) -> Path | None:
    """The backbone file for init=checkpoint, pretrained first (as a Ray task) when it does not exist yet."""
    path = spec.model.pretrained.checkpoint
    if path is None or "checkpoint" not in spec.design.init_levels():
        return None
    path = Path(path)
    if path.exists():
        return path
    if spec.model.pretrain is None:
        raise WeightsError(
            f"model.pretrained.checkpoint: {path} does not exist; create it with `tlsweep pretrain --out {path}` "
            "or add a model.pretrain block to the spec"
        )
    pre = spec.model.pretrain
    console.print(f"[bold]pretraining[/] {spec.model.backbone} on {pre.dataset.root} → {path}")
    config = pretrain_trial_config(spec, num_threads=num_threads)
    task = ray.remote(num_cpus=spec.resources.cpus_per_trial, num_gpus=spec.resources.gpus_per_trial)(_pretrain_task)
    started = time.time()
    blob, metrics = ray.get(task.remote(config.to_dict(), pre.dataset, spec.model.image_size))
    atomic_write_bytes(path, blob)
    console.print(
        f"pretrained in {time.time() - started:.0f} s: source val acc {metrics.get('best_val_acc', float('nan')):.3f}"
    )
    return path


def pretrain_trial_config(spec: SweepSpec, *, num_threads: int = 0) -> TrialConfig:
    """The config that pretrains the sweep's backbone: the pretraining recipe with the spec's ``model.pretrain``
    values and the sweep's optimizer (``model.pretrain`` must be set)."""
    pre = spec.model.pretrain
    if pre is None:
        raise ValueError(f"sweep {spec.name!r} has no model.pretrain block")
    return pretrain_config(
        {
            "backbone": spec.model.backbone,
            "epochs": pre.epochs,
            "lr": pre.lr,
            "batch_size": pre.batch_size,
            "weight_decay": pre.weight_decay,
            "augmentation": pre.augmentation,
            "seed": pre.seed,
            "optimizer": spec.model.optimizer.name,
            "momentum": spec.model.optimizer.momentum,
            "num_threads": num_threads,
        }
    )


def _pretrain_task(config: dict[str, Any], dataset_spec: Any, image_size: int) -> tuple[bytes, dict[str, Any]]:
    from tlsweep.training.loop import pretrain  # torch: in the Ray task only

    data = load_dataset(dataset_spec, image_size=image_size)
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "backbone.pt"
        metrics = pretrain(TrialConfig.from_dict(config), data, out)
        return out.read_bytes(), metrics


def gpu_trial_estimate(spec: SweepSpec, data: DatasetTensors) -> dict[str, float] | None:
    """The largest GPU memory estimate over the sweep's trials (``tlsweep.training.device``), with
    ``gpus_per_trial``; None when trials get no GPU. A tuned freeze depth counts as 0 (the most memory)."""
    if not spec.resources.gpus_per_trial:
        return None
    configs = [trial_config(spec, levels, {}, 0) for levels in studies(spec)]
    if "freeze_depth" in spec.design.tune:
        configs = [config.replace(freeze_depth=0) for config in configs]
    worst = max(
        estimate_trial_bytes(config, data.num_classes, spec.model.image_size, dataset_bytes(data))
        for config in {config.freeze_depth: config for config in configs}.values()
    )
    return {"bytes": float(worst), "gpus_per_trial": float(spec.resources.gpus_per_trial)}


def check_gpu_memory(spec: SweepSpec, data: DatasetTensors, *, source: str) -> None:
    """Before launch: raise SpecError when ``gpus_per_trial`` of this machine's GPU cannot hold one trial. (Without a
    GPU here, each trial checks its own GPU before it trains.)"""
    import torch  # the driver's GPU: only when trials get one

    estimate = gpu_trial_estimate(spec, data)
    if estimate is None or not torch.cuda.is_available():
        return
    total = torch.cuda.get_device_properties(0).total_memory
    check_gpu_fit(int(estimate["bytes"]), estimate["gpus_per_trial"], total, source=source)


def _concurrency(spec: SweepSpec) -> int:
    return planned_concurrency(spec.resources)


def _trial_dirname(trial: Any) -> str:
    return trainable.trial_dirname(trainable.planned_of(trial.config))


def pending_trials(store: ResultsStore, phase: str, done_ids: set[str]) -> list[PlannedTrial]:
    """Trials the last driver had started but not recorded (from its ``status.json``), to be run again as-is; an
    unreadable document or entry is ignored with a warning (those trials are planned again from scratch)."""
    try:
        status = StatusDocument.parse(store.read_text(STATUS_FILE), source=store.location.join(STATUS_FILE).uri)
    except StoreError as exc:
        log.warning("%s", exc)
        return []
    planned = []
    for item in status.running:
        meta = item.get("meta")
        if not isinstance(meta, dict) or meta.get("phase") != phase:
            continue
        try:
            planned.append(PlannedTrial.from_meta(meta))
        except (KeyError, TypeError, ValueError):
            log.warning("%s: ignoring an unreadable running entry", STATUS_FILE)
    return [p for p in planned if p.trial_id not in done_ids]


def _run_tuner(
    spec: SweepSpec, *, searcher: SweepSearcher, launched: Launch, location: Location, recorder: ResultsRecorder
) -> float:
    """One Tuner over the whole sweep (both phases, ``searcher`` decides what runs); returns its wall time in s."""
    scheduler = None
    if spec.design.early_stopping is not None:
        scheduler = PerStudyASHA(spec.design.early_stopping, mode=spec.objective.mode)
    recorder.connect(requeue=searcher.requeue, pruned=scheduler.stopped if scheduler is not None else None)
    planned = sum(trial_counts(spec).values())
    tuner = tune.Tuner(
        launched.trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=planned * (1 + spec.failures.node_loss_requeues),  # the searcher says when it is done
            max_concurrent_trials=launched.concurrency,
            reuse_actors=spec.resources.reuse_actors,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"{SWEEP_EXPERIMENT_PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S}",
            failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[recorder],
            verbose=0,
            **ray_storage_args(location),
        ),
    )
    on_sigint = _SigintWatch()
    started = time.monotonic()
    try:
        with on_sigint, pending_trials_limit(launched.concurrency):
            tuner.fit()
    finally:
        recorder.compact()  # the part files become trials.parquet / epochs.parquet again
    if on_sigint.stopped_tune:  # Ctrl-C ended the Tuner gracefully: stop here even if every trial had finished
        raise KeyboardInterrupt
    return time.monotonic() - started


class _SigintWatch:
    """Tells whether Ray Tune's SIGINT handler ran during ``tuner.fit()``.

    Tune (2.60, ``tune.py _setup_signal_catching``) replaces the SIGINT handler when ``fit`` starts, and puts the
    previous one back when a SIGINT arrives (then ``fit`` returns normally). So a marker handler installed before
    ``fit`` is current again afterwards exactly when Tune was stopped by a signal. Main thread only (elsewhere
    Tune installs nothing); the handler from before is restored on exit.
    """

    def __init__(self) -> None:
        self.stopped_tune = False
        self._previous: Any = None
        self._active = False

    def _marker(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __enter__(self) -> _SigintWatch:
        self._active = threading.current_thread() is threading.main_thread()
        if self._active:
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._marker)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._active:
            return
        tune_catches = not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0"))
        self.stopped_tune = tune_catches and signal.getsignal(signal.SIGINT) == self._marker
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def sweep_complete(spec: SweepSpec, rows: list[dict[str, Any]]) -> bool:
    """Every planned trial of both phases has a recorded row (an interrupted Tuner may have handed out more): each
    study's whole tune budget, and every confirm trial of the last look the recorded rows lead to."""
    if len(tune_complete_studies(spec, rows)) < len(studies(spec)):
        return False
    step = plan_confirm_step(spec, rows)
    recorded = {r["trial_id"] for r in rows if r["phase"] == "confirm"}
    return not step.more and all(trial.trial_id in recorded for trial in step.trials)


@sweep_settings()
def run_sweep(
    spec: SweepSpec,
    *,
    source: str | None = None,
    storage: str | None = None,
    address: str | None = None,
    new: bool = False,
    wandb_mode: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    live: bool = True,
    report: bool = True,
    console: Console | None = None,
) -> SweepOutcome:
    """Run (or resume) a whole sweep: data, pretraining, tune phase, confirm phase, Parquet, report.

    Rerunning the same spec resumes: finished trials are replayed into their studies, never rerun, and trials cut
    short by a dead driver continue from their checkpoints. Ray, Tune and Optuna settings apply only while it runs.

    Args:
        spec: the validated sweep (``load_spec``).
        source: the spec file's path, recorded in the provenance.
        storage: where results go (a path, ``s3://`` or ``gs://`` prefix); default ``spec.storage``. Results land
            in ``<storage>/<spec.name>``.
        address: a running Ray cluster to join (``"auto"``); default a private local instance.
        new: move results of a changed spec aside and start over instead of refusing.
        wandb_mode: ``online``, ``offline`` or ``disabled``; overrides ``spec.tracking.wandb.mode``.
        num_cpus: CPUs of the local Ray instance (default: all).
        object_store_memory: bytes of the local Ray object store (default: Ray's).
        live: draw the progress table while running.
        report: write the report at the end (when every trial ran).
        console: where progress and messages go (default: stderr).

    Returns:
        A ``SweepOutcome``: the results location, trials recorded by this run, planned counts per phase, skipped
        studies, whether it was interrupted, the report's path and the ``wandb sync`` command for offline runs.

    Raises:
        TlsweepError: bad data, unreachable storage, or results of a different spec in the same place.
    """
    console = console or Console(stderr=True)
    started = time.time()
    prepared = prepare(spec, source=source, storage=storage, new=new, on_cluster=address is not None, console=console)
    if (finished := finished_outcome(spec, prepared, source=source, console=console)) is not None:
        return publish(finished, prepared, report=report, wandb_mode=wandb_mode, started=started)  # no data, no Ray
    with RaySession(address=address, num_cpus=num_cpus, object_store_memory=object_store_memory):
        preflight(spec.resources, source=source or f"sweep {spec.name!r}")  # before any data is decoded or trial runs
        data = load_data(spec, prepared, source=source, console=console)
        launched = launch(spec, data, location=prepared.location, source=source, console=console)
        with open_sinks(spec, prepared, launched, wandb_mode=wandb_mode, live=live, console=console) as sinks:
            outcome = execute(spec, prepared, launched, sinks)
        outcome.wandb_sync, outcome.wandb_sweep_url = sinks.closed["wandb_sync"], sinks.closed["wandb_sweep_url"]
    return publish(outcome, prepared, report=report, wandb_mode=wandb_mode, started=started)


# ---- the stages of run_sweep ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` leaves for the later stages: where results go and the Parquet metadata."""

    location: Location
    store: ResultsStore
    metadata: dict[str, str]


def prepare(
    spec: SweepSpec, *, source: str | None, storage: str | None, new: bool, on_cluster: bool, console: Console
) -> Prepared:
    """Before Ray: references and weights checked, storage writable, a changed spec refused (or moved aside)."""
    location = results_location(spec, storage)
    check_spec_references(spec, source=source or spec.name)
    # on a cluster the trials' nodes read their own weights caches: a miss here is only a warning
    if (missing := check_spec_weights(spec, source=source or spec.name, warn_only=on_cluster)) is not None:
        console.print(f"warning: {missing}", style="yellow", markup=False, highlight=False)
    check_storage_writable(location)  # before any data is decoded or Ray started
    store = ResultsStore(location)
    check_resume(spec, store, new=new)
    console.print(f"[bold]{spec.name}[/]: results in {location.uri}")
    metadata = {"spec_hash": spec.result_hash(), **{f"version.{k}": v for k, v in library_versions().items()}}
    return Prepared(location, store, metadata)


def finished_outcome(
    spec: SweepSpec, prepared: Prepared, *, source: str | None, console: Console
) -> SweepOutcome | None:
    """A rerun of a sweep whose every planned trial is recorded: its outcome from the results alone (None when a
    trial is missing). Its spec and provenance are rewritten (0.1 results move to ``provenance.json``) unless they
    were recorded under the hash of un-anchored paths."""
    store = prepared.store
    rows = store.read_trials().to_pylist() if store.has_spec() else []
    if not rows or not sweep_complete(spec, rows):
        return None
    console.print(f"every planned trial is recorded ({trial_counts(spec)}); nothing to run")
    recorded = store.read_provenance()
    if recorded is None or recorded.spec_hash == spec.result_hash():
        names = recorded.class_names if recorded is not None else None
        history = extension_history(store)
        store.write_spec(spec, sweep_provenance(spec, source=source, extensions=history, class_names=names))
    return SweepOutcome(
        location=store.location.uri,
        trials_recorded=0,
        counts=trial_counts(spec),
        skipped=plan_confirm_step(spec, rows).skipped,
        failures=failure_summary(rows),
    )


def load_data(spec: SweepSpec, prepared: Prepared, *, source: str | None, console: Console) -> DatasetTensors:
    """The dataset decoded (once, cached), then the spec and its provenance written beside the results."""
    data = load_dataset(spec.dataset, image_size=spec.model.image_size)
    history = extension_history(prepared.store)
    provenance = sweep_provenance(spec, source=source, extensions=history, class_names=data.class_names)
    prepared.store.write_spec(spec, provenance)
    console.print(
        f"data: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test images, "
        f"{data.num_classes} classes"
    )
    return data


class RaySession:
    """Ray for one sweep: joins ``address``, or starts a private local instance, and shuts down only what it started.

    When Ray is already running in this process (a test's, a notebook's), the sweep uses it as it is: ``address``,
    ``num_cpus`` and ``object_store_memory`` cannot apply, and a warning names those given.
    """

    def __init__(self, *, address: str | None, num_cpus: int | None, object_store_memory: int | None) -> None:
        self.address, self.num_cpus, self.object_store_memory = address, num_cpus, object_store_memory
        self.started = False
        self._sigterm = SigtermAsSigint()

    def __enter__(self) -> RaySession:
        if ray.is_initialized():
            given = {
                "address": self.address,
                "num_cpus": self.num_cpus,
                "object_store_memory": self.object_store_memory,
            }
            ignored = [f"{name}={value!r}" for name, value in given.items() if value is not None]
            if ignored:
                log.warning(
                    "Ray is already running in this process: %s ignored (the sweep uses it as it is)",
                    ", ".join(ignored),
                )
            return self
        common: dict[str, Any] = {
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "runtime_env": worker_runtime_env(),
        }
        if self.address:
            ray.init(address=self.address, **common)
        else:
            ray.init(
                address="local",
                num_cpus=self.num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                object_store_memory=self.object_store_memory,
                **common,
            )
        self.started = True
        self._sigterm.__enter__()  # after ray.init, whose handlers would end the driver without a resume line
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self._sigterm.__exit__(*exc)
            ray.shutdown()


@dataclass(frozen=True)
class Launch:
    """Ray's trial function (resources, the payload in the object store) and how many trials run at once."""

    trainable: Any
    concurrency: int


def launch(
    spec: SweepSpec, data: DatasetTensors, *, location: Location, source: str | None, console: Console
) -> Launch:
    """The GPU fit checked, the backbone pretrained when it is missing, the payload put in Ray's object store.

    The trial function is ``tlsweep.engine.trainable.sweep_trainable``, looked up here, at launch: the one seam
    for running a sweep with another trial function (``tests/faults.py`` injects failures through it).
    """
    check_gpu_memory(spec, data, source=source or f"sweep {spec.name!r}")
    checkpoint = _prepare_checkpoint(spec, console, max(1, int(spec.resources.cpus_per_trial)))
    payload = trainable.TrialPayload.build(
        data,
        checkpoint,
        ray_location=location.join(RAY_SUBDIR),
        checkpoints=spec.checkpoints,
        gpu_estimate=gpu_trial_estimate(spec, data),
        report_every_epoch=spec.design.early_stopping is not None,
    )
    resources = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    runnable = tune.with_resources(tune.with_parameters(trainable.sweep_trainable, payload=payload), resources)
    return Launch(runnable, _concurrency(spec))


@dataclass
class Sinks:
    """Where trials go once they report: W&B, the Optuna journal, the live board and ``status.json``, Parquet."""

    tracker: Tracker
    mirror: StudyMirror
    progress: Progress
    recorder: ResultsRecorder
    closed: dict[str, Any] = field(default_factory=dict)  # what closing them said: wandb_sync, wandb_sweep_url


@contextmanager
def open_sinks(
    spec: SweepSpec, prepared: Prepared, launched: Launch, *, wandb_mode: str | None, live: bool, console: Console
) -> Iterator[Sinks]:
    """The sinks of one run, closed on every way out (the interrupted run's W&B runs end as such: ``interrupted``
    in ``closed`` says so)."""
    store = prepared.store
    local_dir = store.local_dir()
    wandb_dir = local_dir if local_dir is not None else Path(tempfile.mkdtemp(prefix=f"tlsweep-{spec.name}-"))
    tracker = make_tracker(
        spec.tracking.wandb,
        sweep_name=spec.name,
        results_dir=wandb_dir,
        mode_override=wandb_mode,
        sweep=wandb_sweep_link(spec, store),
    )
    mirror = open_study_mirror(spec, store, staging=wandb_dir)
    mirror.sync(store.read_trials(), store.read_epochs())  # trials recorded before the journal existed, or lost
    board = StatusBoard(study_trial_counts(spec), mode=spec.objective.mode)
    for row in store.read_trials().to_pylist():
        board.add_row(row)
    progress = Progress(
        board,
        title=spec.name,
        concurrency=launched.concurrency,
        write_status=lambda text: store.write_text(STATUS_FILE, text),
        console=console,
        live=live,
    )
    recorder = ResultsRecorder(
        spec, store, metadata=prepared.metadata, tracker=tracker, progress=progress, mirror=mirror
    )
    sinks = Sinks(tracker, mirror, progress, recorder)
    try:
        with progress:
            yield sinks
    finally:
        mirror.publish()
        tracker.close(complete=not sinks.closed.get("interrupted", False))
        sinks.closed.update(wandb_sync=tracker.sync_command(), wandb_sweep_url=tracker.sweep_url())
        # trials still listed as running were cut short: a rerun hands them out again (pending_trials)
        progress.finish()


def execute(spec: SweepSpec, prepared: Prepared, launched: Launch, sinks: Sinks) -> SweepOutcome:
    """The searcher, the scheduler and one Tuner over both phases (nothing to run when every trial is recorded);
    Ctrl-C ends it as interrupted."""
    recorder, progress = sinks.recorder, sinks.progress
    outcome = SweepOutcome(
        location=prepared.location.uri, trials_recorded=0, counts=trial_counts(spec), slots=launched.concurrency
    )
    tune_over = TunePhaseEnd(spec, outcome, sinks)
    try:
        done = recorder.trials.to_pylist()
        searcher = SweepSearcher(
            spec,
            rows=lambda: recorder.trials.to_pylist(),
            done=done,
            pending=pending_trials(prepared.store, "tune", {row["trial_id"] for row in done}),
            on_plan=tune_over.planned,
        )
        if sweep_complete(spec, done):  # a rerun of a finished sweep: nothing to run
            searcher.replan()
        else:
            wall = _run_tuner(spec, searcher=searcher, launched=launched, location=prepared.location, recorder=recorder)
            outcome.interrupted = not sweep_complete(spec, recorder.trials.to_pylist())
            outcome.busy_s, outcome.trials_span_s, outcome.tuner_wall_s = recorder.busy_s, recorder.trials_span_s, wall
            outcome.efficiency = recorder.slot_efficiency(launched.concurrency)
            progress.efficiency = outcome.efficiency_figures
    except KeyboardInterrupt:
        outcome.interrupted = True
    sinks.closed["interrupted"] = outcome.interrupted
    outcome.trials_recorded = recorder.recorded
    outcome.failures = failure_summary(recorder.trials.to_pylist())
    return outcome


class TunePhaseEnd:
    """The searcher's ``on_plan``: records the skipped studies and the confirm look in the title, and once the tune
    phase is over folds its parts and publishes the Optuna journal (once)."""

    def __init__(self, spec: SweepSpec, outcome: SweepOutcome, sinks: Sinks) -> None:
        self.spec, self.outcome, self.sinks = spec, outcome, sinks
        self.published = False

    def planned(self, step: ConfirmStep, tune_done: bool) -> None:
        self.outcome.skipped = step.skipped
        if len(step.looks) > 1:
            self.sinks.progress.title = f"{self.spec.name} · confirm look {step.look}/{len(step.looks)}"
        if tune_done and not self.published:
            self.published = True
            self.sinks.recorder.compact()
            self.sinks.mirror.publish()


def publish(
    outcome: SweepOutcome, prepared: Prepared, *, report: bool, wandb_mode: str | None, started: float
) -> SweepOutcome:
    """The report, when asked for and every trial ran (and not every trial of a phase failed); the wall time."""
    if report and not outcome.interrupted and not outcome.failed:
        from tlsweep.report.publish import publish_report  # the report's pandas and matplotlib: only when reporting

        _, outcome.report_path = publish_report(prepared.store, wandb_mode=wandb_mode)
    outcome.wall_time_s = time.time() - started
    return outcome
