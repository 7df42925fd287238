"""Each arm's model, checked before any data or Ray: one batch through it at the spec's image size (a backbone that
downsamples more than the image allows crashes every trial), and a checkpoint init that fits its body.

The models are built on torch's meta device: shapes only, no memory and no initialization, so the check costs the
construction of each distinct backbone and head, not their weights.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from tlsweep.errors import SpecError

if TYPE_CHECKING:
    from torch import nn

    from tlsweep.spec import SweepSpec


def check_arm_models(spec: SweepSpec, *, source: str) -> None:
    """Every arm's backbone and head run a batch of ``model.image_size`` images, and the checkpoint of an arm with
    init ``checkpoint`` (when the file exists yet) fits that arm's backbone.

    Raises:
        SpecError: naming ``source``, the arm's field, the backbone and the fix.
    """
    from tlsweep.design import base_trial_config
    from tlsweep.training.backbones import body_mismatch, read_checkpoint_body

    base = base_trial_config(spec).to_dict()
    size = spec.model.image_size
    checked: set[tuple[str, str, str]] = set()
    for levels in spec.design.arm_levels():
        arm = str(levels.get("arm", levels["init"]))
        settings = {**base, **spec.arm_settings(arm)}
        backbone, head, init = str(settings["backbone"]), str(settings["head"]), str(levels["init"])
        checkpoint = spec.model.pretrained.checkpoint if init == "checkpoint" else None
        key = (backbone, head, str(checkpoint))
        if key in checked:
            continue
        checked.add(key)
        field = f"design.arms.{arm}" if spec.design.arms is not None else "model.backbone"
        reason = _forward_problem(backbone, head, size)
        if reason is not None:
            raise SpecError(
                f"{source}: {field}: {backbone} cannot run on {size}x{size} images ({reason}); raise "
                "model.image_size or pick a backbone that downsamples less"
            )
        if checkpoint is not None and checkpoint.is_file():
            problems = body_mismatch(_meta_model(backbone, head), read_checkpoint_body(checkpoint))
            if problems:
                raise SpecError(
                    f"{source}: model.pretrained.checkpoint: {checkpoint} does not fit {backbone} ({field}): "
                    f"{problems}; pretrain that backbone (`tlsweep pretrain --backbone {backbone}`) or use its file"
                )


@functools.lru_cache(maxsize=16)
def _meta_model(backbone: str, head: str) -> nn.Module:
    """``backbone`` with a two-class ``head``, built on the meta device (shapes only), in eval mode."""
    import torch

    from tlsweep.training.backbones import _new_head, get_backbone

    with torch.device("meta"):
        model = get_backbone(backbone).build(2)
        _new_head(model, 2, head)
    return model.eval()


@functools.lru_cache(maxsize=64)
def _forward_problem(backbone: str, head: str, size: int) -> str | None:
    """Why a batch of ``size`` x ``size`` images cannot pass through the model, or None when it can."""
    import torch

    try:
        with torch.no_grad():
            _meta_model(backbone, head)(torch.empty(2, 3, size, size, device="meta"))
    except Exception as exc:  # noqa: BLE001 - whatever the architecture raises on a too-small input
        return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return None
