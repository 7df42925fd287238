"""A saved W&B workspace view for one sweep, built with W&B's workspace API (the optional ``wandb-workspaces``).

The view shows the runs of the sweep's group: parallel coordinates of the factors and tuned parameters (their
top-level config keys, the ``TrialConfig`` field names) against the summary ``objective``, parameter importance
for it, validation curves grouped by arm (``config.init``) and a runs table with the objective and the test
metric. It is saved under a name derived from the sweep name, so running the command again updates the same
view instead of adding one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tlsweep.errors import TlsweepError
from tlsweep.results.store import ResultsStore
from tlsweep.spec import ARM_FACTOR, ARM_KEY
from tlsweep.tracking import server_check
from tlsweep.tracking.wandb_settings import api_key_configured

if TYPE_CHECKING:
    import wandb_workspaces.workspaces as ws

INSTALL_HINT = "pip install 'tlsweep[dashboards]'"
# The summary key under which the sweep driver stores each trial's objective value (tlsweep.engine.recorder); per-epoch
# curves use the metric's own name (``objective.metric``, e.g. val_acc) from the run history.
OBJECTIVE_SUMMARY_KEY = "objective"


class DashboardError(TlsweepError):
    """The W&B dashboard cannot be built or saved here (package missing, no key, server unreachable)."""


@dataclass(frozen=True)
class DashboardSpec:
    """What the view needs from a sweep's resolved spec."""

    name: str
    factors: tuple[str, ...]
    tuned: tuple[str, ...]
    objective_metric: str
    test_metric: str | None
    project: str
    entity: str | None


def load_dashboard_spec(results_dir: Path) -> DashboardSpec:
    """Read ``results_dir/spec.resolved.yaml`` (read only).

    Raises:
        StoreError: the file is missing or is not a valid spec.
    """
    spec = ResultsStore(Path(results_dir)).read_spec()
    return DashboardSpec(
        name=spec.name,
        factors=tuple(spec.design.factors) if spec.design.arms is None else (ARM_KEY, *spec.design.factors),
        tuned=tuple(spec.design.tune),
        objective_metric=spec.objective.metric,
        test_metric=spec.hypothesis.metric,
        project=spec.tracking.wandb.project,
        entity=spec.tracking.wandb.entity,
    )


def view_internal_name(sweep_name: str) -> str:
    """The workspace view's stable internal name (``nw-<id>-v``, W&B's format) for a sweep."""
    return f"nw-tlsweep{hashlib.sha1(sweep_name.encode()).hexdigest()[:12]}-v"


def require_workspaces_package() -> None:
    """Raises DashboardError naming the fix when ``wandb-workspaces`` is not importable."""
    try:
        import wandb_workspaces.reports.v2
        import wandb_workspaces.workspaces  # noqa: F401
    except ImportError as exc:
        raise DashboardError(
            f"the W&B workspace API is not installed (package wandb-workspaces: {exc}); install it with: {INSTALL_HINT}"
        ) from exc


def build_workspace(spec: DashboardSpec, *, entity: str) -> ws.Workspace:
    """The workspace view for ``spec`` (not saved). Needs ``wandb-workspaces``; makes no network call."""
    require_workspaces_package()
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    objective = spec.objective_metric
    parameters = [*spec.factors, *(name for name in spec.tuned if name not in spec.factors)]
    summary_metrics = [OBJECTIVE_SUMMARY_KEY, *([spec.test_metric] if spec.test_metric else [])]
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(name)) for name in parameters]
    columns += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(name)) for name in summary_metrics]
    # the arms: config.arm (every trial's arm name) with design.arms, else config.init (the arms are init levels)
    arm_key = next((key for key in (ARM_KEY, ARM_FACTOR) if key in spec.factors), None)
    arm = wr.Config(arm_key) if arm_key else None

    search = ws.Section(
        name="Factors and tuned parameters vs objective",
        is_open=True,
        panels=[
            wr.ParallelCoordinatesPlot(title=f"{', '.join(parameters)} -> objective ({objective})", columns=columns),
            wr.ParameterImportancePlot(with_respect_to=OBJECTIVE_SUMMARY_KEY),
        ],
    )
    curves = ws.Section(
        name="Validation curves by arm",
        is_open=True,
        panels=[
            wr.LinePlot(
                title=f"{objective} by {arm_key}" if arm else objective,
                x="Step",
                y=[objective],
                groupby=arm,
                groupby_aggfunc="mean" if arm else None,
                groupby_rangefunc="stderr" if arm else None,
            )
        ],
    )
    sections = [search, curves]
    if spec.test_metric:
        sections.append(
            ws.Section(
                name="Test accuracy",
                is_open=True,
                panels=[
                    wr.BarPlot(
                        title=f"{spec.test_metric} by {arm_key}" if arm else spec.test_metric,
                        metrics=[spec.test_metric],
                        groupby=arm,
                        groupby_aggfunc="mean" if arm else None,
                        groupby_rangefunc="stderr" if arm else None,
                    ),
                    wr.RunComparer(diff_only="split"),
                ],
            )
        )
    pinned = [f"config:{name}" for name in [*parameters, "cell_id", "seed"]]
    pinned += [f"summary:{name}" for name in summary_metrics]
    order_by = spec.test_metric or OBJECTIVE_SUMMARY_KEY
    workspace = ws.Workspace(
        entity=entity,
        project=spec.project,
        name=f"tlsweep: {spec.name}",
        sections=sections,
        settings=ws.WorkspaceSettings(x_axis="Step", max_runs=100),
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("Group") == spec.name],
            pinned_columns=pinned,
            order=[ws.Ordering(ws.Summary(order_by), ascending=False)],
        ),
    )
    workspace._internal_name = view_internal_name(spec.name)
    return workspace


def check_server(timeout_s: float) -> str:
    """The W&B server URL once it answers like W&B's API within ``timeout_s``.

    Raises:
        DashboardError: one line naming the server, what went wrong and what to check.
    """
    return server_check.check_server(DashboardError, timeout_s)


def save_dashboard(results_dir: Path, *, timeout_s: float = 10.0) -> str:
    """Create or update the sweep's saved workspace view on the W&B server; return its URL.

    Reads ``results_dir/spec.resolved.yaml`` and writes nothing locally.

    Raises:
        StoreError: the spec cannot be read.
        DashboardError: ``wandb-workspaces`` is missing, no API key is configured, or the server is unreachable
            or rejects the request; the message says which and how to fix it.
    """
    spec = load_dashboard_spec(results_dir)
    require_workspaces_package()
    if not api_key_configured():
        raise DashboardError(
            "no W&B API key is configured; run `wandb login` (or set WANDB_API_KEY) and run the command again"
        )
    base_url = check_server(timeout_s)
    try:
        import wandb
        from wandb_workspaces.workspaces import internal

        entity = spec.entity or wandb.Api(timeout=int(max(1, timeout_s))).default_entity
        if not entity:
            raise DashboardError("no W&B entity: set tracking.wandb.entity in the spec or log in with `wandb login`")
        workspace = build_workspace(spec, entity=entity)
        try:
            existing = internal.get_view_dict(entity, spec.project, workspace._internal_name)
            workspace._internal_id = existing["id"]
        except ValueError:
            pass  # no view yet: save() creates it
        workspace.save()
        return str(workspace.url)
    except DashboardError:
        raise
    except Exception as exc:  # noqa: BLE001 - wandb's errors, whatever their class, become one line
        raise server_check.server_error(DashboardError, base_url, exc, "saving the workspace view") from None
