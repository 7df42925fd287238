"""Arms (named recipes: `design.arms`) and comparisons (`hypothesis.compare`): spec, design, report.

The init shorthand (`factors.init`) keeps every existing spec and results directory as it was; a named arm may fix
any TrialConfig setting; the multiplicity family is every cell × comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from report_fixtures import simulate_results
from shipped_specs import TIMM_BRANCH_MERGED, shipped_params

from tlsweep.design import (
    arm_params,
    cell_id,
    plan_tune_trial,
    recipe_params,
    split_study_key,
    studies,
    study_key,
    trial_config,
    trial_counts,
)
from tlsweep.errors import SpecError
from tlsweep.report import build_report
from tlsweep.space import distributions_for
from tlsweep.spec import Comparison
from tlsweep.spec_load import load_spec, parse_spec
from tlsweep.spec_paths import relative_result_hash
from tlsweep.stats import adjust_pvalues
from tlsweep.stats.power import min_replicates

REPO = Path(__file__).resolve().parents[1]


def three_arms(**changes: Any) -> dict[str, Any]:
    """Fine-tune vs fixed feature extractor vs scratch, as the ants/bees tutorial poses it."""
    data: dict[str, Any] = {
        "name": "three_arms",
        "dataset": {"format": "synthetic", "root": "data/age"},
        "model": {"pretrained": {"checkpoint": "backbone.pt"}},
        "design": {
            "arms": {
                "finetune": {"init": "checkpoint"},
                "feature_extractor": {"init": "checkpoint", "freeze_depth": 5, "backbone_lr_mult": 0.5},
                "scratch": {"init": "scratch", "label_smoothing": 0.1},
            },
            "factors": {"train_fraction": [0.1, 1.0], "epochs": [2]},
            "tune": {
                "lr": {"type": "float", "low": 1.0e-4, "high": 1.0, "log": True},
                "weight_decay": {
                    "type": "float",
                    "low": 1.0e-6,
                    "high": 1.0e-2,
                    "log": True,
                    "when": {"arm": ["finetune", "scratch"]},
                },
            },
            "recipe": {"lr": 0.01, "weight_decay": 1.0e-4},
            "budget": {"trials_per_cell": 3},
        },
        "confirm": {"seeds": 8, "configs": ["best"]},
        "hypothesis": {"compare": {"control": "scratch"}},
    }
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def test_existing_specs_keep_their_hash_and_studies() -> None:
    """The init shorthand is unchanged: same result hash (results resume), same studies, same comparison.

    tlsweep 0.1 hashed the dataset and checkpoint paths as written, relative to the folder it ran from; a spec now
    holds them anchored at its file's folder, and ``check_resume`` also accepts the hash of the paths written
    relative to the current folder (``relative_result_hash``): the 0.1 hash, read from where 0.1 ran."""
    demo = load_spec(REPO / "tests" / "specs" / "demo-0.1.yaml")  # the demo spec since changed its design
    age = load_spec(REPO / "sweeps" / "age_hypothesis.yaml")  # its paths now ../data/...: the clone's data/
    assert relative_result_hash(demo, REPO / "tests" / "specs") == "3939b4f29ff3f906"  # tlsweep 0.1
    assert relative_result_hash(age, REPO) == "c2293f1fe37b1674"
    assert "arms" not in demo.resolved()["design"]
    assert len(studies(demo)) == 8 and all(set(s) == {"init", "train_fraction", "epochs"} for s in studies(demo))
    assert study_key(studies(demo)[0]) == "train_fraction=0.1|epochs=2|init=checkpoint"
    assert demo.compared_arms == [Comparison("checkpoint", "scratch", "greater")]
    assert age.compared_arms == [Comparison("imagenet", "scratch", "greater")] and len(age.design.arm_names()) == 2


def test_named_arms_cross_the_factors_and_fix_their_settings() -> None:
    spec = parse_spec(three_arms())
    assert spec.design.arm_names() == ["finetune", "feature_extractor", "scratch"]
    arm_studies = studies(spec)
    assert len(arm_studies) == 3 * 2 and trial_counts(spec) == {"tune": 18, "confirm": 48}
    probe = next(s for s in arm_studies if s["arm"] == "feature_extractor")
    assert probe == {"arm": "feature_extractor", "init": "checkpoint", "train_fraction": 0.1, "epochs": 2}
    assert cell_id(probe) == "train_fraction=0.1|epochs=2" and study_key(probe).endswith("|arm=feature_extractor")
    assert split_study_key(study_key(probe)) == ("train_fraction=0.1|epochs=2", "feature_extractor")
    assert split_study_key("all|init=scratch") == ("all", "scratch")  # `tlsweep status` reads both forms
    config = trial_config(spec, probe, {"lr": 0.05}, seed=3)
    assert (config.freeze_depth, config.backbone_lr_mult, config.init, config.lr, config.seed) == (
        5,
        0.5,
        "checkpoint:backbone.pt",
        0.05,
        3,
    )
    scratch = next(s for s in arm_studies if s["arm"] == "scratch")
    config = trial_config(spec, scratch, {}, seed=1)
    assert (config.init, config.label_smoothing, config.freeze_depth) == ("scratch", 0.1, 0)
    # weight_decay is tuned in finetune and scratch only; the recipe trial of each study suggests the recipe
    assert set(distributions_for(spec.design.tune, probe)) == {"lr"}
    assert set(distributions_for(spec.design.tune, scratch)) == {"lr", "weight_decay"}
    assert recipe_params(spec, probe) == {"lr": 0.01}
    assert arm_params(spec, probe, {"lr": 0.1, "weight_decay": 0.01}) == {"lr": 0.1}
    # paired arms: the same cell and tune slot get the same seed, a different trial id, the arm name recorded
    planned = [plan_tune_trial(spec, s, 1, {"lr": 0.1}) for s in arm_studies if s["train_fraction"] == 0.1]
    assert len({p.trial_id for p in planned}) == 3 and len({p.seed for p in planned}) == 1
    assert [(p.arm, p.init) for p in planned] == [
        ("finetune", "checkpoint"),
        ("feature_extractor", "checkpoint"),
        ("scratch", "scratch"),
    ]


def test_optimizer_steps_use_the_largest_batch_an_arm_fixes() -> None:
    from tlsweep.design import cell_steps

    spec = parse_spec(three_arms(design__arms__scratch={"init": "scratch", "batch_size": 100}))
    assert {c.batch_size for c in cell_steps(spec, 1000)} == {100}
    assert [c.steps for c in cell_steps(spec, 1000)] == [1 * 2, 10 * 2]  # 100 and 1000 images, 2 epochs


def test_the_wandb_sweep_and_dashboard_know_the_named_arms(tmp_path: Path) -> None:
    from tlsweep.results.store import Provenance, ResultsStore
    from tlsweep.tracking.wandb_sweep import sweep_config
    from tlsweep.tracking.wandb_workspace import load_dashboard_spec

    spec = parse_spec(three_arms())
    parameters = sweep_config(spec)["parameters"]
    assert parameters["arm"] == {"values": ["finetune", "feature_extractor", "scratch"]} and "init" not in parameters
    ResultsStore(tmp_path).write_spec(spec, Provenance(spec_hash=spec.result_hash()))
    assert load_dashboard_spec(tmp_path).factors == ("arm", "train_fraction", "epochs")


def test_when_arm_also_works_with_the_init_shorthand_and_when_init_with_named_arms() -> None:
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    data["design"]["tune"]["augmentation"]["when"] = {"arm": ["checkpoint"]}
    spec = parse_spec(data)
    by_arm = {s["init"]: set(distributions_for(spec.design.tune, s)) for s in studies(spec)}
    assert by_arm == {"checkpoint": {"lr", "augmentation"}, "scratch": {"lr"}}
    spec = parse_spec(
        three_arms(
            design__tune__weight_decay__when={"init": ["checkpoint"]},
            design__arms__feature_extractor={"init": "checkpoint", "freeze_depth": 5},
        )
    )
    tuned = {s["arm"]: set(distributions_for(spec.design.tune, s)) for s in studies(spec)}
    assert tuned == {"finetune": {"lr", "weight_decay"}, "feature_extractor": {"lr", "weight_decay"}, "scratch": {"lr"}}


def test_comparison_forms() -> None:
    control = parse_spec(three_arms()).compared_arms
    assert [c.pair for c in control] == [("finetune", "scratch"), ("feature_extractor", "scratch")]
    default = parse_spec(three_arms(hypothesis__compare=None)).compared_arms  # the scratch arm is the control
    assert default == control
    pairs = parse_spec(
        three_arms(
            hypothesis__compare=[
                ["finetune", "feature_extractor"],
                {"treated": "feature_extractor", "baseline": "scratch", "direction": "two-sided"},
            ],
            hypothesis__direction="greater",
        )
    ).compared_arms
    assert pairs == [
        Comparison("finetune", "feature_extractor", "greater"),
        Comparison("feature_extractor", "scratch", "two-sided"),
    ]
    less = parse_spec(three_arms(hypothesis__compare={"control": "finetune", "direction": "less"})).compared_arms
    assert [(c.treated, c.baseline, c.direction) for c in less] == [
        ("feature_extractor", "finetune", "less"),
        ("scratch", "finetune", "less"),
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"hypothesis__compare": {"control": "linear_probe"}},
            r"hypothesis\.compare\.control: 'linear_probe' is not an arm of design\.arms; arms: \['finetune'",
        ),
        (
            {"hypothesis__compare": [["finetune", "finetune"]]},
            r"hypothesis\.compare\[0\]: arm 'finetune' is compared with itself",
        ),
        (
            {"hypothesis__compare": [["finetune", "scratch"], ["scratch", "finetune"]]},
            r"finetune vs scratch is compared more than once",
        ),
        (
            {"hypothesis__compare": {"epochs": [2, 5]}},
            r"hypothesis\.compare\.epochs: 'epochs' is a factor crossed with every arm, not an arm",
        ),
        (
            {"hypothesis__compare": {"init": ["checkpoint", "scratch"]}},
            r"hypothesis\.compare\.init: the arms are design\.arms, not init levels; .*\{control: ARM\}",
        ),
        ({"hypothesis__compare": [["finetune"]]}, r"hypothesis\.compare\[0\]: \['finetune'\] is not a pair"),
        (
            {"design__tune__weight_decay__when": {"arm": ["finetune", "probe"]}},
            r"tune\.weight_decay\.when\.arm: \['probe'\] are not arms of this design",
        ),
        (
            {"design__arms__feature_extractor": {"init": "checkpoint"}},
            r"design\.arms\.finetune and design\.arms\.feature_extractor differ in nothing",
        ),
        (
            {"design__arms__feature_extractor": {"init": "checkpoint", "freeze_depth": 0, "momentum": 0.9}},
            r"differ in nothing",
        ),  # the model block's momentum and no freezing: still the fine-tune arm
        (
            {"design__arms__feature_extractor": {"freeze_depth": 5}},
            r"design: arms\.feature_extractor\.init: required; every arm names its init level",
        ),
        (
            {"design__arms__scratch": {"init": "scratch", "freeze_depth": 5}},
            r"design: arms\.scratch: init scratch with a frozen body",
        ),
        (
            {"design__arms__scratch": {"init": "scratch", "label_smoothing": 1.5}},
            r"design: arms\.scratch\.label_smoothing: must be in \[0, 1\), got 1\.5",
        ),
        (
            {"design__arms__scratch": {"init": "scratch", "optimizer": "lion"}},
            r"design: arms\.scratch\.optimizer: must be one of sgd, adamw",
        ),
        (
            {"design__arms__scratch": {"init": "scratch", "seed": 3}},
            r"design: arms\.scratch\.seed: not a setting an arm can fix",
        ),
        (
            {"design__arms__scratch": {"init": "scratch", "epochs": 3}},
            r"design: arms\.scratch\.epochs: 'epochs' is a factor",
        ),
        (
            {"design__arms__finetune": {"init": "checkpoint", "lr": 0.1}},
            r"tune\.lr: arm 'finetune' fixes lr .*when: \{arm: \['feature_extractor', 'scratch'\]\}",
        ),
        ({"design__factors__init": ["checkpoint", "scratch"]}, r"design: arms and factors\.init both"),
        ({"design__arms": {"only": {"init": "scratch"}}}, r"design: arms: declare at least two arms"),
        ({"design__arms": None}, r"design: declare the arms, either as init levels"),
        (
            {"confirm__adaptive": {"max_seeds": 12, "batch": 2}, "confirm__seeds": 4},
            r"confirm\.adaptive handles one comparison; hypothesis\.compare makes 2",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
def test_bad_arms_and_comparisons_are_refused_with_the_fix(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump(three_arms(**changes), sort_keys=False))
    with pytest.raises(SpecError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_compare_init_of_the_shorthand_names_the_init_levels(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    data["hypothesis"]["compare"] = {"init": ["imagenet", "scratch"]}
    with pytest.raises(SpecError, match=r"'imagenet' is not an init level of design\.factors\.init"):
        parse_spec(data)
    data["hypothesis"]["compare"] = {"control": "scratch"}  # the new forms work with init levels as arms too
    assert [c.pair for c in parse_spec(data).compared_arms] == [("checkpoint", "scratch")]


def test_report_holds_every_comparison_in_one_family(tmp_path: Path) -> None:
    """Three arms, two comparisons against the control: each has its table, verdicts, heatmap and overall verdict;
    Holm runs over every cell × comparison; the accuracy figure and the tuning curves show every arm."""
    spec = parse_spec(three_arms(storage=str(tmp_path)))
    root = simulate_results(
        tmp_path / "three_arms",
        spec=spec,
        seed_sd=0.005,
        noise_sd=0.005,
        arm_effects={"finetune": 0.15, "feature_extractor": 0.0},
    )
    report = build_report(root, seed=0, n_resamples=499)
    assert [part.name for part in report.comparisons] == ["finetune vs scratch", "feature_extractor vs scratch"]
    finetune, probe = report.comparisons
    assert finetune.overall.kind == "supported" and probe.overall.kind != "supported"
    assert all(len(part.cell_table) == 2 and len(part.cell_verdicts) == 2 for part in report.comparisons)
    assert report.cell_table.equals(finetune.cell_table)  # the top-level fields are the first comparison's
    # one family of 2 cells × 2 comparisons: Holm over the four p-values together
    raw = np.concatenate([part.cell_table["p_value"].to_numpy(dtype=float) for part in report.comparisons])
    adjusted = np.concatenate([part.cell_table["p_adjusted"].to_numpy(dtype=float) for part in report.comparisons])
    assert np.allclose(adjusted, adjust_pvalues(raw, "holm"))
    assert {
        "difference_heatmap_finetune_vs_scratch",
        "difference_heatmap_feature_extractor_vs_scratch",
        "accuracy_vs_fraction",
        "tuning_curves",
    } <= set(report.figures)
    assert all(part.heatmap is not None and part.heatmap.exists() for part in report.comparisons)
    assert set(report.tuning["arm"]) == {"finetune", "feature_extractor", "scratch"}
    text = report.markdown_path.read_text()
    for part in report.comparisons:
        assert f"**{part.name}: {part.overall.label}.**" in text
        assert f"## {part.name}: (B) Equal tuning budget — primary family" in text
        assert f"### {part.name}: the whole design" in text
        assert f"figures/difference_heatmap_{part.treated}_vs_{part.baseline}.png" in text
    assert "primary family of 4 tests (every cell × comparison)" in text
    assert "- Arms: finetune (init checkpoint); feature_extractor (init checkpoint, freeze_depth 5" in text
    assert "[finetune vs scratch]" in report.verdict_text and "[feature_extractor vs scratch]" in report.verdict_text


def test_publishing_logs_every_comparisons_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tlsweep.tracking
    from tlsweep.report.publish import _mirror_to_wandb

    spec = parse_spec(three_arms(storage=str(tmp_path)))
    root = simulate_results(tmp_path / "three_arms", spec=spec, arm_effects={"finetune": 0.1})
    report = build_report(root, seed=0, n_resamples=99, formats=("md",))
    logged: dict[str, Any] = {}
    monkeypatch.setattr(tlsweep.tracking, "log_report_summary", lambda settings, **kwargs: logged.update(kwargs))
    _mirror_to_wandb(root, report, "disabled")
    assert logged["tables"]["cells/feature_extractor_vs_scratch"] is report.comparisons[1].cell_table
    assert logged["tables"]["cells"] is report.comparisons[0].cell_table
    assert "[feature_extractor vs scratch]" in logged["verdict"]


def test_the_original_studies_are_posed_as_they_were() -> None:
    """ants/bees: fine-tune vs fixed feature extractor vs scratch; cats/dogs: ResNet-34 linear probe vs fine-tune vs
    scratch; the age study stays two-armed."""
    ants = load_spec(REPO / "sweeps" / "ants_bees.yaml")
    assert ants.model.backbone == "resnet18" and ants.design.arms == {
        "finetune": {"init": "imagenet"},
        "feature_extractor": {"init": "imagenet", "freeze_depth": 5},
        "scratch": {"init": "scratch"},
    }
    assert [(c.pair, c.direction) for c in ants.compared_arms] == [
        (("finetune", "scratch"), "greater"),
        (("feature_extractor", "scratch"), "greater"),
        (("finetune", "feature_extractor"), "two-sided"),
    ]
    cats = load_spec(REPO / "sweeps" / "cats_dogs.yaml")
    assert cats.model.backbone == "resnet34" and cats.design.arm_names() == ["linear_probe", "finetune", "scratch"]
    probe = next(s for s in studies(cats) if s["arm"] == "linear_probe")
    assert trial_config(cats, probe, {}, seed=0).freeze_depth == 5
    assert len(load_spec(REPO / "sweeps" / "age_hypothesis.yaml").compared_arms) == 1
    for spec in (ants, cats):  # Holm over every cell × comparison: the exact test can reach the gate
        family = len({cell_id(s) for s in studies(spec)}) * len(spec.compared_arms)
        needed = max(
            min_replicates(spec.hypothesis.alpha / family, paired=True, alternative=c.direction)
            for c in spec.compared_arms
        )
        assert spec.confirm.seeds >= needed


@pytest.mark.skipif(not TIMM_BRANCH_MERGED, reason="needs the timm branch (head: mlp, small_cnn, timm:* backbones)")
def test_flowers_poses_the_four_models_against_the_small_cnn() -> None:
    flowers = load_spec(REPO / "sweeps" / "flowers.yaml")
    assert [c.pair for c in flowers.compared_arms] == [
        ("vgg16_frozen", "small_cnn"),
        ("resnetv2", "small_cnn"),
        ("resnetv2_aug", "small_cnn"),
    ]
    configs = {s["arm"]: trial_config(flowers, s, {}, seed=0) for s in studies(flowers)}
    assert configs["small_cnn"].backbone == "small_cnn" and configs["small_cnn"].init == "scratch"
    assert configs["resnetv2_aug"].augmentation == "flip_color" and configs["resnetv2"].augmentation == "none"


@pytest.mark.parametrize("path", shipped_params())
def test_every_arm_of_a_shipped_spec_is_a_valid_run(path: Path) -> None:
    """Each arm's resolved TrialConfig passes the training package's own check (backbone registered included)."""
    from tlsweep.training.loop import check_config

    spec = load_spec(path)
    for levels in studies(spec):
        check_config(trial_config(spec, levels, recipe_params(spec, levels), seed=0))
