"""Per-class accuracy and the confusion matrix of a trial's test split (issue 24, item 4)."""

from __future__ import annotations

import json

import numpy as np
import torch

from tlsweep.data.types import DatasetTensors, SplitTensors
from tlsweep.engine.recorder import confusion_columns
from tlsweep.training.config import TrialConfig
from tlsweep.training.evaluate import class_accuracies, confusion_matrix
from tlsweep.training.loop import run_trial


def test_the_confusion_matrix_counts_true_by_predicted_class() -> None:
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 2])
    confusion = confusion_matrix(probabilities, labels, 4)
    assert confusion == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert class_accuracies(confusion) == [1.0, 0.5, 1.0, None]
    assert confusion_columns(confusion) == {
        "test_class_acc": json.dumps([1.0, 0.5, 1.0, None]),
        "test_confusion": json.dumps(confusion),
    }
    assert confusion_columns(None) == {"test_class_acc": None, "test_confusion": None}


def test_a_trial_reports_its_test_confusion_matrix() -> None:
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> SplitTensors:
        labels = torch.randint(0, 3, (n,), generator=generator)
        images = torch.randint(0, 90, (n, 3, 12, 12), generator=generator, dtype=torch.uint8)
        for cls in range(3):
            images[labels == cls, cls] += 60
        return SplitTensors(images, labels, [f"{i}.png" for i in range(n)])

    data = DatasetTensors(split(48), split(24), split(30), ["a", "b", "c"])
    result = run_trial(TrialConfig(epochs=1, batch_size=16, lr=0.05, num_threads=1), data)
    confusion = np.array(result.test_confusion)
    assert confusion.shape == (3, 3) and confusion.sum() == result.n_test == 30
    assert np.trace(confusion) / 30 == result.test_acc
    assert confusion.sum(axis=1).tolist() == np.bincount(data.test.labels.numpy(), minlength=3).tolist()
