"""Where the pretrained weights a run loads lie on this machine, and whether they are there.

``tlsweep validate`` and ``tlsweep run`` (before Ray starts) call :func:`check_spec_weights`: an arm whose weights are
not on this machine is an error naming the file expected and the command that fetches it, not a failure of each of
its trials. ``tlsweep models`` shows the same lookup per backbone. Nothing here touches the network: the caches are
the ones the trials read (torch.hub's for torchvision, Hugging Face's or torch.hub's for timm).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tlsweep.errors import WeightsError
from tlsweep.training.config import parse_init

if TYPE_CHECKING:
    from tlsweep.spec import SweepSpec


@dataclass(frozen=True)
class WeightsFile:
    """The file an ``init`` of one backbone loads: where it is (or is expected) and how to get it."""

    backbone: str
    init: str
    found: Path | None  # the file, when this machine holds it
    expected: str  # where it is looked for, for messages
    fetch: str  # the command (or the step) that puts it there

    @property
    def present(self) -> bool:
        return self.found is not None


def locate_weights(backbone: str, init: str) -> WeightsFile | None:
    """The file ``init`` loads for ``backbone`` (None for ``scratch``). Never downloads.

    Raises:
        WeightsError, UnknownNameError: the backbone has no such weights.
    """
    from tlsweep.training.backbones import TIMM_PREFIX, get_backbone, imagenet_weights, timm_weights, weights_cache_path

    parsed = parse_init(init)
    if parsed.kind == "scratch":
        return None
    if parsed.kind == "checkpoint":
        path = Path(str(parsed.argument)).expanduser()
        fetch = f"tlsweep pretrain --backbone {backbone} --out {path} (or a model.pretrain block in the spec)"
        return WeightsFile(backbone, init, path if path.is_file() else None, f"the file {path}", fetch)
    entry = get_backbone(backbone)
    argument = parsed.argument
    if entry.timm_name is None:
        weights = imagenet_weights(backbone, argument)
        path = weights_cache_path(weights.url)
        fetch = f"tlsweep weights download {backbone}:{weights.name}"
        return WeightsFile(backbone, init, path if path.is_file() else None, f"the file {path}", fetch)
    if argument is not None and ("/" in argument or Path(argument).suffix):
        path = Path(argument).expanduser()
        fetch = f"copy timm's published weights of {backbone} to {path}"
        return WeightsFile(backbone, init, path if path.is_file() else None, f"the file {path}", fetch)
    source = timm_weights(backbone, argument)
    if source is None:
        raise WeightsError(
            f"timm model {backbone} has no published pretrained weights; use init 'scratch' or 'checkpoint'"
        )
    fetch = f"tlsweep weights download {TIMM_PREFIX}{source.model}"
    return WeightsFile(backbone, init, source.cached_file(), source.expected(), fetch)


def spec_weights(spec: SweepSpec) -> dict[WeightsFile, list[str]]:
    """Every weights file the sweep's trials load, with the arms that load it (scratch arms load none).

    A checkpoint that the spec's ``model.pretrain`` block builds before the trials counts as present.
    """
    from tlsweep.design import arm_of, studies, trial_config

    needed: dict[WeightsFile, list[str]] = {}
    seen: dict[tuple[str, str], WeightsFile | None] = {}
    for levels in studies(spec):
        config = trial_config(spec, levels, {}, 0)
        key = (config.backbone, config.init)
        if key not in seen:
            located = locate_weights(*key)
            if located is not None and not located.present and spec.model.pretrain is not None:
                located = None if parse_init(config.init).kind == "checkpoint" else located  # pretrained first
            seen[key] = located
        if (located := seen[key]) is not None and arm_of(levels) not in needed.setdefault(located, []):
            needed[located].append(arm_of(levels))
    return needed


def check_spec_weights(spec: SweepSpec, *, source: str, warn_only: bool = False) -> str | None:
    """Every arm's pretrained weights are on this machine.

    Returns:
        None when they are; with ``warn_only`` (trials run on a cluster's other nodes, which read their own caches)
        the message an error would give.

    Raises:
        WeightsError: naming ``source``, each arm whose file is missing, where it is expected and the command that
            fetches it.
    """
    missing = [(located, arms) for located, arms in spec_weights(spec).items() if not located.present]
    if not missing:
        return None
    lines = [
        f"  arm {', '.join(arms)} ({located.backbone}, init {located.init}): expected {located.expected}; "
        f"fetch it with `{located.fetch}`"
        for located, arms in missing
    ]
    message = (
        f"{source}: {len(missing)} pretrained weights file(s) are not on this machine, so every trial of these arms "
        "would fail:\n" + "\n".join(lines) + "\n(without internet: run the command on a machine with it, with the "
        "same TORCH_HOME / HF_HOME, and copy the cache folder here)"
    )
    if warn_only:
        return message
    raise WeightsError(message)
