"""Hostile datasets: images decoded as they say (EXIF, 16-bit, float, palette, CMYK), listings that are checked
(nested folders, symlinks, odd file names, CSV encodings, huge fields) and ``tlsweep validate``'s data check.

Every corpus is generated in tmp_path from a few tiny PIL images; nothing here starts Ray or trains.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_exit import run_tlsweep
from data_fixtures import write_csv_dataset, write_image, write_imagefolder
from PIL import Image

from tlsweep.data.cache import decode_image
from tlsweep.data.dataset_check import check_dataset
from tlsweep.data.dataset_spec import CsvDatasetSpec, ImageFolderDatasetSpec, parse_dataset_spec
from tlsweep.data.loading import load_dataset
from tlsweep.errors import DataError, SpecError

REPO = Path(__file__).resolve().parents[1]


def csv_spec(root: Path, **extra: object) -> CsvDatasetSpec:
    return parse_dataset_spec({"format": "csv", "root": str(root), **extra})  # type: ignore[return-value]


def folder_spec(root: Path, **extra: object) -> ImageFolderDatasetSpec:
    return parse_dataset_spec({"format": "imagefolder", "root": str(root), **extra})  # type: ignore[return-value]


# ---- decoding ----------------------------------------------------------------------------------------------------
def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotated 180°
    image.save(tmp_path / "tagged.png", exif=exif)
    image.rotate(180).save(tmp_path / "upright.png")
    tagged = decode_image(tmp_path / "tagged.png", 6)
    assert np.array_equal(tagged, decode_image(tmp_path / "upright.png", 6))
    assert not np.array_equal(tagged, decode_image(tmp_path / "upright.png", 6)[:, ::-1, ::-1])


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "deep.png")  # mode I;16
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode.startswith("I")
    decoded = decode_image(tmp_path / "deep.png", 4)
    assert decoded.shape == (3, 4, 4)
    assert decoded[0, 0].tolist() == [0, 1, 128, 255] and (decoded[0] == decoded[2]).all()
    Image.fromarray(values.astype(np.int32), mode="I").save(tmp_path / "int32.tif")
    assert decode_image(tmp_path / "int32.tif", 4)[1, 0].tolist() == [0, 1, 128, 255]


def test_float_images_are_scaled_by_their_range(tmp_path: Path) -> None:
    unit = np.array([[0.0, 0.5, 1.0, 0.25]], dtype=np.float32).repeat(4, axis=0)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    assert decode_image(tmp_path / "unit.tif", 4)[0, 0].tolist() == [0, 128, 255, 64]
    bytes_range = unit * 200
    Image.fromarray(bytes_range, mode="F").save(tmp_path / "byte.tif")
    assert decode_image(tmp_path / "byte.tif", 4)[0, 0].tolist() == [0, 100, 200, 50]
    wide = np.array([[-10.0, 0.0, 10.0, 1000.0]], dtype=np.float32).repeat(4, axis=0)
    Image.fromarray(wide, mode="F").save(tmp_path / "wide.tif")
    assert decode_image(tmp_path / "wide.tif", 4)[0, 0].tolist() == [0, 3, 5, 255]


def test_palette_grey_alpha_and_cmyk_images_become_rgb(tmp_path: Path) -> None:
    la = Image.new("LA", (3, 3), (0, 0))  # fully transparent black over white → white
    la.save(tmp_path / "la.png")
    assert (decode_image(tmp_path / "la.png", 3) == 255).all()
    palette = Image.new("P", (3, 3), 0)
    palette.putpalette([10, 20, 30] + [0] * 765)
    palette.save(tmp_path / "p.png")
    assert decode_image(tmp_path / "p.png", 3)[:, 0, 0].tolist() == [10, 20, 30]
    Image.new("CMYK", (3, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")  # pure red in CMYK
    assert decode_image(tmp_path / "cmyk.tif", 3)[:, 1, 1].tolist() == [255, 0, 0]


# ---- listing an ImageFolder tree -----------------------------------------------------------------------------------
def test_images_in_nested_class_folders_count_as_torchvision_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_imagefolder(tmp_path / "ds", {"cat": 3, "dog": 3}, splits=("train", "val", "test"))
    write_image(root / "train" / "cat" / "sub" / "deep.png", 7)
    write_image(root / "train" / "cat" / "sub-2" / "other.png", 8)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(folder_spec(root), image_size=4)
    cats = [f for f, label in zip(ds.train.files, ds.train.labels.tolist(), strict=True) if label == 0]
    # torchvision's make_dataset order: folders sorted by path ("cat" < "cat/sub" < "cat/sub-2"), files within each
    from torchvision.datasets.folder import make_dataset

    expected = [
        os.path.relpath(p, root)
        for p, _ in make_dataset(str(root / "train"), {"cat": 0, "dog": 1}, extensions=(".png",))
        if _ == 0
    ]
    assert cats == expected and "train/cat/sub/deep.png" in cats
    assert "2 image(s) are in folders nested below their class folder" in caplog.text
    problems = check_dataset(folder_spec(root))
    assert any("nested below their class folder" in p.message and p.level == "warning" for p in problems)


def test_bad_symlinks_are_errors_naming_each_link(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "ds", {"cat": 2, "dog": 2}, splits=("train", "val", "test"))
    (root / "train" / "cat" / "gone.png").symlink_to(root / "nowhere.png")
    (root / "train" / "dog" / "a.png").symlink_to(root / "train" / "dog" / "b.png")
    (root / "train" / "dog" / "b.png").symlink_to(root / "train" / "dog" / "a.png")
    (root / "train" / "dog" / "again").symlink_to(root / "train" / "dog")
    outside = write_image(tmp_path / "elsewhere" / "x.png", 5)
    (root / "train" / "cat" / "out.png").symlink_to(outside)
    with pytest.raises(DataError) as info:
        load_dataset(folder_spec(root), image_size=4)
    message = str(info.value)
    assert "cat/gone.png: dangling symlink" in message
    assert "dog/a.png: symlink loop" in message and "dog/b.png: symlink loop" in message
    assert "dog/again: symlink loop" in message
    assert "cat/out.png: symlink to" in message and "dataset.follow_symlinks_outside_root: true" in message
    errors = [p for p in check_dataset(folder_spec(root)) if p.level == "error"]
    assert len(errors) == 1 and errors[0].message.startswith(f"5 problem(s) listing the dataset {root}")


def test_symlinks_inside_the_root_are_followed_and_outside_only_when_allowed(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "ds", {"cat": 2, "dog": 2}, splits=("train", "val", "test"))
    outside = write_image(tmp_path / "elsewhere" / "x.png", 5)
    (root / "train" / "cat" / "out.png").symlink_to(outside)
    (root / "train" / "dog" / "alias.png").symlink_to(root / "train" / "dog" / "dog_0.png")
    with pytest.raises(DataError, match="outside the dataset root"):
        load_dataset(folder_spec(root), image_size=4)
    ds = load_dataset(folder_spec(root, follow_symlinks_outside_root=True), image_size=4)
    assert "train/cat/out.png" in ds.train.files and "train/dog/alias.png" in ds.train.files


def test_csv_symlink_leaving_the_root_is_refused(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    target = root / "train_images" / "F0000_AGE_D_18_a0.png"
    moved = tmp_path / "outside.png"
    target.rename(moved)
    target.symlink_to(moved)
    with pytest.raises(
        DataError,
        match=r"custom_train_dataset.csv line 2: image path 'F0000_AGE_D_18_a0.png' is a "
        r"symlink to .*outside.png, outside the dataset root",
    ):
        load_dataset(csv_spec(root), image_size=4)
    assert load_dataset(csv_spec(root, follow_symlinks_outside_root=True), image_size=4).train.images.shape[0] == 2
    target.unlink()
    target.symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"line 2: image path 'F0000_AGE_D_18_a0\.png' is a dangling symlink"):
        load_dataset(csv_spec(root, follow_symlinks_outside_root=True), image_size=4)


def test_file_names_that_are_not_utf8_are_read_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_imagefolder(tmp_path / "ds", {"cat": 2, "dog": 2}, splits=("train", "val", "test"))
    odd = Path(os.fsdecode(bytes(root / "train" / "cat") + b"/caf\xe9.png"))
    write_image(odd, 9)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(folder_spec(root), image_size=4)
    assert "train/cat/caf\\xe9.png" in ds.train.files and len(ds.train) == 5
    assert "1 file name(s) are not UTF-8 text" in caplog.text
    (root / "train" / "cat").rename(Path(os.fsdecode(bytes(root / "train") + b"/ch\xe4t")))
    with pytest.raises(DataError, match=r"ch\\xe4t: a class folder name that is not UTF-8 text; rename the folder"):
        load_dataset(folder_spec(root), image_size=4)


# ---- CSV files -----------------------------------------------------------------------------------------------------
def test_csv_in_another_encoding_is_refused_clearly_or_read_as_declared(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    write_image(root / "train_images" / "café.png", 3)
    train_csv = root / "custom_train_dataset.csv"
    train_csv.write_bytes("image_path,age_class\ncafé.png,a\nF0001_AGE_D_18_a1.png,b\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        load_dataset(csv_spec(root), image_size=4)
    assert str(info.value).startswith(f"{train_csv}: not utf-8 text (byte 0xe9")
    assert "dataset.encoding" in str(info.value)
    ds = load_dataset(csv_spec(root, encoding="latin-1"), image_size=4)
    assert ds.train.files[0] == "train_images/café.png"
    with pytest.raises(SpecError, match=r"dataset\.encoding: encoding 'klingon' is not a known text encoding"):
        csv_spec(root, encoding="klingon")


def test_huge_csv_fields_give_a_short_error_naming_the_line(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    train_csv = root / "custom_train_dataset.csv"
    train_csv.write_text(
        "image_path,age_class,notes\nF0000_AGE_D_18_a0.png,a,"
        + "x" * 200_000
        + "\nF0001_AGE_D_18_a1.png,"
        + "b" * 200_000
        + ",\n"
    )
    with pytest.raises(DataError) as info:
        load_dataset(csv_spec(root), image_size=4)
    message = str(info.value)
    assert f"{train_csv} line 3: unknown label 'bbbb" in message and "(200000 characters)" in message
    assert len(message) < 1000


# ---- the dataset check -----------------------------------------------------------------------------------------------
def test_check_reports_single_class_empty_class_missing_classes_and_copies(tmp_path: Path) -> None:
    single = write_imagefolder(tmp_path / "single", {"cat": 3}, splits=("train", "val", "test"))
    problems = check_dataset(folder_spec(single))
    assert [p.level for p in problems] == ["error"] and "only 1 class has training images ('cat')" in problems[
        0
    ].message
    with pytest.raises(DataError, match="only 1 class has training images"):
        load_dataset(folder_spec(single), image_size=4)

    root = write_imagefolder(tmp_path / "ds", {"cat": 3, "dog": 3, "fox": 2}, splits=("train", "val", "test"))
    for name in ("fox_0.png", "fox_1.png"):
        (root / "train" / "fox" / name).unlink()  # an empty class folder
    for name in ("dog_0.png", "dog_1.png", "dog_2.png"):
        (root / "test" / "dog" / name).unlink()
    (root / "test" / "cat" / "copy.png").write_bytes((root / "train" / "cat" / "cat_1.png").read_bytes())
    problems = check_dataset(folder_spec(root))
    assert all(p.level == "warning" for p in problems), problems
    text = "\n".join(p.message for p in problems)
    assert "1 class(es) have no training images: fox" in text
    assert "1 class(es) with training images have none in test: dog" in text
    assert "1 test file(s) are byte-for-byte copies of training files: test/cat/copy.png = train/cat/cat_1.png" in text
    assert "val file(s)" not in text
    capped = check_dataset(folder_spec(root), max_hashed_bytes=10)
    assert any("stopped after hashing" in p.message for p in capped)


def test_unwritable_default_cache_falls_back_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    (root / ".tlsweep-cache").write_text("a file in the way")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(csv_spec(root), image_size=4)
    cache = Path(ds.extra["cache_dir"])
    assert cache.is_relative_to(tmp_path / "user-cache" / "tlsweep") and list(cache.glob("*.npy"))
    assert f"the tensor cache {root / '.tlsweep-cache'} is not a directory; using {cache} instead" in caplog.text
    caplog.clear()
    blocked = tmp_path / "ds2"
    write_csv_dataset(blocked, per_split=2)
    (blocked / ".tlsweep-cache").mkdir()
    monkeypatch.setattr("tlsweep.data.cache.atomic_write", _failing_write)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(csv_spec(blocked), image_size=4)
    assert f"cannot write the tensor cache in {blocked / '.tlsweep-cache'}" in caplog.text
    assert Path(ds.extra["cache_dir"]).is_relative_to(tmp_path / "user-cache")
    with pytest.raises(DataError, match="cannot write the tensor cache"):  # a cache_dir asked for is not replaced
        load_dataset(csv_spec(blocked), image_size=4, cache_dir=tmp_path / "mine")


def _failing_write(path: Path, build: object) -> None:
    if "user-cache" not in str(path):
        raise PermissionError(13, "Permission denied", str(path))
    from tlsweep.results.atomic import atomic_write

    atomic_write(path, build)  # type: ignore[arg-type]


# ---- tlsweep validate --------------------------------------------------------------------------------------------------
def _spec_file(tmp_path: Path, dataset: dict[str, object]) -> Path:
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    data["dataset"] = dataset
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_validate_lists_the_dataset_and_exits_2_on_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_imagefolder(tmp_path / "ds", {"cat": 2, "dog": 2}, splits=("train", "val", "test"))
    (root / "train" / "cat" / "gone.png").symlink_to(root / "nowhere.png")
    path = _spec_file(tmp_path, {"format": "imagefolder", "root": str(root)})
    code, _, err = run_tlsweep(["validate", path], capsys, monkeypatch)
    assert code == 2 and "train/cat/gone.png: dangling symlink" in err
    assert run_tlsweep(["validate", path, "--no-data-check"], capsys, monkeypatch)[0] == 0
    (root / "train" / "cat" / "gone.png").unlink()
    (root / "test" / "cat" / "copy.png").write_bytes((root / "train" / "cat" / "cat_0.png").read_bytes())
    code, out, err = run_tlsweep(["validate", path], capsys, monkeypatch)
    assert code == 0 and "is valid" in out
    assert "warning: 1 test file(s) are byte-for-byte copies of training files: test/cat/copy.png" in err


@pytest.mark.parametrize(
    "breakage", ["missing root", "missing csv", "single class", "latin-1 csv", "empty split", "missing image"]
)
def test_validate_broken_dataset_corpus_exit_code_2(
    tmp_path: Path, breakage: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    expected = {
        "missing root": f"dataset root {tmp_path / 'absent'} does not exist",
        "missing csv": f"{root / 'custom_val_dataset.csv'}: missing metadata file for split 'val'",
        "single class": f"{root}: only 1 class has training images ('0-6')",
        "latin-1 csv": f"{root / 'custom_test_dataset.csv'}: not utf-8 text",
        "empty split": f"{root}: split 'test' has no images",
        "missing image": "1 listed image(s) are missing or not regular files: train_images/F0001_AGE_D_18_a1.png "
        "(custom_train_dataset.csv line 3)",
    }[breakage]
    if breakage == "missing root":
        root = tmp_path / "absent"
    elif breakage == "missing csv":
        (root / "custom_val_dataset.csv").unlink()
    elif breakage == "single class":
        (root / "custom_train_dataset.csv").write_text("image_path,age_class\nF0000_AGE_D_18_a0.png,a\n")
    elif breakage == "latin-1 csv":
        (root / "custom_test_dataset.csv").write_bytes(b"image_path,age_class\nF\xe9.png,a\n")
    elif breakage == "empty split":
        (root / "custom_test_dataset.csv").write_text("image_path,age_class\n")
    else:
        (root / "train_images" / "F0001_AGE_D_18_a1.png").unlink()
    path = _spec_file(tmp_path, {"format": "csv", "root": str(root)})
    code, _, err = run_tlsweep(["validate", path], capsys, monkeypatch)
    assert code == 2 and expected in err, err
