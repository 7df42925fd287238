"""The checkpoint policy (spec ``checkpoints:``): when a trial saves its training state, and removing the saved states
of recorded trials that the policy does not keep.

:func:`checkpoint_due` is the trainable's decision after each epoch (pure). :func:`delete_checkpoints` removes one
trial's ``checkpoint_*`` directories from every Ray experiment of the sweep (local or S3/GCS, through pyarrow's
filesystem), which the results recorder calls once the trial's row is written. No Ray import here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tlsweep.results.location import Location

if TYPE_CHECKING:
    from tlsweep.spec import CheckpointSpec

log = logging.getLogger(__name__)


def checkpoint_due(
    policy: CheckpointSpec,
    *,
    epoch: int,
    final: bool,
    elapsed_s: float,
    last_checkpoint_s: float,
    keep: bool,
) -> bool:
    """Whether a trial saves its training state after ``epoch``.

    Args:
        policy: the spec's ``checkpoints`` block.
        epoch: the epoch just finished (1-based).
        final: it is the trial's last epoch.
        elapsed_s: training time of the trial so far (across resumes).
        last_checkpoint_s: ``elapsed_s`` at the last save (0 when there was none, the resumed time after a resume).
        keep: the trial's checkpoints stay after it is recorded (``policy.keeps(phase)``).

    The last epoch saves when the checkpoint is kept (its weights are the result: best-validation weights
    included); otherwise it would be deleted as soon as the trial is recorded, so it saves only when the interval
    says so, like any other epoch. ``every.epochs: N`` saves after epochs N, 2N, …; ``every.seconds: S`` saves once
    S seconds of training passed since the last save, so a trial shorter than S saves nothing and reruns whole
    after a failure.
    """
    if final and keep:
        return True
    every = policy.every
    if every.epochs is not None:
        return epoch % every.epochs == 0
    return elapsed_s - last_checkpoint_s >= float(every.seconds or 0.0)


def delete_checkpoints(ray_location: Location, phase: str, dirname: str, *, keep_final: bool = False) -> int:
    """Delete the ``checkpoint_*`` directories of trial directory ``dirname`` in every experiment of the sweep under
    ``ray_location`` (``sweep-*``, and ``<phase>-*`` of drivers before 0.2.0: this driver's and those of earlier,
    interrupted drivers); returns how many. With ``keep_final``, the trial's final checkpoint stays: the newest one of
    the newest experiment (a killed run's partial checkpoints never outlive the run that finished it).

    Failures are logged, never raised: a checkpoint left behind costs storage, not results.
    """
    from pyarrow.fs import FileSelector, FileType

    fs = ray_location.filesystem
    deleted = 0
    try:
        found = []
        experiments = fs.get_file_info(FileSelector(ray_location.path, allow_not_found=True))
        for experiment in experiments:
            if experiment.type != FileType.Directory or not experiment.base_name.startswith(("sweep-", f"{phase}-")):
                continue
            entries = fs.get_file_info(FileSelector(f"{experiment.path}/{dirname}", allow_not_found=True))
            found += [
                (experiment.base_name.partition("-")[2], entry.base_name, entry.path)
                for entry in entries
                if entry.type == FileType.Directory and entry.base_name.startswith("checkpoint_")
            ]
        for *_, path in sorted(found)[:-1] if keep_final else found:
            fs.delete_dir(path)
            deleted += 1
    except OSError as exc:
        log.warning("could not delete the checkpoints of trial %s under %s: %s", dirname, ray_location.uri, exc)
    return deleted
