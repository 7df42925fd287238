"""Backbones: a registry of architectures and timm's models, their initialization, freezing and head.

Every backbone builds a whole classifier made of a *body* (images → pooled features, N×D) and a *head* (pooled
features → logits): the head is everything after the pooled features, so features cached from a frozen body can
feed any head. The head lives at ``fc`` for the ResNets and ``small_cnn``, ``classifier.6`` for VGG (whose
pooled features are fc7's output) and ``head`` for a timm model (``TimmClassifier``: ``body`` is timm's model
with ``num_classes=0``). ``create_model`` builds the body with the architecture's own initialization, loads the
requested weights into it, and attaches a new head for the task's classes: ``linear`` (one dense layer) or
``mlp`` (dense(32) + BatchNorm + ReLU + dense, :data:`MLP_HIDDEN` wide, the flowers study's ResNet50V2 head).

Backbones: the registered ones (``tlsweep models``), and any timm model as ``timm:<model name>``
(``timm:resnetv2_50``, ``timm:convnext_atto``; a pretrained tag may follow: ``timm:resnet50.a1_in1k``).

Freeze depth k (0..L, L = :func:`freeze_levels` of the backbone) freezes the first k levels of the body; level L
is the whole body (a linear probe, or an MLP probe with ``head: mlp``):

=====  ============================  ======================================  =============================  ==========================
depth  ResNet (torchvision, tiny)    VGG-16-BN                               ``small_cnn``                  timm model
=====  ============================  ======================================  =============================  ==========================
0      nothing (full fine-tuning)    nothing                                 nothing                        nothing
1      stem: ``conv1`` + ``bn1``     conv block 1 (``features[0:7]``)        conv block 1                   group 1 (the stem)
2      + ``layer1``                  + conv block 2 (``features[7:14]``)     + conv block 2                 + group 2 (first stage)
3      + ``layer2``                  + conv block 3 (``features[14:24]``)    + conv block 3                 ...
4      + ``layer3``                  + conv block 4 (``features[24:34]``)    whole body (+ dense 128)       ...
5      whole body (+ ``layer4``)     whole body (+ block 5, fc6, fc7)        (L = 4)                        L: whole body
=====  ============================  ======================================  =============================  ==========================

A timm model's groups are its own coarse parameter grouping (``model.group_matcher(coarse=True)`` through
``timm.models.group_parameters``: stem, then stages or blocks, then a final norm where the model has one); a model
without a grouping has one level (the whole body).

Frozen parameters have ``requires_grad=False``; BatchNorm layers whose parameters are all frozen must stay in
eval mode during training: call :func:`train_mode` instead of ``model.train()``.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from tlsweep.errors import SpecError, UnknownNameError, WeightsError
from tlsweep.training.config import HEADS, MLP_HIDDEN, check_setting, parse_init

Family = Literal["resnet", "vgg", "cnn", "timm"]
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class BackboneEntry:
    """One architecture: ``build(num_classes)`` returns a classifier with standard initialization."""

    name: str
    build: Callable[[int], nn.Module]
    family: Family
    torchvision_name: str | None  # name for torchvision.models.get_model_weights; None: no published weights
    description: str
    timm_name: str | None = None  # timm's model name (with an optional pretrained tag) for ``timm:`` backbones


_BACKBONES: dict[str, BackboneEntry] = {}  # backbone name -> entry, filled by @register_backbone


def register_backbone(
    family: Family, *, torchvision_name: str | None = None
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
    """Registered backbone names matching the fnmatch ``pattern``, sorted (timm's models: :func:`list_timm_models`)."""
    return sorted(name for name in _BACKBONES if fnmatch.fnmatchcase(name, pattern))


def get_backbone(name: str) -> BackboneEntry:
    """The entry of a registered backbone or of ``timm:<model name>``.

    Raises:
        UnknownNameError: an unknown name (with the close registered names), a ``timm:`` name timm does not know
            (with timm's close names), or a ``timm:`` name without timm installed (``pip install timm``).
    """
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        return _timm_entry(name[len(TIMM_PREFIX) :])
    try:
        return _BACKBONES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_BACKBONES), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownNameError(
            f"unknown backbone {name!r}{hint}; known backbones: {', '.join(list_backbones())}, or any timm model "
            "as timm:<model name> (`tlsweep models --timm PATTERN` lists them)"
        ) from None


def _import_timm(what: str) -> Any:
    try:
        import timm
    except ImportError as exc:
        raise UnknownNameError(
            f"{what} needs the timm package, which is not installed here; install it with `pip install timm`"
        ) from exc
    return timm


@functools.cache
def _timm_entry(model_name: str) -> BackboneEntry:
    timm = _import_timm(f"backbone {TIMM_PREFIX}{model_name}")
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(model_name)
    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close names: {', '.join(TIMM_PREFIX + c for c in close)}" if close else ""
        raise UnknownNameError(
            f"timm has no model {arch!r} (backbone {TIMM_PREFIX}{model_name}){hint}; "
            f"`tlsweep models --timm '*{arch[:4]}*'` lists timm's models"
        )
    if tag:
        try:
            get_pretrained_cfg(model_name)
        except RuntimeError:
            tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{arch}.*")]
            raise UnknownNameError(
                f"timm model {arch} has no pretrained tag {tag!r} (backbone {TIMM_PREFIX}{model_name}); "
                f"its tags: {', '.join(tags) or 'none'}"
            ) from None

    def build(num_classes: int) -> nn.Module:
        return TimmClassifier(timm.create_model(model_name, pretrained=False, num_classes=0), num_classes)

    return BackboneEntry(
        TIMM_PREFIX + model_name, build, "timm", None, "timm's model, head on its pooled features", timm_name=model_name
    )


def list_timm_models(pattern: str = "*") -> list[str]:
    """timm's model names matching the fnmatch ``pattern`` as backbone names (``timm:<name>``), sorted."""
    timm = _import_timm("listing timm's models")
    return [TIMM_PREFIX + name for name in timm.list_models(pattern)]


def backbone_info(name: str) -> dict[str, Any]:
    """Name, family, description, parameter count (with a 1000-class head), default ImageNet weights, freeze levels."""
    entry = get_backbone(name)
    with torch.device("meta"):
        model = entry.build(1000)
    return {
        "name": entry.name,
        "family": entry.family,
        "description": entry.description,
        "params": sum(p.numel() for p in model.parameters()),
        "imagenet_weights": _default_weights_name(entry),
        "freeze_levels": len(_freeze_groups(model)),
    }


@functools.cache
def freeze_levels(backbone: str) -> int:
    """How many freeze levels ``backbone`` has: ``freeze_depth`` runs from 0 (train all) to this (whole body)."""
    with torch.device("meta"):
        model = get_backbone(backbone).build(2)
    return len(_freeze_groups(model))


def freeze_depth_problem(depth: Any, backbone: str) -> str | None:
    """``"freeze_depth must be an integer in 0..5 for backbone ..."`` when ``depth`` does not fit ``backbone``.

    Needs torch (the levels come from the model); ``tlsweep validate`` calls it for every backbone and freeze
    depth of a spec. Raises UnknownNameError for an unknown backbone.
    """
    levels = freeze_levels(backbone)
    if isinstance(depth, int) and not isinstance(depth, bool) and 0 <= depth <= levels:
        return None
    return (
        f"freeze_depth must be an integer in 0..{levels} for backbone {backbone} (0 trains everything, 1 freezes "
        f"the stem, {levels} freezes the whole body; `tlsweep models` lists each backbone's levels), got {depth!r}"
    )


def check_backbone_settings(backbone: str, freeze_depths: Iterable[Any] = (), *, source: str | None = None) -> None:
    """Raise unless ``backbone`` exists and every one of ``freeze_depths`` fits it.

    Raises:
        UnknownNameError: the backbone does not exist (``source``, a file, named first when given).
        SpecError: a freeze depth beyond the backbone's levels, naming ``source`` and the levels.
    """
    where = f"{source}: " if source else ""
    try:
        get_backbone(backbone)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{where}backbone: {exc}") from None
    for depth in freeze_depths:
        problem = freeze_depth_problem(depth, backbone)
        if problem is not None:
            raise SpecError(where + problem)


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


class SmallCNN(nn.Module):
    """The flowers study's model 1: three 3×3 conv + ReLU + 2×2 max-pool blocks (16, 32, 64 channels), then
    dense(128) + ReLU and the dense head.

    One change from the original: the conv blocks end in a 4×4 adaptive average pool before the dense layer, so
    the model takes any image size (the original flattened a fixed 180×180 input). Freeze levels: conv block 1,
    + block 2, + block 3, + the dense(128) layer (the whole body).
    """

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (16, 32, 64), hidden: int = 128) -> None:
        super().__init__()
        blocks, in_channels = [], 3
        for width in widths:
            blocks.append(
                nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
            )
            in_channels = width
        self.block1, self.block2, self.block3 = blocks
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 16, hidden), nn.ReLU(inplace=True))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block3(self.block2(self.block1(x))))
        return self.fc(self.hidden(x))


@register_backbone("cnn")
def small_cnn(num_classes: int) -> nn.Module:
    """Plain 3-conv CNN (16-32-64 channels, dense 128): the flowers study's model trained from scratch."""
    return SmallCNN(num_classes)


class TimmClassifier(nn.Module):
    """A timm model as body (``num_classes=0``: images → pooled features) and our head (features → logits)."""

    def __init__(self, body: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.num_features = int(getattr(body, "head_hidden_size", None) or body.num_features)
        self.head: nn.Module = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# ---------------------------------------------------------------------------------------------- body and head


class MLPHead(nn.Sequential):
    """``head: mlp``: dense(hidden) + BatchNorm + ReLU + dense, on the pooled features."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = MLP_HIDDEN) -> None:
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        self.in_features, self.out_features = in_features, num_classes


_HEAD_NAMES: dict[str, str] = {"resnet": "fc", "vgg": "classifier.6", "cnn": "fc", "timm": "head"}


def _head_name(family: str) -> str:
    return _HEAD_NAMES[family]


def _family_of(model: nn.Module) -> Family:
    if isinstance(model, TimmClassifier):
        return "timm"
    if isinstance(model, SmallCNN):
        return "cnn"
    return "resnet" if hasattr(model, "fc") and hasattr(model, "layer4") else "vgg"


def head_prefix(backbone: str) -> str:
    """State-dict key prefix of the head of ``backbone`` (e.g. ``"fc."``)."""
    return _head_name(get_backbone(backbone).family) + "."


def body_state_dict(state_dict: dict[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """``state_dict`` of a whole ``backbone`` classifier without the head's entries."""
    prefix = head_prefix(backbone)
    return {key: value for key, value in state_dict.items() if not key.startswith(prefix)}


def head_of_state_dict(state_dict: dict[str, Any], backbone: str) -> str:
    """Which head (``linear`` or ``mlp``) the whole-classifier ``state_dict`` of ``backbone`` holds."""
    prefix = head_prefix(backbone)
    return "mlp" if f"{prefix}3.weight" in state_dict else "linear"


def library_model(backbone: str, state_dict: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]] | None:
    """The whole-classifier ``state_dict`` of ``backbone`` as its library's own model names its weights, and the call
    that builds that model (``torchvision.models.resnet18(num_classes=3)``, ``timm.create_model('resnet50',
    num_classes=3)``); it loads strictly. None for tlsweep's own backbones and for an MLP head (no library model has
    one)."""
    entry = get_backbone(backbone)
    if head_of_state_dict(state_dict, backbone) != "linear" or entry.family not in ("resnet", "vgg", "timm"):
        return None
    num_classes = int(state_dict[head_prefix(backbone) + "weight"].shape[0])
    if entry.timm_name is None:
        if entry.torchvision_name is None:
            return None
        return f"torchvision.models.{entry.torchvision_name}(num_classes={num_classes})", dict(state_dict)
    timm = _import_timm(f"backbone {backbone}")
    arch = entry.timm_name.partition(".")[0]
    with torch.device("meta"):
        plain = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    classifier = next(name for name, module in plain.named_modules() if module is plain.get_classifier())
    renamed = {
        key.removeprefix("body.") if key.startswith("body.") else classifier + key.removeprefix("head"): value
        for key, value in state_dict.items()
    }
    expected = plain.state_dict()
    if set(renamed) != set(expected) or any(renamed[k].shape != expected[k].shape for k in expected):
        return None
    return f"timm.create_model({arch!r}, num_classes={num_classes})", renamed


def backbone_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The body's parameters and buffers (everything but the head), detached, on CPU."""
    prefix = _head_name(_family_of(model)) + "."
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(prefix)}


def head_module(model: nn.Module) -> nn.Module:
    """The head: everything after the pooled features (an ``nn.Linear`` or an :class:`MLPHead`)."""
    head = model.get_submodule(_head_name(_family_of(model)))
    assert isinstance(head, nn.Linear | MLPHead), f"head of {type(model).__name__} is {type(head).__name__}"
    return head


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(head_module(model).parameters())


def body_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter before the pooled features (the head's excluded)."""
    head_ids = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head_ids]


def _new_head(model: nn.Module, num_classes: int, head: str = "linear") -> None:
    if head not in HEADS:
        raise SpecError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    in_features = head_module(model).in_features
    new: nn.Module = nn.Linear(in_features, num_classes) if head == "linear" else MLPHead(in_features, num_classes)
    parent_name, _, attr = _head_name(_family_of(model)).rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


# ---------------------------------------------------------------------------------------------- freezing


def _timm_groups(body: nn.Module) -> list[list[nn.Parameter]]:
    """A timm model's coarse parameter groups in order (stem, stages/blocks, ...); [] without a grouping."""
    from timm.models import group_parameters

    try:
        matcher = body.group_matcher(coarse=True)
    except (AttributeError, NotImplementedError):
        return []
    named = dict(body.named_parameters())
    grouped = group_parameters(body, matcher)
    return [[named[name] for name in grouped[key]] for key in sorted(grouped)]


def _freeze_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameters frozen by each freeze level, in order; the last level is the whole body."""
    family = _family_of(model)
    stages: list[list[nn.Module]]
    if family == "resnet":
        stages = [[model.conv1, model.bn1], [model.layer1], [model.layer2], [model.layer3]]
    elif family == "cnn":
        stages = [[model.block1], [model.block2], [model.block3]]
    elif family == "vgg":
        features: nn.Sequential = model.features
        ends = [i + 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        stages = [[features[start:end]] for start, end in zip([0, *ends[:3]], ends[:4], strict=False)]
    else:
        return [*_timm_groups(model.body)[:-1], body_parameters(model)]
    return [[p for module in stage for p in module.parameters()] for stage in stages] + [body_parameters(model)]


def check_freeze_depth(depth: int, backbone: str | None = None) -> None:
    """Raise SpecError unless ``depth`` is a valid ``freeze_depth`` (for ``backbone``: within its levels)."""
    if backbone is None:
        check_setting("freeze_depth", depth)
        return
    problem = freeze_depth_problem(depth, backbone)
    if problem is not None:
        raise SpecError(problem)


def apply_freeze(model: nn.Module, depth: int) -> nn.Module:
    """Freeze the first ``depth`` levels of the body (see the module docstring); returns ``model``."""
    groups = _freeze_groups(model)
    if not (isinstance(depth, int) and not isinstance(depth, bool) and 0 <= depth <= len(groups)):
        raise SpecError(
            f"freeze_depth must be an integer in 0..{len(groups)} for {type(model).__name__} (0 trains everything, "
            f"{len(groups)} freezes the whole body), got {depth!r}"
        )
    for group in groups[:depth]:
        for parameter in group:
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
    if entry.timm_name is not None:
        source = timm_weights(entry.name)
        return source.tag if source is not None else None
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


def body_mismatch(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> str:
    """How a body state dict does not fit ``model``'s body (head entries ignored); empty when it fits."""
    prefix = _head_name(_family_of(model)) + "."
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    return _describe_mismatch(state_dict, expected)


def load_body(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """Copy a body state dict into ``model`` (head entries in ``state_dict`` are ignored); strict otherwise."""
    problems = body_mismatch(model, state_dict)
    if problems:
        raise WeightsError(f"{source} does not fit {type(model).__name__}: {problems}")
    prefix = _head_name(_family_of(model)) + "."
    model.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith(prefix)}, strict=False)


_LAST_CHECKPOINT: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}  # per process: the last file read


def read_checkpoint_body(path: str | Path) -> dict[str, torch.Tensor]:
    """A body state dict from ``path``: a raw state dict or ``{"backbone": state_dict, ...}``.

    The last file read stays in memory (per process, keyed by path, size and modification time): every trial of a
    pretrained arm that a reused worker runs loads the same file, and ``load_body`` copies the tensors, never
    changes them. Callers get their own dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"checkpoint file {path} does not exist; create one with `tlsweep pretrain --out {path}`")
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo in _LAST_CHECKPOINT:
        return dict(_LAST_CHECKPOINT[memo])
    try:
        content = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise WeightsError(f"checkpoint {path} cannot be read with torch.load(weights_only=True): {exc}") from exc
    if isinstance(content, dict) and isinstance(content.get("backbone"), dict):
        content = content["backbone"]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise WeightsError(f"checkpoint {path} holds neither a state dict nor {{'backbone': state_dict, ...}}")
    _LAST_CHECKPOINT.clear()
    _LAST_CHECKPOINT[memo] = content
    return dict(content)


def create_model(
    backbone: str,
    num_classes: int,
    *,
    init: str = "scratch",
    freeze_depth: int = 0,
    seed: int | None = None,
    head: str = "linear",
) -> nn.Module:
    """A ``backbone`` classifier with ``num_classes`` outputs, initialized by ``init``, first levels frozen.

    ``head`` is ``linear`` or ``mlp`` (:class:`MLPHead`). ``seed`` (optional) makes the random initialization
    reproducible without touching the global RNG: the body and the head draw from two independent streams, so
    the head is the same for every ``init``.
    """
    entry = get_backbone(backbone)
    spec = parse_init(init)
    check_freeze_depth(freeze_depth, backbone)
    if head not in HEADS:
        raise SpecError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    body_seed, head_seed = (None, None) if seed is None else _split_seed(seed)
    with _seeded(body_seed):
        if spec.kind == "imagenet" and entry.timm_name is not None:
            model: nn.Module = TimmClassifier(load_timm_pretrained(entry.name, spec.argument), num_classes)
        else:
            model = entry.build(1000 if spec.kind == "imagenet" else num_classes)
    if spec.kind == "imagenet" and entry.timm_name is None:
        load_body(
            model,
            fetch_imagenet_state_dict(backbone, spec.argument),
            source=f"ImageNet weights {spec.argument or 'DEFAULT'} for {backbone}",
        )
    elif spec.kind == "checkpoint":
        assert spec.argument is not None
        load_body(model, read_checkpoint_body(spec.argument), source=f"checkpoint {spec.argument}")
    with _seeded(head_seed):
        _new_head(model, num_classes, head)
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


# ---------------------------------------------------------------------------------------------- timm's weights
# timm finds its weights itself: a model's pretrained config names a Hugging Face Hub repository (files cached by
# huggingface_hub under $HF_HUB_CACHE, default ~/.cache/huggingface/hub) or a URL (cached by torch.hub). tlsweep
# looks the file up in those caches and hands it to timm (``pretrained=True`` with ``pretrained_cfg_overlay=
# dict(file=...)``): timm's own loader then filters and loads it, never touching the network. A file the caches do
# not hold is downloaded by timm unless HF_HUB_OFFLINE is set; ``init: imagenet:FILE`` takes a local file instead.

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class TimmWeights:
    """Where timm's published weights of one model come from and where they are cached."""

    model: str  # timm name with the tag, e.g. resnet50.a1_in1k
    tag: str
    hf_repo: str | None  # Hugging Face Hub repository (``timm/resnet50.a1_in1k``), or None for a URL source
    hf_revision: str | None
    filenames: tuple[str, ...]  # candidate files in the repository, in timm's order (safetensors first)
    url: str | None

    def cached_file(self) -> Path | None:
        """The weights file if the Hugging Face or torch.hub cache holds it, else None (no network)."""
        if self.hf_repo is not None:
            from huggingface_hub import try_to_load_from_cache

            for filename in self.filenames:
                found = try_to_load_from_cache(self.hf_repo, filename, revision=self.hf_revision)
                if isinstance(found, str):
                    return Path(found)
            return None
        assert self.url is not None
        path = weights_cache_path(self.url)
        return path if path.is_file() else None

    def expected(self) -> str:
        """Where the weights are expected, for messages."""
        if self.hf_repo is not None:
            from huggingface_hub import constants

            folder = Path(constants.HF_HUB_CACHE) / ("models--" + self.hf_repo.replace("/", "--"))
            return (
                f"{' or '.join(self.filenames)} of the Hugging Face repository {self.hf_repo} in the Hugging Face "
                f"cache {folder} (set HF_HOME or HF_HUB_CACHE to move it)"
            )
        return f"the file {weights_cache_path(str(self.url))} (downloaded from {self.url}; TORCH_HOME moves it)"


def _split_timm_name(backbone: str) -> str:
    entry = get_backbone(backbone)
    if entry.timm_name is None:
        raise UnknownNameError(f"backbone {backbone!r} is not a timm model (timm:<model name>)")
    return entry.timm_name


def timm_weights(backbone: str, tag: str | None = None) -> TimmWeights | None:
    """The published weights of the timm ``backbone`` (its default tag, or ``tag``); None when it has none."""
    from timm.models import get_pretrained_cfg, split_model_name_tag

    name = _split_timm_name(backbone)
    arch, own_tag = split_model_name_tag(name)
    model = f"{arch}.{tag or own_tag}" if (tag or own_tag) else arch
    try:
        cfg = get_pretrained_cfg(model, allow_unregistered=False)
    except RuntimeError:
        cfg = None
    if cfg is None and tag:
        timm = _import_timm(backbone)
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        raise UnknownNameError(
            f"timm model {arch} has no pretrained tag {tag!r}; its tags: {', '.join(tags) or 'none'}"
        )
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return None
    if cfg.hf_hub_id and cfg.source != "local-dir":
        repo, _, revision = cfg.hf_hub_id.partition("@")
        filename = cfg.hf_hub_filename or "pytorch_model.bin"
        safe = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
        filenames = (safe[filename], filename) if filename in safe else (filename,)
        return TimmWeights(f"{arch}.{cfg.tag}", str(cfg.tag), repo, revision or None, filenames, None)
    return TimmWeights(f"{arch}.{cfg.tag}", str(cfg.tag), None, None, (), cfg.url)


def _is_weights_file(argument: str) -> bool:
    return os.sep in argument or "/" in argument or argument.endswith(_WEIGHT_SUFFIXES)


def load_timm_pretrained(backbone: str, argument: str | None = None) -> nn.Module:
    """timm's model for ``backbone`` with its published weights, loaded strictly, and no classifier.

    Args:
        backbone: ``timm:<model name>``.
        argument: None (the default tag), a pretrained tag (``a1_in1k``) or a local weights file (a path: timm's
            published format, ``.safetensors`` or a torch file).

    Raises:
        WeightsError: no published weights, a missing file (naming the file or cache path and
            ``tlsweep weights download timm:<name>``), or a file that does not fit the model.
    """
    timm = _import_timm(backbone)
    name = _split_timm_name(backbone)
    if argument is not None and _is_weights_file(argument):
        file = Path(argument).expanduser()
        if not file.is_file():
            raise WeightsError(
                f"weights file {file} for {backbone} does not exist (init imagenet:{argument}); copy timm's published "
                f"weights there, or use init 'imagenet' with the Hugging Face cache (`tlsweep weights download {backbone}`)"
            )
        return _timm_from_file(timm, name, file, backbone)
    source = timm_weights(backbone, argument)
    if source is None:
        raise WeightsError(
            f"timm model {name} has no published pretrained weights; use init 'scratch' or 'checkpoint:PATH' "
            f"(e.g. a file written by `tlsweep pretrain --backbone {backbone}`)"
        )
    command = f"tlsweep weights download {TIMM_PREFIX}{source.model}"
    cached = source.cached_file()
    if cached is not None:
        return _timm_from_file(timm, source.model, cached, backbone)
    from huggingface_hub import constants

    if source.hf_repo is not None and constants.HF_HUB_OFFLINE:
        raise WeightsError(
            f"pretrained weights of {source.model} for {backbone} are not cached and HF_HUB_OFFLINE is set: expected "
            f"{source.expected()}. On a machine with internet run `{command}` (with the same HF_HOME) and copy the "
            "cache here, or give the file as init imagenet:PATH"
        )
    try:
        return _timm_body(timm.create_model(source.model, pretrained=True))
    except Exception as exc:  # no network, HTTP errors, unreadable files ...
        raise WeightsError(
            f"pretrained weights of {source.model} for {backbone} are not usable: expected {source.expected()}; "
            f"{type(exc).__name__}: {exc}. On a machine with internet run `{command}` (with the same HF_HOME) and "
            "copy the cache here, or give the file as init imagenet:PATH"
        ) from exc


def _timm_body(model: nn.Module) -> nn.Module:
    """A pretrained timm classifier without its classifier: the body as ``num_classes=0`` builds it."""
    model.reset_classifier(0)
    return model


def _timm_from_file(timm: Any, name: str, file: Path, backbone: str) -> nn.Module:
    # Built with the published number of classes, so that timm loads the file strictly (with num_classes=0 it
    # drops the classifier and loads leniently, leaving whatever does not fit at random); then the classifier goes.
    try:
        return _timm_body(
            timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(file), "source": None})
        )
    except Exception as exc:  # unreadable file, wrong keys or shapes
        raise WeightsError(f"weights file {file} does not fit {backbone}: {type(exc).__name__}: {exc}") from exc


def download_timm_weights(backbone: str) -> Path:
    """Download the published weights of the timm ``backbone`` through timm into its cache; return the file."""
    timm = _import_timm(backbone)
    source = timm_weights(backbone)
    if source is None:
        raise WeightsError(f"timm model {_split_timm_name(backbone)} has no published pretrained weights")
    cached = source.cached_file()
    if cached is not None:
        return cached
    try:
        timm.create_model(source.model, pretrained=True)
    except Exception as exc:
        raise WeightsError(
            f"could not download the weights of {source.model}: {type(exc).__name__}: {exc}. Without internet, "
            f"fetch them on another machine and copy them to {source.expected()}"
        ) from exc
    cached = source.cached_file()
    if cached is None:
        raise WeightsError(f"timm loaded {source.model} but its file is not in {source.expected()}")
    return cached
