"""Number and label formatting shared by tables, verdicts and figures."""

from __future__ import annotations

import math
from typing import Any

CORRECTION_NAMES = {"holm": "Holm", "bonferroni": "Bonferroni", "bh": "Benjamini–Hochberg", "none": "uncorrected"}
FACTOR_LABELS = {
    "train_fraction": "train fraction",
    "epochs": "epochs",
    "augmentation": "augmentation",
    "freeze_depth": "freeze depth",
}


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def p_text(p: float) -> str:
    """ "p = 0.012" or "p < 0.001" (for sentences)."""
    text = fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_num(x: float, digits: int = 1, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "∞" if x is not None and x == math.inf else ("−∞" if x == -math.inf else "–")
    x = round(x, digits) + 0.0  # no "-0.0"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def fmt_interval(
    estimate: float,
    low: float,
    high: float,
    *,
    scale: float = 1.0,
    digits: int = 1,
    signed: bool = False,
    suffix: str = "",
) -> str:
    text = fmt_num(estimate * scale, digits, signed) + suffix
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{fmt_num(low * scale, digits, signed)}, {fmt_num(high * scale, digits, signed)}]"
    return text


def fmt_level(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_cell(levels: dict[str, Any]) -> str:
    """ "train fraction 0.1, 2 epochs" (+ other factors)."""
    parts = []
    for name, value in levels.items():
        if name == "epochs":
            parts.append(f"{fmt_level(value)} epochs")
        else:
            parts.append(f"{FACTOR_LABELS.get(name, name)} {fmt_level(value)}")
    return ", ".join(parts) if parts else "the single cell"


_SHORT = {"train_fraction": "fraction", "augmentation": "aug", "freeze_depth": "freeze"}


def describe_cell_short(levels: dict[str, Any]) -> str:
    """ "fraction 0.1 · 2 epochs · aug flip" (panel titles)."""
    parts = [
        f"{fmt_level(v)} epochs" if k == "epochs" else f"{_SHORT.get(k, k)} {fmt_level(v)}" for k, v in levels.items()
    ]
    return " · ".join(parts) if parts else "all runs"
