"""Frozen layers computed once and reused: the split of a model, the node-local cache, and trials that match the
uncached path (same subset, order, flips and head init)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tlsweep.data.augment import normalize
from tlsweep.data.types import DatasetTensors, SplitTensors
from tlsweep.training import frozen_features
from tlsweep.training.backbones import apply_freeze, create_model
from tlsweep.training.config import TrialConfig
from tlsweep.training.frozen_features import FeatureCache, compute_features, frozen_prefix, prepare
from tlsweep.training.loop import run_trial

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration")


def _split(n: int, generator: torch.Generator, size: int = 16) -> SplitTensors:
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = torch.randint(0, 90, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    for cls in range(3):  # class c: a brighter channel c, with noise
        images[labels == cls, cls] += 60
    return SplitTensors(images, labels, [f"img{i}.png" for i in range(n)])


@pytest.fixture(scope="module")
def data() -> DatasetTensors:
    generator = torch.Generator().manual_seed(0)
    return DatasetTensors(_split(160, generator), _split(48, generator), _split(60, generator), ["a", "b", "c"])


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FeatureCache:
    store = FeatureCache(tmp_path / "features", max_bytes=2**30)
    monkeypatch.setattr(frozen_features, "_CACHE", store)
    return store


PROBE = TrialConfig(
    backbone="resnet_tiny",
    freeze_depth=5,
    epochs=5,
    batch_size=16,
    lr=0.05,
    augmentation="flip",
    num_threads=1,
    train_fraction=0.75,
    eval_batch_size=64,
)


# ---------------------------------------------------------------------------------------------- the split


@pytest.fixture(scope="module")
def vgg() -> nn.Module:
    return create_model("vgg16_bn", 4, seed=3)  # built once: its initialization takes seconds


@pytest.mark.parametrize("backbone", ["resnet_tiny", "resnet18", "vgg16_bn"])
def test_prefix_and_remainder_reproduce_the_model_at_every_depth(backbone: str, vgg: nn.Module) -> None:
    x = normalize(torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8))
    model = vgg if backbone == "vgg16_bn" else create_model(backbone, 4, seed=3)
    model.eval()
    for depth in range(1, 6):
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        apply_freeze(model, depth)
        split = frozen_prefix(model, depth)
        assert not isinstance(split, str), split
        prefix, remainder = split
        assert all(not p.requires_grad for p in prefix.parameters()), f"{backbone} depth {depth}: prefix trains"
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert {id(p) for p in trainable} <= {id(p) for p in remainder.parameters()}, "a trained parameter is lost"
        with torch.no_grad():
            torch.testing.assert_close(remainder(prefix(x)), model(x), rtol=1e-5, atol=1e-5)


def test_vgg_linear_probe_keeps_dropout_and_fc7_in_the_remainder(vgg: nn.Module) -> None:
    split = frozen_prefix(apply_freeze(vgg, 5), 5)
    assert not isinstance(split, str)
    prefix, remainder = split
    assert not any(isinstance(m, nn.Dropout) for m in prefix.modules())
    assert any(isinstance(m, nn.Dropout) for m in remainder.modules())


class _Other(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout(dropout), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def test_other_architectures_full_freeze_only_and_never_with_a_stochastic_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tlsweep.training import backbones

    monkeypatch.setattr(backbones, "head_module", lambda model: model.fc)
    model = _Other()
    assert "partial freezes of _Other" in str(frozen_prefix(model, 2))
    split = frozen_prefix(model, 5)
    assert not isinstance(split, str)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(split[1](split[0](x)), model(x))
        assert split[0](x).shape == (3, 4)
    assert isinstance(model.fc, nn.Linear), "the head is put back after computing features"
    assert "Dropout" in str(frozen_prefix(_Other(dropout=0.5), 5))
    assert "freeze_depth 0" in str(frozen_prefix(model, 0))


# ---------------------------------------------------------------------------------------------- stored features


@pytest.mark.parametrize(("dtype", "relative"), [("float32", 0.0), ("float16", 2.0**-11)])
def test_stored_features_equal_recomputed_ones(
    data: DatasetTensors, cache: FeatureCache, monkeypatch: pytest.MonkeyPatch, dtype: str, relative: float
) -> None:
    for depth, augmentation in ((5, "flip"), (2, "none")):
        config = PROBE.replace(freeze_depth=depth, augmentation=augmentation, feature_cache_dtype=dtype)
        model = create_model("resnet_tiny", 3, freeze_depth=depth, seed=1)
        stored = prepare(config, model, data, torch.device("cpu"), False)
        assert stored is not None
        split = frozen_prefix(model, depth)
        assert not isinstance(split, str)
        prefix = split[0].eval()
        rows = torch.tensor([0, 5, 17, 159])  # a training-sized batch, recomputed the way the uncached path does
        with torch.no_grad():
            expected = prefix(normalize(data.train.images[rows]))
            expected_flipped = prefix(normalize(data.train.images[rows].flip(-1)))
        got = stored.train[rows].float()
        bound = 1e-5 + relative * expected.abs()
        assert ((got - expected).abs() <= bound).all(), float((got - expected).abs().max())
        if augmentation == "flip":
            assert stored.train_flipped is not None
            assert (
                (stored.train_flipped[rows].float() - expected_flipped).abs()
                <= 1e-5 + relative * expected_flipped.abs()
            ).all()
        else:
            assert stored.train_flipped is None
        assert stored.train.dtype == getattr(torch, dtype)
        assert stored.val.shape[0] == len(data.val) and stored.test.shape[0] == len(data.test)


def test_features_are_computed_once_for_every_trial_with_the_same_prefix(
    data: DatasetTensors, cache: FeatureCache
) -> None:
    init = "checkpoint:"  # the same frozen weights for every seed: a file, as in a sweep
    body = create_model("resnet_tiny", 3, seed=9).state_dict()
    path = cache.directory.parent / "body.pt"
    torch.save({k: v for k, v in body.items() if not k.startswith("fc.")}, path)
    config = PROBE.replace(init=init + str(path), epochs=1)
    run_trial(config, data)
    assert cache.computed == 4  # train, flipped train, val, test
    for changes in ({"seed": 5}, {"lr": 0.2, "epochs": 2}, {"train_fraction": 0.5}):
        run_trial(config.replace(**changes), data)
    assert cache.computed == 4, "a trial with the same prefix recomputed features"
    run_trial(config.replace(freeze_depth=3), data)  # another prefix: its own entries
    assert cache.computed == 8
    run_trial(config.replace(augmentation="none", freeze_depth=3, seed=2), data)  # reuses train/val/test
    assert cache.computed == 8
    assert cache.size_bytes() == sum(p.stat().st_size for p in cache.entries()) > 0


@pytest.mark.parametrize(
    ("dtype", "depth", "augmentation"),
    [("float32", 5, "flip"), ("float32", 3, "flip"), ("float16", 5, "none"), ("float16", 3, "flip")],
)
def test_cached_trials_match_the_uncached_path(
    data: DatasetTensors,
    cache: FeatureCache,
    monkeypatch: pytest.MonkeyPatch,
    dtype: str,
    depth: int,
    augmentation: str,
) -> None:
    config = PROBE.replace(
        freeze_depth=depth, augmentation=augmentation, epochs=4 if depth == 5 else 2, feature_cache_dtype=dtype
    )
    cached = run_trial(config, data)
    plain = run_trial(config.replace(feature_cache=False), data)
    assert cache.computed >= 3
    assert (cached.subset_hash, cached.n_train, cached.optimizer_steps) == (
        plain.subset_hash,
        plain.n_train,
        plain.optimizer_steps,
    )
    assert abs(cached.test_acc - plain.test_acc) <= 0.005, (cached.test_acc, plain.test_acc)
    assert abs(cached.best_val_acc - plain.best_val_acc) <= 0.005
    tolerance = 1e-4 if dtype == "float32" else 5e-3
    for mine, theirs in zip(cached.history, plain.history, strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=tolerance, abs=tolerance)
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=tolerance, abs=tolerance)
    assert cached.best_state is not None and plain.best_state is not None
    assert cached.best_state.keys() == plain.best_state.keys()  # the whole model, usable by `tlsweep predict`
    torch.testing.assert_close(cached.best_state["fc.weight"], plain.best_state["fc.weight"], rtol=0.05, atol=2e-3)


def test_pixel_changing_augmentation_falls_back_and_logs_why_once(
    data: DatasetTensors, cache: FeatureCache, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frozen_features, "_LOGGED", set())
    model = create_model("resnet_tiny", 3, freeze_depth=5, seed=0)
    with caplog.at_level(logging.INFO, logger=frozen_features.LOG.name):
        for _ in range(3):
            assert prepare(PROBE.replace(augmentation="flip_color"), model, data, torch.device("cpu"), False) is None
    reasons = [r.getMessage() for r in caplog.records if "flip_color" in r.getMessage()]
    assert len(reasons) == 1 and "changes pixels" in reasons[0]
    assert cache.computed == 0
    with caplog.at_level(logging.INFO, logger=frozen_features.LOG.name):
        assert prepare(PROBE.replace(feature_cache=False), model, data, torch.device("cpu"), False) is None
    assert any("feature_cache is off" in r.getMessage() for r in caplog.records)


def test_an_entry_over_the_bound_falls_back(
    data: DatasetTensors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(frozen_features, "_LOGGED", set())
    small = FeatureCache(tmp_path / "small", max_bytes=1000)  # train features: 160 × 128 × 2 bytes
    monkeypatch.setattr(frozen_features, "_CACHE", small)
    model = create_model("resnet_tiny", 3, freeze_depth=5, seed=0)
    with caplog.at_level(logging.INFO, logger=frozen_features.LOG.name):
        assert prepare(PROBE, model, data, torch.device("cpu"), False) is None
    assert any("exceed the cache's bound" in r.getMessage() for r in caplog.records)
    assert small.entries() == []
    result = run_trial(PROBE.replace(epochs=1), data)  # the trial still runs, on the uncached path
    assert result.status == "ok"


def test_cache_evicts_least_recently_used_entries_within_its_bound(tmp_path: Path) -> None:
    import os

    store = FeatureCache(tmp_path, max_bytes=3 * 1200)
    arrays = {name: np.full(256, i, dtype=np.float32) for i, name in enumerate("abcd")}  # 1152 bytes each as .npy
    for i, name in enumerate("abc"):
        store.get(name, 1024, lambda name=name: arrays[name])  # type: ignore[misc]
        os.utime(store.path(name), (1000 + i, 1000 + i))
    store.get("a", 1024, lambda: pytest.fail("a is stored"))  # a hit marks it recently used
    store.get("d", 1024, lambda: arrays["d"])
    assert sorted(p.stem for p in store.entries()) == ["a", "c", "d"], "b was the least recently used"
    assert store.size_bytes() <= store.max_bytes
    assert np.array_equal(store.get("d", 1024, lambda: pytest.fail("d is stored")), arrays["d"])  # type: ignore[arg-type]
    assert store.get("e", 10**9, lambda: pytest.fail("never computed")) is None


def test_an_entry_another_process_is_computing_is_busy_not_waited_for_on_request(tmp_path: Path) -> None:
    from tlsweep.training.frozen_features import EntryBusy

    store = FeatureCache(tmp_path, max_bytes=2**20)
    with store._locked("k"):  # another open file description: as another process would hold it
        with pytest.raises(EntryBusy):
            store.get("k", 8, lambda: pytest.fail("computed while another process computes it"), wait=False)
        assert store.get("j", 8, lambda: np.zeros(2), wait=False) is not None
    assert store.get("k", 8, lambda: np.ones(2), wait=False) is not None


def test_trials_that_start_together_compute_different_entries_first(
    data: DatasetTensors, cache: FeatureCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first entry is busy (another trial computes it): this trial computes the other three, then waits for it."""
    from tlsweep.training.frozen_features import EntryBusy

    attempts: list[tuple[str, bool]] = []
    computed: list[tuple[int, bool]] = []
    locked = cache._locked

    def contended(key: str, wait: bool = True):  # type: ignore[no-untyped-def]
        attempts.append((key, wait))
        if not wait and key == attempts[0][0]:
            raise EntryBusy(key)
        return locked(key, wait)

    real_compute = frozen_features.compute_features

    def recording(prefix, part, *, flipped, **kwargs):  # type: ignore[no-untyped-def]
        computed.append((len(part), flipped))
        return real_compute(prefix, part, flipped=flipped, **kwargs)

    monkeypatch.setattr(cache, "_locked", contended)
    monkeypatch.setattr(frozen_features, "compute_features", recording)
    model = create_model("resnet_tiny", 3, seed=1, freeze_depth=5)
    stored = prepare(PROBE, model, data, torch.device("cpu"), amp=False)
    assert stored is not None and stored.train_flipped is not None
    first = attempts[0][0]
    assert [wait for _, wait in attempts] == [False] * 4 + [True] and attempts[-1][0] == first
    assert computed == [(48, False), (60, False), (160, True), (160, False)]  # val, test, flipped train; then train


def test_feature_vectors_are_stored_as_float16_and_feature_maps_as_float32_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tlsweep.errors import SpecError
    from tlsweep.training.config import check_trial_config

    assert frozen_features.storage_dtype(5) == np.float16
    assert [frozen_features.storage_dtype(depth) for depth in (1, 3, 4)] == [np.float32] * 3
    assert frozen_features.storage_dtype(3, "float16") == np.float16
    with pytest.raises(SpecError, match=r"feature_cache_dtype.*one of auto, float16, float32"):
        check_trial_config(PROBE.replace(feature_cache_dtype="bfloat16"))  # type: ignore[arg-type]
    # the variable that chose it before it was a setting is refused, not silently ignored
    with pytest.raises(
        SpecError, match=r"TLSWEEP_FEATURE_CACHE_DTYPE=.float16. is no longer read.*feature_cache_dtype"
    ):
        frozen_features.cache_settings({frozen_features.CACHE_DTYPE_ENV: "float16"})


def test_float16_overflow_is_stored_as_float32(data: DatasetTensors) -> None:
    class Loud(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :3] * 1e6

    array = compute_features(
        Loud(),
        data.val,
        flipped=False,
        batch_size=16,
        device=torch.device("cpu"),
        amp=False,
        dtype=np.dtype("float16"),
    )
    assert array.dtype == np.float32 and np.isfinite(array).all()


def test_batches_reach_the_model_as_float32_and_channels_last_under_amp(data: DatasetTensors) -> None:
    # the one tail of the image, feature and stored-activation batches (amp itself runs on CUDA only)
    from types import SimpleNamespace

    from tlsweep.data.augment import TensorAugment
    from tlsweep.training.loop import _feature_batches, _image_batches, _stored_batches

    cpu, indices, config = torch.device("cpu"), np.arange(5, 37), TrialConfig(backbone="resnet_tiny", batch_size=8)
    maps = torch.randn(160, 6, 4, 4, generator=torch.Generator().manual_seed(1)).half()
    vectors = maps.flatten(1)
    for amp in (False, True):
        image_x = [
            x
            for x, _ in _image_batches(
                data,
                indices,
                config,
                cpu,
                amp,
                False,
                TensorAugment("flip"),
                torch.Generator().manual_seed(2),
                torch.Generator().manual_seed(3),
            )
        ]
        frozen = SimpleNamespace(train=maps, train_flipped=None)
        feature = list(
            _feature_batches(
                frozen,
                data,
                indices,
                config,
                cpu,
                amp,
                False,
                torch.Generator().manual_seed(2),
                torch.Generator().manual_seed(3),
            )
        )
        assert torch.equal(
            torch.cat([y for _, y in feature]).sort().values, data.train.labels[torch.from_numpy(indices)].sort().values
        )
        stored = [_stored_batches(s, data.train.labels, indices, 8, cpu, amp) for s in (maps, vectors)]
        stored_maps, stored_vectors = ([x for x, _ in batches] for batches in stored)
        assert torch.equal(torch.cat(stored_maps), maps[torch.from_numpy(indices)].float())
        assert torch.equal(torch.cat(stored_vectors), vectors[torch.from_numpy(indices)].float())
        for x in [*image_x, *(x for x, _ in feature), *stored_maps, *stored_vectors]:
            assert x.dtype == torch.float32 and x.device == cpu
            layout = torch.channels_last if amp and x.dim() == 4 else torch.contiguous_format  # a vector as it is
            assert x.is_contiguous(memory_format=layout)


def test_a_freeze_depth_short_of_a_deep_timm_body_is_no_whole_body_freeze(
    data: DatasetTensors, cache: FeatureCache, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timm:test_vit has 7 freeze levels: depth 5 leaves blocks training, so its features cannot be stored (only
    the head would train); depth 7 freezes the whole body and is stored."""
    monkeypatch.setattr(frozen_features, "_LOGGED", set())
    config = PROBE.replace(backbone="timm:test_vit", freeze_depth=5)
    model = create_model("timm:test_vit", 3, freeze_depth=5, seed=0)
    assert any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("head"))
    with caplog.at_level(logging.INFO, logger=frozen_features.LOG.name):
        assert prepare(config, model, data, torch.device("cpu"), False) is None
    assert any(
        "freeze_depth 5 leaves layers of timm:test_vit's body training" in r.getMessage() for r in caplog.records
    )
    assert cache.computed == 0
    whole = create_model("timm:test_vit", 3, freeze_depth=7, seed=0)
    assert prepare(config.replace(freeze_depth=7), whole, data, torch.device("cpu"), False) is not None
