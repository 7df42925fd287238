"""Hostile sweep specs and ``--set`` values: each is refused by ``tlsweep validate`` with exit code 2 and a message
naming the file (and line or field) and the fix, never a traceback; and what validate accepts builds valid trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tlsweep.cli import cli
from tlsweep.errors import SpecError
from tlsweep.spec import MAX_NAME_LENGTH, MAX_SEED
from tlsweep.spec_load import load_spec, parse_spec
from tlsweep.spec_yaml import MAX_DEPTH, MAX_SPEC_BYTES, MAX_VALUES, load_yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sweeps" / "demo.yaml"


def _base() -> dict[str, Any]:
    return yaml.safe_load(DEMO.read_text())


def _validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["validate", *args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    return result.exit_code, result.output


# ---- the YAML itself -----------------------------------------------------------------------------------------
YAML_CASES = {
    "date": (b"name: 2024-01-01\n", r":1: '2024-01-01' reads as a date or time.*quote it"),
    "datetime": (b"name: x\nstorage: 2024-01-01 10:00:00\n", r":2: .* reads as a date or time"),
    "duplicate key": (b"name: a\nstorage: runs\nname: b\n", r":3: duplicate key 'name' \(first at line 1\)"),
    "nested duplicate": (b"model:\n  image_size: 8\n  image_size: 16\n", r":3: duplicate key 'image_size'"),
    "non-string key": (b"name: a\n1: b\n", r":2: key 1 is a int; keys are names"),
    "inf": (b"name: a\nresources: {cpus_per_trial: .inf}\n", r":2: '.inf' is not a finite number"),
    "nan": (b"name: a\nhypothesis: {alpha: .nan}\n", r":2: '.nan' is not a finite number"),
    "non-utf-8": (b"name: caf\xe9\n", r":1: byte 0xe9 at offset 9 is not UTF-8; save the file as UTF-8"),
    "set": (b"name: !!set {a: null}\n", r":1: .* reads as a set"),
    "binary": (b"name: !!binary aGVsbG8=\n", r":1: .* reads as binary data"),
    "python tag": (b"name: !!python/object:os.system x\n", r":1: not valid YAML: .*could not determine a constructor"),
    "recursive alias": (
        b"name: a\ndesign: &d {factors: *d}\n",
        r":2: an alias refers to a mapping or list that "
        r"contains it",
    ),
    "deep": (b"name: " + b"[" * 3000 + b"]" * 3000 + b"\n", rf":1: nesting deeper than {MAX_DEPTH} levels"),
    "deep block": (b"".join(b"  " * i + b"k%d:\n" % i for i in range(200)), rf"nesting deeper than {MAX_DEPTH}"),
    "bad yaml": (b"name: [a\n", r"not valid YAML: .*check the brackets"),
    "list": (b"- name: a\n", r"must be a YAML mapping at the top level, got list"),
    "empty": (b"", r"the file is empty"),
}


def _laughs(levels: int) -> bytes:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


YAML_CASES["billion laughs"] = (_laughs(12), rf"aliases expand to more than {MAX_VALUES:,} values")


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_hostile_yaml_is_refused_with_file_line_and_fix(tmp_path: Path, case: str) -> None:
    content, pattern = YAML_CASES[case]
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecError, match=pattern) as err:
        load_spec(path)
    assert str(err.value).startswith(str(path))
    code, output = _validate(str(path))
    assert code == 2 and str(path) in output


def test_alias_expansion_is_bounded_in_time_and_message_size(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(_laughs(40))  # 9**40 values if expanded
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert len(str(err.value)) < 500


def test_plain_aliases_and_merge_keys_still_work() -> None:
    text = "a: &x {lr: 0.1}\nb: *x\nc:\n  <<: *x\n  lr: 0.2\nd: ['2024-01-01', 1.5e-3]\n"
    assert load_yaml(text, source="s") == {
        "a": {"lr": 0.1},
        "b": {"lr": 0.1},
        "c": {"lr": 0.2},
        "d": ["2024-01-01", 1.5e-3],
    }


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"#" * (MAX_SPEC_BYTES + 10))
    with pytest.raises(SpecError, match="too large for a sweep spec"):
        load_spec(path)


def test_a_directory_or_unreadable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")


# ---- --set ---------------------------------------------------------------------------------------------------
SET_CASES = {
    "confirm.seeds=[": r"--set 'confirm.seeds=\[': not valid YAML.*quote text",
    "name=2024-01-01": r"--set 'name=2024-01-01': '2024-01-01' reads as a date",
    "resources.cpus_per_trial=.inf": r"not a finite number",
    "confirm.seeds={a: 1, a: 2}": r"duplicate key 'a'",
    "a..b=1": r"'a..b' has an empty part",
    "=3": r"expected dotted.key=value",
    "confirm.seeds": r"expected dotted.key=value",
    "name.x=1": r"'name' holds a str, not a mapping",
}


@pytest.mark.parametrize("item", sorted(SET_CASES))
def test_hostile_set_values_are_refused(item: str) -> None:
    with pytest.raises(SpecError, match=SET_CASES[item]) as err:
        load_spec(DEMO, [item])
    assert str(err.value).startswith(str(DEMO))
    code, output = _validate(str(DEMO), "--set", item)
    assert code == 2 and "--set" in output


# ---- field bounds --------------------------------------------------------------------------------------------
def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return data


FIELD_CASES: list[tuple[str, Any, str]] = [
    ("confirm.seed_base", 2**63, r"confirm\.seed_base: Input should be less than or equal to"),
    ("confirm.seed_base", -1, r"confirm\.seed_base"),
    ("design.budget.seed", 2**60, r"design\.budget\.seed"),
    ("model.pretrain.seed", 2**64, r"model\.pretrain\.seed"),
    ("resources.cpus_per_trial", float("inf"), r"resources\.cpus_per_trial"),
    ("resources.cpus_per_trial", 1e9, r"resources\.cpus_per_trial"),
    ("model.image_size", 100_000, r"model\.image_size: Input should be less than or equal to 1024"),
    ("name", "a" * (MAX_NAME_LENGTH + 1), r"name: String should have at most 100 characters"),
    ("storage", "ftp://host/x", r"storage: scheme 'ftp' is not supported"),
    ("storage", "s3://", r"storage: no bucket name"),
    ("storage", "file://host/x", r"storage: a file:// URI must be file:///absolute/path"),
    ("storage", " ", r"storage: empty"),
    ("dataset.root", "", r"dataset\.root: empty"),
    ("hypothesis.equivalence_margin", float("inf"), r"hypothesis\.equivalence_margin"),
    ("hypothesis.equivalence_margin", 1.5, r"hypothesis\.equivalence_margin: must be below 1"),
    ("hypothesis.alpha", float("nan"), r"hypothesis\.alpha"),
    ("design.recipe.lr", None, r"recipe\.lr: null is not a setting"),
    ("design.tune.momentum", {"type": "float", "low": 0.5, "high": 7}, r"tune\.momentum: the range can produce 7\.0"),
    (
        "design.tune.freeze_depth",
        {"type": "int", "low": -1, "high": 3},
        r"tune\.freeze_depth: the range can produce -1",
    ),
    ("design.tune.batch_size", {"type": "float", "low": 8, "high": 64}, r"tune\.batch_size: .*expected int"),
    (
        "design.tune.augmentation",
        {"type": "categorical", "choices": ["flip", "mixup"]},
        r"tune\.augmentation: the range can produce 'mixup'",
    ),
    ("design.tune.lr", {"type": "float", "low": 0.001, "high": float("inf")}, r"design\.tune\.lr"),
    (
        "design.tune.lr",
        {"type": "float", "low": 1e-3, "high": 0.1, "when": {"init": ["imagenet"]}},
        r"tune\.lr\.when\.init: \['imagenet'\] are not init levels",
    ),
    ("design.factors.epochs", [1, 2], r"design\.tune\.warmup_epochs = 1\.5 gives an invalid trial .*epochs=1"),
]


@pytest.mark.parametrize(
    ("dotted", "value", "pattern"), FIELD_CASES, ids=[f"{d}={v!r}"[:60] for d, v, _ in FIELD_CASES]
)
def test_out_of_range_fields_are_refused_naming_the_field(dotted: str, value: Any, pattern: str) -> None:
    data = _base()
    if dotted == "design.factors.epochs":  # a warmup range fine for 2 epochs but not for 1
        _set(data, "design.tune.warmup_epochs", {"type": "float", "low": 0.0, "high": 1.5})
        _set(data, "design.recipe.warmup_epochs", 0.0)
    _set(data, dotted, value)
    with pytest.raises(SpecError, match=pattern) as err:
        parse_spec(data, source="hostile.yaml")
    assert str(err.value).startswith("hostile.yaml")


def test_a_tuned_freeze_depth_beyond_the_backbone_s_levels_is_refused_by_validate() -> None:
    # how many levels a backbone has is known on the torch side only: `tlsweep validate` checks it, not parse_spec
    code, output = _validate(
        str(DEMO),
        "--no-data-check",
        "--set",
        "design.tune.freeze_depth={type: int, low: 0, high: 9, when: {init: [checkpoint]}}",
    )
    assert code == 2 and "freeze_depth must be an integer in 0..5 for backbone resnet_tiny" in output
    assert "got 9" in output and str(DEMO) in output


def test_the_largest_allowed_seeds_are_accepted() -> None:
    data = _set(_base(), "confirm.seed_base", MAX_SEED)
    spec = parse_spec(data, source="s")
    assert max(spec.confirm.seed_base + r for r in range(spec.confirm.max_seeds)) < 2**63
