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
    """``model.backbone`` is registered and ``model.pretrained.imagenet`` names weights it has (when an arm uses
    init ``imagenet``).

    Raises:
        SpecError: naming ``source``, the field and the known names.
    """
    from tlsweep.training.backbones import get_backbone, imagenet_weights

    try:
        get_backbone(spec.model.backbone)
    except TlsweepError as exc:
        raise SpecError(f"{source}: model.backbone: {exc} (`tlsweep models` lists them)") from None
    if "imagenet" in spec.design.factors["init"]:
        try:
            imagenet_weights(spec.model.backbone, spec.model.pretrained.imagenet)
        except TlsweepError as exc:
            raise SpecError(f"{source}: model.pretrained.imagenet: {exc}") from None
