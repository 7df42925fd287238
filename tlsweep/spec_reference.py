"""The sweep spec's reference, generated from its pydantic models: every key, its type, its default, what it sets.

``python -m tlsweep.spec_reference`` prints the Markdown table the README's "Every key" section holds;
``tests/test_spec_reference.py`` checks that the README holds exactly this output and that every key the models
accept has a line in :data:`MEANINGS` (a new key without one fails the test, so the reference cannot omit it).
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tlsweep.spec import SweepSpec

MEANINGS: dict[str, str] = {
    "name": "the sweep's name: results go to `<storage>/<name>`",
    "dataset.format": 'the layout (see "Data"); each format takes the keys marked with it',
    "dataset.root": "the dataset's folder (csv, imagefolder) or where it is generated (synthetic)",
    "dataset.preset": "csv: columns, file names, label map and class names (`korean_face_age`, `synthetic_source`)",
    "dataset.splits": "csv: split → CSV file name, relative to `root`",
    "dataset.image_dirs": "csv: split → image folder, relative to `root`",
    "dataset.path_column": "csv: the column with each image's path",
    "dataset.label_column": "csv: the column with each image's label",
    "dataset.label_map": "csv: label as written → class index 0..K-1",
    "dataset.class_names": "csv: the class names, in index order",
    "dataset.ordinal": "classes are ordered (age groups): adds off-by-one accuracy and mean absolute error",
    "dataset.name": "a display name (default: the folder's)",
    "dataset.image_size": "recorded only; must equal `model.image_size` when given",
    "dataset.encoding": "csv: text encoding of the CSV files (latin-1, cp1252, ...; a UTF-8 byte-order mark is skipped)",
    "dataset.follow_symlinks_outside_root": "read images through symlinks that lead out of `root`",
    "dataset.split_dirs": "imagefolder: split → folder under `root`; without them `root/<class>/*` is split by ratios",
    "dataset.split_ratios.train": "imagefolder without split folders: share of each class for training",
    "dataset.split_ratios.val": "imagefolder without split folders: share of each class for validation",
    "dataset.split_ratios.test": "imagefolder without split folders: share of each class for the test",
    "dataset.split_seed": "imagefolder without split folders: seed of the stratified split",
    "dataset.extensions": "imagefolder: file name endings read as images",
    "dataset.task": "synthetic: `age` (8 age groups) or `source` (16 appearance classes, for pretraining)",
    "dataset.seed": "synthetic: seed of the generated images",
    "dataset.resolution": "synthetic: side of the drawn images in pixels",
    "dataset.n_identities": "synthetic: faces drawn (null: the task's default)",
    "dataset.images_per_identity": "synthetic: images per face (null: the task's default)",
    "dataset.split_fractions": "synthetic: train, val, test shares of the identities",
    "model.backbone": '`tlsweep models`, or any timm model as `timm:<name>` (see "Backbones")',
    "model.image_size": "side images are resized to",
    "model.batch_size": "training batch size",
    "model.eval_batch_size": "batch size of validation and test passes",
    "model.optimizer.name": "sgd or adamw",
    "model.optimizer.momentum": "SGD momentum",
    "model.schedule.name": "learning-rate schedule",
    "model.schedule.warmup_epochs": "linear warm-up length in epochs",
    "model.schedule.step_size": "step schedule: epochs between decays",
    "model.schedule.gamma": "step schedule: decay factor",
    "model.label_smoothing": "label smoothing of the cross-entropy loss",
    "model.backbone_lr_mult": "lr of unfrozen body parameters relative to the head",
    "model.feature_cache_dtype": "how frozen-layer features are stored for reuse (auto: float16 for a whole frozen body, float32 below)",
    "model.pretrained.imagenet": "what `init: imagenet` loads: torchvision weights name, timm tag or weights file "
    "(null: the default)",
    "model.pretrained.checkpoint": "the backbone file `init: checkpoint` loads",
    "model.pretrain": "null, or a block that pretrains `model.pretrained.checkpoint` first when the file is missing",
    "model.pretrain.dataset": "the source dataset: a dataset block (every `dataset.*` key above)",
    "model.pretrain.epochs": "pretraining epochs",
    "model.pretrain.lr": "pretraining learning rate",
    "model.pretrain.batch_size": "pretraining batch size",
    "model.pretrain.weight_decay": "pretraining weight decay",
    "model.pretrain.augmentation": "pretraining augmentation",
    "model.pretrain.seed": "pretraining seed",
    "design.factors": "the full factorial: `init`, `train_fraction`, `epochs`, `augmentation`, `freeze_depth` → levels",
    "design.arms": "named arms instead of `factors.init`: `{NAME: {init: LEVEL, SETTING: VALUE}}`",
    "design.tune": "tuned parameters: `{PARAMETER: entry}` (Optuna short form)",
    "design.tune.*.type": "float, int or categorical",
    "design.tune.*.low": "lower end of a float or int range",
    "design.tune.*.high": "upper end of a float or int range",
    "design.tune.*.log": "draw on a log scale",
    "design.tune.*.step": "step of an int or float range",
    "design.tune.*.choices": "the values of a categorical entry",
    "design.tune.*.when": "tune it only in these studies: `{arm|init|FACTOR: [levels]}`",
    "design.recipe": "the original study's values: trial 0 of every study",
    "design.budget.trials_per_cell": "tune trials per study (cell × arm), the recipe first",
    "design.budget.sampler": "Optuna sampler",
    "design.budget.seed": "sampler seeds and the tune trials' seeds derive from it",
    "design.early_stopping": "null, or ASHA for the tune phase",
    "design.early_stopping.type": "asha",
    "design.early_stopping.grace_period": "epochs before a trial can be stopped",
    "design.early_stopping.reduction_factor": "ASHA's reduction factor",
    "confirm.seeds": "paired seeds per cell and arm, scored on test",
    "confirm.configs": "which configs are confirmed: `best` (the tune phase's) and/or `recipe`",
    "confirm.seed_base": "first confirm seed",
    "confirm.adaptive": 'null, or seeds in batches with group-sequential looks (see "Adaptive confirm seeds")',
    "confirm.adaptive.max_seeds": "seeds per cell at most",
    "confirm.adaptive.batch": "seeds added per look",
    "confirm.adaptive.spending": "alpha-spending function",
    "confirm.adaptive.futility": "stop a cell when no decision keeps this conditional power",
    "objective.metric": "what the tune phase selects on (never a test metric)",
    "objective.mode": "max or min",
    "hypothesis.metric": "the metric the claim is about",
    "hypothesis.compare": "the comparisons: `{control: ARM}`, a list of pairs, or `{init: [treated, baseline]}`",
    "hypothesis.direction": "greater, less or two-sided",
    "hypothesis.alpha": "family-wise (or false-discovery) level",
    "hypothesis.correction": "multiplicity correction over cells × comparisons",
    "hypothesis.equivalence_margin": "TOST margin, in the metric's units",
    "hypothesis.region": "the cells the claim is about (null: smallest train fraction × fewest epochs)",
    "resources.cpus_per_trial": "CPUs per trial",
    "resources.gpus_per_trial": "GPUs (or a share) per trial",
    "resources.max_concurrent_trials": "trials at once (null: as many as the CPUs and GPUs allow)",
    "resources.reuse_actors": "Ray reuses trial processes",
    "failures.max_retries": "Ray retries of a failing trial from its last checkpoint (-1: no limit)",
    "failures.node_loss_requeues": "extra runs of a trial whose retries a lost node spent",
    "checkpoints.every.seconds": "save a trial's state at most this often (set one of seconds, epochs)",
    "checkpoints.every.epochs": "save a trial's state every N epochs",
    "checkpoints.keep": "what stays after a trial: none, best (the selected configs' confirm trials: what "
    "`tlsweep export --best` reads), confirm (every confirm trial) or all",
    "storage": "where results go: a path, `s3://bucket/prefix` or `gs://bucket/prefix` (`--storage` overrides)",
    "tracking.wandb.mode": "online, offline or disabled (null: online with an API key, else offline)",
    "tracking.wandb.project": "W&B project",
    "tracking.wandb.entity": "W&B entity",
    "tracking.wandb.tags": "W&B tags of every run",
    "tracking.wandb.init_timeout_s": "an unreachable server degrades to offline after this many seconds",
    "tracking.wandb.finish_timeout_s": "seconds to wait for uploads at the end",
}
# Keys written once for every dataset block: `model.pretrain.dataset` refers to them instead of repeating them.
_REFERRED = {"model.pretrain.dataset"}
_MAPPING_OF_MODELS = {"design.tune": "design.tune.*"}
_FROM_PRESET = {f"dataset.{name}" for name in ("splits", "image_dirs", "path_column", "label_column", "label_map")} | {
    "dataset.class_names"
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " \\| ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(dict.fromkeys(names)) + (" \\| null" if type(None) in args else "")
    if origin in (list, tuple):
        return "list"
    if origin is dict:
        return "mapping"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(key: str, field: FieldInfo, value: Any) -> str:
    if key in _FROM_PRESET:
        return "the preset's"
    if field.is_required():
        return "required"
    if isinstance(value, BaseModel):
        return "(below)"
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value, default=str)}`"


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds (a model, an optional model, a union of models), else []."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return []


def reference_rows(
    model: Any = SweepSpec, prefix: str = "", defaults: BaseModel | None = None
) -> list[tuple[str, str, str]]:
    """(key, type, default) of every key ``model`` accepts (a model or a union of models), in declaration order.

    A block of keys has a row of its own only when it may be null (``model.pretrain``) or is a mapping of entries
    (``design.tune``); in a union of dataset formats each key is listed once, with the formats that take it.
    ``defaults``: the block's default value, whose values are its keys' defaults (``checkpoints.every``).
    """
    variants = _models(model)
    formats = {m: typing.get_args(m.model_fields["format"].annotation)[0] for m in variants if len(variants) > 1}
    rows: dict[str, list[str]] = {}
    taken_by: dict[str, list[str]] = {}
    for variant in variants:
        for name, field in variant.model_fields.items():
            key = f"{prefix}{name}"
            if variant in formats:
                taken_by.setdefault(key, []).append(formats[variant])
            if key in rows:
                continue
            inner = _models(field.annotation)
            value = getattr(defaults, name) if defaults is not None else None
            if defaults is None and not field.is_required():
                value = field.get_default(call_default_factory=True)
            if not inner or key in _REFERRED or (value is None and not field.is_required()):
                rows[key] = [key, _type_name(field.annotation), _default(key, field, value)]
            if inner and key not in _REFERRED:
                block = value if isinstance(value, BaseModel) else None
                for sub in reference_rows(field.annotation, f"{key}.", block):
                    rows[sub[0]] = list(sub)
            if key in _MAPPING_OF_MODELS:
                for sub in reference_rows(typing.get_args(field.annotation)[1], f"{_MAPPING_OF_MODELS[key]}."):
                    rows[sub[0]] = list(sub)
    for key, names in taken_by.items():
        if key == f"{prefix}format":
            rows[key][1:] = [" \\| ".join(names), "required"]
        elif key in rows and len(names) < len(formats):
            rows[key][1] += f" ({', '.join(names)})"
    return [(key, typename, default) for key, typename, default in rows.values()]


def spec_reference() -> str:
    """The Markdown table of every spec key (README "Every key").

    Raises:
        KeyError: a key without a line in :data:`MEANINGS`.
    """
    lines = ["| key | type | default | what it sets |", "|---|---|---|---|"]
    for key, typename, default in reference_rows():
        if key not in MEANINGS:
            raise KeyError(f"spec key {key!r} has no line in tlsweep.spec_reference.MEANINGS; add one")
        lines.append(f"| `{key}` | {typename} | {default} | {MEANINGS[key]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(spec_reference(), end="")
