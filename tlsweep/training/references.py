"""The names and settings a sweep spec refers to that only the torch side knows: the backbones, their ImageNet
weights and how many freeze levels each has.

``tlsweep validate`` and ``tlsweep run`` call :func:`check_spec_references` after ``load_spec`` (which checks every
setting without torch), so a misspelled backbone or weights name, or a freeze depth beyond a backbone's levels, is
an error before any data or Ray, not a failure of every trial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tlsweep.errors import SpecError, TlsweepError

if TYPE_CHECKING:
    from tlsweep.spec import SweepSpec


def check_spec_references(spec: SweepSpec, *, source: str) -> None:
    """Every backbone of the sweep (``model.backbone`` and each arm's) is registered or a model timm knows,
    ``model.pretrained.imagenet`` names weights each torchvision backbone has where an arm uses init ``imagenet``,
    every freeze depth the sweep can train (:func:`spec_freeze_depths`) fits its backbone's levels, and no two arms
    differ only in settings that cannot change a run's numbers on their backbones (``design.check_arms_differ``).

    The names come first (each backbone, then its weights), the freeze depths after, so the first error found is
    the same wherever the spec is checked.

    Raises:
        SpecError: an unknown backbone or weights name, naming ``source``, the field and the known names; a
            freeze depth beyond a backbone's levels, naming ``source`` and the levels; two arms that are one.
    """
    from tlsweep.design import check_arms_differ
    from tlsweep.training.arm_models import check_arm_models
    from tlsweep.training.backbones import check_backbone_settings, get_backbone, imagenet_weights
    from tlsweep.training.frozen_features import body_facts, cache_settings

    arms = spec.design.arms or {}
    uses: list[tuple[str, str, str]] = [("model.backbone", spec.model.backbone, "")]  # (field, backbone, init)
    for levels in spec.design.arm_levels():
        settings = arms.get(str(levels.get("arm")), {})
        field = f"design.arms.{levels['arm']}.backbone" if "backbone" in settings else "model.backbone"
        uses.append((field, str(settings.get("backbone", spec.model.backbone)), str(levels["init"])))
    for field, backbone, init in dict.fromkeys(uses):
        try:
            entry = get_backbone(backbone)
        except TlsweepError as exc:
            raise SpecError(f"{source}: {field}: {exc} (`tlsweep models` lists them)") from None
        if init == "imagenet" and entry.family != "timm":  # a timm name carries its pretrained tag itself
            try:
                imagenet_weights(backbone, spec.model.pretrained.imagenet)
            except TlsweepError as exc:
                raise SpecError(f"{source}: model.pretrained.imagenet ({field} {backbone}): {exc}") from None
    for backbone, depths in spec_freeze_depths(spec).items():
        check_backbone_settings(backbone, depths, source=source)
    try:
        check_arms_differ(spec, body_facts)  # again, now that each backbone's levels are known
    except ValueError as exc:
        raise SpecError(f"{source}: {exc}") from None
    cache_settings()  # the frozen-feature cache's environment, checked before any trial reads it
    check_arm_models(spec, source=source)


def spec_freeze_depths(spec: SweepSpec) -> dict[str, list[Any]]:
    """Every freeze depth a sweep can train, per backbone: factor levels, each arm's (or the recipe's) value and the
    ends of a tuned range, in the studies whose arm uses that backbone (``when`` respected)."""
    from tlsweep.design import studies

    by_backbone: dict[str, list[Any]] = {}
    tuned = spec.design.tune.get("freeze_depth")
    for levels in studies(spec):
        arm = (spec.design.arms or {}).get(str(levels.get("arm")), {})
        depths = by_backbone.setdefault(str(arm.get("backbone", spec.model.backbone)), [])
        if levels.get("freeze_depth") is not None:
            depths.append(levels["freeze_depth"])
        fixed = arm.get("freeze_depth", spec.design.recipe.get("freeze_depth"))
        if fixed is not None:
            depths.append(fixed)
        if tuned is not None and tuned.applies_to(levels):
            depths.extend(tuned.choices if tuned.choices is not None else [tuned.low, tuned.high])
    return {
        backbone: list(dict.fromkeys(int(d) if isinstance(d, float) and d.is_integer() else d for d in depths))
        for backbone, depths in by_backbone.items()
    }
