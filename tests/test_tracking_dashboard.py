"""`tlsweep wandb dashboard DIR`: the workspace view built from a resolved spec, and every way it refuses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tlsweep.cli import cli
from tlsweep.errors import StoreError
from tlsweep.tracking import tracker, wandb_workspace

SPEC = """\
name: age_hypothesis
dataset: {format: synthetic, root: data/age}
design:
  factors:
    init: [scratch, imagenet]
    train_fraction: [0.1, 1.0]
  tune:
    lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  recipe: {lr: 0.01, weight_decay: 1.0e-4}
objective: {metric: val_acc, mode: max}
hypothesis: {metric: test_acc}
tracking:
  wandb: {project: age, entity: lab, mode: offline}
"""


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "runs" / "age_hypothesis"
    directory.mkdir(parents=True)
    (directory / "spec.resolved.yaml").write_text(SPEC)
    (directory / "trials.parquet").write_bytes(b"PAR1")
    return directory


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*")}


def test_spec_fields_are_read_from_the_resolved_spec(results_dir: Path) -> None:
    spec = wandb_workspace.load_dashboard_spec(results_dir)
    assert spec == wandb_workspace.DashboardSpec(
        name="age_hypothesis",
        factors=("init", "train_fraction"),
        tuned=("lr", "weight_decay"),
        objective_metric="val_acc",
        test_metric="test_acc",
        project="age",
        entity="lab",
    )


def test_spec_missing_field_names_it(results_dir: Path) -> None:
    (results_dir / "spec.resolved.yaml").write_text("name: x\ndesign: {factors: {init: [imagenet, scratch]}}\n")
    with pytest.raises(
        StoreError,
        match=r"spec.resolved.yaml: invalid sweep spec .*\n  dataset: required field is "
        r"missing\n.*restore it, or rerun `tlsweep run SPEC`",
    ):
        wandb_workspace.load_dashboard_spec(results_dir)


def test_workspace_has_the_sweep_panels_filtered_to_its_group(results_dir: Path) -> None:
    pytest.importorskip("wandb_workspaces")
    import wandb_workspaces.reports.v2 as wr

    spec = wandb_workspace.load_dashboard_spec(results_dir)
    workspace = wandb_workspace.build_workspace(spec, entity="lab")
    assert (workspace.entity, workspace.project, workspace.name) == ("lab", "age", "tlsweep: age_hypothesis")
    panels = {type(panel).__name__: panel for section in workspace.sections for panel in section.panels}
    assert set(panels) == {"ParallelCoordinatesPlot", "ParameterImportancePlot", "LinePlot", "BarPlot", "RunComparer"}
    assert [column.metric for column in panels["ParallelCoordinatesPlot"].columns] == [
        wr.Config("init"),
        wr.Config("train_fraction"),
        wr.Config("lr"),
        wr.Config("weight_decay"),
        wr.SummaryMetric("objective"),
        wr.SummaryMetric("test_acc"),
    ]
    assert panels["ParameterImportancePlot"].with_respect_to == "objective"
    assert panels["LinePlot"].y == ["val_acc"] and panels["LinePlot"].groupby == wr.Config("init")
    assert panels["BarPlot"].metrics == ["test_acc"] and panels["BarPlot"].groupby == wr.Config("init")

    view = workspace._to_model()  # what save() would send, built without a server
    assert view.name == wandb_workspace.view_internal_name("age_hypothesis") == workspace._internal_name
    runset = json.loads(view.spec.model_dump_json(by_alias=True, exclude_none=True))["section"]["runSets"][0]
    assert runset["filters"]["filters"] == [
        {"key": {"section": "run", "name": "group"}, "op": "=", "value": "age_hypothesis", "disabled": False}
    ]
    assert {
        "config:init",
        "config:lr",
        "config:cell_id",
        "config:seed",
        "summary:objective",
        "summary:test_acc",
    } <= set(runset["runFeed"]["columnOrder"])
    assert runset["sort"]["keys"][0]["key"] == {"section": "summary", "name": "test_acc"}


def test_view_name_is_stable_per_sweep_and_valid() -> None:
    name = wandb_workspace.view_internal_name("age_hypothesis")
    assert name == wandb_workspace.view_internal_name("age_hypothesis") != wandb_workspace.view_internal_name("other")
    assert name.startswith("nw-") and name.endswith("-v") and name.count("-v") == 1


def test_save_updates_an_existing_view(monkeypatch: pytest.MonkeyPatch, results_dir: Path) -> None:
    pytest.importorskip("wandb_workspaces")
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.workspaces import internal

    saved: list[ws.Workspace] = []
    monkeypatch.setattr(wandb_workspace, "api_key_configured", lambda: True)
    monkeypatch.setattr(wandb_workspace, "check_server", lambda timeout_s: "https://wandb.test")
    monkeypatch.setattr(internal, "get_view_dict", lambda entity, project, name: {"id": f"id-of-{name}"})
    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(self) or self)
    monkeypatch.setattr(ws.Workspace, "url", property(lambda self: f"https://wandb.test/{self._internal_name}"))
    before = snapshot(results_dir)
    result = CliRunner().invoke(cli, ["wandb", "dashboard", str(results_dir)])
    assert result.exit_code == 0, result.output
    name = wandb_workspace.view_internal_name("age_hypothesis")
    assert result.output == f"W&B workspace view: https://wandb.test/{name}\n"
    assert saved[0]._internal_id == f"id-of-{name}"
    assert snapshot(results_dir) == before


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, results_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # import fails as if not installed
    before = snapshot(results_dir)
    result = CliRunner().invoke(cli, ["wandb", "dashboard", str(results_dir)])
    assert result.exit_code != 0
    assert "not installed" in result.output and "pip install 'tlsweep[dashboards]'" in result.output
    assert snapshot(results_dir) == before


def test_no_api_key_says_so(monkeypatch: pytest.MonkeyPatch, results_dir: Path) -> None:
    pytest.importorskip("wandb_workspaces")
    monkeypatch.setattr(wandb_workspace, "api_key_configured", lambda: False)
    before = snapshot(results_dir)
    result = CliRunner().invoke(cli, ["wandb", "dashboard", str(results_dir)])
    assert result.exit_code != 0
    assert "no W&B API key is configured; run `wandb login`" in result.output
    assert snapshot(results_dir) == before


def test_unreachable_server_says_so(monkeypatch: pytest.MonkeyPatch, results_dir: Path) -> None:
    pytest.importorskip("wandb_workspaces")
    monkeypatch.setattr(wandb_workspace, "api_key_configured", lambda: True)
    monkeypatch.setattr(tracker, "wandb_base_url", lambda: "http://127.0.0.1:9")
    before = snapshot(results_dir)
    result = CliRunner().invoke(cli, ["wandb", "dashboard", "--timeout", "2", str(results_dir)])
    assert result.exit_code != 0
    assert "the W&B server at http://127.0.0.1:9 is not reachable" in result.output
    assert snapshot(results_dir) == before


def test_not_a_results_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["wandb", "dashboard", str(tmp_path)])
    assert result.exit_code != 0
    assert f"{tmp_path / 'spec.resolved.yaml'}: not found" in result.output
    assert list(tmp_path.iterdir()) == []
