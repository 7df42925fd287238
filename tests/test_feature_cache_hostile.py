"""The frozen-feature cache never trusts its files: a wrong or damaged entry is computed again, a directory that
cannot hold entries makes the trial run uncached with one warning, never a traceback or a hang, and its settings
are checked with an error naming the variable and the fix."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tlsweep.data.types import DatasetTensors, SplitTensors
from tlsweep.errors import SpecError
from tlsweep.training import frozen_features
from tlsweep.training.backbones import create_model
from tlsweep.training.config import TrialConfig
from tlsweep.training.frozen_features import FeatureCache, cache_settings, prepare
from tlsweep.training.loop import run_trial

pytestmark = [pytest.mark.filterwarnings("ignore:TF32 acceleration"), pytest.mark.timeout(120)]

PROBE = TrialConfig(
    backbone="resnet_tiny",
    freeze_depth=5,
    epochs=1,
    batch_size=16,
    lr=0.05,
    augmentation="none",
    num_threads=1,
    eval_batch_size=64,
)
CPU = torch.device("cpu")


def _split(n: int, generator: torch.Generator) -> SplitTensors:
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = torch.randint(0, 255, (n, 3, 16, 16), generator=generator, dtype=torch.uint8)
    return SplitTensors(images, labels, [f"img{i}.png" for i in range(n)])


@pytest.fixture(scope="module")
def data() -> DatasetTensors:
    generator = torch.Generator().manual_seed(0)
    return DatasetTensors(_split(40, generator), _split(24, generator), _split(30, generator), ["a", "b", "c"])


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return create_model("resnet_tiny", 3, freeze_depth=5, seed=1)


@pytest.fixture(autouse=True)
def _fresh_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frozen_features, "_LOGGED", set())
    monkeypatch.setattr(frozen_features, "_BAD_LOGGED", set())


def _use(cache: FeatureCache, monkeypatch: pytest.MonkeyPatch) -> FeatureCache:
    monkeypatch.setattr(frozen_features, "_CACHE", cache)
    return cache


def _stored(model: torch.nn.Module, data: DatasetTensors, directory: Path) -> dict[str, np.ndarray]:
    """The features a fresh cache in ``directory`` computes: view -> array (also fills the directory)."""
    features = prepare(PROBE, model, data, CPU, False, cache=FeatureCache(directory, max_bytes=2**30))
    assert features is not None
    return {view: getattr(features, view).numpy().copy() for view in ("train", "val", "test")}


def _entry(directory: Path, rows: int) -> Path:
    (found,) = [p for p in directory.glob("*.npy") if np.load(p, mmap_mode="r").shape[0] == rows]
    return found


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---------------------------------------------------------------------------------------------- bad entries


def _zeros(entry: Path, others: list[Path]) -> None:
    array = np.load(entry)
    entry.unlink()
    np.save(entry, np.zeros_like(array))


def _shuffled_rows(entry: Path, others: list[Path]) -> None:
    array = np.load(entry)
    entry.unlink()
    np.save(entry, array[np.random.default_rng(0).permutation(len(array))])


def _half_rows(entry: Path, others: list[Path]) -> None:
    array = np.load(entry)
    entry.unlink()
    np.save(entry, array[: len(array) // 2])


def _random_bytes(entry: Path, others: list[Path]) -> None:
    entry.write_bytes(np.random.default_rng(1).bytes(3000))


def _truncated(entry: Path, others: list[Path]) -> None:
    entry.write_bytes(entry.read_bytes()[:1000])


def _empty(entry: Path, others: list[Path]) -> None:
    entry.write_bytes(b"")


def _object_array(entry: Path, others: list[Path]) -> None:
    entry.unlink()
    np.save(entry, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)


def _other_dtype(entry: Path, others: list[Path]) -> None:
    array = np.load(entry)
    entry.unlink()
    np.save(entry, array.astype(np.float64))


def _fifo(entry: Path, others: list[Path]) -> None:
    entry.unlink()
    os.mkfifo(entry)


def _no_digest(entry: Path, others: list[Path]) -> None:
    entry.with_suffix(".sha256").unlink()


def _swapped_with_digests(entry: Path, others: list[Path]) -> None:
    """Another entry of the same shape moved in under this key, its digest file with it."""
    other = others[0]
    for suffix in (".npy", ".sha256"):
        shutil.copyfile(other.with_suffix(suffix), entry.with_suffix(suffix))


CORRUPTIONS: dict[str, Callable[[Path, list[Path]], None]] = {
    "all zeros": _zeros,
    "rows shuffled": _shuffled_rows,
    "half the rows": _half_rows,
    "random bytes": _random_bytes,
    "truncated": _truncated,
    "0 bytes": _empty,
    "object array": _object_array,
    "float64": _other_dtype,
    "a FIFO": _fifo,
    "no digest file": _no_digest,
    "another entry with its digest": _swapped_with_digests,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_bad_entry_is_computed_again_and_replaced(
    corruption: str,
    model: torch.nn.Module,
    data: DatasetTensors,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = tmp_path / "features"
    good = _stored(model, data, directory)
    entry = _entry(directory, len(data.val))
    others = [_entry(directory, len(data.train))]
    if corruption == "another entry with its digest":  # an entry of val's shape made under another key
        other_key = "0" * 32
        FeatureCache(directory, max_bytes=2**30).get(other_key, 1, lambda: good["val"][::-1].copy())
        others = [directory / f"{other_key}.npy"]
    CORRUPTIONS[corruption](entry, others)
    fresh = FeatureCache(directory, max_bytes=2**30)  # a new process: nothing checked yet
    with caplog.at_level(logging.WARNING, logger=frozen_features.LOG.name):
        features = prepare(PROBE, model, data, CPU, False, cache=fresh)
        again = prepare(PROBE, model, data, CPU, False, cache=fresh)
    assert features is not None and again is not None
    assert fresh.computed == 1, "only the bad entry is computed again"
    np.testing.assert_array_equal(features.val.numpy(), good["val"])
    np.testing.assert_array_equal(features.test.numpy(), good["test"])
    bad = [m for m in _warnings(caplog) if entry.name in m]
    assert len(bad) == 1 and "is bad" in bad[0] and "computing it again" in bad[0], _warnings(caplog)
    assert entry.is_file() and not list(directory.glob(".*.tmp"))
    later = FeatureCache(directory, max_bytes=2**30)
    assert prepare(PROBE, model, data, CPU, False, cache=later) is not None and later.computed == 0, "replaced"


def test_entries_read_in_place_are_checked_once_per_process(
    model: torch.nn.Module, data: DatasetTensors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "features"
    _stored(model, data, directory)
    cache = FeatureCache(directory, max_bytes=2**30)
    checks: list[str] = []
    real = FeatureCache._check_digest
    monkeypatch.setattr(FeatureCache, "_check_digest", lambda self, key: checks.append(key) or real(self, key))
    for _ in range(3):
        assert prepare(PROBE, model, data, CPU, False, cache=cache) is not None
    assert len(checks) == 3 and len(set(checks)) == 3, "train, val and test checked once each"


# ---------------------------------------------------------------------------------------------- the directory


def _dir_is_a_file(directory: Path, keys: list[str]) -> None:
    directory.write_text("not a directory")


def _dangling_symlink(directory: Path, keys: list[str]) -> None:
    directory.symlink_to(directory.parent / "gone")


def _lock_is_a_directory(directory: Path, keys: list[str]) -> None:
    directory.mkdir()
    for key in keys:
        (directory / f"{key}.lock").mkdir()


def _lock_is_a_fifo(directory: Path, keys: list[str]) -> None:
    directory.mkdir()
    for key in keys:
        os.mkfifo(directory / f"{key}.lock")


def _entry_is_a_directory(directory: Path, keys: list[str]) -> None:
    directory.mkdir()
    for key in keys:
        (directory / f"{key}.npy").mkdir()
        (directory / f"{key}.npy" / "x").write_text("keeps it from being removed")


def _failing(monkeypatch: pytest.MonkeyPatch, code: int, *, writes: bool) -> None:
    """Opening (``writes``: for writing) anything in a cache directory fails with ``code``, as the OS would."""
    real = os.open

    def opened(path: object, flags: int, *args: object, **kwargs: object) -> int:
        wants_write = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if "features" in str(path) and (wants_write or not writes):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(frozen_features.os, "open", opened)


DIRECTORY_PROBLEMS: dict[str, Callable[[Path, list[str]], None]] = {
    "a file": _dir_is_a_file,
    "a dangling symlink": _dangling_symlink,
    "locks that are directories": _lock_is_a_directory,
    "locks that are FIFOs": _lock_is_a_fifo,
    "entries that are non-empty directories": _entry_is_a_directory,
}


@pytest.fixture(scope="module")
def keys(model: torch.nn.Module, data: DatasetTensors, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    directory = tmp_path_factory.mktemp("keys") / "features"
    _stored(model, data, directory)
    return sorted(p.stem for p in directory.glob("*.npy"))


def _falls_back_once(
    model: torch.nn.Module, data: DatasetTensors, cache: FeatureCache, caplog: pytest.LogCaptureFixture
) -> str:
    with caplog.at_level(logging.WARNING, logger=frozen_features.LOG.name):
        for _ in range(3):
            assert prepare(PROBE, model, data, CPU, False, cache=cache) is None
    warned = _warnings(caplog)
    assert len(warned) == 1, warned
    assert "frozen-feature cache not used" in warned[0] and frozen_features.CACHE_DIR_ENV in warned[0]
    return warned[0]


@pytest.mark.parametrize("problem", list(DIRECTORY_PROBLEMS))
def test_a_directory_that_cannot_hold_entries_runs_uncached_with_one_warning(
    problem: str,
    keys: list[str],
    model: torch.nn.Module,
    data: DatasetTensors,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "features"
    DIRECTORY_PROBLEMS[problem](directory, keys)
    cache = _use(FeatureCache(directory, max_bytes=2**30), monkeypatch)
    message = _falls_back_once(model, data, cache, caplog)
    assert str(directory) in message
    assert run_trial(PROBE, data).status == "ok"  # the trial itself runs, on the uncached path


@pytest.mark.parametrize(("code", "writes"), [(errno.EACCES, True), (errno.EROFS, True), (errno.EACCES, False)])
def test_an_unwritable_or_read_only_directory_runs_uncached_with_one_warning(
    code: int,
    writes: bool,
    model: torch.nn.Module,
    data: DatasetTensors,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "features"
    directory.mkdir()
    _failing(monkeypatch, code, writes=writes)
    cache = _use(FeatureCache(directory, max_bytes=2**30), monkeypatch)
    message = _falls_back_once(model, data, cache, caplog)
    assert os.strerror(code) in message
    assert not [p for p in directory.iterdir() if p.suffix != ".lock"], "nothing half-written is left"


def test_a_read_only_directory_still_serves_its_entries(
    model: torch.nn.Module, data: DatasetTensors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "features"
    good = _stored(model, data, directory)
    _failing(monkeypatch, errno.EROFS, writes=True)
    cache = FeatureCache(directory, max_bytes=2**30)
    features = prepare(PROBE, model, data, CPU, False, cache=cache)
    assert features is not None and cache.computed == 0
    np.testing.assert_array_equal(features.train.numpy(), good["train"])


def test_a_full_disk_runs_uncached_and_leaves_no_temporary(
    model: torch.nn.Module,
    data: DatasetTensors,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "features"
    real_write = frozen_features._DigestWriter.write

    def full(self: frozen_features._DigestWriter, chunk: bytes) -> int:
        real_write(self, chunk[:10])  # some bytes reach the temporary, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(frozen_features._DigestWriter, "write", full)
    cache = _use(FeatureCache(directory, max_bytes=2**30), monkeypatch)
    message = _falls_back_once(model, data, cache, caplog)
    assert "No space left on device" in message
    assert not list(directory.glob(".*.tmp")) and not list(directory.glob("*.npy"))
    assert not list(directory.glob("*.lock")), "a lock of an entry never written is removed"


def test_temporaries_of_killed_writers_are_removed(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, max_bytes=2**20)
    dead = 2**22 + 12345  # above the usual pid_max: no such process
    stale = tmp_path / f".abc.npy.{dead}.tmp"
    recent = tmp_path / f".def.npy.{dead}.tmp"
    live = tmp_path / f".ghi.npy.{os.getppid()}.tmp"
    for path in (stale, recent, live):
        path.write_bytes(b"half an entry")
    old = time.time() - 3600
    for path in (stale, live):
        os.utime(path, (old, old))
    cache.get("k", 8, lambda: np.zeros((1, 2)))
    assert not stale.exists()
    assert recent.exists(), "a temporary written moments ago may be another node's writer in progress"
    assert live.exists(), "a live process may still be writing it"


# ---------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("abc", "is not a number"),
        ("1,5", "a decimal point, not a comma: 1.5"),
        ("nan", "out of range"),
        ("inf", "out of range"),
        ("-1", "out of range"),
        ("1e400", "out of range"),
        ("1e30", "out of range"),
    ],
)
def test_a_bad_size_bound_is_an_error_naming_the_variable_and_the_fix(value: str, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        cache_settings({frozen_features.CACHE_GB_ENV: value})
    message = str(caught.value)
    assert f"TLSWEEP_FEATURE_CACHE_GB={value!r}" in message and says in message
    assert "such as 4 or 0.5" in message


def test_good_size_bounds_and_defaults() -> None:
    assert cache_settings({frozen_features.CACHE_GB_ENV: "0.5"}).max_bytes == 2**29
    assert cache_settings({frozen_features.CACHE_GB_ENV: " 2 "}).max_bytes == 2**31
    assert cache_settings({frozen_features.CACHE_GB_ENV: "0"}).max_bytes == 0
    default = cache_settings({})
    assert 0 < default.max_bytes <= 16 * 2**30 and TrialConfig().feature_cache_dtype == "auto"
    assert default.directory.name == "tlsweep-features"
    assert cache_settings({frozen_features.CACHE_DIR_ENV: "/x/y"}).directory == Path("/x/y")


def test_validate_reports_a_bad_cache_setting_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli_exit import run_tlsweep

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv(frozen_features.CACHE_GB_ENV, "1e400")
    code, _out, err = run_tlsweep(["validate", repo / "sweeps" / "demo.yaml"], capsys, monkeypatch)
    assert code == 2 and "TLSWEEP_FEATURE_CACHE_GB='1e400' is out of range" in err
    assert len(err.strip().splitlines()) == 1
