from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from shipped_specs import shipped_params

from tlsweep.cli import cli
from tlsweep.design import studies, trial_counts
from tlsweep.errors import SpecError
from tlsweep.spec import diff_resolved
from tlsweep.spec_load import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "sweeps").glob("*.yaml"))


def _base() -> dict:
    return yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", shipped_params())
def test_shipped_specs_load(path: Path) -> None:
    spec = load_spec(path)
    assert trial_counts(spec)["tune"] == len(studies(spec)) * spec.design.budget.trials_per_cell


def test_shipped_specs_include_the_required_ones() -> None:
    assert {"demo", "age_hypothesis", "ants_bees", "flowers", "cats_dogs"} <= {p.stem for p in SHIPPED}
    age = load_spec(REPO / "sweeps" / "age_hypothesis.yaml")
    assert age.model.backbone == "resnet50" and age.model.image_size == 128 and age.model.batch_size == 512
    assert age.design.recipe["lr"] == 0.01 and max(age.design.factors["epochs"]) >= 20
    assert age.confirm.seeds == 8 and 0 < age.resources.gpus_per_trial < 1
    demo = load_spec(REPO / "sweeps" / "demo.yaml")
    assert demo.confirm.seeds >= 5 and demo.model.pretrain is not None


def test_unknown_key_names_file_path_and_allowed_keys(tmp_path: Path) -> None:
    data = _base()
    data["model"]["optimiser"] = {"name": "sgd"}
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, data))
    text = str(err.value)
    assert str(tmp_path / "spec.yaml") in text
    assert "model.optimiser: unknown key" in text and "'optimizer'" in text


def test_bad_value_names_field_and_value(tmp_path: Path) -> None:
    data = _base()
    data["design"]["factors"]["train_fraction"] = [0.1, 1.5]
    with pytest.raises(
        SpecError, match=r"design\.factors: .*train_fraction levels must be numbers in \(0, 1\], got 1.5"
    ):
        load_spec(_write(tmp_path, data))


def test_overrides_change_any_field_with_yaml_types(tmp_path: Path) -> None:
    path = _write(tmp_path, _base())
    spec = load_spec(path, ["confirm.seeds=8", "design.factors.epochs=[1, 3]", "dataset.root=/elsewhere"])
    assert spec.confirm.seeds == 8 and spec.design.factors["epochs"] == [1, 3]
    assert str(spec.dataset.root) == "/elsewhere"
    with pytest.raises(SpecError, match=r"expected dotted.key=value"):
        load_spec(path, ["confirm.seeds"])
    with pytest.raises(SpecError, match=r"confirm.seeds"):
        load_spec(path, ["confirm.seeds=zero"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["design"]["recipe"].pop("lr"), "recipe is missing \\['lr'\\]"),
        (lambda d: d["design"]["recipe"].update(lr=5.0), "recipe.lr: 5.0 lies outside the tuned range"),
        (
            lambda d: d["design"]["factors"].update(init=["imagenet", "random"]),
            "init levels \\['random'\\] are unknown",
        ),
        (lambda d: d["design"]["factors"].update(freeze_depth=[0, 5]), "freeze_depth cannot be a factor"),
        (
            lambda d: d["design"]["tune"].update(momentum={"type": "float", "low": 0, "high": 1, "log": True}),
            "`low > 0` must hold for `log=True`",
        ),
        (
            lambda d: d["design"]["tune"].update(epochs={"type": "int", "low": 1, "high": 3}),
            "tune.epochs: cannot be tuned",
        ),
        (
            lambda d: d["hypothesis"].update(compare={"init": ["imagenet", "scratch"]}),
            "'imagenet' is not an init level",
        ),
        (lambda d: d["design"]["budget"].update(sampler="cmaes"), "design.budget.sampler"),
        (
            lambda d: d["model"]["pretrained"].pop("checkpoint"),
            "init level `checkpoint` needs model.pretrained.checkpoint",
        ),
        (
            lambda d: (d["model"].update(image_size=32), d["dataset"].update(image_size=64)),
            r"dataset.image_size \(64\) differs from model.image_size \(32\)",
        ),
    ],
)
def test_invalid_specs_are_refused_with_the_fix(tmp_path: Path, change, message: str) -> None:
    data = _base()
    change(data)
    with pytest.raises(SpecError, match=message):
        load_spec(_write(tmp_path, data))


def test_trial_counts_and_studies() -> None:
    data = _base()
    data["design"]["budget"]["trials_per_cell"] = 4
    data["confirm"].update(seeds=5, configs=["best", "recipe"])
    spec = parse_spec(data)
    assert len(studies(spec)) == 2 * 2 * 2
    assert trial_counts(spec) == {"tune": 8 * 4, "confirm": 8 * 5 * 2}
    assert [c.pair for c in spec.compared_arms] == [("checkpoint", "scratch")]


def test_result_hash_ignores_resources_and_tracking_but_not_the_design() -> None:
    base = parse_spec(_base())
    data = _base()
    data["resources"]["max_concurrent_trials"] = 7
    data["tracking"]["wandb"]["mode"] = "offline"
    assert parse_spec(data).result_hash() == base.result_hash()
    data["design"]["budget"]["trials_per_cell"] = 7
    changed = parse_spec(data)
    assert changed.result_hash() != base.result_hash()
    diff = diff_resolved(base.resolved(), changed.resolved())
    before = base.design.budget.trials_per_cell
    assert any(line.startswith(f"design.budget.trials_per_cell: {before} → 7") for line in diff)


def test_validate_command_prints_trials_per_phase(tmp_path: Path) -> None:
    demo = REPO / "sweeps" / "demo.yaml"
    result = CliRunner().invoke(
        cli, ["validate", str(demo), "--set", "confirm.seeds=6", "--set", "design.budget.trials_per_cell=4"]
    )
    assert result.exit_code == 0, result.output
    assert "tune phase: 32 trials" in result.output and "confirm phase: 48 trials" in result.output


def test_validate_command_reports_errors_with_exit_code_2(tmp_path: Path) -> None:
    data = _base()
    data["objective"] = {"metric": "test_acc", "mode": "max"}
    path = _write(tmp_path, data)
    proc = subprocess.run([sys.executable, "-m", "tlsweep", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "objective.metric" in proc.stderr and "val_acc" in proc.stderr
