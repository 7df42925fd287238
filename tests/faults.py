"""Infrastructure failures injected into real sweeps from outside the product.

Inside trials: ``with injected(TrialFault(...)):`` around ``run_sweep`` makes it hand Ray a wrapper of
``tlsweep.engine.trainable.sweep_trainable``: the seam ``tlsweep.engine.run.launch`` documents (it looks the name up
in its module when a sweep launches). The wrapper
runs in Ray worker processes, which cannot import this module, so the module is pickled by value. In a matching
trial the wrapper patches ``tlsweep.training.loop.run_trial`` for that call only (Ray may reuse the process), to
fail before training or right after the epoch's report (and its checkpoint).

The driver: ``kill_driver_command(...)`` is a command line that runs ``tlsweep run`` with a results recorder that
SIGKILLs its own process once a matching trial has reported an epoch; run it as a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INJECTED = "injected fault"  # in the error message of an injected exception


def matches(planned: Any, match: dict[str, Any]) -> bool:
    """A trial's plan (the ``PlannedTrial`` of ``tlsweep.engine.trainable.planned_of(config)``) has every value of
    ``match``."""
    return all(getattr(planned, key, None) == value for key, value in match.items())


@dataclass(frozen=True)
class TrialFault:
    """A failure of the trials whose plan matches ``match``.

    ``after_epoch`` 0 fails before training, N right after epoch N is reported with its checkpoint.
    ``kill_worker`` ends the worker process (``os._exit``, as a lost node does) instead of raising.
    ``first_attempt_only`` spares attempts that resume from a checkpoint (a retry, or a trial an earlier driver
    left running), so they continue from the failed epoch.
    ``unfixable`` raises a ``WeightsError`` (an error no retry can fix) instead of a ``RuntimeError``.
    ``pause_until`` (a path) makes it a pause instead of a failure: the trial waits there until the path exists
    (two minutes at most), so a test can act while every running trial holds still.
    """

    match: dict[str, Any]
    after_epoch: int = 0
    kill_worker: bool = False
    first_attempt_only: bool = False
    unfixable: bool = False
    pause_until: str = ""

    def strike(self, meta: Any, *, epoch: int, resumed: bool) -> None:
        """Fail here if this is the epoch (and the attempt) the fault is for."""
        if epoch != self.after_epoch or (resumed and self.first_attempt_only):
            return
        if self.pause_until:
            deadline = time.monotonic() + 120
            while not Path(self.pause_until).exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            return
        if self.kill_worker:
            os._exit(1)
        if self.unfixable:
            from tlsweep.errors import WeightsError

            raise WeightsError(f"{INJECTED} in trial {meta.trial_id}: weights missing")
        raise RuntimeError(f"{INJECTED} in trial {meta.trial_id} after epoch {epoch}")


def _failing_trainable(fault: TrialFault) -> Callable[..., Any]:
    def sweep_trainable(config: dict[str, Any], payload: dict[str, Any]) -> Any:
        from tlsweep.engine import trainable
        from tlsweep.training import loop

        real = trainable.sweep_trainable
        if real.__module__ != trainable.__name__:  # the driver's patch is visible: not in a Ray worker process
            raise RuntimeError("the fault-injecting trainable must run in a Ray worker process")
        meta = trainable.planned_of(config)
        if not matches(meta, fault.match):
            return real(config, payload)
        run_trial = loop.run_trial

        def failing_run_trial(trial: Any, data: Any, *, report: Any, resume_state: Any = None) -> Any:
            resumed = resume_state is not None
            fault.strike(meta, epoch=0, resumed=resumed)

            def report_then_fail(epoch_metrics: dict[str, float], get_state: Any) -> None:
                report(epoch_metrics, get_state)
                fault.strike(meta, epoch=int(epoch_metrics["epoch"]), resumed=resumed)

            return run_trial(trial, data, report=report_then_fail, resume_state=resume_state)

        loop.run_trial = failing_run_trial
        try:
            return real(config, payload)
        finally:
            loop.run_trial = run_trial

    sweep_trainable.__name__ = "sweep_trainable"  # Ray's trainable name; the qualname stays ours (pickled by value)
    return sweep_trainable


@contextmanager
def injected(fault: TrialFault) -> Iterator[None]:
    """While active, every ``run_sweep`` in this process runs its trials with ``fault``."""
    import ray.cloudpickle

    from tlsweep.engine import trainable

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    original = trainable.sweep_trainable
    trainable.sweep_trainable = _failing_trainable(fault)
    try:
        yield
    finally:
        trainable.sweep_trainable = original


def kill_driver_command(match: dict[str, Any], after_epoch: int, run_args: list[str]) -> list[str]:
    """``tlsweep run *run_args`` whose driver SIGKILLs itself once a trial matching ``match`` reported
    ``after_epoch`` (or a later epoch)."""
    return [sys.executable, str(Path(__file__)), "kill-driver", json.dumps(match), str(after_epoch), *run_args]


def _kill_driver_after(match: dict[str, Any], after_epoch: int) -> None:
    from tlsweep.engine.recorder import ResultsRecorder

    record_result = ResultsRecorder.on_trial_result

    def on_trial_result(
        self: ResultsRecorder, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        record_result(self, iteration, trials, trial, result, **info)
        epoch = result.get("epoch")
        if not result.get("final") and epoch is not None and int(epoch) >= after_epoch:
            if matches(trial.config["meta"], match):  # the PlannedTrial (tlsweep.engine.trainable.planned_of)
                os.kill(os.getpid(), signal.SIGKILL)

    ResultsRecorder.on_trial_result = on_trial_result  # type: ignore[method-assign]


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "kill-driver":
        sys.exit(f"usage: {sys.argv[0]} kill-driver MATCH_JSON AFTER_EPOCH RUN_ARGS...")
    _kill_driver_after(json.loads(sys.argv[2]), int(sys.argv[3]))
    from tlsweep.cli import main

    sys.argv = ["tlsweep", "run", *sys.argv[4:]]
    main()
