"""What ``tlsweep predict`` reads and writes: the images to predict (a folder or a CSV) and the predictions CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import write_image

from tlsweep.errors import DataError, InputChoiceError
from tlsweep.training.predict import (
    PredictionInput,
    decode_inputs,
    label_index,
    prediction_inputs,
    write_predictions,
)

CLASSES = ["cat", "dog", "fox"]


def test_label_index_takes_a_class_name_or_an_index_in_range() -> None:
    assert [label_index(value, CLASSES) for value in ("dog", "2", "3", "-1", "wolf", "")] == [
        1,
        2,
        None,
        None,
        None,
        None,
    ]


def test_a_folder_labels_images_by_their_first_subfolder(tmp_path: Path) -> None:
    write_image(tmp_path / "dog" / "a.png", 1)
    write_image(tmp_path / "wolf" / "deep" / "b.JPG", 2)
    write_image(tmp_path / "c.png", 3)
    (tmp_path / "notes.txt").write_text("not an image")
    inputs = prediction_inputs(images=tmp_path, class_names=CLASSES)
    assert inputs == [
        PredictionInput("c.png", tmp_path / "c.png", None, None),
        PredictionInput("dog/a.png", tmp_path / "dog" / "a.png", "dog", 1),
        PredictionInput("wolf/deep/b.JPG", tmp_path / "wolf" / "deep" / "b.JPG", "wolf", None),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"--images {empty}: no image files found"):
        prediction_inputs(images=empty, class_names=CLASSES)


def test_a_csv_lists_paths_relative_to_its_folder_or_image_dir(tmp_path: Path) -> None:
    write_image(tmp_path / "imgs" / "a.png", 1)
    write_image(tmp_path / "imgs" / "b.png", 2)
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,label,extra\nimgs/a.png,fox,x\n{tmp_path / 'imgs' / 'b.png'},0,y\n")
    inputs = prediction_inputs(csv_file=listing, class_names=CLASSES)
    assert inputs == [
        PredictionInput("imgs/a.png", tmp_path / "imgs" / "a.png", "fox", 2),
        PredictionInput(str(tmp_path / "imgs" / "b.png"), tmp_path / "imgs" / "b.png", "0", 0),
    ]
    bare = tmp_path / "bare.csv"
    bare.write_text("name,kind\na.png,dog\n")
    inputs = prediction_inputs(
        csv_file=bare, class_names=CLASSES, image_dir=tmp_path / "imgs", path_column="name", label_column="kind"
    )
    assert inputs == [PredictionInput("a.png", tmp_path / "imgs" / "a.png", "dog", 1)]
    assert prediction_inputs(csv_file=bare, class_names=CLASSES, image_dir=tmp_path / "imgs")[0].label is None


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("path\nimgs/a.png\n", {"path_column": "file"}, r"no column 'file'; columns are \['path'\]; pick one"),
        ("path\nimgs/a.png\n", {"label_column": "kind"}, r"no label column 'kind'; columns are \['path'\]"),
        ("path\nimgs/a.png\nimgs/gone.png\n", {}, r"list.csv line 3: image 'imgs/gone.png' not found"),
        ("path\n", {}, r"list.csv: lists no images \(only a header\); add one image path per line"),
    ],
)
def test_csv_problems_name_file_line_and_column(tmp_path: Path, text: str, options: dict, message: str) -> None:
    write_image(tmp_path / "imgs" / "a.png", 1)
    listing = tmp_path / "list.csv"
    listing.write_text(text)
    with pytest.raises(DataError, match=message):
        prediction_inputs(csv_file=listing, class_names=CLASSES, **options)


def test_exactly_one_source_of_images(tmp_path: Path) -> None:
    for sources in ({}, {"images": tmp_path, "csv_file": tmp_path / "list.csv"}):
        with pytest.raises(InputChoiceError, match="give exactly one of --images DIR and --csv FILE"):
            prediction_inputs(class_names=CLASSES, **sources)


def test_decode_inputs_decodes_like_the_cache_and_names_a_bad_file(tmp_path: Path) -> None:
    good = PredictionInput("a.png", write_image(tmp_path / "a.png", 7, size=(12, 6)), None, None)
    tensor = decode_inputs([good, good], 8)
    assert tuple(tensor.shape) == (2, 3, 8, 8) and str(tensor.dtype) == "torch.uint8"
    broken = tmp_path / "b.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match=f"cannot decode image {broken}"):
        decode_inputs([good, PredictionInput("b.png", broken, None, None)], 8)


def test_predictions_csv_with_and_without_labels(tmp_path: Path) -> None:
    inputs = [
        PredictionInput("a.png", tmp_path / "a.png", "dog", 1),
        PredictionInput("b.png", tmp_path / "b.png", "wolf", None),
        PredictionInput("c.png", tmp_path / "c.png", None, None),
        PredictionInput("d.png", tmp_path / "d.png", "0", 0),
    ]
    out = tmp_path / "out" / "predictions.csv"
    summary = write_predictions(out, inputs, np.array([1, 0, 2, 2]), np.array([0.9, 0.5, 0.25, 0.125]), CLASSES)
    assert (summary.count, summary.labelled, summary.correct, summary.accuracy) == (4, 2, 1, 0.5)
    rows = list(csv.reader(out.open()))
    assert rows == [
        ["file", "predicted_class", "class_name", "confidence", "label", "correct"],
        ["a.png", "1", "dog", "0.900000", "dog", "True"],
        ["b.png", "0", "cat", "0.500000", "wolf", ""],
        ["c.png", "2", "fox", "0.250000", "", ""],
        ["d.png", "2", "fox", "0.125000", "0", "False"],
    ]
    unlabelled = [PredictionInput("c.png", tmp_path / "c.png", None, None)]
    summary = write_predictions(out, unlabelled, np.array([0]), np.array([1.0]), CLASSES)
    assert summary.accuracy is None and summary.labelled == 0
    assert list(csv.reader(out.open())) == [
        ["file", "predicted_class", "class_name", "confidence"],
        ["c.png", "0", "cat", "1.000000"],
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.csv"]
