"""The results store's contract (``tests/store_contract.py``) on a local directory and on S3 (moto's server)."""

from __future__ import annotations

from store_contract import StoreContract


class TestResultsStore(StoreContract):
    """Every contract test, once per backend in ``store_contract.BACKENDS``."""
