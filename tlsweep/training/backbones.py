"""Backbones: a registry of architectures, their initialization (scratch | imagenet | checkpoint), freezing, head.

Every entry builds a whole classifier whose *body* is everything but the final linear layer (the *head*):
``fc`` for ResNets, ``classifier.6`` for VGG. ``create_model`` builds the body with the architecture's own
initialization, loads the requested weights into it, and attaches a new head for the task's classes.

Freeze depth k (0..5) freezes the first k stages of the body:

======  ===========================================  ======================================================
depth   ResNet (torchvision and ``resnet_tiny``)     VGG-16-BN
======  ===========================================  ======================================================
0       nothing (full fine-tuning)                   nothing
1       stem: ``conv1`` + ``bn1``                    conv block 1 (``features[0:7]``)
2       + ``layer1``                                 + conv block 2 (``features[7:14]``)
3       + ``layer2``                                 + conv block 3 (``features[14:24]``)
4       + ``layer3``                                 + conv block 4 (``features[24:34]``)
5       whole body (+ ``layer4``): linear probe      whole body (+ block 5, fc6, fc7): linear probe
======  ===========================================  ======================================================

Frozen parameters have ``requires_grad=False``; BatchNorm layers whose parameters are all frozen must stay in
eval mode during training: call :func:`train_mode` instead of ``model.train()``.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from tlsweep.errors import UnknownNameError, WeightsError
from tlsweep.training.config import MAX_FREEZE_DEPTH, check_setting, parse_init


@dataclass(frozen=True)
class BackboneEntry:
    """One registered architecture: ``build(num_classes)`` returns a classifier with standard initialization."""

    name: str
    build: Callable[[int], nn.Module]
    family: Literal["resnet", "vgg"]
    torchvision_name: str | None  # name for torchvision.models.get_model_weights; None: no published weights
    description: str


_BACKBONES: dict[str, BackboneEntry] = {}  # backbone name -> entry, filled by @register_backbone


def register_backbone(
    family: Literal["resnet", "vgg"], *, torchvision_name: str | None = None
) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Register ``fn(num_classes) -> nn.Module`` under ``fn.__name__``; a second registration warns and wins."""

    def decorate(fn: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        name = fn.__name__
        if name in _BACKBONES:
            warnings.warn(
                f"backbone {name!r} registered twice; the later definition replaces the earlier", stacklevel=2
            )
        doc = (fn.__doc__ or "").strip().splitlines()
        _BACKBONES[name] = BackboneEntry(name, fn, family, torchvision_name, doc[0] if doc else "")
        return fn

    return decorate


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the fnmatch ``pattern``, sorted."""
    return sorted(name for name in _BACKBONES if fnmatch.fnmatchcase(name, pattern))


def get_backbone(name: str) -> BackboneEntry:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise UnknownNameError(f"unknown backbone {name!r}; known backbones: {', '.join(list_backbones())}") from None


def backbone_info(name: str) -> dict[str, Any]:
    """Name, family, description, parameter count (with a 1000-class head) and default ImageNet weights."""
    entry = get_backbone(name)
    with torch.device("meta"):
        model = entry.build(1000)
    return {
        "name": name,
        "family": entry.family,
        "description": entry.description,
        "params": sum(p.numel() for p in model.parameters()),
        "imagenet_weights": _default_weights_name(entry),
    }


# ---------------------------------------------------------------------------------------------- architectures


@register_backbone("resnet", torchvision_name="resnet18")
def resnet18(num_classes: int) -> nn.Module:
    """torchvision ResNet-18."""
    from torchvision import models

    return models.resnet18(weights=None, num_classes=num_classes)


@register_backbone("resnet", torchvision_name="resnet34")
def resnet34(num_classes: int) -> nn.Module:
    """torchvision ResNet-34."""
    from torchvision import models

    return models.resnet34(weights=None, num_classes=num_classes)


@register_backbone("resnet", torchvision_name="resnet50")
def resnet50(num_classes: int) -> nn.Module:
    """torchvision ResNet-50."""
    from torchvision import models

    return models.resnet50(weights=None, num_classes=num_classes)


@register_backbone("resnet", torchvision_name="resnet101")
def resnet101(num_classes: int) -> nn.Module:
    """torchvision ResNet-101."""
    from torchvision import models

    return models.resnet101(weights=None, num_classes=num_classes)


@register_backbone("vgg", torchvision_name="vgg16_bn")
def vgg16_bn(num_classes: int) -> nn.Module:
    """torchvision VGG-16 with batch norm."""
    from torchvision import models

    return models.vgg16_bn(weights=None, num_classes=num_classes)


class TinyResNet(nn.Module):
    """A narrow ResNet for small images on CPUs: one BasicBlock per stage, 3×3 stride-1 stem, no max-pool.

    Keeps torchvision's attribute names (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``) so freeze depth,
    checkpoints and the head work as for the torchvision ResNets. Meant for images of at most 64 px.
    """

    def __init__(self, num_classes: int, width: int = 16, blocks: tuple[int, int, int, int] = (1, 1, 1, 1)) -> None:
        from torchvision.models.resnet import BasicBlock

        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages = []
        in_planes = width
        for index, count in enumerate(blocks):
            planes, stride = width * 2**index, 1 if index == 0 else 2
            layers: list[nn.Module] = []
            for block in range(count):
                downsample = None
                if block == 0 and (stride != 1 or in_planes != planes):
                    downsample = nn.Sequential(
                        nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                    )
                layers.append(BasicBlock(in_planes, planes, stride if block == 0 else 1, downsample))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():  # torchvision ResNet's initialization
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_backbone("resnet")
def resnet_tiny(num_classes: int) -> nn.Module:
    """Narrow ResNet for small images on CPU (widths 16-128, 1 block per stage)."""
    return TinyResNet(num_classes, width=16)


# ---------------------------------------------------------------------------------------------- body and head


def _head_name(family: str) -> str:
    return "fc" if family == "resnet" else "classifier.6"


def _family_of(model: nn.Module) -> str:
    return "resnet" if hasattr(model, "fc") and hasattr(model, "layer4") else "vgg"


def head_prefix(backbone: str) -> str:
    """State-dict key prefix of the head of ``backbone`` (e.g. ``"fc."``)."""
    return _head_name(get_backbone(backbone).family) + "."


def body_state_dict(state_dict: dict[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """``state_dict`` of a whole ``backbone`` classifier without the head's entries."""
    prefix = head_prefix(backbone)
    return {key: value for key, value in state_dict.items() if not key.startswith(prefix)}


def backbone_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The body's parameters and buffers (everything but the head), detached, on CPU."""
    prefix = _head_name(_family_of(model)) + "."
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(prefix)}


def head_module(model: nn.Module) -> nn.Linear:
    head = model.get_submodule(_head_name(_family_of(model)))
    assert isinstance(head, nn.Linear), f"head of {type(model).__name__} is {type(head).__name__}, not Linear"
    return head


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(head_module(model).parameters())


def body_parameters(model: nn.Module) -> list[nn.Parameter]:
    head_ids = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head_ids]


def _new_head(model: nn.Module, num_classes: int) -> None:
    old = head_module(model)
    new = nn.Linear(old.in_features, num_classes)
    parent_name, _, attr = _head_name(_family_of(model)).rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


# ---------------------------------------------------------------------------------------------- freezing


def _stage_modules(model: nn.Module) -> list[list[nn.Module]]:
    """The first four stages of the body (depth 1..4); depth 5 is the whole body."""
    if _family_of(model) == "resnet":
        return [[model.conv1, model.bn1], [model.layer1], [model.layer2], [model.layer3]]
    features: nn.Sequential = model.features
    ends = [i + 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    return [[features[start:end]] for start, end in zip([0, *ends[:3]], ends[:4], strict=False)]


def check_freeze_depth(depth: int) -> None:
    """Raise SpecError unless ``depth`` is a valid ``freeze_depth`` (the rule in ``tlsweep.training.config``)."""
    check_setting("freeze_depth", depth)


def apply_freeze(model: nn.Module, depth: int) -> nn.Module:
    """Freeze the first ``depth`` stages of the body (see the module docstring); returns ``model``."""
    check_freeze_depth(depth)
    if depth == MAX_FREEZE_DEPTH:
        frozen = body_parameters(model)
    else:
        frozen = [p for stage in _stage_modules(model)[:depth] for module in stage for p in module.parameters()]
    for parameter in frozen:
        parameter.requires_grad_(False)
    return model


def frozen_batchnorm_modules(model: nn.Module) -> list[nn.Module]:
    """BatchNorm layers whose affine parameters are all frozen: they must keep their running statistics."""
    found = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                found.append(module)
    return found


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, then frozen BatchNorm layers back to eval mode (their running stats stay fixed)."""
    model.train()
    for module in frozen_batchnorm_modules(model):
        module.eval()
    return model


# ---------------------------------------------------------------------------------------------- initialization
# ``init`` strings are parsed by ``tlsweep.training.config.parse_init`` (no torch needed to validate a setting).


def _default_weights_name(entry: BackboneEntry) -> str | None:
    if entry.torchvision_name is None:
        return None
    from torchvision.models import get_model_weights

    return get_model_weights(entry.torchvision_name).DEFAULT.name


def imagenet_weights(backbone: str, weights_name: str | None = None) -> Any:
    """The torchvision weights enum member for ``backbone`` (default: torchvision's DEFAULT for the arch)."""
    entry = get_backbone(backbone)
    if entry.torchvision_name is None:
        raise WeightsError(
            f"backbone {backbone!r} has no published ImageNet weights; use init 'scratch' or "
            f"'checkpoint:PATH' (e.g. a file written by `tlsweep pretrain --backbone {backbone}`)"
        )
    from torchvision.models import get_model_weights

    enum = get_model_weights(entry.torchvision_name)
    name = weights_name or enum.DEFAULT.name
    if name not in enum.__members__ or name == "DEFAULT":
        known = [m for m in enum.__members__ if m != "DEFAULT"]
        raise UnknownNameError(f"unknown weights {name!r} for {backbone}; known: {', '.join(known)}")
    return enum[name]


def weights_cache_path(url: str) -> Path:
    """Where torch.hub caches the file at ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_imagenet_state_dict(backbone: str, weights_name: str | None = None) -> dict[str, torch.Tensor]:
    """Load torchvision's weights from the torch.hub cache, downloading them if absent (needs network)."""
    weights = imagenet_weights(backbone, weights_name)
    path = weights_cache_path(weights.url)
    try:
        return torch.hub.load_state_dict_from_url(
            weights.url, progress=False, check_hash=True, map_location="cpu", weights_only=True
        )
    except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch, unpickling error ...
        raise WeightsError(
            f"ImageNet weights {type(weights).__name__}.{weights.name} for {backbone} are not usable: expected the "
            f"file {path} (downloaded from {weights.url}); {type(exc).__name__}: {exc}. On a machine with "
            f"internet run `tlsweep weights download {backbone}` (with the same TORCH_HOME) or copy the file there"
        ) from exc


def _describe_mismatch(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], limit: int = 5) -> str:
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    wrong = [
        f"{k}: file {tuple(loaded[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in loaded and tuple(loaded[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for label, keys in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{label} ({len(keys)}): {', '.join(keys[:limit])}{more}")
    return "; ".join(parts)


def load_body(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """Copy a body state dict into ``model`` (head entries in ``state_dict`` are ignored); strict otherwise."""
    prefix = _head_name(_family_of(model)) + "."
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    problems = _describe_mismatch(state_dict, expected)
    if problems:
        raise WeightsError(f"{source} does not fit {type(model).__name__}: {problems}")
    model.load_state_dict(state_dict, strict=False)


def read_checkpoint_body(path: str | Path) -> dict[str, torch.Tensor]:
    """A body state dict from ``path``: a raw state dict or ``{"backbone": state_dict, ...}``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"checkpoint file {path} does not exist; create one with `tlsweep pretrain --out {path}`")
    try:
        content = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise WeightsError(f"checkpoint {path} cannot be read with torch.load(weights_only=True): {exc}") from exc
    if isinstance(content, dict) and isinstance(content.get("backbone"), dict):
        content = content["backbone"]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise WeightsError(f"checkpoint {path} holds neither a state dict nor {{'backbone': state_dict, ...}}")
    return content


def create_model(
    backbone: str, num_classes: int, *, init: str = "scratch", freeze_depth: int = 0, seed: int | None = None
) -> nn.Module:
    """A ``backbone`` classifier with ``num_classes`` outputs, initialized by ``init``, first stages frozen.

    ``seed`` (optional) makes the random initialization reproducible without touching the global RNG: the
    body and the head draw from two independent streams, so the head is the same for every ``init``.
    """
    entry = get_backbone(backbone)
    spec = parse_init(init)
    check_freeze_depth(freeze_depth)
    body_seed, head_seed = (None, None) if seed is None else _split_seed(seed)
    with _seeded(body_seed):
        model = entry.build(1000 if spec.kind == "imagenet" else num_classes)
    if spec.kind == "imagenet":
        load_body(
            model,
            fetch_imagenet_state_dict(backbone, spec.argument),
            source=f"ImageNet weights {spec.argument or 'DEFAULT'} for {backbone}",
        )
    elif spec.kind == "checkpoint":
        assert spec.argument is not None
        load_body(model, read_checkpoint_body(spec.argument), source=f"checkpoint {spec.argument}")
    with _seeded(head_seed):
        _new_head(model, num_classes)
    return apply_freeze(model, freeze_depth)


def _split_seed(seed: int) -> tuple[int, int]:
    import numpy as np

    body, head = np.random.SeedSequence([seed, 0x6D6F64656C]).spawn(2)
    return int(body.generate_state(1, np.uint64)[0] >> 1), int(head.generate_state(1, np.uint64)[0] >> 1)


class _seeded:
    """Run a block with the global torch CPU RNG seeded, then restore the previous RNG state (no-op for None)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.saved: torch.Tensor | None = None

    def __enter__(self) -> None:
        if self.seed is not None:
            self.saved = torch.get_rng_state()
            torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            torch.set_rng_state(self.saved)


def parameter_groups(model: nn.Module, lr: float, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """Optimizer groups: head at ``lr``, trainable body at ``lr * backbone_lr_mult``; frozen parameters left out."""
    groups = [{"params": [p for p in head_parameters(model) if p.requires_grad], "lr": lr, "name": "head"}]
    body = [p for p in body_parameters(model) if p.requires_grad]
    if body:
        groups.append({"params": body, "lr": lr * backbone_lr_mult, "name": "body"})
    return groups


def download_imagenet_weights(backbone: str, weights_name: str | None = None, *, progress: bool = True) -> Path:
    """Fetch torchvision's weights for ``backbone`` into the torch.hub cache (hash checked); return the file."""
    weights = imagenet_weights(backbone, weights_name)
    path = weights_cache_path(weights.url)
    if path.is_file():
        return path
    try:
        torch.hub.load_state_dict_from_url(
            weights.url, progress=progress, check_hash=True, map_location="cpu", weights_only=True
        )
    except Exception as exc:
        raise WeightsError(
            f"could not download {weights.url} to {path}: {type(exc).__name__}: {exc}. Without internet, fetch "
            f"that URL on another machine and copy the file to {path} (the torch.hub cache {torch.hub.get_dir()}; set "
            "TORCH_HOME to move it)"
        ) from exc
    return path
