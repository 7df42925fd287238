from __future__ import annotations

import pytest
import torch

from tlsweep.data.augment import IMAGENET_MEAN, IMAGENET_STD, POLICIES, TensorAugment, normalize
from tlsweep.errors import UnknownNameError


def batch(n: int = 6, size: int = 12) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_returns_normalized_float_of_the_same_shape(policy: str) -> None:
    images = batch()
    out = TensorAugment(policy)(images, gen(0))
    assert out.dtype == torch.float32 and out.shape == images.shape and torch.isfinite(out).all()
    low = (0 - max(IMAGENET_MEAN)) / min(IMAGENET_STD)
    high = (1 - min(IMAGENET_MEAN)) / min(IMAGENET_STD)
    assert out.min() >= low - 1e-5 and out.max() <= high + 1e-5


@pytest.mark.parametrize("policy", POLICIES)
def test_same_generator_state_same_output_whatever_the_global_rng(policy: str) -> None:
    images = batch()
    torch.manual_seed(1)
    first = TensorAugment(policy)(images, gen(42))
    torch.manual_seed(2)
    second = TensorAugment(policy)(images, gen(42))
    assert torch.equal(first, second)


@pytest.mark.parametrize("policy", ["flip", "flip_color", "trivial"])
def test_different_generator_states_differ_and_the_global_rng_is_untouched(policy: str) -> None:
    images = batch(n=16)
    torch.manual_seed(9)
    expected_next = torch.rand(3)
    torch.manual_seed(9)
    a = TensorAugment(policy)(images, gen(1))
    assert torch.equal(torch.rand(3), expected_next), "augmentation must not consume the global RNG"
    b = TensorAugment(policy)(images, gen(2))
    assert not torch.equal(a, b)


def test_none_is_plain_normalization_and_flip_only_mirrors() -> None:
    images = batch(n=32)
    assert torch.equal(TensorAugment("none")(images, gen(0)), normalize(images))
    flipped = TensorAugment("flip")(images, gen(0))
    plain, mirrored = normalize(images), normalize(images.flip(-1))
    same = [torch.equal(flipped[i], plain[i]) for i in range(32)]
    swapped = [torch.equal(flipped[i], mirrored[i]) for i in range(32)]
    assert all(s or m for s, m in zip(same, swapped, strict=False)) and 0 < sum(swapped) < 32


def test_flip_color_jitter_stays_within_twenty_percent_brightness() -> None:
    images = torch.full((64, 3, 4, 4), 100, dtype=torch.uint8)
    out = TensorAugment("flip_color")(images, gen(3))
    raw = out * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    ratio = raw.mean(dim=(1, 2, 3)) / (100 / 255)
    assert ratio.min() >= 0.8 - 1e-4 and ratio.max() <= 1.2 + 1e-4 and ratio.std() > 0.02


def test_normalize_matches_the_formula() -> None:
    images = torch.tensor([[[[0]], [[255]], [[51]]]], dtype=torch.uint8)
    expected = torch.tensor([(0 - 0.485) / 0.229, (1 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(normalize(images), expected, atol=1e-6)


def test_unknown_policy_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="none, flip, flip_color, trivial"):
        TensorAugment("mixup")
