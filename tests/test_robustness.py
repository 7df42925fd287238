"""Robustness: hostile specs, ``--set`` values and command lines, generated at test time.

* Property-based spec mutation (hypothesis, derandomized and bounded): ``tlsweep validate`` exits 0, or exits 2
  with a message naming the spec file (and the field or line), never with a traceback; and a spec it accepts never
  fails later: every trial config its studies and tune ranges can produce passes the trial's own checks, its seeds
  fit the results' int64 columns and its resolved copy is itself a valid spec.
* A corpus of hostile command lines over every command: each exits non-zero with a one-line error, never a
  traceback.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from confirm_plans import confirm_seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsweep.cli import cli
from tlsweep.design import recipe_params, studies, trial_config, tune_seed
from tlsweep.spec import TUNABLE, tune_range_values
from tlsweep.spec_load import load_spec, parse_spec
from tlsweep.training.loop import check_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sweeps" / "demo.yaml"
BASE: dict[str, Any] = yaml.safe_load(DEMO.read_text())
INT64 = 2**63


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        paths = [prefix[:-1]] if prefix else []
        for key, value in node.items():
            paths += _leaf_paths(value, f"{prefix}{key}.")
        return paths
    return [prefix[:-1]]


# every field of the demo spec, plus fields it leaves at their defaults and a few that do not exist
PATHS = sorted(
    set(_leaf_paths(BASE))
    | {
        "confirm.seed_base",
        "design.budget.seed",
        "model.pretrain.seed",
        "model.image_size",
        "resources.cpus_per_trial",
        "resources.gpus_per_trial",
        "hypothesis.equivalence_margin",
        "hypothesis.alpha",
        "hypothesis.region",
        "hypothesis.compare",
        "storage",
        "checkpoints.every.seconds",
        "design.tune.lr.when",
        "design.tune.momentum",
        "design.tune.warmup_epochs",
        "design.recipe.momentum",
        "design.recipe.warmup_epochs",
        "design.factors.freeze_depth",
        "design.factors.augmentation",
        "design.early_stopping",
        "confirm.adaptive",
        "model.pretrained.imagenet",
        "model.schedule.warmup_epochs",
        "failures.max_retries",
        "dataset.image_size",
        "unknown_key",
        "model.bogus",
    }
)

SPECIAL = [
    0,
    1,
    -1,
    2,
    7,
    9,
    100_000,
    2**31,
    2**62,
    2**63,
    2**64,
    -(2**63),
    0.5,
    1.0,
    1e-9,
    1e300,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    " ",
    "..",
    "../../x",
    "ftp://host/x",
    "s3://",
    "s3://bucket/p",
    "gs://b",
    "file://host/x",
    "2024-01-01",
    "resnet_tiyn",
    "resnet18",
    "mixup",
    "flip",
    "imagenet",
    "scratch",
    "checkpoint",
    "a" * 300,
    "é",
    "\x00",
    "[",
    "{a: 1}",
    True,
    False,
    None,
    [],
    {},
    [1, 2],
    [0.1, 0.5],
    ["checkpoint", "scratch"],
    {"type": "float", "low": 0.0, "high": 7.0},
    {"type": "int", "low": 0, "high": 9},
    {"type": "categorical", "choices": ["flip", "trivial"]},
    {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    {"init": ["checkpoint"]},
    {"init": ["imagenet"]},
    {"max_seeds": 8, "batch": 2},
]
scalars = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=6), scalars, max_size=3))
generic = st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "set", "set", "delete", "--set"]), values)
ENDS = [-1, 0, 0.5, 0.99, 1, 2, 5, 7, 9, 64, 1e-4, 1e3]


@st.composite
def tuned(draw: st.DrawFn) -> list[tuple[str, str, Any]]:
    """A tune range for one tunable parameter, with its recipe value at the low end: the kind of spec that used to
    pass validate and fail inside every or some trials."""
    name = draw(st.sampled_from(TUNABLE))
    if draw(st.booleans()):
        choices = draw(
            st.lists(st.sampled_from([*ENDS, "flip", "mixup", "none", "trivial"]), min_size=1, max_size=3, unique=True)
        )
        entry: dict[str, Any] = {"type": "categorical", "choices": choices}
        recipe = choices[0]
    else:
        low, high = sorted(draw(st.lists(st.sampled_from(ENDS), min_size=2, max_size=2)))
        kind = draw(st.sampled_from(["float", "int"]))
        entry = {"type": kind, "low": low, "high": high}
        recipe = int(low) if kind == "int" else low
    return [(f"design.tune.{name}", "set", entry), (f"design.recipe.{name}", "set", recipe)]


mutations = st.lists(st.one_of(generic.map(lambda change: [change]), tuned()), min_size=1, max_size=3).map(
    lambda groups: [change for group in groups for change in group]
)


def _apply(data: dict[str, Any], dotted: str, action: str, value: Any) -> None:
    node: Any = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        return
    if action == "delete":
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def _set_item(dotted: str, value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return f"{dotted}={text.removesuffix(chr(10)).removesuffix('...').strip()}"


def _invoke(args: list[str]) -> Result:
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exc_info)
    assert "Traceback" not in result.output, result.output
    return result


def assert_names_file_and_place(output: str, path: Path) -> None:
    """The error starts with the file, then the line (``file:12: ...``), the ``--set`` item, or the fields
    (``invalid sweep spec`` followed by ``  dotted.field: ...`` lines, or ``model.backbone: ...``)."""
    assert re.match(
        rf"Error: {re.escape(str(path))}(:\d+: |: (--set '|model\.|the file is empty|a sweep spec must be"
        rf"|invalid sweep spec \(\d+ problems?\):\n  \S[^\n]*: ))",
        output,
    ), output


def assert_runs(spec: Any) -> None:
    """Everything a run of ``spec`` meets before training: every trial config its studies can produce (the recipe
    trial, each end and the middle of each tune range) passes the trial's checks; seeds fit int64; the resolved
    copy is itself a valid spec with the same hash."""
    assert spec.model.image_size <= 1024 and math.isfinite(spec.resources.cpus_per_trial)
    for levels in studies(spec):
        params_list = [recipe_params(spec, levels)]
        for name, entry in spec.design.tune.items():
            if entry.applies_to(levels):
                ends = tune_range_values(entry)
                middle = [(ends[0] + ends[1]) / 2] if entry.type == "float" else []
                params_list += [{name: value} for value in [*ends, *middle]]
        for params in params_list:
            check_config(trial_config(spec, levels, params, spec.confirm.seed_base))
    seeds = [*confirm_seeds(spec), tune_seed(spec, spec.design.budget.trials_per_cell - 1)]
    assert all(0 <= seed < INT64 for seed in seeds)
    resolved = spec.resolved()
    json.dumps(resolved, allow_nan=False)
    assert parse_spec(resolved, source="resolved").result_hash() == spec.result_hash()


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=mutations)
def test_mutated_specs_are_refused_clearly_or_run(tmp_path: Path, changes: list[tuple[str, str, Any]]) -> None:
    data = copy.deepcopy(BASE)
    overrides: list[str] = []
    for dotted, action, value in changes:
        if action == "--set":
            overrides.append(_set_item(dotted, value))
        else:
            _apply(data, dotted, action, value)
    path = tmp_path / "mutated.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    args = ["validate", str(path)] + [part for item in overrides for part in ("--set", item)]
    result = _invoke(args)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert_names_file_and_place(result.output, path)
        return
    assert_runs(load_spec(path, overrides))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(position=st.integers(min_value=0, max_value=len(DEMO.read_bytes())), junk=st.binary(min_size=1, max_size=8))
def test_corrupted_spec_bytes_are_refused_clearly_or_run(tmp_path: Path, position: int, junk: bytes) -> None:
    content = DEMO.read_bytes()
    path = tmp_path / "corrupt.yaml"
    path.write_bytes(content[:position] + junk + content[position:])
    result = _invoke(["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert_names_file_and_place(result.output, path)
    else:
        assert_runs(load_spec(path))


# ---- hostile command lines ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def results_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from report_fixtures import simulate_results

    base = tmp_path_factory.mktemp("results")
    made: dict[str, Path] = {}

    def fresh(name: str) -> Path:
        made[name] = simulate_results(base / name, seeds=3, trials_per_cell=2)
        return made[name]

    fresh("ok")
    fresh("empty_spec").joinpath("spec.resolved.yaml").write_text("")
    fresh("list_spec").joinpath("spec.resolved.yaml").write_text("- 1\n")
    fresh("date_spec").joinpath("spec.resolved.yaml").write_text("name: 2024-01-01\n")
    report_file = fresh("report_file")
    shutil.rmtree(report_file / "report", ignore_errors=True)
    (report_file / "report").write_text("not a folder")
    (base / "a-file").write_text("x")
    made["file"] = base / "a-file"
    return made


HOSTILE_COMMANDS: dict[str, tuple[list[str], str]] = {
    "validate --set unclosed": (["validate", "{demo}", "--set", "confirm.seeds=["], "not valid YAML"),
    "validate --set date": (["validate", "{demo}", "--set", "name=2024-01-01"], "reads as a date"),
    "validate --set no =": (["validate", "{demo}", "--set", "confirm.seeds"], "expected dotted.key=value"),
    "validate --set deep": (["validate", "{demo}", "--set", "name=" + "[" * 3000 + "]" * 3000], "nesting deeper"),
    "validate missing": (["validate", "{tmp}/missing.yaml"], "no such file"),
    "validate backbone": (["validate", "{demo}", "--set", "model.backbone=resnet_tiyn"], "unknown backbone"),
    "run ftp storage": (["run", "{demo}", "--set", "storage=ftp://x/y"], "scheme 'ftp' is not supported"),
    "run storage under a file": (["run", "{demo}", "--storage", "{file}/runs"], "is not writable"),
    "run --storage ftp": (["run", "{demo}", "--storage", "ftp://x/y"], "unsupported results location"),
    "status missing": (["status", "{tmp}/nowhere"], "not found"),
    "status empty spec": (["status", "{empty_spec}"], "must be a YAML mapping"),
    "status list spec": (["status", "{list_spec}"], "must be a YAML mapping"),
    "report list spec": (["report", "{list_spec}"], "must be a YAML mapping"),
    "report date spec": (["report", "{date_spec}"], "spec.resolved.yaml:1: '2024-01-01' reads as a date or time"),
    "report report/ is a file": (["report", "{report_file}"], "is a file, not a directory"),
    "report --out a file": (["report", "{ok}", "--out", "{file}/r"], "is a file"),
    "predict --device banana": (
        ["predict", "--checkpoint", "{file}", "--images", "{tmp}", "--device", "banana"],
        "--device 'banana' is not a device",
    ),
    "train --out under a file": (["train", "--synthetic", "age", "--out", "{file}/run"], "is a file"),
    "train --device banana": (
        [
            "train",
            "--synthetic",
            "age",
            "--image-size",
            "16",
            "--device",
            "banana",
            "--out",
            "{tmp}/t",
            "--data-dir",
            "{tmp}/data",
        ],
        "device must be auto, cpu, cuda or cuda:N, got 'banana'",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_COMMANDS))
def test_hostile_command_lines_fail_with_one_clear_error(
    case: str, results_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything a command would write lands here
    args, expected = HOSTILE_COMMANDS[case]
    names = {"demo": str(DEMO), "tmp": str(tmp_path), **{k: str(v) for k, v in results_dirs.items()}}
    result = _invoke([arg.format(**names) if "{" in arg and not arg.startswith("name=") else arg for arg in args])
    assert result.exit_code != 0, result.output
    assert expected in " ".join(result.output.split()), result.output
    assert not (tmp_path / "data").exists()  # refused before any dataset was generated
