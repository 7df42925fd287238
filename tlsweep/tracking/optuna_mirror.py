"""Every study of a sweep in Optuna's own storage, so ``optuna.load_study`` and optuna-dashboard can read it.

The sweep's Optuna studies live in the driver's memory (Ray Tune snapshots them with its experiment state; an
Optuna ``storage=`` there breaks ``Tuner.restore`` after a hard kill). This module mirrors them from the driver
instead: each recorded trial (a ``trials.parquet`` row) is added to one study per phase × cell × arm in an Optuna
``JournalStorage`` file, ``<results>/optuna.journal``, with the objective as the value, the tuned parameters with
their distributions, the per-epoch objective as intermediate values and the trial id, seed, cell, arm, phase and
status as user attributes.

Trials are added by trial id, once: a resumed sweep (which replays finished trials) or a second sync from the
Parquet files adds nothing twice. Remote results (s3://, gs://) are mirrored into a local staging copy, seeded from
the remote one, and uploaded with ``publish`` (at the end of each phase). The mirror never raises into a sweep:
failures are logged once and the mirror turns itself off; Parquet stays the source of truth. ``tlsweep dashboard``
adds cross-arm studies to the same journal (``tlsweep.tracking.arm_views``); ``read_journal`` leaves them out.

optuna is imported only when a mirror is opened.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from tlsweep.metrics import TEST_METRICS
from tlsweep.results.store import OPTUNA_JOURNAL_FILE
from tlsweep.tracking.arm_views import is_view

if TYPE_CHECKING:
    import optuna
    import pyarrow as pa

    from tlsweep.results.store import ResultsStore
    from tlsweep.spec import SweepSpec

_log = logging.getLogger("tlsweep.tracking")

JOURNAL_FILE = OPTUNA_JOURNAL_FILE
# user attributes of every mirrored trial (besides the test metrics of confirm trials)
TRIAL_ATTRS = ("trial_id", "phase", "cell_id", "arm", "seed", "config_kind", "tune_index", "replicate", "status")


def study_name(phase: str, cell_id: str, arm: str) -> str:
    """The mirrored study of one phase × cell × arm: ``tune/train_fraction=0.1|epochs=2|arm=scratch``."""
    return f"{phase}/{cell_id}|arm={arm}"


class StudyMirror:
    """The Optuna journal of one sweep's studies; the driver is its only writer.

    ``record`` adds one finished trial and ``sync`` every row of a trials table; both skip trial ids already in
    the journal and never raise. ``path`` is the local journal file (a staging copy when ``store`` is remote).
    """

    def __init__(self, spec: SweepSpec, path: Path, *, store: ResultsStore | None = None) -> None:
        self.spec = spec
        self.path = Path(path)
        self.store = store  # set when the results are remote: publish() uploads the journal there
        self.enabled = True
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._studies: dict[str, optuna.Study] = {}
        self._seen: set[str] = set()
        self._storage: Any = None
        try:
            self._storage = _open_journal(self.path)
            contents = read_journal(self._storage)
            problems = journal_differences(contents, spec.name)
            if problems:  # another sweep's journal, or lines written twice: set aside, rebuilt from the Parquet
                self._storage = _set_aside(self.path, "; ".join(problems), "mismatched")
                contents = read_journal(self._storage)
            self._seen.update(contents.trial_ids)
        except Exception as exc:  # noqa: BLE001 - the mirror never breaks a sweep
            self._fail("open", exc)

    # ---- the driver's calls ----------------------------------------------------------------------------------
    def record(self, row: Mapping[str, Any], epochs: Iterable[Mapping[str, Any]] = ()) -> bool:
        """Add the finished trial ``row`` (a trials.parquet row) with its epoch rows; False when already there."""
        if not self.enabled:
            return False
        with self._lock:
            try:
                trial_id = str(row["trial_id"])
                if trial_id in self._seen:
                    return False
                study = self._study(str(row["phase"]), str(row["cell_id"]), str(row["arm"]))
                study.add_trial(self._frozen(row, epochs))
                self._seen.add(trial_id)
                return True
            except Exception as exc:  # noqa: BLE001
                self._fail(f"record:{type(exc).__name__}", exc)
                return False

    def sync(self, trials: pa.Table, epochs: pa.Table | None = None) -> int:
        """Add every row of ``trials`` not mirrored yet (with its rows in ``epochs``); the number added."""
        if not self.enabled:
            return 0
        by_trial: dict[str, list[dict[str, Any]]] = {}
        if epochs is not None:
            for epoch_row in epochs.to_pylist():
                by_trial.setdefault(str(epoch_row["trial_id"]), []).append(epoch_row)
        return sum(self.record(row, by_trial.get(str(row["trial_id"]), ())) for row in trials.to_pylist())

    def publish(self) -> None:
        """Copy the journal to remote results (a no-op for local ones, whose journal is in place)."""
        if self.store is None or not self.enabled or not self.path.is_file():
            return
        try:
            with self._lock:
                data = self.path.read_bytes()
            self.store.write_bytes(JOURNAL_FILE, data)
        except Exception as exc:  # noqa: BLE001
            self._warn_once(
                f"publish:{type(exc).__name__}",
                "Optuna mirror: could not copy %s to %s (%s); the sweep continues",
                self.path,
                self.store.location.uri,
                exc,
            )

    def trial_ids(self) -> set[str]:
        """The trial ids the journal holds."""
        return set(self._seen)

    # ---- internals -------------------------------------------------------------------------------------------
    def _study(self, phase: str, cell_id: str, arm: str) -> optuna.Study:
        import optuna
        from optuna.study import StudyDirection

        name = study_name(phase, cell_id, arm)
        study = self._studies.get(name)
        if study is None:
            direction = StudyDirection.MAXIMIZE if self.spec.objective.mode == "max" else StudyDirection.MINIMIZE
            try:
                self._storage.get_study_id_from_name(name)
            except KeyError:  # created through the storage: optuna.create_study would log each one at INFO
                self._storage.create_new_study(directions=[direction], study_name=name)
            study = optuna.load_study(study_name=name, storage=self._storage)
            if not study.user_attrs:
                attrs = {
                    "sweep": self.spec.name,
                    "phase": phase,
                    "cell_id": cell_id,
                    "arm": arm,
                    "objective": self.spec.objective.metric,
                }
                for key, value in attrs.items():
                    study.set_user_attr(key, value)
            self._studies[name] = study
        return study

    def _frozen(self, row: Mapping[str, Any], epochs: Iterable[Mapping[str, Any]]) -> optuna.trial.FrozenTrial:
        import optuna
        from optuna.trial import TrialState

        from tlsweep.space import distributions_for

        levels = _levels(row)
        distributions = distributions_for(self.spec.design.tune, {"init": row.get("init") or row["arm"], **levels})
        tuned = _tuned_params(row.get("params_json"))
        params: dict[str, Any] = {}
        dists: dict[str, Any] = {}
        attrs: dict[str, Any] = {k: _plain(row.get(k)) for k in TRIAL_ATTRS if row.get(k) is not None}
        for name, value in tuned.items():
            dist = distributions.get(name)
            if dist is not None and _contains(dist, value):
                params[name], dists[name] = value, dist
            else:  # outside the study's space (a recipe value, an old spec): kept, but not as a parameter
                attrs[f"param.{name}"] = _plain(value)
        if row.get("phase") == "confirm":
            attrs.update({k: _plain(row[k]) for k in TEST_METRICS if _finite(row.get(k))})
        if row.get("error"):
            attrs["error"] = str(row["error"])[:500]
        metric = self.spec.objective.metric
        intermediate = {int(e["epoch"]): float(e[metric]) for e in epochs if _finite(e.get(metric))}
        objective = row.get("objective")
        status = row.get("status")
        if status in ("ok", "diverged") and _finite(objective):
            frozen = optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=float(objective),
                user_attrs=attrs,
                intermediate_values=intermediate,
            )
        else:
            state = TrialState.PRUNED if status == "pruned" else TrialState.FAIL
            frozen = optuna.trial.create_trial(
                params=params, distributions=dists, state=state, user_attrs=attrs, intermediate_values=intermediate
            )
        finished = row.get("finished_at")
        if isinstance(finished, datetime):
            wall = row.get("wall_time_s")
            frozen.datetime_complete = finished
            frozen.datetime_start = finished - timedelta(seconds=float(wall)) if _finite(wall) else finished
        return frozen

    def _fail(self, kind: str, exc: BaseException) -> None:
        self.enabled = False
        self._warn_once(
            kind,
            "Optuna mirror: %s failed (%s: %s); mirroring stops for this run, the sweep continues and Parquet keeps "
            "every number (rebuild the journal later with `tlsweep dashboard DIR --rebuild`)",
            kind.split(":")[0],
            type(exc).__name__,
            exc,
        )

    def _warn_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            _log.warning(message, *args)


def _open_journal(path: Path) -> Any:
    """A ``JournalStorage`` over the file ``path``; a last line cut short by a killed writer is dropped first, and
    a journal Optuna cannot read is moved aside (the mirror is rebuilt from the Parquet files)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        _drop_partial_last_line(path)
        try:
            storage = JournalStorage(JournalFileBackend(str(path)))
            storage.get_all_studies()  # replays the whole log: a damaged one fails here
            return storage
        except Exception as exc:  # noqa: BLE001 - any unreadable journal is set aside, never deleted
            return _set_aside(path, f"cannot be read: {exc}", "unreadable")
    return JournalStorage(JournalFileBackend(str(path)))


def _set_aside(path: Path, why: str, kind: str) -> Any:
    """Move the journal at ``path`` aside (never deleted) and open a new one there."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    aside = path.with_name(f"{path.name}.{kind}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
    shutil.move(str(path), aside)
    _log.warning("Optuna mirror: %s %s; moved it to %s and rebuilding it from the Parquet files", path, why, aside)
    return JournalStorage(JournalFileBackend(str(path)))


@dataclass(frozen=True)
class JournalContents:
    """What a journal holds: each study's trial ids (as often as recorded) and the sweep its studies name."""

    trials: dict[str, list[str]]  # study name -> trial ids, one per mirrored trial
    sweeps: dict[str, str | None]  # study name -> its ``sweep`` user attribute

    @property
    def trial_ids(self) -> set[str]:
        return {trial_id for ids in self.trials.values() for trial_id in ids}


def read_journal(storage: Any) -> JournalContents:
    """The mirrored studies and their trial ids of an opened ``JournalStorage`` (cross-arm views left out)."""
    trials: dict[str, list[str]] = {}
    sweeps: dict[str, str | None] = {}
    for study in storage.get_all_studies():
        if is_view(study.user_attrs):
            continue
        sweep = study.user_attrs.get("sweep")
        sweeps[study.study_name] = None if sweep is None else str(sweep)
        trials[study.study_name] = [
            str(trial.user_attrs.get("trial_id")) for trial in storage.get_all_trials(study._study_id, deepcopy=False)
        ]
    return JournalContents(trials, sweeps)


def _examples(items: Iterable[str]) -> str:
    ordered = sorted(items)
    return ", ".join(ordered[:3]) + (", ..." if len(ordered) > 3 else "")


def journal_differences(
    contents: JournalContents, sweep: str, expected: Mapping[str, set[str]] | None = None
) -> list[str]:
    """How a journal differs from the sweep ``sweep`` beyond trials not mirrored yet: studies of another sweep,
    trials recorded more than once and (given ``expected``: study name -> trial ids of trials.parquet) studies or
    trials the Parquet files lack. Empty when it is a faithful, possibly incomplete, mirror."""
    problems = []
    foreign = {name: other for name, other in contents.sweeps.items() if other is not None and other != sweep}
    if foreign:
        problems.append(f"{len(foreign)} studies of another sweep ({_examples(set(foreign.values()))})")
    counts = Counter(trial_id for ids in contents.trials.values() for trial_id in ids)
    twice = [trial_id for trial_id, count in counts.items() if count > 1]
    if twice:
        problems.append(f"{len(twice)} trials recorded more than once ({_examples(twice)})")
    if expected is not None:
        extra_studies = set(contents.trials) - set(expected) - set(foreign)
        if extra_studies:
            problems.append(f"{len(extra_studies)} studies not in trials.parquet ({_examples(extra_studies)})")
        known = {trial_id for ids in expected.values() for trial_id in ids}
        extra = set(counts) - known
        if extra:
            problems.append(f"{len(extra)} trials not in trials.parquet ({_examples(extra)})")
    return problems


def journal_lacks(contents: JournalContents, expected: Mapping[str, set[str]]) -> str | None:
    """What of trials.parquet (study name -> trial ids) the journal has not mirrored, or None when nothing."""
    present = contents.trial_ids
    missing = {trial_id for ids in expected.values() for trial_id in ids} - present
    if not missing:
        return None
    total = sum(len(ids) for ids in expected.values())
    studies = sum(1 for ids in expected.values() if ids & present)
    return (
        f"it lacks {len(missing)} of the {total} trials in trials.parquet "
        f"(it has trials of {studies} of {len(expected)} studies)"
    )


def _drop_partial_last_line(path: Path) -> None:
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def _levels(row: Mapping[str, Any]) -> dict[str, Any]:
    """The factor levels of a row (params_json's ``levels``, else parsed from ``cell_id``)."""
    parsed = _parse_json(row.get("params_json"))
    levels = parsed.get("levels") if isinstance(parsed.get("levels"), dict) else None
    if levels is not None:
        return dict(levels)
    out: dict[str, Any] = {}
    for part in str(row.get("cell_id") or "").split("|"):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key] = value
    return out


def _tuned_params(params_json: object) -> dict[str, Any]:
    parsed = _parse_json(params_json)
    tuned = parsed.get("tuned")
    if isinstance(tuned, dict):
        return dict(tuned)
    return {k: v for k, v in parsed.items() if k not in ("levels", "config")}


def _parse_json(text: object) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _contains(distribution: Any, value: object) -> bool:
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except Exception:  # noqa: BLE001 - a value of the wrong type is simply not in the space
        return False


def _finite(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: object) -> object:
    """JSON-safe user attribute values."""
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def open_study_mirror(spec: SweepSpec, store: ResultsStore, *, staging: Path | None = None) -> StudyMirror:
    """The mirror of a sweep's studies: ``<results>/optuna.journal`` for local results; for remote ones a local
    copy in ``staging`` (seeded from the remote journal when there is one) that ``publish`` uploads."""
    local = store.local_dir()
    if local is not None:
        return StudyMirror(spec, local / JOURNAL_FILE)
    if staging is None:
        raise ValueError("remote results need a local staging directory for the Optuna journal")
    path = Path(staging) / JOURNAL_FILE
    try:
        data = store.read_bytes(JOURNAL_FILE)
        if data is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    except Exception as exc:  # noqa: BLE001 - rebuilt from Parquet instead
        _log.warning("Optuna mirror: could not read the remote journal (%s); rebuilding it from the Parquet files", exc)
    return StudyMirror(spec, path, store=store)
