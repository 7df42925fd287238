"""The specs shipped in sweeps/, as test parameters: every one is validated by the tests that take them.

``sweeps/flowers.yaml`` poses the tf_flowers study with the timm backbones, the small CNN and the ``mlp`` head of
the timm branch (issue 11, item 3); until that branch is merged (TrialConfig has no ``head`` setting), its tests
are skipped, and they run by themselves once it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tlsweep.training.config import SETTINGS

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "sweeps").glob("*.yaml"))
NEEDS_TIMM_BRANCH = {"flowers"}  # specs whose arms set `head` and name small_cnn / timm:* backbones
TIMM_BRANCH_MERGED = "head" in SETTINGS
_SKIP = pytest.mark.skipif(
    not TIMM_BRANCH_MERGED,
    reason="needs the timm branch (head: mlp, small_cnn, timm:* backbones); runs once it is merged",
)


def shipped_params(extra: list[Any] | None = None) -> list[Any]:
    """``pytest.param`` of every shipped spec (id: its stem), the ones waiting for the timm branch marked skip."""
    params = [
        pytest.param(path, id=path.stem, marks=[_SKIP] if path.stem in NEEDS_TIMM_BRANCH else []) for path in SHIPPED
    ]
    return params + [pytest.param(value, id=str(value)) for value in extra or []]
