from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsweep.data.subsets import nested_subset, subset_hash
from tlsweep.errors import SpecError

labels_strategy = st.lists(st.integers(0, 7), min_size=1, max_size=300).map(lambda v: np.array(v, dtype=np.int64))
fraction_strategy = st.floats(0.001, 1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(labels=labels_strategy, f1=fraction_strategy, f2=fraction_strategy, seed=st.integers(0, 2**32))
def test_subsets_are_nested_stratified_and_sorted(labels: np.ndarray, f1: float, f2: float, seed: int) -> None:
    small, large = sorted((f1, f2))
    a, b = nested_subset(labels, small, seed), nested_subset(labels, large, seed)
    assert a.dtype == np.int64 and np.all(np.diff(a) > 0)
    assert set(a.tolist()) <= set(b.tolist()), "the smaller fraction lies inside the larger one"
    for cls in np.unique(labels):
        n_c = int((labels == cls).sum())
        kept = int((labels[a] == cls).sum())
        assert kept >= 1, "every class keeps an example"
        assert kept == max(1, math.floor(small * n_c + 0.5))


@settings(max_examples=30, deadline=None)
@given(labels=labels_strategy, fraction=fraction_strategy, seed=st.integers(0, 2**32))
def test_same_seed_same_subset_for_numpy_and_torch_labels(labels: np.ndarray, fraction: float, seed: int) -> None:
    expected = nested_subset(labels, fraction, seed)
    assert np.array_equal(nested_subset(torch.from_numpy(labels), fraction, seed), expected)
    assert np.array_equal(nested_subset(labels.copy(), fraction, seed), expected)


def test_fraction_one_is_everything_and_seeds_differ() -> None:
    labels = np.repeat(np.arange(4), 50)
    assert np.array_equal(nested_subset(labels, 1.0, 3), np.arange(200))
    assert not np.array_equal(nested_subset(labels, 0.1, 0), nested_subset(labels, 0.1, 1))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_unit_interval_is_rejected(fraction: float) -> None:
    with pytest.raises(SpecError, match="train_fraction must be in"):
        nested_subset(np.zeros(5, dtype=np.int64), fraction, 0)


def test_subset_hash_is_stable_across_processes_and_dtypes() -> None:
    indices = nested_subset(np.repeat(np.arange(8), 30), 0.25, 7)
    value = subset_hash(indices)
    assert len(value) == 16 and int(value, 16) >= 0
    assert subset_hash(indices.astype(np.int32)) == value
    assert subset_hash(indices[::-1]) == value
    assert subset_hash(indices[1:]) != value
    assert subset_hash(np.arange(10)) == subset_hash(np.arange(10, dtype=np.int16))
    code = (
        "import numpy as np; from tlsweep.data.subsets import nested_subset, subset_hash; "
        "print(subset_hash(nested_subset(np.repeat(np.arange(8), 30), 0.25, 7)))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == value


def test_subset_hash_known_value() -> None:
    # sha256 of the little-endian int64 bytes of 0..9: fixed forever, so hashes recorded in Parquet stay comparable
    assert subset_hash(np.arange(10)) == "23c379d6c0f22ef6"
