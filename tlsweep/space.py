"""Search-space entries in optuna's short form → ``optuna.distributions``.

A ``design.tune`` entry looks like ``lr: {type: float, low: 1.0e-4, high: 0.5, log: true}``; an entry may carry
``when: {init: [checkpoint, imagenet]}`` so it only exists in studies whose factor levels match. Optuna's own
constructors check ranges, steps and logs; their messages are passed on with the entry's place in the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ParamValue = float | int | str | bool | None


class ParamEntry(BaseModel):
    """One tuned (nuisance) parameter."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[ParamValue] | None = None
    when: dict[str, list[ParamValue]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ParamEntry:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical entry needs a non-empty `choices: [...]` list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("a categorical entry takes only `choices` (and `when`), not low/high/step/log")
            typed = [(type(choice), choice) for choice in self.choices]
            repeated = [choice for i, (kind, choice) in enumerate(typed) if (kind, choice) in typed[:i]]
            if repeated:
                raise ValueError(
                    f"`choices` lists {', '.join(map(repr, repeated))} more than once (the sampler would draw it "
                    "more often); list each choice once"
                )
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} entry needs both `low` and `high`")
            if self.choices is not None:
                raise ValueError(f"a {self.type} entry takes low/high, not `choices`")
            self.to_distribution()  # optuna validates low <= high, low > 0 for log, step vs log
        return self

    def applies_to(self, levels: dict[str, Any]) -> bool:
        """True when every ``when`` condition holds for these study levels (``arm`` is the init level where the arms
        are init levels)."""
        return all(
            (levels.get(name) if name != "arm" or "arm" in levels else levels.get("init")) in allowed
            for name, allowed in self.when.items()
        )

    def to_distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices or []))
        if self.type == "int":
            return IntDistribution(int(self.low or 0), int(self.high or 0), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low or 0.0), float(self.high or 0.0), log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        return bool(self.to_distribution()._contains(self.to_distribution().to_internal_repr(value)))


def distributions_for(entries: dict[str, ParamEntry], levels: dict[str, Any]) -> dict[str, Any]:
    """The optuna distributions of the parameters tuned in the study with these factor levels."""
    return {name: entry.to_distribution() for name, entry in entries.items() if entry.applies_to(levels)}


def grid_points(entries: dict[str, ParamEntry], levels: dict[str, Any]) -> dict[str, list[Any]] | None:
    """The grid for ``sampler: grid`` (categorical entries, or int entries with few values); None if not griddable."""
    grid: dict[str, list[Any]] = {}
    for name, entry in entries.items():
        if not entry.applies_to(levels):
            continue
        if entry.type == "categorical":
            grid[name] = list(entry.choices or [])
        elif entry.type == "int" and not entry.log:
            step = int(entry.step or 1)
            grid[name] = list(range(int(entry.low or 0), int(entry.high or 0) + 1, step))
        else:
            return None
    return grid
