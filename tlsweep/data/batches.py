"""Mini-batches gathered straight from the (memory-mapped) split tensor: no Dataset, no worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from tlsweep.data.types import SplitTensors


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(
    split: SplitTensors,
    indices: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, int64 labels) on ``device``; the order is a permutation drawn from ``generator``.

    Within a batch the rows are gathered in ascending index order (sequential reads of the memory map); which rows
    form a batch is what the shuffle decides.
    """
    import torch

    device = torch.device(device)
    pin = device.type == "cuda" and not split.images.is_cuda
    on_device = split.images.device == device
    for rows in batch_rows(indices, batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last):
        if on_device:  # a split staged on the device once (the GPU path): gather there, no host transfer
            rows = rows.to(device)
        images = split.images.index_select(0, rows)
        labels = split.labels.index_select(0, rows)
        if pin:
            images = images.pin_memory().to(device, non_blocking=True)
            labels = labels.pin_memory().to(device, non_blocking=True)
        elif images.device != device:
            images, labels = images.to(device), labels.to(device)
        yield images, labels


def batch_rows(
    indices: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """The int64 CPU row indices of each batch, in the order ``iterate_batches`` yields them (shared by the
    frozen-feature path, so both see the same batches)."""
    import torch

    order = np.asarray(indices, dtype=np.int64).reshape(-1)
    if shuffle and len(order) > 1:
        if generator is not None:
            perm = torch.randperm(len(order), generator=generator, device=generator.device).cpu().numpy()
        else:
            perm = torch.randperm(len(order)).numpy()
        order = order[perm]
    count = num_batches(len(order), batch_size, drop_last)
    for b in range(count):
        yield torch.from_numpy(np.sort(order[b * batch_size : (b + 1) * batch_size]))
