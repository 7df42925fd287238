"""The sweep spec: a validated, frozen description of one experiment (the data; its plan is ``tlsweep.design``).

``tlsweep.spec_load.load_spec(path, overrides)`` reads one from YAML. Every error names the dotted field path, what
was given and what is allowed. Nothing here imports torch or ray, nor the rest of tlsweep beyond the settings' rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tlsweep.data.dataset_spec import DatasetSpec
from tlsweep.metrics import BOUNDED_METRICS
from tlsweep.space import ParamEntry, ParamValue
from tlsweep.tracking.wandb_settings import WandbSettings
from tlsweep.training.config import (
    MAX_IMAGE_SIZE,
    PRETRAIN_DEFAULTS,
    SETTING_RULES,
    SETTINGS,
    FeatureCacheDtype,
    OptimizerName,
    ScheduleName,
    TrialConfig,
    requirement,
    rule_problem,
    type_problem,
)

INIT_LEVELS = ("imagenet", "checkpoint", "scratch")
PRETRAINED_LEVELS = ("imagenet", "checkpoint")
# The factors tlsweep knows, in their fixed order (cell ids, report tables, results columns all follow it).
FACTOR_NAMES = ("init", "train_fraction", "epochs", "augmentation", "freeze_depth")
ARM_FACTOR = "init"  # the factor whose levels are the arms compared inside a cell (the shorthand of design.arms)
ARM_KEY = "arm"  # the key of a study's levels naming its arm when the spec declares design.arms
ARM_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
MAX_ARM_NAME = 64
# TrialConfig settings an arm cannot fix: the design sets the seed, the run places the trial
ARM_FIXED = ("seed", "device", "num_threads", "amp")
ARM_UNPAIRED = ("train_fraction",)  # an arm of its own would draw another training subset per seed
DIRECTIONS = ("greater", "less", "two-sided")
CELL_FACTOR_NAMES = tuple(name for name in FACTOR_NAMES if name != ARM_FACTOR)
# TrialConfig fields a sweep may tune or fix in its recipe (everything else comes from `model:` or the design)
TUNABLE = (
    "lr",
    "weight_decay",
    "momentum",
    "freeze_depth",
    "augmentation",
    "label_smoothing",
    "backbone_lr_mult",
    "warmup_epochs",
    "batch_size",
)
# objective.metric (a per-epoch validation metric) → the trials column holding its value on the best epoch
OBJECTIVE_COLUMNS = {"val_acc": "best_val_acc", "val_loss": "best_val_loss"}
# Fields whose change makes existing results incomparable (resume is refused unless --new).
RESULT_FIELDS = ("dataset", "model", "design", "confirm", "objective")
# The hypothesis settings an adaptive confirm phase steers by (tlsweep.design.sequential_design): a resume must match
ADAPTIVE_PLAN_FIELDS = ("metric", "compare", "direction", "alpha", "correction", "equivalence_margin")
# The provenance block that results of tlsweep <= 0.1.0 hold in spec.resolved.yaml (read when they resume).
LEGACY_PROVENANCE_KEY = "tlsweep"
# Bounds on integers: what the results' int64 columns store (seeds) and what one machine can do (the rest).
MAX_SEED = 2**62  # confirm seeds are seed_base + r and must stay int64 (trials.seed, epochs.seed)
MAX_BUDGET_SEED = 2**40  # tune seeds are 100_000 × (seed + 1) + index (tlsweep.design.tune_seed): int64 too
MAX_NAME_LENGTH = 100  # the results directory, Ray's experiment and W&B's run names derive from it
MAX_TRIALS_PER_CELL = 100_000
MAX_SEEDS = 10_000
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs")  # tlsweep.results.location.resolve_location accepts these and paths


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _rule(setting: str) -> AfterValidator:
    """The rule of TrialConfig's ``setting`` (``tlsweep.training.config.SETTING_RULES``) as a field validator."""
    rule = SETTING_RULES[setting]

    def check(value: Any) -> Any:
        if not rule.holds(value):
            raise ValueError(f"must be {requirement(setting)}")
        return value

    return AfterValidator(check)


def _setting_problem(setting: str, value: Any) -> str | None:
    """Why ``value`` is not a valid TrialConfig ``setting`` (wrong type or against its rule), or None."""
    return type_problem(setting, value) or rule_problem(setting, value)


class OptimizerSpec(_Model):
    name: OptimizerName = "sgd"
    momentum: Annotated[float, _rule("momentum")] = 0.9


class ScheduleSpec(_Model):
    name: ScheduleName = "cosine"
    warmup_epochs: Annotated[float, _rule("warmup_epochs")] = 0.0
    step_size: Annotated[int, _rule("step_size")] = 0
    gamma: Annotated[float, _rule("step_gamma")] = 0.1


class PretrainedSpec(_Model):
    """What the pretrained init levels mean in this sweep."""

    imagenet: str | None = None  # torchvision weights enum name (None → the architecture's default)
    checkpoint: Path | None = None  # backbone state dict for init=checkpoint (built by `pretrain:` when missing)


class PretrainSpec(_Model):
    """Build ``model.pretrained.checkpoint`` first, by training the backbone on a source dataset.

    The defaults are the pretraining recipe's (``tlsweep.training.config.pretrain_config``).
    """

    dataset: DatasetSpec
    epochs: Annotated[int, _rule("epochs")] = PRETRAIN_DEFAULTS["epochs"]
    lr: Annotated[float, _rule("lr")] = PRETRAIN_DEFAULTS["lr"]
    batch_size: Annotated[int, _rule("batch_size")] = PRETRAIN_DEFAULTS["batch_size"]
    weight_decay: Annotated[float, _rule("weight_decay")] = PRETRAIN_DEFAULTS["weight_decay"]
    augmentation: Annotated[str, _rule("augmentation")] = PRETRAIN_DEFAULTS["augmentation"]
    seed: int = Field(PRETRAIN_DEFAULTS["seed"], ge=0, le=MAX_SEED)


class ModelSpec(_Model):
    backbone: str = "resnet_tiny"
    image_size: int = Field(32, ge=8, le=MAX_IMAGE_SIZE)
    batch_size: Annotated[int, _rule("batch_size")] = 64
    eval_batch_size: Annotated[int, _rule("eval_batch_size")] = 512
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    label_smoothing: Annotated[float, _rule("label_smoothing")] = 0.0
    backbone_lr_mult: Annotated[float, _rule("backbone_lr_mult")] = 1.0
    # how the frozen layers' stored activations are kept (tlsweep.training.frozen_features); rounding changes results
    feature_cache_dtype: FeatureCacheDtype = "auto"
    pretrained: PretrainedSpec = Field(default_factory=PretrainedSpec)
    pretrain: PretrainSpec | None = None


class BudgetSpec(_Model):
    trials_per_cell: int = Field(8, ge=1, le=MAX_TRIALS_PER_CELL)
    sampler: Literal["tpe", "random", "qmc", "grid"] = "tpe"
    seed: int = Field(0, ge=0, le=MAX_BUDGET_SEED)  # sampler seeds and the tune-phase replicate seeds derive from it


class EarlyStoppingSpec(_Model):
    """ASHA inside the tune phase only, per study (never comparing trials across epochs levels)."""

    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1, le=MAX_TRIALS_PER_CELL)
    reduction_factor: float = Field(2.0, gt=1)


class DesignSpec(_Model):
    factors: dict[str, list[ParamValue]] = Field(default_factory=dict)
    # named arms (NAME: {init: LEVEL, SETTING: VALUE, ...}); None: the levels of factors.init are the arms
    arms: dict[str, dict[str, ParamValue]] | None = None
    tune: dict[str, ParamEntry] = Field(default_factory=dict)
    recipe: dict[str, ParamValue] = Field(default_factory=dict)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    early_stopping: EarlyStoppingSpec | None = None

    @field_validator("factors")
    @classmethod
    def _check_factors(cls, factors: dict[str, list[Any]]) -> dict[str, list[Any]]:
        unknown = sorted(set(factors) - set(FACTOR_NAMES))
        if unknown:
            raise ValueError(f"unknown factor(s) {unknown}; allowed factors: {list(FACTOR_NAMES)}")
        for name, levels in factors.items():
            if not levels:
                raise ValueError(f"factor {name!r} needs at least one level")
            if len(set(map(json.dumps, levels))) != len(levels):
                raise ValueError(f"factor {name!r} has repeated levels {levels}")
        bad_init = [lvl for lvl in factors.get("init", []) if lvl not in INIT_LEVELS]
        if bad_init:
            raise ValueError(f"init levels {bad_init} are unknown; allowed: {list(INIT_LEVELS)}")
        for name in ("train_fraction", "epochs", "augmentation", "freeze_depth"):
            for level in factors.get(name, []):
                if _setting_problem(name, level) is not None:
                    raise ValueError(f"{name} levels must be {requirement(name, levels=True)}, got {level!r}")
        return factors

    @model_validator(mode="after")
    def _check_arms(self) -> DesignSpec:
        if self.arms is None:
            if "init" not in self.factors:
                raise ValueError(
                    "declare the arms, either as init levels (factors.init: [checkpoint, "
                    f"scratch]; levels: {list(INIT_LEVELS)}) or by name (arms: {{finetune: {{init: "
                    "imagenet}, scratch: {init: scratch}})"
                )
            if len(set(map(str, self.factors["init"]))) < 2:
                raise ValueError(
                    f"factors.init: {self.factors['init']} is one arm: nothing to compare it with; list two init "
                    f"levels (e.g. [checkpoint, scratch]; levels: {list(INIT_LEVELS)})"
                )
            if "freeze_depth" in self.factors and "scratch" in self.factors["init"]:
                raise ValueError(
                    "freeze_depth cannot be a factor together with init level `scratch` (a frozen random body is not "
                    "an arm); tune it instead: design.tune.freeze_depth: {type: categorical, choices: [...], "
                    "when: {init: [checkpoint]}}"
                )
            return self
        if "init" in self.factors:
            raise ValueError(
                "arms and factors.init both declare the arms; keep one: give each arm "
                "its init level (arms: {NAME: {init: LEVEL, ...}}) and drop factors.init"
            )
        if len(self.arms) < 2:
            raise ValueError(f"arms: declare at least two arms to compare, got {list(self.arms)}")
        allowed = [name for name in SETTINGS if name not in ARM_FIXED]
        for name, settings in self.arms.items():
            where = f"arms.{name}"
            if not re.fullmatch(ARM_NAME, name):
                raise ValueError(
                    f"{where}: an arm name takes letters, digits, '_', '.' and '-' (no leading "
                    "punctuation), e.g. finetune or linear_probe"
                )
            if len(name) > MAX_ARM_NAME:
                raise ValueError(
                    f"{where[:60]}...: an arm name of {len(name)} characters; at most {MAX_ARM_NAME} (it names "
                    "studies, W&B runs and report columns)"
                )
            init = settings.get("init")
            if init not in INIT_LEVELS:
                raise ValueError(
                    f"{where}.init: {'required' if init is None else f'{init!r} is unknown'}; "
                    f"every arm names its init level, one of {list(INIT_LEVELS)}"
                )
            for setting, value in settings.items():
                if setting == "init":
                    continue
                if setting not in allowed:
                    raise ValueError(f"{where}.{setting}: not a setting an arm can fix; arm settings: {allowed}")
                if setting in self.factors:
                    raise ValueError(
                        f"{where}.{setting}: {setting!r} is a factor (design.factors.{setting}), "
                        "crossed with every arm; drop it from the arm or from the factors"
                    )
                if setting in ARM_UNPAIRED:
                    raise ValueError(
                        f"{where}.{setting}: an arm cannot fix {setting} (its trials would train on other images "
                        "than the other arms' with the same seed, so the comparison would not be paired); make it a "
                        f"factor (design.factors.{setting}) or set it for every arm in design.recipe"
                    )
                problem = _setting_problem(setting, value)
                if problem is not None:
                    raise ValueError(f"{where}.{setting}: {problem}")
            if init == "scratch" and (settings.get("freeze_depth") or "freeze_depth" in self.factors):
                raise ValueError(
                    f"{where}: init scratch with a frozen body (freeze_depth) is not an arm: a frozen "
                    "random body learns nothing; drop freeze_depth from this arm"
                )
        return self

    def arm_names(self) -> list[str]:
        """The arms compared inside every cell, in spec order: ``design.arms``' names, else the init levels."""
        return list(self.arms) if self.arms is not None else [str(level) for level in self.factors["init"]]

    def arm_levels(self) -> list[dict[str, Any]]:
        """What each arm adds to a study's levels: ``{init: LEVEL}``, plus ``{arm: NAME}`` with ``design.arms``."""
        if self.arms is None:
            return [{"init": level} for level in self.factors["init"]]
        return [{ARM_KEY: name, "init": settings["init"]} for name, settings in self.arms.items()]

    def init_levels(self) -> list[str]:
        """The init levels the arms use."""
        return list(dict.fromkeys(str(levels["init"]) for levels in self.arm_levels()))

    @model_validator(mode="after")
    def _check_tune(self) -> DesignSpec:
        arms = self.arm_names()
        for name, entry in self.tune.items():
            if name not in TUNABLE:
                raise ValueError(f"tune.{name}: cannot be tuned; tunable parameters: {list(TUNABLE)}")
            if name in self.factors:
                raise ValueError(
                    f"tune.{name}: {name!r} is already a factor; a parameter is a factor or tuned, not both"
                )
            for cond, allowed in entry.when.items():
                if cond == ARM_KEY:
                    unknown = [arm for arm in allowed if arm not in arms]
                    if unknown or not allowed:
                        what = f"{unknown} are not arms of this design" if unknown else "lists no arm"
                        raise ValueError(
                            f"tune.{name}.when.arm: {what} (a dropped or renamed arm?); the arms: {arms}; list one "
                            f"or more of them, or drop the `when` to tune {name} in every arm"
                        )
                elif cond == "init":
                    unknown = [level for level in allowed if level not in self.init_levels()]
                    if unknown or not allowed:
                        raise ValueError(
                            f"tune.{name}.when.init: {unknown or allowed} are not init levels of the "
                            f"arms; list one or more of {self.init_levels()}"
                        )
                elif cond not in self.factors:
                    raise ValueError(
                        f"tune.{name}.when: {cond!r} is not a factor; conditions: arm, init or a "
                        f"factor of {sorted(self.factors)}"
                    )
                else:
                    unknown = [level for level in allowed if level not in self.factors[cond]]
                    if unknown or not allowed:
                        raise ValueError(
                            f"tune.{name}.when.{cond}: {unknown or allowed} are not levels of "
                            f"design.factors.{cond} {self.factors[cond]}; list one or more of them"
                        )
            for arm in self.arm_levels():
                fixed = (self.arms or {}).get(str(arm.get(ARM_KEY)), {})
                applies = all(
                    arm.get(cond) in allowed for cond, allowed in entry.when.items() if cond in (ARM_KEY, "init")
                )
                if name in fixed and applies:
                    others = [a for a in arms if a != arm[ARM_KEY]]
                    raise ValueError(
                        f"tune.{name}: arm {arm[ARM_KEY]!r} fixes {name} (arms.{arm[ARM_KEY]}."
                        f"{name}); tune it only in the other arms: when: {{arm: {others}}}"
                    )
            for value in tune_range_values(entry):
                problem = _setting_problem(name, value)
                if problem is not None:
                    raise ValueError(
                        f"tune.{name}: the range can produce {value!r}, which is invalid: {problem}; "
                        f"keep every value {requirement(name)}"
                    )
        for name, value in self.recipe.items():
            if name not in TUNABLE:
                raise ValueError(f"recipe.{name}: not a recipe parameter; allowed: {list(TUNABLE)}")
            if value is None:
                raise ValueError(
                    f"recipe.{name}: null is not a setting; give the original study's value, e.g. "
                    f"recipe: {{{name}: {getattr(TrialConfig(), name)!r}}}, or leave {name} out"
                )
            problem = _setting_problem(name, value)
            if problem is not None:
                raise ValueError(f"recipe.{name}: {problem}")
            tuned = self.tune.get(name)
            if tuned is not None and value is not None and not tuned.contains(value):
                raise ValueError(f"recipe.{name}: {value!r} lies outside the tuned range of tune.{name}")
        missing = [name for name in self.tune if name not in self.recipe]
        if missing:
            raise ValueError(
                f"recipe is missing {missing}: every tuned parameter needs its recipe value (the original study's "
                "setting), which is the first trial of every cell"
            )
        return self


class AdaptiveSpec(_Model):
    """Group-sequential confirm seeds: ``confirm.seeds`` first, then ``batch`` more per look up to ``max_seeds``,
    only for cells whose decision is not settled (``tlsweep.stats.sequential``)."""

    max_seeds: int = Field(ge=3, le=MAX_SEEDS)
    batch: int = Field(ge=1, le=MAX_SEEDS)
    spending: Literal["obrien_fleming", "pocock"] = "obrien_fleming"  # Lan–DeMets alpha-spending function
    futility: float = Field(0.1, ge=0, lt=1)  # stop a cell when no decision keeps this conditional power


class ConfirmSpec(_Model):
    seeds: int = Field(5, ge=1, le=MAX_SEEDS)
    configs: list[Literal["best", "recipe"]] = Field(default_factory=lambda: ["best"])  # type: ignore[arg-type]
    seed_base: int = Field(
        1000, ge=0, le=MAX_SEED
    )  # replicate seeds are seed_base + 0..seeds-1, distinct from the tune phase's
    adaptive: AdaptiveSpec | None = None  # group-sequential batches; None: every cell gets `seeds` seeds

    @model_validator(mode="after")
    def _check_adaptive(self) -> ConfirmSpec:
        if self.adaptive is not None and not 3 <= self.seeds < self.adaptive.max_seeds:
            raise ValueError(
                f"adaptive: the first look's seeds (confirm.seeds = {self.seeds}) must be at least 3 and "
                f"below adaptive.max_seeds ({self.adaptive.max_seeds}); e.g. confirm.seeds: 4, "
                "adaptive: {max_seeds: 16, batch: 2}"
            )
        return self

    @property
    def max_seeds(self) -> int:
        """Seeds a cell gets at most (``seeds`` without adaptive batches)."""
        return self.adaptive.max_seeds if self.adaptive is not None else self.seeds

    def looks(self) -> tuple[int, ...]:
        """Seeds per cell at each look: ``(seeds,)`` without adaptive batches."""
        if self.adaptive is None:
            return (self.seeds,)
        return (*tuple(range(self.seeds, self.adaptive.max_seeds, self.adaptive.batch)), self.adaptive.max_seeds)

    @field_validator("configs")
    @classmethod
    def _unique(cls, configs: list[str]) -> list[str]:
        if not configs or len(set(configs)) != len(configs):
            raise ValueError("configs must be a non-empty list of distinct values from [best, recipe]")
        return configs


class ObjectiveSpec(_Model):
    metric: Literal["val_acc", "val_loss"] = "val_acc"
    mode: Literal["max", "min"] = "max"

    @property
    def column(self) -> str:
        return OBJECTIVE_COLUMNS[self.metric]


class HypothesisSpec(_Model):
    metric: Literal["test_acc", "test_balanced_acc", "test_off_by_one", "test_mae", "test_loss"] = "test_acc"
    # {control: ARM} | [[treated, baseline] or {treated, baseline, direction}, ...] | {init: [treated, baseline]};
    # default: see SweepSpec.comparisons
    compare: dict[str, Any] | list[Any] | None = None
    direction: Literal["greater", "less", "two-sided"] = "greater"
    alpha: float = Field(0.05, gt=0, lt=0.5)
    correction: Literal["holm", "bonferroni", "bh", "none"] = "holm"
    equivalence_margin: float = Field(0.02, gt=0)
    # the cells the claim is about ({factor: [levels]}); None → the smallest train fraction × the fewest epochs
    region: dict[str, list[ParamValue]] | None = None

    @field_validator("equivalence_margin")
    @classmethod
    def _margin_in_range(cls, margin: float, info: ValidationInfo) -> float:
        if info.data.get("metric") in BOUNDED_METRICS and margin >= 1:
            raise ValueError(
                f"must be below 1: {info.data['metric']} lies in [0, 1], so a margin of {margin} makes "
                "every difference 'equivalent'; e.g. 0.02"
            )
        return margin


class ResourcesSpec(_Model):
    cpus_per_trial: float = Field(1.0, gt=0, le=1024)
    gpus_per_trial: float = Field(0.0, ge=0, le=64)
    max_concurrent_trials: int | None = Field(None, ge=1, le=100_000)  # None → what the cluster's node types hold
    reuse_actors: bool = True


class FailuresSpec(_Model):
    max_retries: int = Field(2, ge=-1, le=1000)  # Ray retries of a failing trial (-1: without limit)
    node_loss_requeues: int = Field(
        3, ge=0, le=1000
    )  # extra runs of a trial whose retries were all lost with their node


class CheckpointEvery(_Model):
    """How often a trial saves its training state: after ``epochs`` epochs, or once ``seconds`` of training passed
    since the last save (checked after each epoch). Exactly one of the two."""

    seconds: float | None = Field(None, gt=0)
    epochs: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> CheckpointEvery:
        if (self.seconds is None) == (self.epochs is None):
            raise ValueError("give exactly one of seconds (e.g. {seconds: 60}) or epochs (e.g. {epochs: 1})")
        return self


class CheckpointSpec(_Model):
    """When trials save their training state (for retries and resumes), and which saved states stay after a trial
    is recorded: ``none``, the selected configs' confirm trials (``best``), the confirm phase's (``confirm``) or every
    trial's (``all``)."""

    every: CheckpointEvery = Field(default_factory=lambda: CheckpointEvery(seconds=60.0))
    keep: Literal["none", "best", "confirm", "all"] = "none"

    def keeps(self, phase: str, config_kind: str | None = None) -> bool:
        """Whether the checkpoints of a trial of ``phase`` stay after it is recorded (``best``: the confirm trials of
        the selected configs, what ``tlsweep export --best`` reads)."""
        if self.keep == "best":
            return phase == "confirm" and config_kind == "best"
        return self.keep == "all" or (self.keep == "confirm" and phase == "confirm")


class TrackingSpec(_Model):
    wandb: WandbSettings = Field(default_factory=WandbSettings)


@dataclass(frozen=True)
class Comparison:
    """One comparison the hypothesis tests in every cell: ``treated`` − ``baseline``, in ``direction``."""

    treated: str
    baseline: str
    direction: str = "greater"

    @property
    def name(self) -> str:
        return f"{self.treated} vs {self.baseline}"

    @property
    def pair(self) -> tuple[str, str]:
        return self.treated, self.baseline


_COMPARE_FORMS = (
    "hypothesis.compare takes {control: ARM} (every other arm against it) or pairs "
    "[[treated, baseline], ...] (a pair may be {treated: A, baseline: B, direction: less})"
)


class SweepSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME_LENGTH)
    dataset: DatasetSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    design: DesignSpec
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    hypothesis: HypothesisSpec = Field(default_factory=HypothesisSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    failures: FailuresSpec = Field(default_factory=FailuresSpec)
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec)
    storage: str = "runs"
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)

    @model_validator(mode="before")
    @classmethod
    def _roots_given(cls, data: Any) -> Any:
        """An empty ``root`` would silently become the current directory once parsed as a path."""
        if not isinstance(data, dict):
            return data
        pretrain = (data.get("model") or {}).get("pretrain") if isinstance(data.get("model"), dict) else None
        for where, block in (
            ("dataset", data.get("dataset")),
            ("model.pretrain.dataset", pretrain.get("dataset") if isinstance(pretrain, dict) else None),
        ):
            if isinstance(block, dict) and isinstance(block.get("root"), str) and not block["root"].strip():
                raise ValueError(f"{where}.root: empty; give the dataset's directory, e.g. {where}.root: data/faces")
        return data

    @field_validator("storage")
    @classmethod
    def _storage_uri(cls, storage: str) -> str:
        text = storage.strip()
        if not text:
            raise ValueError("empty; give a local path (runs), s3://bucket/prefix or gs://bucket/prefix")
        if "://" in text:
            parts = urlsplit(text)
            scheme = parts.scheme.lower()
            if scheme not in STORAGE_SCHEMES:
                raise ValueError(
                    f"scheme {scheme!r} is not supported; give a local path (runs), file:///abs/path, "
                    "s3://bucket/prefix or gs://bucket/prefix"
                )
            if scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
                raise ValueError("a file:// URI must be file:///absolute/path (no host)")
            if scheme != "file" and not parts.netloc:
                raise ValueError(f"no bucket name; write it as {scheme}://bucket/prefix")
        return storage

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        inits = self.design.init_levels()
        declared_size = getattr(self.dataset, "image_size", None)
        if declared_size is not None and declared_size != self.model.image_size:
            raise ValueError(
                f"dataset.image_size ({declared_size}) differs from model.image_size ({self.model.image_size}); "
                "images are resized to model.image_size: drop dataset.image_size or make them equal"
            )
        if "checkpoint" in inits and self.model.pretrained.checkpoint is None:
            raise ValueError(
                "init level `checkpoint` needs model.pretrained.checkpoint: PATH (with a model.pretrain block to "
                "build it when the file does not exist yet)"
            )
        if self.model.pretrain is not None and self.model.pretrained.checkpoint is None:
            raise ValueError("model.pretrain needs model.pretrained.checkpoint: the path where it saves the backbone")
        comparisons = self.comparisons()
        self._check_region()
        if self.confirm.adaptive is not None and len(comparisons) > 1:
            raise ValueError(
                f"confirm.adaptive handles one comparison; hypothesis.compare makes {len(comparisons)} "
                f"({', '.join(c.name for c in comparisons)}): compare two arms or drop confirm.adaptive"
            )
        if self.confirm.adaptive is not None and self.hypothesis.correction not in ("holm", "bonferroni", "none"):
            raise ValueError(
                f"confirm.adaptive needs hypothesis.correction holm, bonferroni or none (the "
                f"group-sequential design recycles Holm's levels); got {self.hypothesis.correction!r}"
            )
        if self.objective.metric == "val_loss" and self.objective.mode != "min":
            raise ValueError("objective: val_loss must be minimised (mode: min)")
        if self.objective.metric == "val_acc" and self.objective.mode != "max":
            raise ValueError("objective: val_acc must be maximised (mode: max)")
        return self

    def _check_region(self) -> None:
        region = self.hypothesis.region
        if region is None:
            return
        cell_factors = self.cell_factors()
        if not region:
            raise ValueError(
                "hypothesis.region: give at least one factor, e.g. {train_fraction: [0.1], epochs: [2]}, "
                "or leave it out for the smallest train fraction × the fewest epochs"
            )
        for name, levels in region.items():
            if name not in cell_factors:
                raise ValueError(
                    f"hypothesis.region.{name}: not a cell factor of design.factors; use one of {cell_factors}"
                )
            declared = self.design.factors[name]
            unknown = [level for level in levels if level not in declared]
            if not levels or unknown:
                raise ValueError(
                    f"hypothesis.region.{name}: {unknown or levels} are not levels of "
                    f"design.factors.{name} {declared}; list one or more of them"
                )

    def hypothesis_region(self) -> dict[str, list[Any]]:
        """The cells the claim is about: ``hypothesis.region``, else the smallest train fraction × the fewest epochs
        (every level of any other factor)."""
        if self.hypothesis.region is not None:
            return {name: list(levels) for name, levels in self.hypothesis.region.items()}
        return default_region(self.design.factors)

    def arm_settings(self, arm: str) -> dict[str, Any]:
        """The settings arm ``arm`` fixes, ``init`` (its level) included; ``{init: arm}`` for the init shorthand."""
        if self.design.arms is None:
            return {"init": arm}
        return dict(self.design.arms[arm])

    # ---- the design ------------------------------------------------------------------------------------------
    def comparisons(self) -> list[Comparison]:
        """The comparisons the hypothesis tests in every cell, from ``hypothesis.compare``.

        Without it: with init levels as the arms, the first pretrained level vs ``scratch`` (else the last level);
        with ``design.arms``, every arm against the control: the one arm with init ``scratch``, else the last arm.

        Raises:
            ValueError: an unknown arm, an arm compared with itself, a repeated pair, a form not understood.
        """
        arms = self.design.arm_names()
        direction: str = self.hypothesis.direction
        compare = self.hypothesis.compare
        named = self.design.arms is not None
        if compare is None:
            if not named:
                return [Comparison(*default_comparison(arms), direction)]
            scratch = [arm for arm in arms if self.arm_settings(arm)["init"] == "scratch"]
            control = scratch[0] if len(scratch) == 1 else arms[-1]
            return [Comparison(arm, control, direction) for arm in arms if arm != control]
        pairs: list[Comparison] = []
        if isinstance(compare, dict):
            keys = sorted(compare)
            if keys == ["control"] or keys == ["control", "direction"]:
                control = compare["control"]
                self._check_arm("hypothesis.compare.control", control, arms)
                direction = self._direction("hypothesis.compare.direction", compare.get("direction", direction))
                pairs = [Comparison(arm, str(control), direction) for arm in arms if arm != control]
            elif keys == [ARM_FACTOR] and not named:
                pair = compare[ARM_FACTOR]
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ValueError(
                        f"hypothesis.compare.init must list exactly two levels: [treated, baseline], got {pair!r}"
                    )
                pairs = [self._pair("hypothesis.compare.init", pair[0], pair[1], direction, arms)]
            else:
                factor = next((key for key in keys if key in FACTOR_NAMES), None)
                if factor is not None:
                    what = (
                        "the arms are design.arms, not init levels"
                        if factor == ARM_FACTOR
                        else f"{factor!r} is a factor crossed with every arm, not an arm"
                    )
                    raise ValueError(
                        f"hypothesis.compare.{factor}: {what}; comparisons are between arms {arms}: {_COMPARE_FORMS}"
                    )
                raise ValueError(f"hypothesis.compare: keys {keys} not understood; {_COMPARE_FORMS}")
        else:
            if not compare:
                raise ValueError(f"hypothesis.compare: an empty list compares nothing; {_COMPARE_FORMS}")
            for i, item in enumerate(compare):
                where = f"hypothesis.compare[{i}]"
                if isinstance(item, list) and len(item) == 2:
                    pairs.append(self._pair(where, item[0], item[1], direction, arms))
                elif (
                    isinstance(item, dict)
                    and {"treated", "baseline"} <= set(item)
                    and set(item) <= {"treated", "baseline", "direction"}
                ):
                    pairs.append(
                        self._pair(
                            where,
                            item["treated"],
                            item["baseline"],
                            self._direction(f"{where}.direction", item.get("direction", direction)),
                            arms,
                        )
                    )
                else:
                    raise ValueError(f"{where}: {item!r} is not a pair; {_COMPARE_FORMS}")
        seen = [frozenset(c.pair) for c in pairs]
        repeated = [c.name for c, key in zip(pairs, seen, strict=True) if seen.count(key) > 1]
        if repeated:
            raise ValueError(f"hypothesis.compare: {repeated[0]} is compared more than once; list each pair once")
        return pairs

    def _check_arm(self, where: str, arm: Any, arms: list[str]) -> None:
        if arm not in arms:
            what = "an arm of design.arms" if self.design.arms is not None else "an init level of design.factors.init"
            raise ValueError(f"{where}: {arm!r} is not {what}; arms: {arms}")

    @staticmethod
    def _direction(where: str, value: Any) -> str:
        if value not in DIRECTIONS:
            raise ValueError(f"{where}: {value!r} is not a direction; one of {list(DIRECTIONS)}")
        return str(value)

    def _pair(self, where: str, treated: Any, baseline: Any, direction: str, arms: list[str]) -> Comparison:
        self._check_arm(where, treated, arms)
        self._check_arm(where, baseline, arms)
        if treated == baseline:
            raise ValueError(f"{where}: arm {treated!r} is compared with itself; name two different arms of {arms}")
        return Comparison(str(treated), str(baseline), direction)

    @property
    def compared_arms(self) -> list[Comparison]:
        """Every comparison the hypothesis tests (:meth:`comparisons`); the first is the primary one."""
        return self.comparisons()

    def cell_factors(self) -> list[str]:
        """Factor names that define a cell (every factor but init), in spec order."""
        return [name for name in self.design.factors if name != ARM_FACTOR]

    # ---- persistence -----------------------------------------------------------------------------------------
    def resolved(self) -> dict[str, Any]:
        dumped = self.model_dump(mode="json")
        if dumped["design"].get("arms") is None:  # absent as before it existed: older results keep their hash
            dumped["design"].pop("arms", None)
        if dumped["confirm"].get("adaptive") is None:  # absent as before it existed: older results keep their hash
            dumped["confirm"].pop("adaptive", None)
        if dumped["model"].get("feature_cache_dtype") == "auto":  # the same: absent as before it was a spec field
            dumped["model"].pop("feature_cache_dtype", None)
        return dumped

    def result_fields(self) -> dict[str, Any]:
        """The resolved fields that decide results (not resources, storage, tracking or the report's settings); with
        ``confirm.adaptive``, also the hypothesis settings that decide which confirm trials run."""
        resolved = self.resolved()
        fields = {k: resolved[k] for k in RESULT_FIELDS}
        if self.confirm.adaptive is not None:
            fields["hypothesis"] = {k: v for k, v in resolved["hypothesis"].items() if k in ADAPTIVE_PLAN_FIELDS}
        return fields

    def result_hash(self) -> str:
        """Hash of :meth:`result_fields` (a spec without ``confirm.adaptive`` hashes as before it existed)."""
        return result_fields_hash(self.result_fields())


def result_fields_hash(fields: dict[str, Any]) -> str:
    """:meth:`SweepSpec.result_hash` of result fields."""
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def tune_range_values(entry: ParamEntry) -> list[Any]:
    """The values of a tune entry that decide whether every value it can produce is valid: each choice, or the
    two ends of a range (``int`` ranges end at the last step optuna can reach). Setting rules are intervals or
    sets, so these suffice."""
    if entry.type == "categorical":
        return list(entry.choices or [])
    low, high = entry.low or 0.0, entry.high or 0.0
    if entry.type == "int":
        step = int(entry.step or 1)
        first = int(low)
        return [first, first + (int(high) - first) // step * step]
    return [float(low), float(high)]


def default_region(factors: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The default hypothesis region: the smallest train fraction and the fewest epochs among the declared levels."""
    return {name: [min(factors[name])] for name in ("train_fraction", "epochs") if factors.get(name)}


def default_comparison(levels: Sequence[Any]) -> tuple[str, str]:
    """The arms compared when ``hypothesis.compare`` is not declared: the first pretrained level (else the first
    level) as treated, ``scratch`` (else the last level) as baseline."""
    treated = next((lvl for lvl in levels if lvl in PRETRAINED_LEVELS), levels[0])
    baseline = "scratch" if "scratch" in levels else levels[-1]
    return str(treated), str(baseline)


def diff_resolved(old: dict[str, Any], new: dict[str, Any], *, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two resolved specs."""
    changed: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed.extend(diff_resolved(a, b, prefix=f"{path}."))
        elif a != b:
            changed.append(f"{path}: {a!r} → {b!r}")
    return changed
