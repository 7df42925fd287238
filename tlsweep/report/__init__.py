"""The statistical report of a results directory, from Parquet alone (no torch, no ray).

``build_report(results_dir)`` writes ``report.md``, a self-contained ``report.html`` and ``figures/*.png`` and
returns a ``ReportResult`` with the tables and verdicts (for printing and for the W&B mirror).
"""

from __future__ import annotations

from tlsweep.report.build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
