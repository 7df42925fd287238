"""Which errors are a lost node or worker (the trial runs again) and which are the trial's own (it fails)."""

from __future__ import annotations

import pytest
import ray.cloudpickle as cloudpickle
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    NodeDiedError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)

from tlsweep.engine.node_loss import is_node_loss, trial_error


def _task_error(cause: BaseException) -> RayTaskError:
    return RayTaskError("train", "Traceback ...", cause)


@pytest.mark.parametrize(
    "error",
    [RayActorError(), ActorDiedError(), ActorUnavailableError("gone", None), NodeDiedError("n"), WorkerCrashedError()],
)
def test_errors_of_a_lost_node_or_process_are_node_loss(error) -> None:
    assert is_node_loss(error)
    assert is_node_loss(_task_error(error))
    assert is_node_loss(_task_error(error).as_instanceof_cause())


@pytest.mark.parametrize("error", [RuntimeError("boom"), MemoryError(), ValueError("nan"), None])
def test_the_trials_own_errors_are_not(error) -> None:
    assert not is_node_loss(error)
    if error is not None:
        assert not is_node_loss(_task_error(error))
        assert not is_node_loss(_task_error(error).as_instanceof_cause())


class _Trial:
    def __init__(self, path) -> None:
        self.pickled_error_file = str(path) if path else None


def test_the_error_is_read_back_from_tunes_pickle(tmp_path) -> None:
    path = tmp_path / "error.pkl"
    path.write_bytes(cloudpickle.dumps(_task_error(ActorDiedError())))
    assert is_node_loss(trial_error(_Trial(path)))
    path.write_bytes(b"not a pickle")
    assert trial_error(_Trial(path)) is None
    assert trial_error(_Trial(None)) is None and trial_error(_Trial(tmp_path / "missing")) is None
