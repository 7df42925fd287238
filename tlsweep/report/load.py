"""Read a results directory (trials.parquet, epochs.parquet, spec.resolved.yaml) into report inputs.

The spec comes from ``ResultsStore.read_spec``: the report tests exactly the comparisons the sweep declared
(``SweepSpec.compared_arms``). Only pyarrow/pandas/pydantic: the report never imports the sweep engine, torch or ray.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tlsweep.errors import StoreError
from tlsweep.metrics import is_accuracy_like, metric_value
from tlsweep.report.screen import screen_trials
from tlsweep.results.integrity import check_epochs, check_spec, check_trials
from tlsweep.results.schema import EPOCHS_SCHEMA
from tlsweep.results.store import EPOCHS_FILE, SPEC_FILE, TRIALS_FILE, ResultsStore
from tlsweep.spec import (
    ARM_FACTOR,
    CELL_FACTOR_NAMES,
    INIT_LEVELS,
    Comparison,
    HypothesisSpec,
    ObjectiveSpec,
    SweepSpec,
    default_comparison,
)

_RUN_FIRST = "run `tlsweep run SPEC` first to produce it"


@dataclass(frozen=True)
class Hypothesis:
    metric: str
    treated: str
    baseline: str
    direction: str
    alpha: float
    correction: str
    margin: float

    @property
    def alternative(self) -> str:
        return self.direction

    @property
    def name(self) -> str:
        return f"{self.treated} vs {self.baseline}"

    @classmethod
    def of(cls, settings: HypothesisSpec, comparison: Comparison) -> Hypothesis:
        """The report's view of a spec's hypothesis for one comparison (treated − baseline in its direction)."""
        return cls(
            settings.metric,
            comparison.treated,
            comparison.baseline,
            comparison.direction,
            settings.alpha,
            settings.correction,
            settings.equivalence_margin,
        )


@dataclass
class Results:
    root: Path
    name: str
    spec: SweepSpec | None  # the spec the sweep ran with; None when spec.resolved.yaml is missing
    trials: pd.DataFrame  # every row of trials.parquet, plus `value` (the hypothesis metric, diverged → chance)
    epochs: pd.DataFrame
    hypothesis: Hypothesis  # the comparison this view reports on (the first of ``comparisons`` unless narrowed)
    cell_factors: list[str]  # factors that define cells (without init), in display order
    objective_metric: str
    objective_mode: str
    trials_per_cell: int | None
    notes: list[str] = field(default_factory=list)
    comparisons: list[Hypothesis] = field(default_factory=list)  # every comparison; one family of cells × these
    # the dataset's class names in label order (provenance.json, else the spec's csv class_names); None: not recorded
    class_names: list[str] | None = None

    def for_comparison(self, hypothesis: Hypothesis) -> Results:
        """The same results, reporting on ``hypothesis`` (one of ``comparisons``)."""
        return dataclasses.replace(self, hypothesis=hypothesis)

    @property
    def arms(self) -> list[str]:
        """The compared arms: in the order of ``design.arms`` when the spec names them, else in order of first mention
        (the treated arm of the first comparison first)."""
        arms = list(
            dict.fromkeys(arm for h in self.comparisons or [self.hypothesis] for arm in (h.treated, h.baseline))
        )
        if self.spec is None or self.spec.design.arms is None:
            return arms
        order = {arm: i for i, arm in enumerate(self.spec.design.arm_names())}
        return sorted(arms, key=lambda arm: order.get(arm, len(order)))

    @property
    def accuracy_like(self) -> bool:
        return is_accuracy_like(self.hypothesis.metric)

    @property
    def scale(self) -> float:
        """Multiplier from the metric's units to reported units (accuracies → points)."""
        return 100.0 if self.accuracy_like else 1.0

    @property
    def unit(self) -> str:
        return "points" if self.accuracy_like else self.hypothesis.metric


def _read_table(store: ResultsStore, name: str, notes: list[str]) -> pd.DataFrame:
    """One results table as pandas: the compacted file upserted with any parts (a running or killed sweep), or the
    single file of a finished sweep or of tlsweep 0.1; its values checked (``tlsweep.results.integrity``)."""
    source = store.location.join(name).uri
    if name == TRIALS_FILE:
        table = store.read_trials()
        notes.extend(check_trials(table, source=source))
    else:
        table = store.read_epochs()
        check_epochs(table, source=source)
    return table.to_pandas()


def _hypotheses(spec: SweepSpec | None, arms: list[str], notes: list[str]) -> list[Hypothesis]:
    """The declared hypothesis, one per comparison of ``spec.compared_arms`` (what ``tlsweep validate`` prints)."""
    if spec is not None:
        comparisons = spec.compared_arms
        if spec.hypothesis.compare is None:
            pairs = "; ".join(f"{c.treated} (treated) with {c.baseline}" for c in comparisons)
            notes.append(f"hypothesis.compare not declared; compared {pairs}")
        return [Hypothesis.of(spec.hypothesis, comparison) for comparison in comparisons]
    # no spec: the default rule of a spec over the arms found in the data, in the order of the init levels
    ordered = sorted(arms, key=lambda arm: (INIT_LEVELS.index(arm) if arm in INIT_LEVELS else len(INIT_LEVELS), arm))
    compared = default_comparison(ordered) if ordered else None
    if compared is None or compared[0] == compared[1]:
        raise StoreError(
            f"{SPEC_FILE} is missing and the arms in trials.parquet ({arms}) do not make a comparison; "
            f"restore {SPEC_FILE} (it names hypothesis.compare.{ARM_FACTOR})"
        )
    notes.append(f"compared {compared[0]} (treated) with {compared[1]}, the default comparison of the arms found")
    defaults = HypothesisSpec()
    return [Hypothesis.of(defaults, Comparison(compared[0], compared[1], defaults.direction))]


def load_results(results_dir: Path) -> Results:
    """Read and check a local results directory: the tables and the spec the report is built from.

    Args:
        results_dir: a results directory (``runs/<name>``), e.g. ``SweepOutcome.location`` of a local sweep.

    Returns:
        ``Results``: ``trials`` (one row per trial, plus ``value``, the hypothesis metric with diverged runs at
        chance) and ``epochs`` as pandas DataFrames, the ``SweepSpec``, the hypothesis (treated and baseline arm,
        direction, alpha), the cell factors, and notes on anything unusual.

    Raises:
        StoreError: naming the path, when it is not a results directory or cannot be reported on.
    """
    root = Path(results_dir)
    trials_path = root / TRIALS_FILE
    if not root.is_dir():
        raise StoreError(f"results directory {root} does not exist; {_RUN_FIRST}")
    store = ResultsStore(root)
    if not trials_path.exists() and not store.part_names(TRIALS_FILE):
        raise StoreError(
            f"{root} holds no trials.parquet (not a results directory, or the sweep has not written "
            f"any trial yet); {_RUN_FIRST}"
        )
    notes: list[str] = []
    trials = _read_table(store, TRIALS_FILE, notes)
    if trials.empty:
        raise StoreError(f"{trials_path} holds no trials yet; {_RUN_FIRST} and wait for trials to finish")
    if (root / EPOCHS_FILE).exists() or store.part_names(EPOCHS_FILE):
        epochs = _read_table(store, EPOCHS_FILE, notes)
    else:
        notes.append("epochs.parquet is missing: no learning curves")
        epochs = pd.DataFrame({name: pd.Series(dtype=object) for name in EPOCHS_SCHEMA.names})
    store = ResultsStore(root)
    spec = store.read_spec() if store.has_spec() else None
    if spec is not None:
        check_spec(store, spec)
    if spec is None:
        defaults = HypothesisSpec()
        notes.append(
            f"{SPEC_FILE} is missing: the hypothesis defaults ({defaults.metric}, {defaults.direction}, "
            f"alpha {defaults.alpha}, {defaults.correction}, margin {defaults.equivalence_margin}) and the "
            "arms found in the data are used"
        )
    arms = sorted(trials["arm"].dropna().unique().tolist())
    hypotheses = _hypotheses(spec, arms, notes)
    hypothesis = hypotheses[0]
    compared = list(dict.fromkeys(arm for h in hypotheses for arm in (h.treated, h.baseline)))
    for arm in compared:
        if arm not in arms:
            notes.append(f"arm {arm!r} of the hypothesis has no trials in trials.parquet")
    ignored = sorted(set(arms) - set(compared))
    if ignored:
        notes.append(f"arm(s) {ignored} are not part of the declared comparison and are left out of the tests")
    leave_out, screened = screen_trials(trials, spec, store.conflicting_trials())
    notes.extend(screened)
    trials = trials[~leave_out].copy()
    trials["value"] = _metric_values(trials, hypothesis.metric, notes)
    objective = spec.objective if spec is not None else ObjectiveSpec()
    cell_factors = _cell_factors(trials, spec.cell_factors() if spec is not None else [])
    return Results(
        root=root,
        name=spec.name if spec is not None else root.name,
        spec=spec,
        trials=trials,
        epochs=epochs,
        hypothesis=hypothesis,
        cell_factors=cell_factors,
        objective_metric=objective.metric,
        objective_mode=objective.mode,
        trials_per_cell=spec.design.budget.trials_per_cell if spec is not None else None,
        notes=notes,
        comparisons=hypotheses,
        class_names=_class_names(store, spec),
    )


def _class_names(store: ResultsStore, spec: SweepSpec | None) -> list[str] | None:
    """The class names the sweep recorded in ``provenance.json``, else those its spec declares (a csv dataset)."""
    provenance = store.read_provenance() if spec is not None else None
    if provenance is not None and provenance.class_names:
        return list(provenance.class_names)
    declared = getattr(spec.dataset, "class_names", None) if spec is not None else None
    return [str(name) for name in declared] if declared else None


def _metric_values(trials: pd.DataFrame, metric: str, notes: list[str]) -> pd.Series:
    """The hypothesis metric per row by the metric table's rule (``tlsweep.metrics.metric_value``), with a note for
    each kind of row it leaves without a value."""
    readable = trials[[c for c in ("status", "chance") if c in trials.columns]].assign(
        **{metric: pd.to_numeric(trials[metric], errors="coerce")}
    )
    values = pd.Series(
        [metric_value(row, metric) for row in readable.to_dict("records")], index=trials.index, dtype=float
    )
    status = trials["status"]
    diverged_missing = (status == "diverged") & readable[metric].isna()
    if diverged_missing.any():
        if not is_accuracy_like(metric):
            notes.append(
                f"{int(diverged_missing.sum())} diverged run(s) have no {metric} and no chance level for it;"
                " they are left out of the tests"
            )
    confirm_ok_nan = (trials["phase"] == "confirm") & (status == "ok") & values.isna()
    if confirm_ok_nan.any():
        notes.append(
            f"{int(confirm_ok_nan.sum())} confirm run(s) with status ok have no {metric} value (NaN); "
            "they are left out of the tests"
        )
    return values


def _cell_factors(trials: pd.DataFrame, declared: list[str]) -> list[str]:
    if declared:
        names = [name for name in declared if name in trials.columns]
    else:
        names = [name for name in CELL_FACTOR_NAMES if name in trials.columns and trials[name].nunique(dropna=True) > 1]
    for name in ("train_fraction", "epochs"):
        if name not in names:
            names.append(name)
    order = {name: i for i, name in enumerate(CELL_FACTOR_NAMES)}
    return sorted(dict.fromkeys(names), key=lambda name: order.get(name, len(order)))
