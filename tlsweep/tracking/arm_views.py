"""Cross-arm studies in a sweep's Optuna journal: per phase × cell one study with every arm's trials.

The mirror (``tlsweep.tracking.optuna_mirror``) keeps one study per phase × cell × arm, so optuna-dashboard shows
each arm alone. A view, ``<phase>/<cell>|all arms``, holds the trials of all of a cell's arm studies with ``arm``
as a categorical parameter, so the dashboard's slice, parallel-coordinate, rank and importance plots, its trial
table and ``optuna.load_study`` compare the arms. Views are derived from the arm studies of the same journal (the
driver never writes them) and carry the study user attribute ``view``: ``read_journal`` and the journal-vs-Parquet
check skip them. Syncing adds each arm trial once, by trial id; a view that no longer matches its arm studies (a
trial twice or gone, other arms) is deleted and built again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

VIEW_ATTR = "view"
ALL_ARMS = "all arms"
ARM_PARAM = "arm"


def view_name(phase: str, cell_id: str) -> str:
    """The cross-arm study of one phase × cell: ``tune/train_fraction=0.1|epochs=2|all arms``."""
    return f"{phase}/{cell_id}|{ALL_ARMS}"


def is_view(user_attrs: dict[str, Any]) -> bool:
    """Whether a study with these user attributes is a derived view (not a mirrored arm study)."""
    return user_attrs.get(VIEW_ATTR) is not None


@dataclass(frozen=True)
class ArmView:
    """One cross-arm study: its name and id, its arm studies' ids (in arm order) and its number of trials."""

    name: str
    phase: str
    cell_id: str
    study_id: int
    arm_study_ids: tuple[int, ...]
    trials: int


def sync_arm_views(storage: Any, arms: Sequence[str]) -> list[ArmView]:
    """Bring every cross-arm study of the journal ``storage`` (an Optuna ``JournalStorage``) up to date.

    ``arms`` (the spec's arms, in order) are the choices of the ``arm`` parameter; arms found in the journal
    but not in ``arms`` follow, sorted. Cells with fewer than two arm studies get no view. Returns the views,
    in the order of their first arm study.
    """
    groups: dict[tuple[str, str], list[Any]] = {}
    views: dict[str, Any] = {}
    for study in storage.get_all_studies():
        attrs = study.user_attrs
        if is_view(attrs):
            views[study.study_name] = study
        elif all(isinstance(attrs.get(key), str) for key in ("phase", "cell_id", "arm")):
            groups.setdefault((attrs["phase"], attrs["cell_id"]), []).append(study)
    seen = {str(study.user_attrs["arm"]) for studies in groups.values() for study in studies}
    choices = [*dict.fromkeys(map(str, arms)), *sorted(seen - set(map(str, arms)))]
    order = {arm: index for index, arm in enumerate(choices)}
    out = []
    for (phase, cell_id), studies in groups.items():
        if len(studies) < 2:
            continue
        studies.sort(key=lambda study: order[str(study.user_attrs["arm"])])
        name = view_name(phase, cell_id)
        view_id, trials = _sync_view(storage, name, views.get(name), studies, choices)
        ids = tuple(study._study_id for study in studies)
        out.append(ArmView(name, phase, cell_id, view_id, ids, trials))
    return out


def _sync_view(storage: Any, name: str, view: Any, studies: list[Any], choices: list[str]) -> tuple[int, int]:
    from optuna.distributions import CategoricalDistribution

    finished = [
        (str(study.user_attrs["arm"]), trial)
        for study in studies
        for trial in storage.get_all_trials(study._study_id, deepcopy=False)
        if trial.state.is_finished()
    ]
    finished.sort(key=lambda item: (item[1].datetime_complete or datetime.min, item[1].number))  # in finish order
    source = {str(trial.user_attrs.get("trial_id")): (arm, trial) for arm, trial in finished}
    directions = list(studies[0].directions)
    if view is not None:
        listed = [
            str(trial.user_attrs.get("trial_id")) for trial in storage.get_all_trials(view._study_id, deepcopy=False)
        ]
        present = set(listed)
        stale = (
            view.user_attrs.get("arms") != json.dumps(choices)
            or list(view.directions) != directions
            or len(present) != len(listed)
            or not present <= set(source)
        )
        if stale:
            storage.delete_study(view._study_id)
            view = None
    if view is None:
        view_id = storage.create_new_study(directions=directions, study_name=name)
        attrs = {key: studies[0].user_attrs.get(key) for key in ("sweep", "phase", "cell_id", "objective")}
        attrs.update({VIEW_ATTR: ALL_ARMS, "arms": json.dumps(choices)})
        for key, value in attrs.items():
            storage.set_study_user_attr(view_id, key, value)
        present = set()
    else:
        view_id = view._study_id
    arm_dist = CategoricalDistribution(choices)
    known: dict[str, Any] = {ARM_PARAM: arm_dist}
    for trial in storage.get_all_trials(view_id, deepcopy=False):
        known.update(trial.distributions)
    added = 0
    for trial_id, (arm, trial) in source.items():
        if trial_id in present:
            continue
        storage.create_new_trial(view_id, template_trial=_with_arm(trial, arm, arm_dist, known))
        added += 1
    return view_id, len(present) + added


def _with_arm(
    trial: optuna.trial.FrozenTrial, arm: str, arm_dist: Any, known: dict[str, Any]
) -> optuna.trial.FrozenTrial:
    """A copy of ``trial`` with ``arm`` as a parameter; a parameter whose distribution cannot share the view's
    (another kind, log scale or choices than another arm's) is kept as the user attribute ``param.<name>``."""
    import optuna
    from optuna.distributions import check_distribution_compatibility
    from optuna.trial import TrialState

    params: dict[str, Any] = {ARM_PARAM: arm}
    dists: dict[str, Any] = {ARM_PARAM: arm_dist}
    attrs = dict(trial.user_attrs)
    for name, value in trial.params.items():
        dist = trial.distributions[name]
        try:
            if name in known:
                check_distribution_compatibility(known[name], dist)
        except ValueError:
            attrs[f"param.{name}"] = value
            continue
        known.setdefault(name, dist)
        params[name], dists[name] = value, dist
    complete = trial.state == TrialState.COMPLETE
    frozen = optuna.trial.create_trial(
        state=trial.state,
        values=trial.values if complete else None,
        params=params,
        distributions=dists,
        user_attrs=attrs,
        system_attrs=dict(trial.system_attrs),
        intermediate_values=dict(trial.intermediate_values),
    )
    frozen.datetime_start = trial.datetime_start
    frozen.datetime_complete = trial.datetime_complete
    return frozen
