"""The driver's single writer: a Ray Tune callback that turns trial events into Parquet rows, W&B runs, the Optuna
journal and progress.

Rows are upserted by trial id (the trials table) and by (trial id, epoch) (the epochs table). Finished trials are
buffered and appended as one small part file per table at most every ``flush_interval_s`` seconds (on the first
Tune step after the interval, and at the end of the run), so recording costs the same with 20 trials recorded
or 20,000, and the driver keeps no recorded rows in memory. A driver killed at any moment loses at most the trials
that were running or not yet flushed: a rerun runs them again and never duplicates a row. Once a trial's row is
flushed, its Ray checkpoints are deleted from the storage unless the spec's ``checkpoints.keep`` keeps them.
:meth:`ResultsRecorder.compact` folds the parts into ``trials.parquet`` and ``epochs.parquet`` (``run_sweep`` calls it
once the tune phase's last trial is recorded and at the end of the run).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from tlsweep.design import PlannedTrial
from tlsweep.engine.checkpoints import delete_checkpoints
from tlsweep.engine.node_loss import is_node_loss, trial_error
from tlsweep.engine.trainable import planned_of, settings_of, trial_dirname
from tlsweep.metrics import TEST_METRICS
from tlsweep.results.location import RAY_SUBDIR
from tlsweep.results.schema import EPOCHS_SCHEMA, TRIALS_SCHEMA
from tlsweep.results.store import ResultsStore, rows_to_table

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from tlsweep.engine.progress import Progress
    from tlsweep.spec import SweepSpec
    from tlsweep.tracking import Tracker
    from tlsweep.tracking.optuna_mirror import StudyMirror

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s")
RESULT_KEYS = (
    "best_val_acc",
    "best_val_loss",
    "best_epoch",
    "final_val_acc",
    "chance",
    "num_classes",
    "n_train",
    "n_val",
    "n_test",
    "subset_hash",
    "epochs_run",
    "optimizer_steps",
    "wall_time_s",
)
FLUSH_INTERVAL_S = 2.0  # finished trials reach the results at most this long after they finish (plus one Tune step)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return None
    return value


class ResultsRecorder(Callback):
    def __init__(
        self,
        spec: SweepSpec,
        store: ResultsStore,
        *,
        metadata: dict[str, str],
        tracker: Tracker,
        progress: Progress | None = None,
        mirror: StudyMirror | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.spec = spec
        self.store = store
        self.metadata = metadata
        self.tracker = tracker
        self.progress = progress
        self.mirror = mirror  # the Optuna journal of the studies (tlsweep.tracking.optuna_mirror)
        self.flush_interval_s = flush_interval_s
        self._pending_trials: list[dict[str, Any]] = []  # recorded rows not yet in a part file
        self._pending_epochs: list[dict[str, Any]] = []
        # (phase, trial dir, keep its final checkpoint) whose (other) checkpoints go once flushed
        self._pending_deletes: list[tuple[str, str, bool]] = []
        self._last_flush = time.monotonic()
        self._epochs_buffer: dict[str, dict[int, dict[str, Any]]] = {}
        self._final: dict[str, dict[str, Any]] = {}
        self._started: dict[str, float] = {}
        self.recorded = 0
        self.busy_s = 0.0  # Σ epoch time of the trials recorded by this driver
        self.first_start: float | None = None  # the earliest start (record time - wall_time_s) of this driver's trials
        self.last_end: float | None = None  # when this driver recorded its last trial
        self.pruned: set[str] = set()  # Ray trial ids stopped early by the scheduler (shared with it)
        self.requeue: Callable[[PlannedTrial], None] | None = None  # the phase's searcher.requeue
        self._requeues: dict[str, int] = {}  # planned trial id -> runs it was given after losing its node
        self._lost_attempts: dict[str, int] = {}  # planned trial id -> attempts lost with nodes

    def connect(self, *, requeue: Callable[[PlannedTrial], None], pruned: set[str] | None) -> None:
        """The run's collaborators: the searcher's ``requeue`` (a trial lost with its node runs again) and the
        scheduler's set of stopped trials (recorded as pruned), shared with it."""
        self.requeue = requeue
        if pruned is not None:
            self.pruned = pruned

    def __getstate__(self) -> dict[str, Any]:
        # Tuner pickles its callbacks for Tuner.restore; tlsweep resumes from trials.parquet instead, and the live
        # store/tracker/progress objects cannot travel. A restored copy records nothing.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # ---- helpers -----------------------------------------------------------------------------------------------
    @staticmethod
    def _planned(trial: Trial) -> PlannedTrial:
        return planned_of(trial.config)

    def _base_row(self, trial: Trial, planned: PlannedTrial) -> dict[str, Any]:
        config = settings_of(trial.config).to_dict()
        pretrained = planned.init != "scratch"
        return {
            "sweep": self.spec.name,
            "trial_id": planned.trial_id,
            "phase": planned.phase,
            "cell_id": planned.cell_id,
            "config_kind": planned.config_kind,
            "tune_index": planned.tune_index,
            "replicate": planned.replicate,
            "seed": planned.seed,
            "arm": planned.arm,
            "init": planned.init,
            "train_fraction": config["train_fraction"],
            "epochs": config["epochs"],
            "augmentation": config["augmentation"],
            "freeze_depth": config["freeze_depth"] if pretrained else None,
            "lr": config["lr"],
            "weight_decay": config["weight_decay"],
            "params_json": json.dumps(
                {"tuned": planned.params, "levels": planned.levels, "config": config}, sort_keys=True
            ),
            "attempts": 1 + int(getattr(trial, "num_failures", 0) or 0) + self._lost_attempts.get(planned.trial_id, 0),
            "hostname": None,
            "node_id": None,
            "finished_at": datetime.now(timezone.utc),
        }

    @property
    def trials_span_s(self) -> float | None:
        """Seconds from this driver's first trial start to its last recorded trial (None before one was recorded).

        A trial starts when its training starts (``wall_time_s`` before it was recorded): a worker process's first
        trial also imports torch and the training code first, which is Ray's start-up, not the trial's."""
        if self.first_start is None or self.last_end is None:
            return None
        return max(self.last_end - self.first_start, 0.0)

    def slot_efficiency(self, slots: int) -> float | None:
        """Σ epoch time ÷ (``slots`` × :attr:`trials_span_s`): the share of the slots' time spent in epochs while
        this driver's trials ran (per-trial overhead and idle slots are the rest; Ray's start-up is not)."""
        span = self.trials_span_s
        return self.busy_s / (span * slots) if span else None

    @property
    def trials(self) -> Any:
        """The whole trials table as recorded so far (flushes first; reads the store: call it once per phase)."""
        self.flush()
        return self.store.read_trials()

    @property
    def epochs(self) -> Any:
        """The whole epochs table as recorded so far (flushes first; reads the store)."""
        self.flush()
        return self.store.read_epochs()

    def flush(self) -> None:
        """Append the buffered rows as one part file per table (epochs first: a trial row never lacks its epochs)."""
        self._last_flush = time.monotonic()
        if not self._pending_trials:
            return
        trials, epochs = self._pending_trials, self._pending_epochs
        if epochs:
            self.store.append_epochs(rows_to_table(epochs, EPOCHS_SCHEMA), metadata=self.metadata)
        self.store.append_trials(rows_to_table(trials, TRIALS_SCHEMA), metadata=self.metadata)
        self._pending_trials, self._pending_epochs = [], []
        deletes, self._pending_deletes = self._pending_deletes, []
        if deletes:  # recorded now: their checkpoints are no longer needed, but for the final one of a kept trial
            ray_location = self.store.location.join(RAY_SUBDIR)
            for phase, dirname, keep_final in deletes:
                delete_checkpoints(ray_location, phase, dirname, keep_final=keep_final)

    def compact(self) -> None:
        """Flush, then fold every part file into ``trials.parquet`` and ``epochs.parquet``."""
        self.flush()
        self.store.compact(metadata=self.metadata)

    def _flush_if_due(self) -> None:
        if self._pending_trials and time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def _record(self, trial: Trial, row: dict[str, Any]) -> None:
        tid = row["trial_id"]
        epoch_rows = [
            {
                "sweep": self.spec.name,
                "trial_id": tid,
                "phase": row["phase"],
                "cell_id": row["cell_id"],
                "arm": row["arm"],
                "seed": row["seed"],
                **values,
            }
            for _, values in sorted(self._epochs_buffer.pop(trial.trial_id, {}).items())
        ]
        self._pending_trials.append(row)
        self._pending_epochs.extend(epoch_rows)
        self.busy_s += sum(e.get("epoch_time_s") or 0.0 for e in epoch_rows)
        self.last_end = time.time()
        started = self.last_end - float(
            row.get("wall_time_s") or 0.0
        )  # the trial's own clock, as trials.parquet has it
        self.first_start = started if self.first_start is None else min(self.first_start, started)
        kept = self.spec.checkpoints.keeps(row["phase"], row.get("config_kind"))  # kept: only the final one
        self._pending_deletes.append((row["phase"], trial_dirname(planned_of(trial.config)), kept))
        self._flush_if_due()
        self.recorded += 1
        if self.mirror is not None:
            self.mirror.record(row, epoch_rows)
        summary = {k: row.get(k) for k in ("objective", "best_val_acc", "test_acc", "status", "epochs_run")}
        self.tracker.trial_finished(tid, summary=summary, status=row["status"])
        if self.progress is not None:
            self.progress.finished(planned_of(trial.config), row)

    # ---- Tune callback API -------------------------------------------------------------------------------------
    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._flush_if_due()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.flush()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        planned = self._planned(trial)
        self._started.setdefault(trial.trial_id, time.time())
        flat = {
            **planned.meta(),
            **{f"param.{k}": v for k, v in planned.params.items()},
            **settings_of(trial.config).to_dict(),
        }
        flat.pop("levels", None)
        flat.pop("params", None)
        flat.update({f"factor.{k}": v for k, v in planned.levels.items()})
        flat["sweep"] = self.spec.name
        name = f"{planned.phase}-{planned.cell_id}-{planned.arm}-{planned.config_kind}-{planned.seed}"
        self.tracker.trial_started(planned.trial_id, name=name, config=flat, job_type=planned.phase)
        if self.progress is not None:
            self.progress.started(planned)

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.progress is not None:
            self.progress.retried(self._planned(trial))

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        planned = self._planned(trial)
        if result.get("final"):
            self._final[trial.trial_id] = dict(result)
            return
        if "epoch" not in result:
            return
        buffer = self._epochs_buffer.setdefault(trial.trial_id, {})
        for ended in result.get("epochs") or [result]:  # a report carries the epochs since the previous one
            epoch = int(ended["epoch"])
            buffer[epoch] = values = _epoch_values(ended)
            self.tracker.trial_epoch(planned.trial_id, epoch, {k: v for k, v in values.items() if v is not None})
        if self.progress is not None:
            self.progress.epoch(planned, int(result["epoch"]), result.get("val_acc"))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        planned = self._planned(trial)
        row = self._base_row(trial, planned)
        final = self._final.pop(trial.trial_id, None)
        if final is not None:
            history = final.get("history") or []
            if history:  # complete even when the trial resumed from a dead driver's checkpoint
                live = max(self._epochs_buffer.get(trial.trial_id, {}), default=0)
                self._epochs_buffer[trial.trial_id] = epochs = {int(h["epoch"]): _epoch_values(h) for h in history}
                for epoch in sorted(e for e in epochs if e > live):  # the epochs that ended after the last report
                    self.tracker.trial_epoch(
                        planned.trial_id, epoch, {k: v for k, v in epochs[epoch].items() if v is not None}
                    )
            row["resumed_from_epoch"] = final.get("resumed_from_epoch")
            row.update({k: _finite_or_none(final.get(k)) for k in RESULT_KEYS})
            if planned.phase == "confirm":
                row.update({k: _finite_or_none(final.get(k)) for k in TEST_METRICS})
                row.update(confusion_columns(final.get("test_confusion")))
            row.update(
                status=final["status"],
                error=final.get("error"),
                objective=_finite_or_none(final["objective"]),
                node_id=final.get("node_id"),
                hostname=final.get("hostname"),
            )
        elif trial.trial_id not in self.pruned:
            # stopped without a result and not by the scheduler (Ctrl-C, the end of the experiment): nothing to
            # record; the trial runs again when the sweep resumes
            self._epochs_buffer.pop(trial.trial_id, None)
            self._started.pop(trial.trial_id, None)
            return
        else:  # stopped by ASHA before its last epoch: an outcome of the tune phase, scored on what it reached
            epochs = self._epochs_buffer.get(trial.trial_id, {})
            last = trial.last_result or {}
            vals = [(v["val_acc"], -(v["val_loss"] or 0), e) for e, v in epochs.items() if v["val_acc"] is not None]
            best = max(vals) if vals else None
            row.update(
                status="pruned",
                epochs_run=max(epochs) if epochs else 0,
                best_val_acc=best[0] if best else None,
                best_val_loss=-best[1] if best else None,
                best_epoch=best[2] if best else None,
                final_val_acc=epochs[max(epochs)]["val_acc"] if epochs else None,
                node_id=last.get("node_id"),
                hostname=last.get("hostname"),
            )
            column = self.spec.objective.column
            row["objective"] = row.get(column)
        row["wall_time_s"] = row.get("wall_time_s") or time.time() - self._started.pop(trial.trial_id, time.time())
        self._record(trial, row)

    def _requeued_after_node_loss(self, trial: Trial, planned: PlannedTrial, attempts: int) -> bool:
        """A trial whose Ray retries were all spent by a lost node or worker runs again instead of failing."""
        tid = planned.trial_id
        if self.requeue is None or self._requeues.get(tid, 0) >= self.spec.failures.node_loss_requeues:
            return False
        if not is_node_loss(trial_error(trial)):
            return False
        self._requeues[tid] = self._requeues.get(tid, 0) + 1
        self._lost_attempts[tid] = self._lost_attempts.get(tid, 0) + attempts
        self._epochs_buffer.pop(trial.trial_id, None)
        self._final.pop(trial.trial_id, None)
        self._started.pop(trial.trial_id, None)
        self.requeue(planned)  # same plan, same id: it continues from its last checkpoint (previous_state)
        if self.progress is not None:
            self.progress.retried(planned)
        return True

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        planned = self._planned(trial)
        attempts = max(1, int(getattr(trial, "num_failures", 1) or 1))  # every attempt failed
        if self._requeued_after_node_loss(trial, planned, attempts):
            return
        row = self._base_row(trial, planned)
        message = None
        error_file = getattr(trial, "error_file", None)
        try:
            if error_file:
                with open(error_file) as fh:
                    message = fh.read().strip().splitlines()[-1][:2000]
        except OSError:
            pass
        row.update(
            attempts=attempts + self._lost_attempts.get(planned.trial_id, 0),
            status="failed",
            error=message or str(getattr(trial, "error_msg", None) or "trial failed"),
            node_id=(trial.last_result or {}).get("node_id"),
            wall_time_s=time.time() - self._started.pop(trial.trial_id, time.time()),
        )
        self._final.pop(trial.trial_id, None)
        self._record(trial, row)


def confusion_columns(confusion: list[list[int]] | None) -> dict[str, str | None]:
    """The trials table's ``test_class_acc`` and ``test_confusion`` (JSON) of a trial's test confusion matrix."""
    from tlsweep.training.evaluate import class_accuracies

    if not confusion:
        return {"test_class_acc": None, "test_confusion": None}
    return {"test_class_acc": json.dumps(class_accuracies(confusion)), "test_confusion": json.dumps(confusion)}


def _epoch_values(result: dict[str, Any]) -> dict[str, Any]:
    values = {k: _finite_or_none(result.get(k)) for k in EPOCH_KEYS}
    values.update(epoch=int(result["epoch"]), step=int(result.get("step", 0)))
    return values
