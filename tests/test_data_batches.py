from __future__ import annotations

import numpy as np
import pytest
import torch

from tlsweep.data.batches import iterate_batches, num_batches
from tlsweep.data.types import SplitTensors


def split(n: int = 23) -> SplitTensors:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    return SplitTensors(images=images, labels=torch.arange(n, dtype=torch.int64) % 4, files=[str(i) for i in range(n)])


@pytest.mark.parametrize(
    ("n", "bs", "drop", "expected"), [(23, 5, False, 5), (23, 5, True, 4), (20, 5, True, 4), (0, 5, False, 0)]
)
def test_num_batches(n: int, bs: int, drop: bool, expected: int) -> None:
    assert num_batches(n, bs, drop) == expected


def test_batches_cover_the_indices_once_with_matching_labels() -> None:
    data = split()
    indices = np.array([1, 3, 4, 8, 9, 10, 15, 16, 22])
    seen = []
    for images, labels in iterate_batches(data, indices, 4, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64 and images.shape[1:] == (3, 2, 2)
        rows = images[:, 0, 0, 0].long()
        assert torch.equal(labels, rows % 4)
        seen.extend(rows.tolist())
    assert sorted(seen) == indices.tolist()


def test_shuffle_order_comes_from_the_generator_and_drop_last_drops() -> None:
    data = split(40)

    def order(seed: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return [b[0][:, 0, 0, 0].tolist() for b in iterate_batches(data, np.arange(40), 8, shuffle=True, generator=g)]

    assert order(1) == order(1) and order(1) != order(2)
    unshuffled = [b[1].tolist() for b in iterate_batches(data, np.arange(10), 4, shuffle=False, generator=None)]
    assert unshuffled == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1]]
    dropped = list(iterate_batches(data, np.arange(10), 4, shuffle=False, generator=None, drop_last=True))
    assert len(dropped) == 2
