"""The names a sweep spec refers to that only the torch side knows: the backbone and its ImageNet weights.

``tlsweep validate`` and ``tlsweep run`` call :func:`check_spec_references` after ``load_spec`` (which checks every
setting without torch), so a misspelled backbone or weights name is an error before any data or Ray, not a
failure of every trial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlsweep.errors import SpecError, TlsweepError

if TYPE_CHECKING:
    from tlsweep.spec import SweepSpec


def check_spec_references(spec: SweepSpec, *, source: str) -> None:
    """Every backbone of the sweep (``model.backbone`` and each arm's) is registered or a model timm knows, and
    ``model.pretrained.imagenet`` names weights each torchvision backbone has where an arm uses init ``imagenet``.

    Raises:
        SpecError: naming ``source``, the field and the known names.
    """
    from tlsweep.training.backbones import get_backbone, imagenet_weights

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
