"""Hostile inputs of round 3 (issue 25) that `tlsweep validate`, `predict`, `report` and `models` used to accept or
trace back on: each is refused with the file, the field and the fix, exit 2, no traceback."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from cli_exit import run_tlsweep

from tlsweep.errors import WeightsError
from tlsweep.training.backbones import create_model
from tlsweep.training.predict import load_trained_model, save_trained_model

REPO = Path(__file__).resolve().parents[1]
DEMO: dict[str, Any] = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())


def _with_arms(arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = copy.deepcopy(DEMO)
    del spec["design"]["factors"]["init"]
    spec["design"]["recipe"].pop("freeze_depth")
    spec["design"]["arms"] = arms
    spec["hypothesis"]["compare"] = {"control": "scratch"}
    return spec


def _changed(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(DEMO)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    node[last] = value
    return spec


def _tuning(spec: dict[str, Any], name: str, entry: dict[str, Any]) -> dict[str, Any]:
    spec["design"]["tune"][name] = entry
    spec["design"]["recipe"][name] = entry["high"]  # every tuned parameter's recipe value
    return spec


def _without_factor(spec: dict[str, Any], factor: str) -> dict[str, Any]:
    del spec["design"]["factors"][factor]
    return spec


def _tuned_when(spec: dict[str, Any], when: dict[str, list[str]]) -> dict[str, Any]:
    spec["design"]["tune"]["augmentation"]["when"] = when
    return spec


def _validate(
    spec: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
) -> tuple[Path, int, str, str]:
    """``tlsweep validate`` of ``spec`` written to a file: (the file, exit code, stdout, stderr)."""
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return (path, *run_tlsweep(["validate", path, *args], capsys, monkeypatch))


SCRATCH = {"init": "scratch"}
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "epochs 10**12": (
        _changed("design.factors.epochs", [2, 10**12]),
        "epochs levels must be whole numbers in 1..100000",
    ),
    "epochs 10**30": (_changed("design.factors.epochs", [2, 10**30]), "in 1..100000"),
    "duplicate categorical choices": (
        _changed("design.tune.augmentation", {"type": "categorical", "choices": ["none", "flip", "none"]}),
        "design.tune.augmentation: `choices` lists 'none' more than once",
    ),
    "a 200-character arm name": (
        _with_arms({"a" * 200: {"init": "checkpoint"}, "scratch": SCRATCH}),
        "an arm name of 200 characters; at most 64",
    ),
    "arms differing only in feature_cache": (
        _with_arms(
            {"a": {"init": "checkpoint"}, "b": {"init": "checkpoint", "feature_cache": False}, "scratch": SCRATCH}
        ),
        "design.arms.a and design.arms.b differ only in feature_cache, which cannot change a run's numbers",
    ),
    "arms differing only in momentum under adamw": (
        _with_arms(
            {
                "a": {"init": "checkpoint", "optimizer": "adamw"},
                "b": {"init": "checkpoint", "optimizer": "adamw", "momentum": 0.5},
                "scratch": SCRATCH,
            }
        ),
        "differ only in momentum",
    ),
    "arms differing only in backbone_lr_mult on a frozen body": (
        _with_arms(
            {
                "a": {"init": "checkpoint", "freeze_depth": 5},
                "b": {"init": "checkpoint", "freeze_depth": 5, "backbone_lr_mult": 0.1},
                "scratch": SCRATCH,
            }
        ),
        "differ only in backbone_lr_mult",
    ),
    "a single scratch level": (
        _changed("design.factors.init", ["scratch"]),
        "factors.init: ['scratch'] is one arm: nothing to compare it with",
    ),
    "an arm fixing train_fraction": (
        _without_factor(
            _with_arms({"a": {"init": "checkpoint", "train_fraction": 0.5}, "scratch": SCRATCH}), "train_fraction"
        ),
        "arms.a.train_fraction: an arm cannot fix train_fraction",
    ),
    "a when that holds in no study": (
        _tuned_when(_with_arms({"a": {"init": "checkpoint"}, "scratch": SCRATCH}), {"arm": ["a"], "init": ["scratch"]}),
        "tune.augmentation.when {'arm': ['a'], 'init': ['scratch']} holds in no study",
    ),
    "a tuned freeze_depth whose when selects only the scratch arm": (
        _tuning(
            _with_arms({"a": {"init": "checkpoint"}, "scratch": SCRATCH}),
            "freeze_depth",
            {"type": "int", "low": 0, "high": 5, "when": {"arm": ["scratch"]}},
        ),
        "design.tune.freeze_depth cannot change a run's numbers in any study its `when` selects (scratch trains",
    ),
    "momentum tuned where every arm uses adamw": (
        _tuning(
            _with_arms(
                {"a": {"init": "checkpoint", "optimizer": "adamw"}, "scratch": {**SCRATCH, "optimizer": "adamw"}}
            ),
            "momentum",
            {"type": "float", "low": 0.5, "high": 0.99},
        ),
        "design.tune.momentum cannot change a run's numbers in any study the design has (the optimizer has none)",
    ),
    "a backbone whose stride exceeds the image": (
        _with_arms({"a": {"init": "scratch", "backbone": "timm:convnext_atto"}, "scratch": SCRATCH}),
        "design.arms.a: timm:convnext_atto cannot run on 16x16 images (",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_validate_refuses(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, says = REFUSED[case]
    path, code, _, err = _validate(spec, tmp_path, capsys, monkeypatch)
    assert code == 2 and str(path) in err and says in err, err


def test_arms_differing_in_a_setting_that_matters_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _with_arms(
        {
            "a": {"init": "checkpoint", "optimizer": "sgd"},
            "b": {"init": "checkpoint", "optimizer": "sgd", "momentum": 0.5},
            "scratch": SCRATCH,
        }
    )
    _, code, _, err = _validate(spec, tmp_path, capsys, monkeypatch)
    assert code == 0, err


def test_a_checkpoint_for_another_backbone_is_refused_under_the_user_s_file_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "my-small-cnn.pt"
    torch.save(create_model("small_cnn", 3).state_dict(), checkpoint)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_changed("model.pretrained.checkpoint", str(checkpoint)), sort_keys=False))
    code, _, err = run_tlsweep(["validate", path], capsys, monkeypatch)
    assert code == 2
    assert f"model.pretrained.checkpoint: {checkpoint} does not fit resnet_tiny" in err and "missing (" in err


# arms that are one arm once the backbone is known (`feature_cache_dtype` where the frozen-feature cache is not used
# or `auto` stores that dtype anyway; a whole body frozen on a backbone of fewer than 5 levels), and a `when` that
# names no remaining arm: (spec, --set items, what the error names)
CHECKPOINT = {"init": "checkpoint"}
EVIT = "timm:efficientvit_m0"  # 4 freeze levels: freeze_depth 4 is its whole body
ONE_ARM: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "feature_cache_dtype with nothing frozen": (
        _with_arms({"a": CHECKPOINT, "b": {**CHECKPOINT, "feature_cache_dtype": "float16"}, "scratch": SCRATCH}),
        [],
        ["design.arms.a and design.arms.b differ only in feature_cache_dtype", "the frozen-feature cache is not used"],
    ),
    "feature_cache_dtype with the cache off": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "freeze_depth": 5, "feature_cache": False},
                "b": {**CHECKPOINT, "freeze_depth": 5, "feature_cache": False, "feature_cache_dtype": "float32"},
                "scratch": SCRATCH,
            }
        ),
        [],
        ["design.arms.a and design.arms.b differ only in feature_cache_dtype, which cannot change"],
    ),
    "feature_cache_dtype auto vs the dtype auto picks": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "freeze_depth": 5},
                "b": {**CHECKPOINT, "freeze_depth": 5, "feature_cache_dtype": "float16"},
                "scratch": SCRATCH,
            }
        ),
        [],
        ["differ only in feature_cache_dtype", "auto stores that dtype"],
    ),
    "feature_cache_dtype on a whole frozen timm body of 4 levels": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "backbone": EVIT, "freeze_depth": 4},
                "b": {**CHECKPOINT, "backbone": EVIT, "freeze_depth": 4, "feature_cache_dtype": "float16"},
                "scratch": SCRATCH,
            }
        ),
        [],
        ["design.arms.a and design.arms.b differ only in feature_cache_dtype"],
    ),
    "backbone_lr_mult on a whole frozen timm body of 4 levels": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "backbone": EVIT, "freeze_depth": 4},
                "b": {**CHECKPOINT, "backbone": EVIT, "freeze_depth": 4, "backbone_lr_mult": 0.1},
                "scratch": SCRATCH,
            }
        ),
        [],
        ["design.arms.a and design.arms.b differ only in backbone_lr_mult", "the whole body is frozen"],
    ),
    "backbone_lr_mult on a whole frozen small_cnn (4 levels)": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "backbone": "small_cnn", "freeze_depth": 4},
                "b": {**CHECKPOINT, "backbone": "small_cnn", "freeze_depth": 4, "backbone_lr_mult": 0.1},
                "scratch": SCRATCH,
            }
        ),
        [],
        ["design.arms.a and design.arms.b differ only in backbone_lr_mult"],
    ),
    "a when naming only a dropped arm": (
        _tuned_when(_with_arms({"a": CHECKPOINT, "scratch": SCRATCH}), {"arm": ["probe"]}),
        [],
        ["tune.augmentation.when.arm: ['probe'] are not arms of this design", "the arms: ['a', 'scratch']"],
    ),
    "a when naming only an arm --set renamed": (
        _tuned_when(_with_arms({"probe": CHECKPOINT, "scratch": SCRATCH}), {"arm": ["probe"]}),
        ["design.arms={linear: {init: checkpoint}, scratch: {init: scratch}}"],
        ["tune.augmentation.when.arm: ['probe'] are not arms", "the arms: ['linear', 'scratch']"],
    ),
    "a when --set to no arm": (
        _tuned_when(_with_arms({"probe": CHECKPOINT, "scratch": SCRATCH}), {"arm": ["probe"]}),
        ["design.tune.augmentation.when.arm=[]"],
        ["tune.augmentation.when.arm: lists no arm", "the arms: ['probe', 'scratch']"],
    ),
    "a when whose arm lacks its init level": (
        _tuned_when(_with_arms({"a": CHECKPOINT, "scratch": SCRATCH}), {"arm": ["a"], "init": ["scratch"]}),
        [],
        ["design.tune.augmentation.when", "holds in no study", "the arms: a (init checkpoint), scratch (init scratch)"],
    ),
}


@pytest.mark.parametrize("case", list(ONE_ARM))
def test_validate_refuses_arms_that_are_one_and_a_when_without_arms(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, overrides, says = ONE_ARM[case]
    sets = [part for item in overrides for part in ("--set", item)]
    path, code, out, err = _validate(spec, tmp_path, capsys, monkeypatch, "--no-data-check", *sets)
    message = " ".join(err.split())
    assert code == 2 and out == "" and err.startswith(f"Error: {path}"), err
    assert all(part in message for part in says), err
    fix = "change a setting of one arm or drop it" if "differ" in says[0] else "widen it|list one or more of them"
    assert any(option in message for option in fix.split("|")), err


# close to each refused case, and valid: the setting changes the run (or the `when` names an arm there is)
STILL_VALID: dict[str, tuple[dict[str, Any], list[str]]] = {
    "momentum tuned where one arm uses sgd": (
        _tuning(
            _with_arms({"a": {**CHECKPOINT, "optimizer": "adamw"}, "scratch": {**SCRATCH, "optimizer": "sgd"}}),
            "momentum",
            {"type": "float", "low": 0.5, "high": 0.99},
        ),
        [],
    ),
    "feature_cache_dtype of a cached partial freeze": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "freeze_depth": 3},
                "b": {**CHECKPOINT, "freeze_depth": 3, "feature_cache_dtype": "float16"},  # auto: float32 here
                "scratch": SCRATCH,
            }
        ),
        [],
    ),
    "feature_cache_dtype other than auto picks": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "freeze_depth": 5},
                "b": {**CHECKPOINT, "freeze_depth": 5, "feature_cache_dtype": "float32"},
                "scratch": SCRATCH,
            }
        ),
        [],
    ),
    "backbone_lr_mult on a partly frozen timm body of 4 levels": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "backbone": EVIT, "freeze_depth": 3},
                "b": {**CHECKPOINT, "backbone": EVIT, "freeze_depth": 3, "backbone_lr_mult": 0.1},
                "scratch": SCRATCH,
            }
        ),
        [],
    ),
    "backbone_lr_mult at depth 5 of a timm body of 7 levels": (
        _with_arms(
            {
                "a": {**CHECKPOINT, "backbone": "timm:test_vit", "freeze_depth": 5},
                "b": {**CHECKPOINT, "backbone": "timm:test_vit", "freeze_depth": 5, "backbone_lr_mult": 0.1},
                "scratch": SCRATCH,
            }
        ),
        [],
    ),
    "a when naming an arm there is": (
        _tuned_when(_with_arms({"probe": CHECKPOINT, "scratch": SCRATCH}), {"arm": ["probe"]}),
        [
            "design.arms={probe: {init: checkpoint}, linear: {init: checkpoint, freeze_depth: 5}, scratch: {init: scratch}}"
        ],
    ),
}


@pytest.mark.parametrize("case", list(STILL_VALID))
def test_validate_accepts_arms_close_to_the_refused_ones(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, overrides = STILL_VALID[case]
    sets = [part for item in overrides for part in ("--set", item)]
    _, code, out, err = _validate(spec, tmp_path, capsys, monkeypatch, "--no-data-check", *sets)
    assert code == 0 and "is valid" in out, err


# ---------------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["report", "RESULTS", "--seed", "-1"], "--seed"),
        (["models", "--timm", "resnet*", "--limit", "-5"], "--limit"),
        (["models", "--timm", "resnet*", "--limit", "0"], "--limit"),
    ],
)
def test_out_of_range_options_are_usage_errors(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run_tlsweep([str(tmp_path) if a == "RESULTS" else a for a in args], capsys, monkeypatch)
    assert code == 2 and says in err and "Invalid value" in err and out == ""


def _model_file(tmp_path: Path, **changes: Any) -> Path:
    model = create_model("resnet_tiny", 3, seed=0)
    state = model.state_dict()
    for name, value in changes.items():
        state[name] = torch.full_like(state[name], value)
    path = tmp_path / "model.pt"
    save_trained_model(path, arch="resnet_tiny", state_dict=state, class_names=["a", "b", "c"], image_size=16, init="x")
    return path


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_predict_refuses_non_finite_weights(tmp_path: Path, bad: float) -> None:
    load_trained_model(_model_file(tmp_path))  # the same file with finite weights loads
    with pytest.raises(WeightsError, match=r"model.pt: non-finite weights \(NaN or inf\) in fc.weight"):
        load_trained_model(_model_file(tmp_path, **{"fc.weight": bad}))


def test_predict_refuses_a_sweep_checkpoint_of_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save({"format": 99, "progress": {"best_state": {}}, "config": {"backbone": "resnet_tiny"}}, path)
    with pytest.raises(WeightsError, match=r"state.pt: a sweep checkpoint of format 99; this tlsweep reads format 1"):
        load_trained_model(path)


# ---------------------------------------------------------------------------------------------- datasets and runs


def _image(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (path.stem.__hash__() % 255, 30, 60)).save(path)


def test_data_cache_refuses_a_split_layout_without_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "split"
    for split in ("val", "test"):
        for cls in ("cat", "dog"):
            for i in range(3):
                _image(root / split / cls / f"{split}{cls}{i}.png")
    code, out, err = run_tlsweep(
        ["data", "cache", root, "--format", "imagefolder", "--image-size", 8], capsys, monkeypatch
    )
    assert code == 2 and out == ""
    assert f"{root}: has val/ and test/ but no train/" in err and "classes named test, val" in err
    assert not (root / ".tlsweep-cache").exists()


def test_data_cache_warns_as_validate_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "split"
    for split in ("train", "val", "test"):
        for cls in ("cat", "dog"):
            for i in range(3):
                _image(root / split / cls / f"{split}{cls}{i}.png")
    _image(root / "test" / "cat" / "traincat0.png")  # the same image (same pixels) in train and test
    code, _, err = run_tlsweep(
        ["data", "cache", root, "--format", "imagefolder", "--image-size", 8], capsys, monkeypatch
    )
    assert code == 0 and "warning:" in err and "traincat0.png" in err


def _csv_dataset(tmp_path: Path, rows: str) -> Path:
    root = tmp_path / "csv"
    for i in range(4):
        _image(root / f"{i}.png")
    (root / "labels.csv").write_text("path,label\n0.png,a\n1.png,b\n" + rows)
    spec = copy.deepcopy(DEMO)
    spec["dataset"] = {
        "format": "csv",
        "preset": None,
        "root": str(root),
        "splits": dict.fromkeys(("train", "val", "test"), "labels.csv"),
        "image_dirs": dict.fromkeys(("train", "val", "test"), "."),
        "path_column": "path",
        "label_column": "label",
        "label_map": {"a": 0, "b": 1},
        "class_names": ["a", "b"],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ("2.\x00png,a\n", "line 4: image path '2.\\x00png' contains a NUL byte; fix the CSV"),
        ("x" * 200_000 + ",b\n", "(200000 characters) is 200000 bytes long with a 200000-byte name"),
        ("d/" * 2100 + "3.png,b\n", "is 4205 bytes long with a 5-byte name (a path holds at most 4096 bytes"),
    ],
)
def test_a_csv_path_that_no_file_system_can_hold_is_a_row_error(
    row: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _csv_dataset(tmp_path, row)
    code, _, err = run_tlsweep(["validate", spec], capsys, monkeypatch)
    assert code == 2 and says in err, err


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_a_frozen_random_body_is_refused(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [command, "--freeze-depth", 5, "--epochs", 1, "--out", tmp_path / "out"]
    code, _, err = run_tlsweep([*args, *(["--synthetic", "age"] if command == "train" else [])], capsys, monkeypatch)
    assert code == 2 and "freeze_depth 5 with init scratch freezes a randomly initialized body" in err
    assert not list(tmp_path.rglob("*.pt")), "nothing trained"
    config = tmp_path / "train.yaml"
    config.write_text("freeze_depth: 3\ninit: scratch\n")
    code, _, err = run_tlsweep([command, "--config", config, "--out", tmp_path / "out"], capsys, monkeypatch)
    assert code == 2 and f"{config}: freeze_depth 3 with init scratch" in err


# ---------------------------------------------------------------------------------------------- resume


def _confirm_spec(adaptive: dict[str, Any] | None, **hypothesis: Any) -> Any:
    from tlsweep.spec_load import parse_spec

    data = copy.deepcopy(DEMO)
    data["confirm"] = {"seeds": 4, "configs": ["best"], "seed_base": 1000, "adaptive": adaptive}
    data["hypothesis"].update(hypothesis)
    return parse_spec(data)


ADAPTIVE = {"max_seeds": 12, "batch": 4}


@pytest.mark.parametrize(
    ("change", "listed"),
    [
        ({"alpha": 0.45}, "hypothesis.alpha: 0.05 -> 0.45"),
        ({"equivalence_margin": 0.5}, "hypothesis.equivalence_margin: 0.03 -> 0.5"),
        ({"direction": "two-sided"}, "hypothesis.direction"),
    ],
)
def test_resuming_an_adaptive_sweep_with_a_plan_steering_hypothesis_change_is_refused(
    change: dict[str, Any], listed: str, tmp_path: Path
) -> None:
    from tlsweep.engine.run import check_resume, sweep_provenance
    from tlsweep.errors import StoreError
    from tlsweep.results.store import ResultsStore

    store = ResultsStore(tmp_path / "demo")
    started = _confirm_spec(ADAPTIVE)
    store.write_spec(started, sweep_provenance(started, source=None))
    check_resume(_confirm_spec(ADAPTIVE), store, new=False)  # the same spec resumes
    with pytest.raises(StoreError, match="holds results of a different spec") as caught:
        check_resume(_confirm_spec(ADAPTIVE, **change), store, new=False)
    assert listed.split(":")[0] in str(caught.value)
    fixed = _confirm_spec(None)  # a fixed design: the hypothesis is the report's, not the plan's
    assert fixed.result_hash() == _confirm_spec(None, **change).result_hash()
    assert "hypothesis" not in fixed.result_fields()
