"""``TrialConfig``: every setting one training run needs, as plain values (no torch, no ray, no pydantic).

The sweep engine resolves a spec + cell + tuned parameters + seed into one of these; ``tlsweep train`` builds one
from flags or YAML. ``tlsweep.training.loop.run_trial`` consumes it.

This module is also the one definition of what a valid setting is (``SETTING_RULES``, :func:`check_setting`,
:func:`check_trial_config`; the sweep spec applies the same rules to the settings it declares) and of the recipe
that pretrains a backbone (:func:`pretrain_config`). It imports neither torch nor pydantic.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tlsweep.data.augment import POLICIES
from tlsweep.errors import SpecError

Init = str  # "scratch" | "imagenet" | "imagenet:WEIGHTS_ENUM" | "checkpoint:/path/to/backbone.pt"
OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["constant", "step", "cosine"]
OPTIMIZERS: tuple[str, ...] = typing.get_args(OptimizerName)
SCHEDULES: tuple[str, ...] = typing.get_args(ScheduleName)
HeadName = Literal["linear", "mlp"]
HEADS: tuple[str, ...] = typing.get_args(HeadName)
FeatureCacheDtype = Literal["auto", "float16", "float32"]
FEATURE_CACHE_DTYPES: tuple[str, ...] = typing.get_args(FeatureCacheDtype)
MLP_HIDDEN = 32  # width of head: mlp (dense(32) + BatchNorm + ReLU + dense), the flowers study's ResNet50V2 head
# freeze levels of the torchvision ResNets, VGG-16-BN and resnet_tiny; other backbones have their own number:
# tlsweep.training.backbones.freeze_levels(backbone) (small_cnn 4, a timm model its parameter groups)
MAX_FREEZE_DEPTH = 5
STATE_FORMAT = 1  # the layout of a training state (``state.pt``) that this tlsweep reads and writes
MAX_EPOCHS = 100_000  # more is a typo (10**12 epochs would never end), not a budget
DEVICE_NAME = re.compile(
    r"auto|cpu|cuda(:\d+)?"
)  # what TrialConfig.device may be (tlsweep.training.loop.resolve_device)
MAX_IMAGE_SIZE = 1024  # pixels per side (spec and checkpoints); decoded images take N × 3 × size² bytes


@dataclass(frozen=True)
class TrialConfig:
    """Every setting of one training run; frozen, built from flags, a YAML file or a sweep's layered settings.

    Attributes:
        backbone: architecture (``tlsweep models``).
        init: ``scratch``, ``imagenet``, ``imagenet:WEIGHTS`` or ``checkpoint:PATH``.
        freeze_depth: 0 trains everything; higher values freeze the stem, then body stages; the backbone's last
            level (``freeze_levels``: 5 for the ResNets and VGG) freezes the whole body (a linear or MLP probe).
        head: ``linear`` (one dense layer on the pooled features) or ``mlp`` (dense(32) + BatchNorm + ReLU + dense).
        epochs, train_fraction, batch_size: the training budget (``train_fraction`` subsets nest per seed).
        optimizer, lr, momentum, weight_decay, backbone_lr_mult: the optimizer; ``lr`` is the head's peak rate.
        schedule, warmup_epochs, step_size, step_gamma: the learning-rate schedule, stepped per optimizer step.
        label_smoothing, augmentation: the loss and the augmentation policy (none, flip, flip_color, trivial).
        seed: replicate seed (subset, data order, augmentation, head init, and body init for scratch).
        eval_batch_size, device, amp, num_threads: where and how it runs.
        feature_cache: reuse the frozen layers' stored activations (same results, see ``frozen_features``).
        feature_cache_dtype: how stored activations are kept: ``auto`` (float16 feature vectors of a whole frozen
            body, float32 feature maps), ``float16`` or ``float32``; it changes results (rounding), so it is a setting.
    """

    backbone: str = "resnet_tiny"
    init: Init = "scratch"
    freeze_depth: int = 0  # 0 trains everything; the backbone's last level freezes the whole body (linear probe)
    head: HeadName = "linear"  # linear | mlp
    epochs: int = 2
    train_fraction: float = 1.0
    batch_size: int = 128
    optimizer: OptimizerName = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    backbone_lr_mult: float = 1.0  # lr of unfrozen body parameters relative to the head
    schedule: ScheduleName = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up length in epochs (fractions allowed)
    step_size: int = 0  # epochs between ×gamma decays for schedule=step (0 → epochs // 3, at least 1)
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    augmentation: str = "none"  # none | flip | flip_color | trivial
    seed: int = 0  # replicate seed: subset, data order, augmentation, head init (and body init for scratch)
    eval_batch_size: int = 512
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast + channels_last on CUDA only
    num_threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    feature_cache: bool = True  # frozen layers computed once per node and reused (tlsweep.training.frozen_features)
    feature_cache_dtype: FeatureCacheDtype = "auto"  # the stored activations' dtype (frozen_features.storage_dtype)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trial setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


SETTINGS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(TrialConfig))
SETTING_TYPES: dict[str, Any] = typing.get_type_hints(TrialConfig)


# ---- validation ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingRule:
    """What one setting must satisfy beyond its type.

    ``holds(value)`` is called with a value of the right type only. ``bound`` completes "<name> must be ...";
    integer settings read "must be an integer <bound>" (see :func:`requirement`).
    """

    holds: Callable[[Any], bool]
    bound: str


def _one_of(choices: tuple[str, ...]) -> SettingRule:
    return SettingRule(lambda value: value in choices, f"one of {', '.join(choices)}")


# backbone_lr_mult > 0, not >= 0: with the whole body frozen (freeze_depth 5) there is no body parameter group and
# the multiplier is unused, and with a trainable body a 0 would keep its weights fixed while its BatchNorm running
# statistics still move: a half-frozen body that freeze_depth expresses properly (frozen BatchNorm included).
SETTING_RULES: dict[str, SettingRule] = {
    # the upper end is per backbone (tlsweep.training.backbones.freeze_levels; checked where torch is at hand)
    "freeze_depth": SettingRule(
        lambda value: value >= 0,
        f"in 0..{MAX_FREEZE_DEPTH} (0 trains everything, 1 freezes the stem, {MAX_FREEZE_DEPTH} freezes the whole body) "
        "for the ResNets and VGG, in 0..L for a backbone with L freeze levels (`tlsweep models`)",
    ),
    "head": _one_of(HEADS),
    "epochs": SettingRule(lambda value: 1 <= value <= MAX_EPOCHS, f"in 1..{MAX_EPOCHS}"),
    "train_fraction": SettingRule(lambda value: 0 < value <= 1, "in (0, 1]"),
    "batch_size": SettingRule(lambda value: value >= 1, ">= 1"),
    "optimizer": _one_of(OPTIMIZERS),
    "lr": SettingRule(lambda value: value > 0, "> 0"),
    "momentum": SettingRule(lambda value: 0 <= value < 1, "in [0, 1)"),
    "weight_decay": SettingRule(lambda value: value >= 0, ">= 0"),
    "backbone_lr_mult": SettingRule(
        lambda value: value > 0, "> 0 (to keep the body fixed, freeze it with freeze_depth)"
    ),
    "schedule": _one_of(SCHEDULES),
    "warmup_epochs": SettingRule(lambda value: value >= 0, "in [0, epochs]"),  # <= epochs: check_trial_config
    "step_size": SettingRule(lambda value: value >= 0, ">= 0 (0: epochs // 3)"),
    "step_gamma": SettingRule(lambda value: 0 < value <= 1, "in (0, 1]"),
    "label_smoothing": SettingRule(lambda value: 0 <= value < 1, "in [0, 1)"),
    "augmentation": _one_of(POLICIES),
    "eval_batch_size": SettingRule(lambda value: value >= 1, ">= 1"),
    "num_threads": SettingRule(lambda value: value >= 0, ">= 0 (0: torch's default)"),
    "feature_cache_dtype": _one_of(FEATURE_CACHE_DTYPES),
}


def _base_type(name: str) -> type | None:
    """The Python type of setting ``name``; None for a Literal (its rule lists the allowed values)."""
    hint = SETTING_TYPES[name]
    return None if typing.get_origin(hint) is Literal else hint


def requirement(name: str, *, levels: bool = False) -> str:
    """What setting ``name`` must be, e.g. ``"an integer >= 1"`` (``levels``: ``"whole numbers >= 1"``)."""
    rule = SETTING_RULES[name]
    kind = _base_type(name)
    if kind is int:
        return f"{'whole numbers' if levels else 'an integer'} {rule.bound}"
    if kind is float and levels:
        return f"numbers {rule.bound}"
    return rule.bound


def type_problem(name: str, value: Any) -> str | None:
    """``"expected int, got 'two'"`` when ``value`` has the wrong type for setting ``name``, else None.

    A whole number is a valid float; a bool is not a number.
    """
    kind = _base_type(name)
    if kind is None:
        return None
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    return None if ok else f"expected {kind.__name__}, got {value!r}"


def rule_problem(name: str, value: Any) -> str | None:
    """``"must be > 0, got 0"`` when ``value`` (of the right type) breaks the rule of setting ``name``, else None."""
    rule = SETTING_RULES.get(name)
    if rule is None or rule.holds(value):
        return None
    return f"must be {requirement(name)}, got {value!r}"


NO_EFFECT_SETTINGS = ("device", "num_threads", "eval_batch_size", "amp", "feature_cache")  # how, not what, it computes
CACHEABLE_AUGMENTATIONS = ("none", "flip")  # the frozen-feature cache stores these views of an image only


def cache_dtype_name(freeze_depth: int, name: str) -> str:
    """The setting ``feature_cache_dtype`` resolved: ``auto`` is float16 from depth ``MAX_FREEZE_DEPTH`` on (feature
    vectors of a whole body), float32 below (feature maps that still train)."""
    if name == "auto":
        return "float16" if freeze_depth >= MAX_FREEZE_DEPTH else "float32"
    return name


@dataclass(frozen=True)
class BodyFacts:
    """What :func:`effective_settings` knows of a backbone (None: not known, as without torch)."""

    freeze_levels: int | None = None  # backbones.freeze_levels: a depth at or beyond it freezes the whole body
    partial_cache: bool | None = None  # the frozen-feature cache splits it below the whole body (frozen_prefix)


def effective_settings(
    settings: Mapping[str, Any], *, varying: Collection[str] = (), body: BodyFacts = BodyFacts()
) -> dict[str, Any]:
    """``settings`` without those that cannot change a run's numbers: how it computes (``NO_EFFECT_SETTINGS``),
    ``momentum`` for an optimizer without it, ``freeze_depth`` from scratch (a scratch run trains every layer),
    ``backbone_lr_mult`` with the whole body frozen (a depth at or beyond ``body.freeze_levels``), and
    ``feature_cache_dtype`` where the frozen-feature cache is not used (else the dtype ``auto`` resolves to).

    A rule that reads a setting of ``varying`` (tuned, or a factor) does not apply: its value changes between trials.
    What ``body`` does not know keeps the setting (no arm is called a copy of another on a guess).
    """
    out = {k: v for k, v in settings.items() if k not in NO_EFFECT_SETTINGS}
    if "optimizer" not in varying and out.get("optimizer", "sgd") != "sgd":
        out.pop("momentum", None)
    depth: int | None = None if "freeze_depth" in varying else int(out.get("freeze_depth", 0))
    if str(out.get("init", "")).startswith("scratch"):
        out.pop("freeze_depth", None)
        depth = 0
    whole = depth is not None and body.freeze_levels is not None and depth >= body.freeze_levels > 0
    if whole:
        out.pop("backbone_lr_mult", None)
    if "feature_cache_dtype" in out:
        used = _cache_used(settings, varying, depth, whole, body)
        if used is False:
            out.pop("feature_cache_dtype")
        elif depth is not None:
            out["feature_cache_dtype"] = cache_dtype_name(depth, str(out["feature_cache_dtype"]))
    return out


def _cache_used(
    settings: Mapping[str, Any], varying: Collection[str], depth: int | None, whole: bool, body: BodyFacts
) -> bool | None:
    """False when the frozen-feature cache (``frozen_features.prepare``) is certainly not used, else None (maybe)."""
    if settings.get("feature_cache") is False or depth == 0:
        return False
    if "augmentation" not in varying and settings.get("augmentation", "none") not in CACHEABLE_AUGMENTATIONS:
        return False
    if depth is None:
        return None
    if depth < MAX_FREEZE_DEPTH:  # a partial freeze: split only where the cache knows the backbone's stages
        return None if body.partial_cache is not False else False
    return None if whole or body.freeze_levels is None else False  # depth 5 of a deeper body is no whole body


def check_setting(name: str, value: Any, *, source: str | None = None) -> Any:
    """``value`` as setting ``name`` (a whole number becomes a float where the setting is one).

    Raises:
        SpecError: naming ``source`` (a file) when given, the setting and what it must be:
            ``"train.yaml: epochs: expected int, got 'two'"``, ``"epochs must be an integer in 1..100000, got 0"``.
    """
    if name not in SETTING_TYPES:
        raise SpecError(f"{source + ': ' if source else ''}unknown setting {name!r}; known: {', '.join(SETTINGS)}")
    problem = type_problem(name, value)
    if problem is not None:
        if source:
            raise SpecError(f"{source}: {name}: {problem}")
        if name in SETTING_RULES:
            raise SpecError(f"{name} must be {requirement(name)}, got {value!r}")
        raise SpecError(f"{name}: {problem}")
    if _base_type(name) is float:
        value = float(value)
    problem = rule_problem(name, value)
    if problem is not None:
        raise SpecError(f"{source}: {name}: {problem}" if source else f"{name} {problem}")
    return value


def check_trial_config(config: TrialConfig) -> None:
    """Raise SpecError naming the first invalid setting of ``config`` (all but the backbone's name).

    Whether the backbone is registered needs the registry in ``tlsweep.training.backbones`` (torch);
    ``tlsweep.training.loop.check_config`` checks it and then calls this.
    """
    parse_init(config.init)
    for name in SETTINGS:
        check_setting(name, getattr(config, name))
    if DEVICE_NAME.fullmatch(config.device) is None:
        raise SpecError(f"device must be auto, cpu, cuda or cuda:N, got {config.device!r}")
    if config.warmup_epochs > config.epochs:
        raise SpecError(f"warmup_epochs must be {requirement('warmup_epochs')}, got {config.warmup_epochs!r}")


@dataclass(frozen=True)
class InitSpec:
    kind: Literal["scratch", "imagenet", "checkpoint"]
    argument: str | None = None  # weights enum name for imagenet, file path for checkpoint


def parse_init(init: str) -> InitSpec:
    """``scratch`` | ``imagenet`` | ``imagenet:WEIGHTS`` | ``checkpoint:PATH``."""
    kind, sep, argument = init.partition(":") if isinstance(init, str) else ("", "", "")
    if kind == "scratch" and not sep:
        return InitSpec("scratch")
    if kind == "imagenet":
        return InitSpec("imagenet", argument or None)
    if kind == "checkpoint" and argument:
        return InitSpec("checkpoint", argument)
    raise SpecError(
        f"init {init!r} is not understood; use 'scratch', 'imagenet', 'imagenet:WEIGHTS' "
        "(a torchvision weights name such as IMAGENET1K_V2) or 'checkpoint:PATH'"
    )


# ---- the pretraining recipe ------------------------------------------------------------------------------------
PRETRAIN_DEFAULTS: dict[str, Any] = {
    "init": "scratch",
    "epochs": 5,
    "lr": 0.05,
    "batch_size": 128,
    "weight_decay": 5e-4,
    "augmentation": "flip",
    "seed": 0,
    "schedule": "cosine",
}
PRETRAIN_WARMUP = "min(1, epochs / 5)"


def pretrain_warmup_epochs(epochs: int) -> float:
    """The pretraining recipe's warm-up: a fifth of the epochs, at most one epoch."""
    return min(1.0, epochs / 5)


def pretrain_config(settings: Mapping[str, Any] | None = None) -> TrialConfig:
    """The TrialConfig that pretrains a backbone on a source dataset (``tlsweep pretrain``, a spec's ``pretrain:``).

    Args:
        settings: TrialConfig settings that override ``PRETRAIN_DEFAULTS`` (the backbone, the epochs, ...).
            ``warmup_epochs`` defaults to :func:`pretrain_warmup_epochs` of the resulting epochs.

    Returns:
        The config; not validated (``check_trial_config`` / ``run_trial`` do that).
    """
    values = {**PRETRAIN_DEFAULTS, **(settings or {})}
    values.setdefault("warmup_epochs", pretrain_warmup_epochs(values["epochs"]))
    return TrialConfig.from_dict(values)
