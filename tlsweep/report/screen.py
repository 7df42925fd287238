"""Screen the confirm rows before any test: rows the design does not have, duplicated seeds, replicates outside the
adaptive plan and trials re-recorded with other numbers are left out of the tests and named in the notes.

A report must never test a cell or a config the sweep did not declare, nor average two records of one seed.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tlsweep.design import cell_id, studies
from tlsweep.spec import SweepSpec

_SHOWN = 5  # trial ids named per problem


def _ids(rows: pd.DataFrame) -> str:
    ids = [str(t) for t in rows["trial_id"].tolist()]
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more


def _canonical_cell(row: dict[str, Any], factors: list[str]) -> str | None:
    levels = {}
    for name in factors:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        levels[name] = value.item() if hasattr(value, "item") else value
    return cell_id(levels)


def screen_trials(trials: pd.DataFrame, spec: SweepSpec | None, conflicting: list[str]) -> tuple[pd.Series, list[str]]:
    """(rows to leave out of the tests, notes naming them) for a trials frame with its ``value`` column."""
    leave_out = pd.Series(False, index=trials.index)
    notes: list[str] = []

    def drop(mask: pd.Series, why: str) -> None:
        nonlocal leave_out
        new = mask & ~leave_out
        if new.any():
            notes.append(f"{int(new.sum())} confirm row(s) {why}, left out of the tests: {_ids(trials[new])}")
            leave_out |= new

    confirm = trials["phase"] == "confirm"
    if conflicting:
        drop(
            confirm & trials["trial_id"].isin(conflicting),
            "were recorded as finished more than once with different numbers (a part file re-recorded them); "
            "rerun them (`tlsweep run` resumes) or restore the original part",
        )
    if spec is not None:
        factors = spec.cell_factors()
        declared = {cell_id({f: v for f, v in levels.items() if f in factors}) for levels in studies(spec)}
        cells = pd.Series(
            [_canonical_cell(row, factors) for row in trials[factors].to_dict("records")], index=trials.index
        )
        drop(confirm & ~cells.isin(declared), f"lie in no cell of the design ({len(declared)} cells)")
        drop(
            confirm & ~trials["config_kind"].isin(spec.confirm.configs),
            f"have a config kind the spec does not confirm (confirm.configs: {list(spec.confirm.configs)})",
        )
        if spec.confirm.adaptive is not None:
            replicate = pd.to_numeric(trials["replicate"], errors="coerce")
            drop(confirm & replicate.isna(), "have no replicate number (the adaptive plan cannot place them)")
            drop(
                confirm & (replicate >= spec.confirm.max_seeds),
                f"have a replicate beyond adaptive.max_seeds ({spec.confirm.max_seeds})",
            )
    recorded = confirm & (trials["status"] != "failed") & ~leave_out & trials["seed"].notna()
    key = ["cell_id", "arm", "config_kind", "seed"]
    twice = trials.loc[recorded, key].astype(str).duplicated(keep=False)
    duplicated = pd.Series(False, index=trials.index)
    duplicated[twice.index[twice.to_numpy()]] = True
    drop(duplicated, "record one seed of a cell and arm twice under different trial ids (neither is used)")
    return leave_out, notes
