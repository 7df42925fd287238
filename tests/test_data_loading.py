from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import write_csv_dataset, write_image, write_imagefolder

from tlsweep.data import cache as cache_module
from tlsweep.data.dataset_spec import CsvDatasetSpec, ImageFolderDatasetSpec, parse_dataset_spec
from tlsweep.data.loading import load_dataset
from tlsweep.errors import DataError
from tlsweep.results.atomic import TMP_PREFIX


def csv_spec(root: Path, **extra: object) -> CsvDatasetSpec:
    return parse_dataset_spec({"format": "csv", "root": str(root), **extra})  # type: ignore[return-value]


def test_csv_dataset_loads_as_uint8_rgb_tensors(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=4, bare_names=False)
    write_image(root / "val_images" / "F0000_AGE_D_18_a0.png", 99, mode="L")  # grey: must become 3 channels
    write_image(root / "test_images" / "F0001_AGE_D_18_a1.png", 98, mode="RGBA")
    ds = load_dataset(csv_spec(root), image_size=6)
    for split in (ds.train, ds.val, ds.test):
        assert split.images.dtype == torch.uint8 and tuple(split.images.shape) == (4, 3, 6, 6)
        assert split.labels.dtype == torch.int64 and split.labels.tolist() == [0, 1, 2, 3]
    assert ds.train.files == [f"train_images/F000{i}_AGE_D_18_a{i}.png" for i in range(4)]
    assert ds.num_classes == 8 and ds.ordinal and ds.name == "korean_face_age"
    assert Path(ds.extra["cache_dir"]) == root / ".tlsweep-cache"


def test_decoded_pixels_match_pil(tmp_path: Path) -> None:
    from PIL import Image

    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    ds = load_dataset(csv_spec(root), image_size=8)
    with Image.open(root / "train_images" / "F0001_AGE_D_18_a1.png") as img:
        expected = np.asarray(img.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(ds.train.images[1].numpy(), expected)


def test_corrupt_and_missing_images_give_one_error_listing_all_with_csv_lines(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=5)
    (root / "train_images" / "F0001_AGE_D_18_a1.png").write_bytes(b"not a png at all")
    (root / "train_images" / "F0003_AGE_D_18_a3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "train_images" / "F0004_AGE_D_18_a4.png").unlink()
    with pytest.raises(DataError) as info:
        load_dataset(csv_spec(root), image_size=4)
    message = str(info.value)
    assert "3 unreadable image(s) in split 'train'" in message
    for name, line in (("F0001", 3), ("F0003", 5), ("F0004", 6)):
        assert f"{name}_AGE_D_18_a{int(name[-1])}.png (custom_train_dataset.csv line {line})" in message
    assert not list((root / ".tlsweep-cache").glob(f"{TMP_PREFIX}*")), "no temporary file is left behind"


def test_path_escaping_the_root_is_rejected(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    write_image(tmp_path / "secret.png", 1)
    csv = root / "custom_val_dataset.csv"
    csv.write_text(csv.read_text() + "../../secret.png,a\n")
    with pytest.raises(DataError) as info:
        load_dataset(csv_spec(root), image_size=4)
    assert "custom_val_dataset.csv line 4" in str(info.value)
    assert "'../../secret.png' escapes the dataset root" in str(info.value)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2, header="image_path,age")
    with pytest.raises(DataError) as info:
        load_dataset(csv_spec(root), image_size=4)
    assert "custom_train_dataset.csv: missing column 'age_class'" in str(info.value)
    assert "['image_path', 'age']" in str(info.value)


def test_unknown_labels_name_file_row_and_value(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=3, labels="az")
    write_csv_dataset(tmp_path / "ds", per_split=3, labels="a")  # other splits fine again
    csv = root / "custom_test_dataset.csv"
    csv.write_text(csv.read_text().replace(",a\n", ",z\n", 1))
    with pytest.raises(DataError) as info:
        load_dataset(csv_spec(root), image_size=4)
    assert "custom_test_dataset.csv line 2: unknown label 'z' in column 'age_class'" in str(info.value)


def test_missing_root_explains_what_to_put_there(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(csv_spec(tmp_path / "nowhere"), image_size=4)
    message = str(info.value)
    assert "nowhere does not exist" in message and "custom_train_dataset.csv" in message
    assert "custom_korean_family_dataset_resolution_128" in message and "--set dataset.root=" in message
    spec = parse_dataset_spec({"format": "imagefolder", "root": str(tmp_path / "gone")})
    with pytest.raises(DataError, match="<class>/<images>"):
        load_dataset(spec, image_size=4)


def test_imagefolder_with_split_folders(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "hym", {"ants": 3, "bees": 2}, splits=("train", "val", "test"))
    ds = load_dataset(ImageFolderDatasetSpec(root=root), image_size=5)
    assert ds.class_names == ["ants", "bees"] and not ds.ordinal
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1] and len(ds.val) == len(ds.test) == 5
    assert ds.val.files[0] == "val/ants/ants_0.png"


def test_imagefolder_without_test_folder_carves_it_out_of_val(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "hym", {"ants": 4, "bees": 4}, splits=("train", "val"))
    ds = load_dataset(ImageFolderDatasetSpec(root=root), image_size=5)
    assert len(ds.train) == 8 and len(ds.val) == 4 and len(ds.test) == 4
    assert sorted(ds.val.labels.tolist()) == [0, 0, 1, 1] and set(ds.val.files).isdisjoint(ds.test.files)


def test_single_folder_gets_a_seeded_stratified_split(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "flowers", {"daisy": 20, "rose": 10, "tulip": 5})
    spec = parse_dataset_spec(
        {
            "format": "imagefolder",
            "root": str(root),
            "split_seed": 1,
            "split_ratios": {"train": 0.6, "val": 0.2, "test": 0.2},
        }
    )
    ds = load_dataset(spec, image_size=4, cache_dir=tmp_path / "c1")
    files = [ds.train.files, ds.val.files, ds.test.files]
    assert sum(map(len, files)) == 35 and len(set().union(*files)) == 35
    assert Counter(ds.train.labels.tolist()) == {0: 12, 1: 6, 2: 3}
    assert Counter(ds.val.labels.tolist()) == {0: 4, 1: 2, 2: 1}
    again = load_dataset(spec, image_size=4, cache_dir=tmp_path / "c2")
    assert again.val.files == ds.val.files
    other = load_dataset(spec.model_copy(update={"split_seed": 2}), image_size=4, cache_dir=tmp_path / "c3")
    assert other.val.files != ds.val.files


class DecodeCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = cache_module._decode

        def counting(path: str, image_size: int) -> np.ndarray:
            self.calls += 1
            return original(path, image_size)

        monkeypatch.setattr(cache_module, "_decode", counting)


def test_cache_hit_decodes_nothing_and_changes_invalidate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=3)
    counter = DecodeCounter(monkeypatch)
    first = load_dataset(csv_spec(root), image_size=4)
    assert counter.calls == 9
    second = load_dataset(csv_spec(root), image_size=4)
    assert counter.calls == 9, "an unchanged dataset is not decoded again"
    assert torch.equal(first.train.images, second.train.images)

    load_dataset(csv_spec(root), image_size=5)  # other preprocessing: its own entries
    assert counter.calls == 18

    image = root / "val_images" / "F0001_AGE_D_18_a1.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: split rebuilt
    load_dataset(csv_spec(root), image_size=4)
    assert counter.calls == 21

    write_image(root / "train_images" / "F0002_AGE_D_18_a2.png", 77, size=(9, 9))  # content changed
    changed = load_dataset(csv_spec(root), image_size=4)
    assert counter.calls == 24
    assert not torch.equal(changed.train.images[2], first.train.images[2])


def test_cache_is_memory_mapped(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    load_dataset(csv_spec(root), image_size=4)
    ds = load_dataset(csv_spec(root), image_size=4)
    cache_file = Path(ds.extra["cache_dir"]) / ds.extra["train_cache"]
    assert cache_file.suffix == ".npy" and np.load(cache_file).shape == (2, 3, 4, 4)
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(cache_file) in maps.read_text()
    ds.train.images[0, 0, 0, 0] = 255 - int(ds.train.images[0, 0, 0, 0])  # copy-on-write: the file is untouched
    assert not np.array_equal(np.load(cache_file)[0, 0, 0, 0], ds.train.images[0, 0, 0, 0].item())


def test_concurrent_builds_of_the_same_entry_both_succeed(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    root = write_csv_dataset(tmp_path / "ds", per_split=6)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: load_dataset(csv_spec(root), image_size=4), range(4)))
    assert all(torch.equal(r.train.images, results[0].train.images) for r in results)
    leftovers = [p.name for p in (root / ".tlsweep-cache").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert len(list((root / ".tlsweep-cache").glob("*.npy"))) == 3


def test_imagefolder_class_missing_from_train_is_named(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "cats", {"cat": 2, "dog": 2}, splits=("train", "val", "test"))
    write_image(root / "val" / "fox" / "fox_0.png", 1)
    with pytest.raises(DataError, match=r"class folder 'fox'.*known classes: \['cat', 'dog'\]"):
        load_dataset(ImageFolderDatasetSpec(root=root), image_size=4)


def test_unwritable_cache_dir_is_a_data_error(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "ds", per_split=2)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot write the tensor cache"):
        load_dataset(csv_spec(root), image_size=4, cache_dir=blocker / "cache")
