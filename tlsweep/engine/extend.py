"""Extending a sweep: more confirm seeds, more cells or more tune trials on a finished or interrupted sweep.

The result hash covers every setting that changes results, so such a spec has another hash; ``check_resume`` accepts
it when :func:`extension_changes` finds nothing else changed. The recorded trials are then reused as they are (trial
ids are content hashes of phase, cell, parameters and seed, so an unchanged trial has its old id), only the new ones
run, and ``provenance.json`` records the extension (:func:`record_extension`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from tlsweep.results.store import PROVENANCE_FILE, Provenance, ResultsStore
from tlsweep.spec import RESULT_FIELDS, SweepSpec


def extension_changes(old: SweepSpec, new: SweepSpec) -> list[str] | None:
    """What ``new`` adds to ``old`` (``["confirm.seeds: 8 → 10", ...]``) when it only adds confirm seeds, tune trials
    per study or factor levels (cells, arms); None when anything else differs, something was removed, or either
    confirms adaptively (its looks are planned from the seeds)."""
    before, after = copy.deepcopy(old.resolved()), copy.deepcopy(new.resolved())
    if before["confirm"].get("adaptive") or after["confirm"].get("adaptive"):
        return None
    changes: list[str] = []
    counted = (
        ("confirm.seeds", before["confirm"], after["confirm"], "seeds"),
        ("design.budget.trials_per_cell", before["design"]["budget"], after["design"]["budget"], "trials_per_cell"),
    )
    for label, was_block, now_block, key in counted:
        was, now = was_block[key], now_block[key]
        if now < was:
            return None
        if now > was:
            changes.append(f"{label}: {was} → {now}")
        was_block[key] = now_block[key] = 0
    factors_before, factors_after = before["design"].pop("factors"), after["design"].pop("factors")
    if set(factors_before) != set(factors_after):
        return None
    for name, levels in factors_before.items():
        had = {json.dumps(level) for level in levels}
        added = [level for level in factors_after[name] if json.dumps(level) not in had]
        if not had <= {json.dumps(level) for level in factors_after[name]}:
            return None
        if added:
            changes.append(f"design.factors.{name}: + {added}")
    if {k: before[k] for k in RESULT_FIELDS} != {k: after[k] for k in RESULT_FIELDS}:
        return None
    return changes or None


def record_extension(store: ResultsStore, old_hash: str, new: SweepSpec, changes: list[str]) -> None:
    """Append the extension to the results' ``provenance.json`` (the run then writes the new spec and hash), once:
    a run that stopped before writing them records the same extension when it is started again."""
    provenance = store.read_provenance() or Provenance(spec_hash=old_hash)
    if any(e.get("from") == old_hash and e.get("to") == new.result_hash() for e in provenance.extensions):
        return
    extension = {"from": old_hash, "to": new.result_hash(), "changes": changes, "at": _now()}
    extended = replace(provenance, extensions=(*provenance.extensions, extension))
    store.write_text(PROVENANCE_FILE, json.dumps(extended.to_dict(), indent=2) + "\n")


def extension_history(store: ResultsStore) -> tuple[dict[str, Any], ...]:
    """The extensions recorded in the results' ``provenance.json`` so far (kept when the run rewrites it)."""
    provenance = store.read_provenance() if store.has_spec() else None
    return provenance.extensions if provenance is not None else ()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
