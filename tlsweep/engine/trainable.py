"""The Ray Tune function trainable: one planned trial = one ``run_trial`` call, checkpointed by the spec's policy.

The dataset arrives once per node through Ray's object store (``tune.with_parameters``), as read-only numpy arrays
that concurrent trials on a node share; the trial wraps them as tensors without copying. Each epoch is reported
with a checkpoint holding the complete training state when the checkpoint policy says so (``checkpoints:``, see
``tlsweep.engine.checkpoints.checkpoint_due``), so a retried trial (lost node, worker crash) continues from its last
checkpoint instead of starting over. The best-validation weights stay in memory between checkpoints. Epochs shorter
than ``LIVE_REPORT_INTERVAL_S`` are not each reported as they end (every report waits for the driver): the next report
carries them (``epochs``), unless early stopping needs each one. The last report carries ``final=True``, the test
metrics and every epoch's history.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlsweep.data.types import DatasetTensors, SplitTensors
from tlsweep.design import PlannedTrial
from tlsweep.results.atomic import atomic_write_bytes
from tlsweep.results.location import Location
from tlsweep.spec import OBJECTIVE_COLUMNS, CheckpointEvery, CheckpointSpec
from tlsweep.training.config import TrialConfig

SPLITS = ("train", "val", "test")
LIVE_REPORT_INTERVAL_S = 1.0  # an epoch reaches the driver live at most this often, unless a scheduler needs each
_DATASETS: dict[str, DatasetTensors] = {}  # per worker process: reused actors skip even the zero-copy wrap


@dataclass(frozen=True)
class TrialPayload:
    """What every trial needs besides its config, put once in Ray's object store (the arrays zero-copy).

    ``ray_location`` is where Ray Tune keeps this sweep's experiments: a trial that finds no checkpoint of its own
    looks there for one an earlier (killed) driver's run of the same trial id left behind. ``checkpoints`` is the
    spec's checkpoint policy. ``gpu_estimate`` (``tlsweep.engine.run.gpu_trial_estimate``) is checked against the
    trial's own GPU first. ``report_every_epoch``: tune trials report each epoch (early stopping decides on them);
    otherwise a report is sent when ``LIVE_REPORT_INTERVAL_S`` passed since the last one or a checkpoint is due,
    with the epochs since the last one (``epochs``), and the final report's history holds every epoch.
    """

    class_names: list[str]
    ordinal: bool
    name: str
    images: dict[str, np.ndarray]  # split -> uint8 N×3×H×W
    labels: dict[str, np.ndarray]
    key: str  # identifies the dataset: a reused worker process keeps its tensors
    checkpoint_bytes: bytes | None  # the backbone file of init=checkpoint
    checkpoints: CheckpointSpec = field(default_factory=lambda: CheckpointSpec(every=CheckpointEvery(epochs=1)))
    ray_location: Location | None = None
    gpu_estimate: dict[str, float] | None = None
    report_every_epoch: bool = False

    @classmethod
    def build(cls, data: DatasetTensors, checkpoint: Path | None, **settings: Any) -> TrialPayload:
        """The payload of ``data`` (as plain numpy) and the backbone file ``checkpoint``; ``settings`` are the other
        fields."""
        images, labels = {}, {}
        digest = hashlib.sha256()
        for split in SPLITS:
            part: SplitTensors = getattr(data, split)
            images[split] = np.ascontiguousarray(part.images.numpy())
            labels[split] = np.ascontiguousarray(part.labels.numpy())
            digest.update(f"{split}:{images[split].shape}:{len(part.files)}".encode())
            digest.update(labels[split].tobytes())
        return cls(
            class_names=list(data.class_names),
            ordinal=data.ordinal,
            name=data.name,
            images=images,
            labels=labels,
            key=digest.hexdigest()[:16],
            checkpoint_bytes=checkpoint.read_bytes() if checkpoint is not None else None,
            **settings,
        )


def _dataset(payload: TrialPayload) -> DatasetTensors:
    import torch

    key = payload.key
    if key not in _DATASETS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only shared arrays; training never writes to them
            splits = {
                split: SplitTensors(
                    images=torch.from_numpy(payload.images[split]),
                    labels=torch.from_numpy(payload.labels[split]),
                    files=[],
                )
                for split in SPLITS
            }
        _DATASETS.clear()
        _DATASETS[key] = DatasetTensors(
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            class_names=payload.class_names,
            ordinal=payload.ordinal,
            name=payload.name,
        )
    return _DATASETS[key]


def _local_init(init: str, payload: TrialPayload) -> str:
    """``checkpoint:PATH`` → a node-local copy of the driver's file (same path on every node, so a trial's saved
    settings match wherever Ray retries it)."""
    blob = payload.checkpoint_bytes
    if not init.startswith("checkpoint:") or blob is None:
        return init
    path = Path(tempfile.gettempdir()) / f"tlsweep-backbone-{hashlib.sha256(blob).hexdigest()[:16]}.pt"
    if not path.exists():
        atomic_write_bytes(path, blob)
    return f"checkpoint:{path}"


def trial_message(planned: PlannedTrial, config: TrialConfig, objective_metric: str) -> dict[str, Any]:
    """The config Ray Tune carries for one trial (Tune wants a dict): the planned trial, its settings and the
    objective metric, as typed values; read them back with :func:`planned_of` and :func:`settings_of`."""
    return {"meta": planned, "trial": config, "objective_metric": objective_metric}


def planned_of(message: dict[str, Any]) -> PlannedTrial:
    planned: PlannedTrial = message["meta"]
    return planned


def settings_of(message: dict[str, Any]) -> TrialConfig:
    config: TrialConfig = message["trial"]
    return config


def trial_dirname(planned: PlannedTrial) -> str:
    """The trial's directory inside a Ray experiment: stable across drivers, so a rerun can find its checkpoints."""
    return f"{planned.phase}-{planned.trial_id}"


def previous_state(ray_location: Location | None, phase: str, dirname: str) -> dict[str, Any] | None:
    """The newest checkpoint an earlier experiment of this sweep saved for the same trial, if any."""
    import io

    import torch
    from pyarrow.fs import FileSelector, FileType

    if ray_location is None:
        return None
    fs = ray_location.filesystem

    def subdirs(path: str, prefix: str) -> list[Any]:
        infos = fs.get_file_info(FileSelector(path, allow_not_found=True))
        return [i for i in infos if i.type == FileType.Directory and i.base_name.startswith(prefix)]

    experiments = subdirs(ray_location.path, "sweep-") + subdirs(ray_location.path, f"{phase}-")  # "<phase>-": < 0.2.0
    for experiment in sorted(experiments, key=lambda i: i.base_name.partition("-")[2], reverse=True):
        checkpoints = subdirs(f"{experiment.path}/{dirname}", "checkpoint_")
        for latest in sorted(checkpoints, key=lambda i: i.base_name, reverse=True):
            try:
                with fs.open_input_file(f"{latest.path}/state.pt") as fh:
                    return torch.load(io.BytesIO(fh.read()), map_location="cpu", weights_only=True)
            except (OSError, RuntimeError, EOFError):  # half-written by the dead driver's trial: try an older one
                continue
    return None


def _check_gpu(estimate: dict[str, float] | None, trial: TrialConfig) -> None:
    """A clear error before training when this trial's GPU share cannot hold it (instead of an OOM mid-sweep)."""
    import torch

    from tlsweep.training.device import check_gpu_fit
    from tlsweep.training.loop import resolve_device

    if estimate is None or not torch.cuda.is_available():
        return
    device = resolve_device(trial.device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        check_gpu_fit(int(estimate["bytes"]), estimate["gpus_per_trial"], total, source="the sweep's trial")


def sweep_trainable(config: dict[str, Any], payload: TrialPayload) -> None:
    """One planned trial in a Ray worker: ``config`` is the searcher's (``trial_message``: the planned trial, its
    TrialConfig, the objective metric); it reports each epoch (with checkpoints as the policy says) and the final row.
    An error no retry can fix (``TlsweepError``: missing weights, a setting the trial refuses)
    is the trial's outcome, reported as ``status: failed`` with its message, not raised for Ray to retry."""
    from ray import tune

    from tlsweep.errors import TlsweepError

    try:
        _run_planned_trial(config, payload)
    except TlsweepError as exc:
        error = f"{type(exc).__name__}: {exc}"
        outcome = {"final": True, "status": "failed", "error": error, "objective": None, "val_metric": float("nan")}
        tune.report(outcome)  # val_metric: Tune requires the searcher's metric in every result


def _run_planned_trial(config: dict[str, Any], payload: TrialPayload) -> None:
    import time

    import ray
    import torch
    from ray import tune

    from tlsweep.engine.checkpoints import checkpoint_due
    from tlsweep.training.loop import run_trial

    meta = planned_of(config)
    trial = settings_of(config)
    trial = trial.replace(init=_local_init(trial.init, payload))
    data = _dataset(payload)
    _check_gpu(payload.gpu_estimate, trial)
    metric = config["objective_metric"]  # objective.metric: a per-epoch validation metric (val_acc, val_loss)
    node_id = ray.get_runtime_context().get_node_id()

    resume_state = None
    resumed_from_epoch = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry within this run (lost worker, crashed trial)
        with checkpoint.as_directory() as directory:
            resume_state = torch.load(Path(directory) / "state.pt", map_location="cpu", weights_only=True)
    else:  # a trial that was running when an earlier driver died
        resume_state = previous_state(payload.ray_location, meta.phase, trial_dirname(meta))
    if resume_state is not None:
        resumed_from_epoch = int(resume_state["progress"]["epoch"])
    policy = payload.checkpoints
    keep = policy.keeps(meta.phase, meta.config_kind)
    started = time.monotonic()
    resumed_s = float(resume_state["progress"]["elapsed_s"]) if resume_state is not None else 0.0
    last_checkpoint_s = resumed_s
    image_size = int(payload.images["train"].shape[-1])
    every_epoch = payload.report_every_epoch and meta.phase == "tune"
    last_report = time.monotonic()
    unreported: list[dict[str, float]] = []  # epochs since the last report: the next one carries them all

    def report(epoch_metrics: dict[str, float], get_state: Any) -> None:
        # each report waits for the driver (a round trip), so short epochs travel together in the next report
        nonlocal last_checkpoint_s, last_report
        unreported.append(dict(epoch_metrics))
        metrics = {**epoch_metrics, "val_metric": epoch_metrics[metric], "node_id": node_id, "epochs": unreported[:]}
        epoch = int(epoch_metrics["epoch"])
        now = time.monotonic()
        elapsed_s = resumed_s + now - started
        due = checkpoint_due(
            policy,
            epoch=epoch,
            final=epoch == trial.epochs,
            elapsed_s=elapsed_s,
            last_checkpoint_s=last_checkpoint_s,
            keep=keep,
        )
        if not due:
            if every_epoch or now - last_report >= LIVE_REPORT_INTERVAL_S:
                last_report = now
                unreported.clear()
                tune.report(metrics)
            return
        last_report = now
        unreported.clear()
        last_checkpoint_s = elapsed_s
        with tempfile.TemporaryDirectory() as directory:
            # with the class names and image size, a kept checkpoint also works with `tlsweep predict`
            state = {**get_state(), "class_names": list(data.class_names), "image_size": image_size}
            torch.save(state, Path(directory) / "state.pt")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    result = run_trial(trial, data, report=report, resume_state=resume_state)
    final = result.to_dict()
    objective = final[OBJECTIVE_COLUMNS[metric]]
    tune.report(
        {
            **final,  # history holds every epoch, also those run before a resume
            "final": True,
            "objective": objective,
            "val_metric": objective,
            "epoch": result.epochs_run,
            "node_id": node_id,
            "resumed_from_epoch": resumed_from_epoch,
        }
    )
