"""Telling a lost node or worker process apart from a trial that failed on its own.

Ray Tune counts both against ``FailureConfig(max_failures)``, and one lost node can cost a trial several of them:
the dead actor's pending tasks and its death notice each count, and a retry may land on the node before the
cluster has noticed it is gone. tlsweep gives such trials extra runs (``failures.node_loss_requeues``) so that a
reclaimed spot node costs time, never a result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

# the exception names Ray gives a lost node, a killed worker process or a lost placement (also in error.txt)
NODE_LOSS_ERRORS = (
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "NodeDiedError",
    "WorkerCrashedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
)


def is_node_loss(error: BaseException | None) -> bool:
    """True for errors of the infrastructure (the trial's process, node or placement was lost)."""
    from ray.exceptions import RayTaskError

    if error is None:
        return False
    if isinstance(error, RayTaskError):  # the trial's code raised, unless what it wraps is an actor's loss
        return is_node_loss(getattr(error, "cause", None))
    return any(cls.__name__ in NODE_LOSS_ERRORS for cls in type(error).__mro__)


def trial_error(trial: Trial) -> BaseException | None:
    """The last error of a Tune trial, read from the file Tune pickled it to (None when unreadable)."""
    import ray.cloudpickle as cloudpickle

    path = getattr(trial, "pickled_error_file", None)
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            error = cloudpickle.load(fh)
    except Exception:  # noqa: BLE001 - a missing or unreadable pickle only means "no verdict"
        return None
    return error if isinstance(error, BaseException) else None
