"""One W&B Sweep per tlsweep sweep: its config, its record in the results, and W&B's own API calls for it.

The Sweep exists so W&B's Sweep page (run table, parallel coordinates, parameter importance) shows the sweep's
trials. W&B schedules nothing: the sweep has a *local* controller that never runs; Ray Tune and Optuna decide
every trial. Each trial's run joins the sweep through its settings (``wandb.Settings(sweep_id=...)``; the
``WANDB_SWEEP_ID`` variable would make ``wandb.init`` drop project, entity and run id). Runs logged before a
sweep id was known (offline) join later through W&B's prior-runs mechanism (``tlsweep wandb sync``).

The sweep id is recorded beside the results in ``wandb.json`` (sweep id, entity, project, URL; never a key), so a
resumed sweep reuses it. Every server call goes through W&B's own client code (``wandb.apis.public.sweeps``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tlsweep.errors import StoreError
from tlsweep.results.store import WANDB_RECORD_FILE, ResultsStore

if TYPE_CHECKING:
    from tlsweep.space import ParamEntry
    from tlsweep.spec import SweepSpec

_log = logging.getLogger("tlsweep.tracking")

# The summary key under which the recorder stores each trial's objective value (tlsweep.engine.recorder).
OBJECTIVE_SUMMARY_KEY = "objective"


@dataclass(frozen=True)
class SweepRecord:
    """``wandb.json``: the W&B Sweep that mirrors a tlsweep sweep."""

    sweep_id: str
    entity: str | None
    project: str
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep_config(spec: SweepSpec) -> dict[str, Any]:
    """The W&B sweep config of ``spec``: its name, the objective as the metric, the factors and tuned parameters
    as parameters (keyed like the runs' top-level config), and a local controller so W&B schedules nothing."""
    parameters: dict[str, Any] = {}
    if spec.design.arms is not None:  # named arms: every run's config carries its `arm`
        parameters["arm"] = {"values": spec.design.arm_names()}
    parameters.update({name: {"values": list(levels)} for name, levels in spec.design.factors.items()})
    parameters.update({name: _parameter(entry) for name, entry in spec.design.tune.items()})
    goal = "maximize" if spec.objective.mode == "max" else "minimize"
    return {
        "name": spec.name,
        "description": (
            f"tlsweep sweep {spec.name}: trials are chosen by Ray Tune and Optuna (sampler "
            f"{spec.design.budget.sampler}); W&B only shows them. The metric is the best-epoch "
            f"{spec.objective.metric} of each trial."
        ),
        "method": "grid" if spec.design.budget.sampler == "grid" else "bayes",
        "metric": {"name": OBJECTIVE_SUMMARY_KEY, "goal": goal},
        "parameters": parameters,
        "controller": {"type": "local"},
        "project": spec.tracking.wandb.project,
        **({"entity": spec.tracking.wandb.entity} if spec.tracking.wandb.entity else {}),
    }


def _parameter(entry: ParamEntry) -> dict[str, Any]:
    """A tuned parameter in W&B's sweep-config vocabulary."""
    if entry.type == "categorical":
        return {"values": list(entry.choices or [])}
    if entry.type == "int":
        low, high = int(entry.low or 0), int(entry.high or 0)
        if entry.log:
            return {"distribution": "q_log_uniform_values", "min": low, "max": high, "q": int(entry.step or 1)}
        if entry.step and entry.step != 1:
            return {"distribution": "q_uniform", "min": low, "max": high, "q": int(entry.step)}
        return {"distribution": "int_uniform", "min": low, "max": high}
    low_f, high_f = float(entry.low or 0.0), float(entry.high or 0.0)
    if entry.step:
        kind = "q_log_uniform_values" if entry.log else "q_uniform"
        return {"distribution": kind, "min": low_f, "max": high_f, "q": float(entry.step)}
    return {"distribution": "log_uniform_values" if entry.log else "uniform", "min": low_f, "max": high_f}


# -- the record in the results ----------------------------------------------------------------------------------


def read_sweep_record(store: ResultsStore) -> SweepRecord | None:
    """The recorded W&B Sweep of the results, or None when none was created yet.

    Raises:
        StoreError: ``wandb.json`` exists but is not a sweep record (the message names the file and the fix).
    """
    text = store.read_text(WANDB_RECORD_FILE)
    if text is None:
        return None
    where = store.location.join(WANDB_RECORD_FILE).uri
    try:
        data = json.loads(text)
        record = SweepRecord(
            sweep_id=str(data["sweep_id"]),
            entity=None if data.get("entity") is None else str(data["entity"]),
            project=str(data["project"]),
            url=None if data.get("url") is None else str(data["url"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{where}: not a W&B sweep record ({type(exc).__name__}: {exc}); it needs `sweep_id` and `project`. "
            "Delete the file to let the next `tlsweep run` or `tlsweep wandb sync` create a new W&B Sweep."
        ) from exc
    if not record.sweep_id.strip():
        raise StoreError(f"{where}: `sweep_id` is empty; delete the file to create a new W&B Sweep")
    return record


def write_sweep_record(store: ResultsStore, record: SweepRecord) -> None:
    store.write_text(WANDB_RECORD_FILE, json.dumps(record.to_dict(), indent=2) + "\n")


# -- W&B's API ----------------------------------------------------------------------------------------------------


def public_api(*, entity: str | None, project: str, timeout_s: float) -> Any:
    """``wandb.Api`` for the configured server and key (W&B's own credential lookup; the key stays in W&B)."""
    import wandb

    overrides: dict[str, Any] = {"project": project}
    if entity:
        overrides["entity"] = entity
    return wandb.Api(overrides=overrides, timeout=max(1, round(timeout_s)))


def sweep_url(api: Any, record_entity: str | None, project: str, sweep_id: str) -> str | None:
    from wandb.sdk.wandb_sweep import _get_sweep_url

    entity = record_entity or api.settings.get("entity") or getattr(api, "default_entity", None)
    url: str | None = _get_sweep_url(
        base_url=api.settings["base_url"], entity=entity, project=project, sweep_id=sweep_id
    )
    return url


def create_sweep(
    api: Any, config: dict[str, Any], *, entity: str | None, project: str, prior_runs: list[str] | None = None
) -> SweepRecord:
    """Create the W&B Sweep (one ``UpsertSweep`` mutation); ``prior_runs`` (run ids) join it at once."""
    from wandb.apis.public.sweeps import _upsert_sweep

    sweep, _warnings = _upsert_sweep(
        api, config, entity=entity, project=project, prior_runs=prior_runs or None, display_name=config.get("name")
    )
    sweep_id = str(sweep["name"])
    project_obj = sweep.get("project") or {}
    entity = (project_obj.get("entity") or {}).get("name") or entity
    project = project_obj.get("name") or project
    return SweepRecord(sweep_id=sweep_id, entity=entity, project=project, url=sweep_url(api, entity, project, sweep_id))


def find_sweep(api: Any, record: SweepRecord) -> dict[str, Any] | None:
    """The sweep as the server knows it (``id``, ``name``, ``state``, ``runs``), or None when it does not exist."""
    from wandb.apis.public.sweeps import _sweep_with_runs

    try:
        found: dict[str, Any] = _sweep_with_runs(
            api, record.sweep_id, "{}", entity=record.entity, project=record.project
        )
    except Exception as exc:
        if "not found" in str(exc).lower():
            return None
        raise
    return found


def add_runs(api: Any, config: dict[str, Any], found: dict[str, Any], record: SweepRecord, runs: list[str]) -> None:
    """Attach existing runs (ids) to an existing sweep through its prior-runs filter (idempotent)."""
    from wandb.apis.public.sweeps import _upsert_sweep

    if runs:
        _upsert_sweep(api, config, obj_id=found["id"], entity=record.entity, project=record.project, prior_runs=runs)


def set_sweep_state(api: Any, record: SweepRecord, state: str) -> None:
    """``RUNNING`` (a resumed sweep) or ``FINISHED`` (the end); a sweep already in that state is left alone."""
    from wandb.apis.public.sweeps import _set_sweep_state

    try:
        _set_sweep_state(api, record.sweep_id, state, entity=record.entity, project=record.project)
    except Exception as exc:
        if "already" in str(exc).lower():
            return
        raise
