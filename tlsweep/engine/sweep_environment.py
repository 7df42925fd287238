"""The Ray, Tune and Optuna settings a sweep runs under, applied for the duration of ``run_sweep`` only.

Importing tlsweep changes nothing: a notebook that imports it keeps its own environment, logging and Optuna
verbosity. ``sweep_settings()`` sets them on entry (never overriding a variable the user set) and restores
exactly what was there on exit.
"""

from __future__ import annotations

import logging
import os
from contextlib import ContextDecorator
from types import TracebackType

import optuna

SWEEP_ENVIRONMENT: dict[str, str] = {
    # Every epoch's checkpoint forces an experiment snapshot (num_to_keep=1); that is intended, not a warning.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # tlsweep draws its own one-line-per-study progress table; Ray's legacy reporter at verbose=0 stays silent.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Parquet is the record and W&B the mirror: Ray's per-trial result.json/progress.csv/TensorBoard copies would
    # only add writes to shared storage (and a warning for every trial's epoch history, a list TensorBoard cannot log).
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
RESULT_FILES_LOGGER = "ray.tune.analysis.experiment_analysis"
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class NoResultFilesWarning(logging.Filter):
    """Tuner.fit() ends by looking for those files (one warning line per trial); tlsweep never reads them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics for")


class TokenAuthNotice(logging.Filter):
    """Ray 2.60 turns token authentication on for the local instance a sweep starts (RAY_AUTH_MODE unset) and says so
    on every run; that is its secure default, not news. Its warning that authentication is *off* still passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


class sweep_settings(ContextDecorator):
    """Apply ``SWEEP_ENVIRONMENT`` (where unset), the result-files log filter and Optuna's WARNING verbosity.

    Usable as ``with sweep_settings(): ...`` or as a decorator; nesting is safe (each level restores its own).
    """

    def __init__(self) -> None:
        self._saved_env: dict[str, str | None] = {}
        self._saved_verbosity = optuna.logging.WARNING
        self._filter = NoResultFilesWarning()
        self._auth_filter = TokenAuthNotice()

    def __enter__(self) -> sweep_settings:
        self._saved_env = {name: os.environ.get(name) for name in SWEEP_ENVIRONMENT}
        for name, value in SWEEP_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        logging.getLogger(RESULT_FILES_LOGGER).addFilter(self._filter)
        logging.getLogger(TOKEN_AUTH_LOGGER).addFilter(self._auth_filter)
        self._saved_verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        optuna.logging.set_verbosity(self._saved_verbosity)
        logging.getLogger(RESULT_FILES_LOGGER).removeFilter(self._filter)
        logging.getLogger(TOKEN_AUTH_LOGGER).removeFilter(self._auth_filter)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
