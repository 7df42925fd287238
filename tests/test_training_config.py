"""One definition of a valid TrialConfig (training, the training YAML and the sweep spec share it) and of the
pretraining recipe (``tlsweep pretrain`` and a spec's ``model.pretrain`` block share it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tlsweep.errors import SpecError
from tlsweep.spec_load import load_spec, parse_spec
from tlsweep.training.config import (
    PRETRAIN_DEFAULTS,
    SETTING_RULES,
    SETTINGS,
    TrialConfig,
    check_setting,
    check_trial_config,
    parse_init,
    pretrain_config,
    requirement,
)

REPO = Path(__file__).resolve().parents[1]


def _demo() -> dict[str, Any]:
    return yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())


def test_every_rule_names_a_setting() -> None:
    assert set(SETTING_RULES) <= set(SETTINGS)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("epochs", 0, "epochs must be an integer in 1..100000, got 0"),
        ("epochs", 2.5, "epochs must be an integer in 1..100000, got 2.5"),
        ("lr", 0.0, "lr must be > 0, got 0.0"),
        ("momentum", 1.0, r"momentum must be in \[0, 1\), got 1.0"),
        ("optimizer", "adam", "optimizer must be one of sgd, adamw, got 'adam'"),
        ("schedule", "linear", "schedule must be one of constant, step, cosine, got 'linear'"),
        ("freeze_depth", True, r"freeze_depth must be an integer in 0..5 \(0 trains everything"),
        ("amp", "yes", "amp: expected bool, got 'yes'"),
        ("device", 0, "device: expected str, got 0"),
    ],
)
def test_check_setting_names_the_setting_and_the_rule(name: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        check_setting(name, value)


def test_check_setting_with_a_source_names_the_file() -> None:
    with pytest.raises(SpecError, match=r"^run.yaml: epochs: expected int, got 'two'$"):
        check_setting("epochs", "two", source="run.yaml")
    with pytest.raises(SpecError, match=r"^run.yaml: lr: must be > 0, got -1.0$"):
        check_setting("lr", -1, source="run.yaml")


def test_check_setting_turns_whole_numbers_into_floats_only_where_a_float_is_expected() -> None:
    assert check_setting("lr", 1) == 1.0 and isinstance(check_setting("lr", 1), float)
    assert check_setting("epochs", 3) == 3 and isinstance(check_setting("epochs", 3), int)
    with pytest.raises(SpecError, match="expected float, got True"):
        check_setting("lr", True, source="x")


def test_check_trial_config_accepts_the_defaults_and_checks_warmup_against_epochs() -> None:
    check_trial_config(TrialConfig())
    check_trial_config(TrialConfig(epochs=3, warmup_epochs=3.0))
    with pytest.raises(SpecError, match=r"warmup_epochs must be in \[0, epochs\], got 3.5"):
        check_trial_config(TrialConfig(epochs=3, warmup_epochs=3.5))
    with pytest.raises(SpecError, match="'imagenet1k' is not understood"):
        check_trial_config(TrialConfig(init="imagenet1k"))


def test_parse_init_needs_no_torch() -> None:
    assert parse_init("checkpoint:/a/b.pt").argument == "/a/b.pt"
    assert parse_init("imagenet").argument is None
    code = (
        "import sys\n"
        "from tlsweep.training.config import TrialConfig, check_trial_config, pretrain_config\n"
        "import tlsweep.spec\n"
        "check_trial_config(pretrain_config({'init': 'imagenet:IMAGENET1K_V1'}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


# ---- backbone_lr_mult: > 0 everywhere ------------------------------------------------------------------------


def test_backbone_lr_mult_must_be_positive_in_training_and_in_the_spec(tmp_path: Path) -> None:
    check_trial_config(TrialConfig(backbone_lr_mult=0.1))
    for freeze_depth in (0, 5):  # a frozen body does not make 0 meaningful: its multiplier is unused
        with pytest.raises(SpecError, match=r"backbone_lr_mult must be > 0 .*freeze_depth.*, got 0.0"):
            check_trial_config(TrialConfig(backbone_lr_mult=0.0, freeze_depth=freeze_depth))
    data = _demo()
    data["model"]["backbone_lr_mult"] = 0
    with pytest.raises(SpecError, match=r"model.backbone_lr_mult: must be > 0 .*\(got 0\)"):
        parse_spec(data, source="demo.yaml")
    data = _demo()
    data["design"]["recipe"]["backbone_lr_mult"] = 0.0
    with pytest.raises(SpecError, match=r"recipe.backbone_lr_mult: must be > 0"):
        parse_spec(data, source="demo.yaml")


# ---- the spec applies the same rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "setting", "bad", "good"),
    [
        (("model", "optimizer", "momentum"), "momentum", 1.0, 0.5),
        (("model", "schedule", "warmup_epochs"), "warmup_epochs", -0.5, 0.5),
        (("model", "schedule", "step_size"), "step_size", -1, 2),
        (("model", "schedule", "gamma"), "step_gamma", 0.0, 0.5),
        (("model", "batch_size"), "batch_size", 0, 8),
        (("model", "eval_batch_size"), "eval_batch_size", 0, 8),
        (("model", "label_smoothing"), "label_smoothing", 1.0, 0.1),
        (("model", "backbone_lr_mult"), "backbone_lr_mult", 0.0, 0.5),
        (("model", "pretrain", "epochs"), "epochs", 0, 1),
        (("model", "pretrain", "lr"), "lr", 0.0, 0.1),
        (("model", "pretrain", "batch_size"), "batch_size", 0, 8),
        (("model", "pretrain", "weight_decay"), "weight_decay", -1e-4, 1e-4),
        (("model", "pretrain", "augmentation"), "augmentation", "mixup", "trivial"),
        (("design", "recipe", "lr"), "lr", -0.01, 0.02),
        (("design", "recipe", "augmentation"), "augmentation", "mixup", "none"),
    ],
)
def test_spec_and_training_accept_and_refuse_the_same_values(
    where: tuple[str, ...], setting: str, bad: Any, good: Any
) -> None:
    with pytest.raises(SpecError, match=rf"{setting} must be"):
        check_trial_config(TrialConfig(epochs=5).replace(**{setting: bad}))
    check_trial_config(TrialConfig(epochs=5).replace(**{setting: good}))
    for value, ok in ((bad, False), (good, True)):
        data = _demo()
        node = data
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        if ok:
            parse_spec(data)
            continue
        with pytest.raises(SpecError) as info:
            parse_spec(data)
        assert f"{where[-1]}: must be {requirement(setting)}" in str(info.value)


@pytest.mark.parametrize(
    ("factor", "levels", "message"),
    [
        ("train_fraction", [0.1, 0], r"train_fraction levels must be numbers in \(0, 1\], got 0"),
        ("epochs", [2, 0], "epochs levels must be whole numbers in 1..100000, got 0"),
        ("epochs", [2, 2.5], "epochs levels must be whole numbers in 1..100000, got 2.5"),
        ("augmentation", ["none", "mixup"], "augmentation levels must be one of none, flip, flip_color, trivial"),
    ],
)
def test_factor_levels_follow_the_setting_rules(factor: str, levels: list[Any], message: str) -> None:
    data = _demo()
    data["design"]["factors"][factor] = levels
    data["design"]["tune"].pop(factor, None)
    data["design"]["recipe"].pop(factor, None)
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


# ---- the pretraining recipe ------------------------------------------------------------------------------------


def test_pretrain_recipe_defaults_and_warmup() -> None:
    config = pretrain_config()
    assert config.init == "scratch" and config.schedule == "cosine" and config.augmentation == "flip"
    assert (config.epochs, config.lr, config.batch_size, config.weight_decay) == (5, 0.05, 128, 5e-4)
    assert config.warmup_epochs == 1.0  # min(1, epochs / 5)
    assert pretrain_config({"epochs": 2}).warmup_epochs == pytest.approx(0.4)
    assert pretrain_config({"epochs": 2, "warmup_epochs": 0.0}).warmup_epochs == 0.0
    assert {k: getattr(config, k) for k in PRETRAIN_DEFAULTS} == PRETRAIN_DEFAULTS


def test_a_spec_pretrain_block_defaults_to_the_recipe() -> None:
    data = _demo()
    data["model"]["pretrain"] = {"dataset": data["model"]["pretrain"]["dataset"]}
    pretrain = parse_spec(data).model.pretrain
    assert pretrain is not None
    for name in ("epochs", "lr", "batch_size", "weight_decay", "augmentation", "seed"):
        assert getattr(pretrain, name) == PRETRAIN_DEFAULTS[name]


def test_demo_pretrains_with_the_same_config_as_before() -> None:
    from tlsweep.engine.run import pretrain_trial_config

    spec = load_spec(REPO / "sweeps" / "demo.yaml")
    assert pretrain_trial_config(spec, num_threads=1) == TrialConfig(
        backbone="resnet_tiny",
        init="scratch",
        epochs=5,
        lr=0.05,
        batch_size=128,
        weight_decay=5e-4,
        augmentation="flip",
        seed=0,
        optimizer="sgd",
        momentum=0.9,
        schedule="cosine",
        warmup_epochs=1.0,
        num_threads=1,
    )
