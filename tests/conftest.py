"""Test-wide settings: private Ray instances without telemetry or auth, W&B off unless a test turns it on."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

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

# Fixture modules (their helpers are imported by name where a test needs them).
pytest_plugins = ("sweep_fixtures", "moto_server")
