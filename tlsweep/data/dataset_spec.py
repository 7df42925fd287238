"""The ``dataset:`` block of a sweep spec: one pydantic model per format, a union discriminated on ``format``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from tlsweep.data.presets import PRESETS, SPLITS
from tlsweep.errors import DataError, SpecError

DEFAULT_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Fields added in 0.2.0, left out of a dump while at their default: a resolved spec (and its result hash) of a sweep
# that does not use them stays what tlsweep 0.1 wrote, so older results still resume.
_ADDED_DEFAULTS: dict[str, object] = {"encoding": "utf-8", "follow_symlinks_outside_root": False}


class _DatasetModel(_Model):
    @model_serializer(mode="wrap")
    def _drop_added_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        if isinstance(dumped, dict):
            for key, default in _ADDED_DEFAULTS.items():
                if key in dumped and dumped[key] == default:
                    del dumped[key]
        return dumped


def _check_splits(name: str, value: dict[str, str]) -> None:
    if set(value) != set(SPLITS):
        raise ValueError(f"{name} must have exactly the keys {list(SPLITS)}, got {sorted(value)}")


class CsvDatasetSpec(_DatasetModel):
    """CSV metadata + image folders (layout of the Korean face age dataset); a preset fills the defaults.

    ``image_path`` values may be a bare file name relative to the split's image dir or a path relative to ``root``.
    """

    format: Literal["csv"] = "csv"
    root: Path
    preset: str | None = "korean_face_age"
    splits: dict[str, str]  # split -> CSV file name (relative to root)
    image_dirs: dict[str, str]  # split -> image directory (relative to root)
    path_column: str
    label_column: str
    label_map: dict[str, int]  # label as written in the CSV -> class index 0..K-1
    class_names: list[str]
    ordinal: bool = False
    name: str = ""
    image_size: int | None = Field(default=None, gt=0)  # recorded for the sweep; load_dataset's argument decides
    encoding: str = "utf-8"  # of the CSV files (a UTF-8 byte-order mark is skipped); e.g. latin-1, cp1252
    follow_symlinks_outside_root: bool = False  # read images through symlinks that lead out of `root`

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset_name = data.get("preset", "korean_face_age")
        if preset_name is None:
            return data
        if preset_name not in PRESETS:
            raise ValueError(f"preset {preset_name!r} is unknown; known presets: {sorted(PRESETS)} (or null for none)")
        preset = PRESETS[preset_name]
        filled = dict(data)
        for key in ("splits", "image_dirs", "path_column", "label_column", "label_map", "class_names", "ordinal"):
            if filled.get(key) is None:
                filled[key] = getattr(preset, key)
        if not filled.get("name"):
            filled["name"] = preset_name
        return filled

    @model_validator(mode="after")
    def _check(self) -> CsvDatasetSpec:
        _check_splits("splits", self.splits)
        _check_splits("image_dirs", self.image_dirs)
        indices = sorted(set(self.label_map.values()))
        if indices != list(range(len(indices))):
            raise ValueError(f"label_map values must be the class indices 0..K-1 without gaps, got {indices}")
        if len(self.class_names) != len(indices):
            raise ValueError(
                f"class_names has {len(self.class_names)} entries but label_map defines {len(indices)} classes"
            )
        return self

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"encoding {value!r} is not a known text encoding (e.g. utf-8, latin-1, cp1252)") from None
        return value


class SplitRatios(_Model):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitRatios:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class ImageFolderDatasetSpec(_DatasetModel):
    """``root/<split>/<class>/*`` or a single ``root/<class>/*`` split by a seeded stratified split.

    With split folders, a missing ``test`` (or ``val``) folder is carved out of the other one, stratified, 50/50.
    """

    format: Literal["imagefolder"] = "imagefolder"
    root: Path
    split_dirs: dict[str, str] = Field(default_factory=lambda: {s: s for s in SPLITS})
    split_ratios: SplitRatios = Field(default_factory=SplitRatios)  # used only without split folders
    split_seed: int = 0
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    ordinal: bool = False
    name: str = ""
    image_size: int | None = Field(default=None, gt=0)
    follow_symlinks_outside_root: bool = False  # read images through symlinks that lead out of `root`

    @model_validator(mode="after")
    def _check(self) -> ImageFolderDatasetSpec:
        _check_splits("split_dirs", self.split_dirs)
        return self


class SyntheticDatasetSpec(_Model):
    """A dataset tlsweep generates into ``root`` (layout 1), then loads through the CSV path.

    ``n_identities``/``images_per_identity`` left unset take the task's defaults (see ``tlsweep.data.synth``).
    """

    format: Literal["synthetic"] = "synthetic"
    root: Path
    task: Literal["age", "source"] = "age"
    seed: int = 0
    resolution: int = Field(64, ge=16, le=512)
    n_identities: int | None = Field(default=None, ge=3)
    images_per_identity: int | None = Field(default=None, ge=1)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    name: str = ""
    image_size: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SyntheticDatasetSpec:
        if any(f <= 0 for f in self.split_fractions) or abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be three positive numbers summing to 1, got {self.split_fractions}")
        return self


DatasetSpec = Annotated[CsvDatasetSpec | ImageFolderDatasetSpec | SyntheticDatasetSpec, Field(discriminator="format")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(DatasetSpec)
FORMATS: tuple[str, ...] = ("csv", "imagefolder", "synthetic")


def format_validation_error(exc: ValidationError, *, source: str, prefix: str = "dataset") -> str:
    """One line per problem: ``source: dataset.field: message (allowed: ...)``."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        if loc and loc[0] in FORMATS:  # the discriminator's tag, not a field
            loc = loc[1:]
        where = ".".join([prefix, *loc]) if loc else prefix
        ctx = err.get("ctx") or {}
        message = str(ctx.get("error", err["msg"])) if err["type"] == "value_error" else err["msg"]
        if err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
            where = f"{prefix}.format"
            message = f"{err['msg']}; allowed: {', '.join(FORMATS)}"
        elif "expected" in ctx and str(ctx["expected"]) not in message:
            message = f"{message} (allowed: {ctx['expected']})"
        value = err.get("input")
        shown = (
            "" if err["type"] in ("missing", "union_tag_not_found") or isinstance(value, dict) else f", got {value!r}"
        )
        lines.append(f"{where}: {message}{shown}")
    return f"{source}: invalid dataset spec:\n  " + "\n  ".join(lines)


def parse_dataset_spec(data: dict[str, Any], *, source: str = "<dataset>") -> DatasetSpec:
    """Validate a ``dataset:`` mapping; bad input raises SpecError naming ``source``, the dotted field and the fix."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source=source)) from None


def dataset_spec_for_directory(root: Path) -> CsvDatasetSpec | ImageFolderDatasetSpec:
    """The dataset spec a directory's contents call for, detected in this order:

    a dataset generated by tlsweep (its manifest names the CSV preset), the CSV layout
    (``custom_train_dataset.csv`` ...), else an ImageFolder tree.

    Raises:
        DataError: ``root`` is not a directory.
    """
    from tlsweep.data.synth import read_manifest

    if not root.is_dir():
        raise DataError(f"--dataset-root {root} is not a directory")
    manifest = read_manifest(root)
    if manifest is not None:
        return CsvDatasetSpec.model_validate({"root": root, "preset": manifest["preset"]})
    if (root / PRESETS["korean_face_age"].splits["train"]).is_file():
        return CsvDatasetSpec.model_validate({"root": root})
    return ImageFolderDatasetSpec(root=root)
