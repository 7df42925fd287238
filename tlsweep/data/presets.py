"""Named defaults for CSV datasets: column names, file names, label maps and class display names.

Kept free of heavy imports: the spec validator and ``tlsweep validate`` read these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from string import ascii_lowercase

SPLITS: tuple[str, str, str] = ("train", "val", "test")

AGE_GROUPS: tuple[tuple[int, int], ...] = ((0, 6), (7, 12), (13, 19), (20, 30), (31, 45), (46, 55), (56, 66), (67, 80))
AGE_CLASS_NAMES: list[str] = [f"{lo}-{hi}" for lo, hi in AGE_GROUPS]
AGE_LABEL_MAP: dict[str, int] = {ascii_lowercase[i]: i for i in range(len(AGE_GROUPS))}

# The 16 classes of the synthetic ``source`` task: four independent binary appearance attributes.
SOURCE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("smooth", "lined"),  # line texture density on the face
    ("darkhair", "lighthair"),  # hair brightness
    ("longface", "roundface"),  # face proportions
    ("bare", "glasses"),  # accessory
)
SOURCE_CLASS_NAMES: list[str] = [
    "-".join(SOURCE_ATTRIBUTES[a][(k >> a) & 1] for a in range(len(SOURCE_ATTRIBUTES))) for k in range(16)
]
SOURCE_LABEL_MAP: dict[str, int] = {ascii_lowercase[i]: i for i in range(16)}


@dataclass(frozen=True)
class CsvPreset:
    """Defaults of a CSV + image-folder dataset layout."""

    description: str
    splits: dict[str, str]
    image_dirs: dict[str, str]
    path_column: str
    label_column: str
    label_map: dict[str, int]
    class_names: list[str]
    ordinal: bool
    how_to_get: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _layout(label_column: str) -> dict[str, object]:
    return {
        "splits": {s: f"custom_{s}_dataset.csv" for s in SPLITS},
        "image_dirs": {s: f"{s}_images" for s in SPLITS},
        "path_column": "image_path",
        "label_column": label_column,
    }


PRESETS: dict[str, CsvPreset] = {
    "korean_face_age": CsvPreset(
        description="Korean family face dataset, 8 age groups (labels a..h)",
        label_map=dict(AGE_LABEL_MAP),
        class_names=list(AGE_CLASS_NAMES),
        ordinal=True,
        how_to_get=(
            "the dataset is 'custom_korean_family_dataset_resolution_128', the 128-px preprocessed release of AI "
            "Hub's Korean family face images (aihub.or.kr, free account; custom_{train,val,test}_dataset.csv "
            "with columns image_path,age_class and {train,val,test}_images/); put it at the path given by "
            "dataset.root or pass `--set dataset.root=...`; for an offline stand-in run "
            "`tlsweep data synth DIR --task age` and use format: synthetic"
        ),
        **_layout("age_class"),  # type: ignore[arg-type]
    ),
    "synthetic_source": CsvPreset(
        description="tlsweep's generated source task: 16 appearance-attribute classes (labels a..p)",
        label_map=dict(SOURCE_LABEL_MAP),
        class_names=list(SOURCE_CLASS_NAMES),
        ordinal=False,
        how_to_get="generate it with `tlsweep data synth DIR --task source`",
        **_layout("attribute_class"),  # type: ignore[arg-type]
    ),
}
