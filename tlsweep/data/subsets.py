"""Nested, stratified, seeded training subsets: for one seed the 10% subset lies inside the 25% one, and so on."""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import numpy as np

from tlsweep.errors import SpecError

if TYPE_CHECKING:
    import torch


def _as_numpy(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    return np.asarray(labels).reshape(-1)


def nested_subset(labels: np.ndarray | torch.Tensor, fraction: float, seed: int) -> np.ndarray:
    """Sorted int64 indices of a stratified ``fraction`` of ``labels``.

    Each class gets its own permutation seeded by (seed, class) and keeps its first round(fraction·n_c) members, at
    least one: a larger fraction extends a smaller one (nesting), and every arm of a cell sees the same subset.
    """
    if not (0.0 < fraction <= 1.0) or math.isnan(fraction):
        raise SpecError(f"train_fraction must be in (0, 1], got {fraction}")
    values = _as_numpy(labels)
    if fraction == 1.0:
        return np.arange(len(values), dtype=np.int64)
    chosen: list[np.ndarray] = []
    for cls in np.unique(values):
        members = np.flatnonzero(values == cls)
        class_key = (
            int(cls)
            if np.issubdtype(values.dtype, np.integer)
            else int.from_bytes(hashlib.sha256(str(cls).encode()).digest()[:8], "little")
        )
        rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([int(seed) & (2**63 - 1), class_key & (2**63 - 1)]))
        )
        keep = max(1, math.floor(fraction * len(members) + 0.5))
        chosen.append(members[rng.permutation(len(members))[:keep]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subset_hash(indices: np.ndarray) -> str:
    """16 hex characters identifying a set of indices, the same in every process and on every machine."""
    canonical = np.ascontiguousarray(np.sort(np.asarray(indices).reshape(-1)).astype("<i8"))
    return hashlib.sha256(canonical.tobytes()).hexdigest()[:16]
