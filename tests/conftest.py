"""Test-wide settings: a private Ray without telemetry or auth, W&B off unless a test turns it on.

How to keep the suite fast (``make test`` runs ruff format, ruff and mypy before pytest; no test runs them):
- Ray: ask for the ``ray_local`` fixture (tests/sweep_fixtures.py). One local Ray (2 CPUs, 80 MB object store) is
  started by the first module that needs it and shared by the rest of the session; ``run_sweep`` uses it as it is.
  Never call ``ray.init``/``ray.shutdown`` in a test. A module that needs a Ray of its own (a ``Cluster``) asks for
  ``ray_stopped`` first; the next ``ray_local`` starts the shared one again.
- Sweeps: a sweep is the expensive thing here. Tests that only read results share one sweep through a module- or
  session-scoped fixture (``finished_sweep`` in test_sweep.py, ``mirrored`` in test_sweep_wandb.py); add assertions
  to a test over an existing sweep rather than running another. Start from ``smallest_spec_dict`` (4 trials) or
  ``tiny_spec_dict`` (resnet_tiny, 16 px) in sweep_fixtures.py.
- Models: real arithmetic on the smallest backbone of a family; a larger one's shapes, gradient flow or parameter
  layout on the meta device (``with torch.device("meta"):``), as in test_models.py.
- Parallel: ``make test`` runs ``pytest -n 2 --dist loadfile --no-loadscope-reorder``: each worker process takes whole
  modules (module fixtures run once) and has its own ``ray_local``. Modules holding a test marked ``slow`` (over
  ~20 s) are handed out first, so that no long module starts last; mark a new slow test, and put a second slow
  test that needs no fixture of its module into a module of its own, so the two workers can take them side by side.
- Prefer an in-process call (``CliRunner``, ``run_sweep``) to a ``tlsweep``/Python subprocess unless the test is
  about the process itself (a killed driver, an import-time effect).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
# frozen-layer activations stored by the tests' trials (Ray workers inherit it): private to this test session
if "TLSWEEP_FEATURE_CACHE_DIR" not in os.environ:
    os.environ["TLSWEEP_FEATURE_CACHE_DIR"] = tempfile.mkdtemp(prefix="tlsweep-test-features-")
    atexit.register(shutil.rmtree, os.environ["TLSWEEP_FEATURE_CACHE_DIR"], ignore_errors=True)
if worker := os.environ.get("PYTEST_XDIST_WORKER"):  # each pytest worker its own (removed with the controller's)
    os.environ["TLSWEEP_FEATURE_CACHE_DIR"] = os.path.join(os.environ["TLSWEEP_FEATURE_CACHE_DIR"], worker)

# Fixture modules (their helpers are imported by name where a test needs them).
pytest_plugins = ("sweep_fixtures", "moto_server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a slow test first (stable: the modules' own order and each module's tests stay as they were)."""
    slow_modules = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow_modules)
