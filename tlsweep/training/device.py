"""The GPU path's device-side pieces: the dataset staged once per worker process, and the memory a trial needs.

Staging. On CUDA the three splits are copied to the device once per process (uint8, as decoded) and kept there for
every later trial the process runs (Ray reuses trial actors): batches are then gathered, augmented and normalized
on the device, with no host copy per step. One dataset is kept at a time.

Memory. :func:`estimate_trial_bytes` adds what one trial holds on its GPU: the staged dataset, the weights, the
gradients and optimizer state of the trainable ones, the activations one training batch keeps for the backward
pass (every layer's output, at bf16 under autocast, measured by running the model on the ``meta`` device, so no
memory is used), the largest activation of an evaluation batch, and a fixed allowance for the CUDA context and
cuDNN workspaces. :func:`check_gpu_fit` turns it into a clear error before launch when ``gpus_per_trial`` of the
GPU cannot hold it, instead of an out-of-memory crash mid-sweep. The estimate is deliberately on the high side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlsweep.errors import SpecError

if TYPE_CHECKING:
    import torch

    from tlsweep.data.types import DatasetTensors
    from tlsweep.training.config import TrialConfig

CUDA_CONTEXT_BYTES = 768 * 2**20  # CUDA context, cuDNN/cuBLAS handles and workspaces, allocator slack
MARGIN = 1.2  # fragmentation and what the layer-output sum misses (e.g. BatchNorm's saved statistics)
_STAGED: dict[tuple[int, tuple[int, ...], str], DatasetTensors] = {}


def stage_dataset(data: DatasetTensors, device: torch.device) -> DatasetTensors:
    """``data`` with its images and labels on ``device``, copied once per process and reused (CPU: ``data``)."""
    from dataclasses import replace

    if device.type == "cpu":
        return data
    key = (data.train.images.data_ptr(), tuple(data.train.images.shape), str(device))
    if key not in _STAGED:
        _STAGED.clear()  # one dataset at a time: a worker that moves on to another sweep frees the old one
        splits = {
            name: replace(
                getattr(data, name),
                images=getattr(data, name).images.to(device),
                labels=getattr(data, name).labels.to(device),
            )
            for name in ("train", "val", "test")
        }
        _STAGED[key] = replace(data, **splits)
    return _STAGED[key]


def dataset_bytes(data: DatasetTensors) -> int:
    return sum(
        getattr(data, name).images.numel() * getattr(data, name).images.element_size()
        + getattr(data, name).labels.numel() * 8
        for name in ("train", "val", "test")
    )


def activation_bytes(config: TrialConfig, num_classes: int, image_size: int) -> tuple[int, int]:
    """(bytes a training batch keeps for backward, bytes of the largest layer output of an evaluation batch),
    from one forward pass on the ``meta`` device."""
    import torch
    from torch import nn

    from tlsweep.training.backbones import get_backbone

    with torch.device("meta"):
        model = get_backbone(config.backbone).build(num_classes)
    element = 2 if config.amp else 4
    total, largest = 0, 0

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal total, largest
        if isinstance(output, torch.Tensor) and not list(module.children()):
            total += output.numel()
            largest = max(largest, output.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros((1, 3, image_size, image_size), device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total * element * config.batch_size, largest * 4 * 2 * config.eval_batch_size


def estimate_trial_bytes(config: TrialConfig, num_classes: int, image_size: int, data_bytes: int) -> int:
    """An upper estimate of the GPU memory one trial of ``config`` uses (see the module docstring)."""
    import torch

    from tlsweep.training.backbones import get_backbone, head_module
    from tlsweep.training.config import MAX_FREEZE_DEPTH

    with torch.device("meta"):
        model = get_backbone(config.backbone).build(num_classes)
    params = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in head_module(model).parameters())
    trainable = head if config.freeze_depth == MAX_FREEZE_DEPTH else params  # partial freezes: all (upper bound)
    state_per_param = {"sgd": 1 if config.momentum > 0 else 0, "adamw": 2}[config.optimizer]
    weights = params * 4 + trainable * 4 * (1 + state_per_param)
    train_activations, eval_activations = activation_bytes(config, num_classes, image_size)
    if config.freeze_depth == MAX_FREEZE_DEPTH:
        train_activations = 0  # nothing before the head keeps activations for backward
    working = int((weights + max(train_activations, eval_activations)) * MARGIN)
    return data_bytes + working + CUDA_CONTEXT_BYTES


def check_gpu_fit(estimate: int, gpus_per_trial: float, gpu_bytes: int, *, source: str = "the sweep spec") -> None:
    """Raise SpecError when a trial estimated at ``estimate`` bytes cannot fit in ``gpus_per_trial`` of a GPU with
    ``gpu_bytes`` of memory (Ray packs ``1 / gpus_per_trial`` trials on one GPU)."""
    share = int(gpu_bytes * min(gpus_per_trial, 1.0))
    if estimate <= share:
        return
    gib = 2**30
    needed = min(1.0, estimate / gpu_bytes)
    raise SpecError(
        f"{source}: resources.gpus_per_trial: {gpus_per_trial} gives each trial {share / gib:.1f} GiB of a "
        f"{gpu_bytes / gib:.1f} GiB GPU, but one trial needs about {estimate / gib:.1f} GiB (dataset staged on the "
        f"GPU, weights, optimizer state, activations of a batch, CUDA context). Raise gpus_per_trial to at least "
        f"{needed:.2f}, or lower model.batch_size / eval_batch_size or the image size"
    )
