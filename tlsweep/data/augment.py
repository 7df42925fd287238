"""Augmentation of whole batches of uint8 tensors on the trial's device, driven only by the generator passed in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlsweep.errors import UnknownNameError

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

POLICIES: tuple[str, ...] = ("none", "flip", "flip_color", "trivial")
POLICY_HELP: dict[str, str] = {
    "none": "normalization only",
    "flip": "random horizontal flip",
    "flip_color": "random horizontal flip + brightness and contrast jitter up to 20%",
    "trivial": "random horizontal flip + TrivialAugmentWide (one random op per image)",
}
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
JITTER = 0.2


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 1]) B×3×H×W → float32 normalized with the ImageNet mean and std."""
    import torch

    x = images.to(torch.float32, copy=True)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    scale = (1.0 / 255.0 if images.dtype == torch.uint8 else 1.0) / std
    shift = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) / std
    return x.mul_(scale).sub_(shift)


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    import torch

    return (torch.rand(n, generator=generator, device=generator.device) * (high - low) + low).to(device)


def draw_flips(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Which of ``n`` images a flip policy mirrors (bool, on ``device``): one uniform draw per image."""
    return _uniform(n, 0.0, 1.0, generator, device) < 0.5


class TensorAugment:
    """``TensorAugment(policy)(uint8 B×C×H×W, generator) → float32 normalized``; same generator state → same output."""

    def __init__(self, policy: str) -> None:
        if policy not in POLICIES:
            raise UnknownNameError(f"unknown augmentation policy {policy!r}; known policies: {', '.join(POLICIES)}")
        self.policy = policy
        self._trivial: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"TensorAugment({self.policy!r})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torch

        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 B×C×H×W images, got {images.dtype} with shape {tuple(images.shape)}")
        if self.policy == "none" or images.shape[0] == 0:
            return normalize(images)
        flip = draw_flips(images.shape[0], generator, images.device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        if self.policy == "trivial":
            images = self._trivial_wide(images, generator)
        if self.policy == "flip_color":
            return normalize(self._brightness_contrast(images.float().div_(255.0), generator))
        return normalize(images)

    @staticmethod
    def _brightness_contrast(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        brightness = _uniform(n, 1 - JITTER, 1 + JITTER, generator, x.device).view(-1, 1, 1, 1)
        contrast = _uniform(n, 1 - JITTER, 1 + JITTER, generator, x.device).view(-1, 1, 1, 1)
        x = (x * brightness).clamp_(0.0, 1.0)
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]) if x.shape[1] == 3 else x.mean(1)
        mean = gray.mean(dim=(-2, -1)).view(-1, 1, 1, 1)
        return ((x - mean) * contrast + mean).clamp_(0.0, 1.0)

    def _trivial_wide(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torch
        from torchvision.transforms import v2

        if self._trivial is None:
            self._trivial = v2.TrivialAugmentWide()
        trivial = self._trivial
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([trivial(image) for image in images])
