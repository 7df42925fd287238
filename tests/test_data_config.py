from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tlsweep.data.dataset_spec import (
    CsvDatasetSpec,
    ImageFolderDatasetSpec,
    SyntheticDatasetSpec,
    parse_dataset_spec,
)
from tlsweep.errors import SpecError


def test_korean_preset_fills_the_defaults_of_issue_2() -> None:
    spec = parse_dataset_spec({"format": "csv", "root": "data/korean"})
    assert isinstance(spec, CsvDatasetSpec)
    assert spec.splits == {s: f"custom_{s}_dataset.csv" for s in ("train", "val", "test")}
    assert spec.image_dirs == {s: f"{s}_images" for s in ("train", "val", "test")}
    assert (spec.path_column, spec.label_column) == ("image_path", "age_class")
    assert spec.label_map == {c: i for i, c in enumerate("abcdefgh")}
    assert spec.class_names == ["0-6", "7-12", "13-19", "20-30", "31-45", "46-55", "56-66", "67-80"]
    assert spec.ordinal is True
    assert spec.root == Path("data/korean")


def test_explicit_fields_override_the_preset_and_specs_are_frozen() -> None:
    spec = parse_dataset_spec(
        {
            "format": "csv",
            "root": "r",
            "label_column": "group",
            "label_map": {"x": 0, "y": 1},
            "class_names": ["X", "Y"],
            "ordinal": False,
        }
    )
    assert spec.label_column == "group" and spec.class_names == ["X", "Y"] and spec.ordinal is False
    assert spec.path_column == "image_path"
    with pytest.raises(ValidationError, match="frozen"):
        spec.root = Path("elsewhere")  # type: ignore[misc]


def test_each_format_parses_with_defaults() -> None:
    folder = parse_dataset_spec({"format": "imagefolder", "root": "flowers", "split_seed": 3})
    assert isinstance(folder, ImageFolderDatasetSpec) and folder.split_ratios.train == pytest.approx(0.7)
    synth = parse_dataset_spec({"format": "synthetic", "root": "s", "task": "source", "image_size": 32})
    assert isinstance(synth, SyntheticDatasetSpec) and synth.task == "source" and synth.image_size == 32


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"format": "parquet", "root": "r"}, ["spec.yaml", "dataset.format", "csv, imagefolder, synthetic"]),
        ({"root": "r"}, ["dataset.format", "csv, imagefolder, synthetic"]),
        ({"format": "csv", "root": "r", "colour": 1}, ["dataset.colour", "Extra inputs"]),
        ({"format": "csv"}, ["dataset.root", "Field required"]),
        ({"format": "csv", "root": "r", "preset": "mnist"}, ["'mnist'", "korean_face_age", "synthetic_source"]),
        ({"format": "synthetic", "root": "r", "task": "cats"}, ["dataset.task", "'age' or 'source'", "'cats'"]),
        (
            {"format": "imagefolder", "root": "r", "split_ratios": {"train": 0.5, "val": 0.1, "test": 0.1}},
            ["dataset.split_ratios", "must be 1"],
        ),
        (
            {"format": "csv", "root": "r", "label_map": {"a": 0, "b": 2}, "class_names": ["x", "y"]},
            ["0..K-1", "[0, 2]"],
        ),
        ({"format": "csv", "root": "r", "splits": {"train": "t.csv"}}, ["splits", "['train', 'val', 'test']"]),
    ],
)
def test_bad_specs_raise_spec_error_naming_source_field_and_allowed_values(data: dict, expected: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        parse_dataset_spec(data, source="spec.yaml")
    for fragment in expected:
        assert fragment in str(info.value)
