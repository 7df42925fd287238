"""Procedurally drawn faces: a generated stand-in for the Korean face age dataset, and a source task to pretrain on.

Appearance follows a continuous latent *apparent* age (head/face proportions, eye position, wrinkle lines, hair
greying and receding, beard, age spots, skin tone) under nuisance variation: identity (face shape, eye spacing,
hair style and colour, skin tone, glasses), pose (rotation, shift), scale, lighting gradient, colour cast,
background clutter, blur and pixel noise. Apparent age = true age + an identity ageing offset + per-photo noise, so
labels near a group border are ambiguous. The ``source`` task draws the same primitives with 16 classes made of
four binary attributes (line texture, hair brightness, face proportions, glasses) sampled independently of age.

Output is layout 1 (``custom_{split}_dataset.csv`` + ``{split}_images/``), identity-disjoint splits, deterministic
from the seed (every image has its own RNG stream, so the worker count does not matter), plus ``tlsweep-synth.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from string import ascii_lowercase
from typing import Any, Literal

import numpy as np

from tlsweep.data.presets import AGE_GROUPS, PRESETS, SPLITS
from tlsweep.errors import DataError

GENERATOR_VERSION = 2
MANIFEST_NAME = "tlsweep-synth.json"
TASK_DEFAULTS: dict[str, tuple[int, int]] = {"age": (430, 10), "source": (600, 10)}  # identities, images each
_TASK_CODE = {"age": 1, "source": 2}
_OWN_ENTRIES = (
    {MANIFEST_NAME, ".tlsweep-cache"} | {f"custom_{s}_dataset.csv" for s in SPLITS} | {f"{s}_images" for s in SPLITS}
)

Task = Literal["age", "source"]


# ----------------------------------------------------------------------------------------------- appearance model
@dataclass(frozen=True)
class Identity:
    member: str
    male: bool
    face_ratio: float
    eye_spacing: float
    eye_size: float
    nose_length: float
    mouth_width: float
    brow_width: float
    hair_style: int  # 0 short, 1 long, 2 fringe, 3 buzz
    hair_rgb: tuple[int, int, int]
    skin_rgb: tuple[int, int, int]
    ageing_offset: float  # years added to the true age to get the apparent age
    balding: float
    bearded: bool
    glasses_rate: float


@dataclass(frozen=True)
class Look:
    """Levels of the age-related cues (all in [0, 1]); the renderer only sees these, never an age or a class."""

    child: float
    wrinkles: float
    grey: float
    recede: float
    spots: float
    beard: float
    glasses: bool


def _identity(rng: np.random.Generator) -> Identity:
    male = bool(rng.random() < 0.5)
    hair_palette = [(25, 20, 18), (45, 32, 24), (70, 48, 30), (105, 75, 45), (150, 110, 60), (30, 28, 35)]
    hair = np.array(hair_palette[int(rng.integers(len(hair_palette)))], float) * rng.uniform(0.85, 1.15)
    lightness = rng.uniform(0.0, 1.0)
    skin = np.array([150, 105, 80], float) * (1 - lightness) + np.array([245, 208, 180], float) * lightness
    skin = skin + rng.normal(0, 6, 3)
    return Identity(
        member=("S" if male else "D") if rng.random() < 0.5 else ("F" if male else "M"),
        male=male,
        face_ratio=float(rng.uniform(0.66, 0.80)),
        eye_spacing=float(rng.uniform(0.18, 0.24)),
        eye_size=float(rng.uniform(0.85, 1.15)),
        nose_length=float(rng.uniform(0.85, 1.15)),
        mouth_width=float(rng.uniform(0.26, 0.36)),
        brow_width=float(rng.uniform(0.6, 1.4)),
        hair_style=int(rng.integers(4)) if male else int(rng.choice([0, 1, 1, 2])),
        hair_rgb=tuple(int(v) for v in np.clip(hair, 0, 255)),  # type: ignore[arg-type]
        skin_rgb=tuple(int(v) for v in np.clip(skin, 0, 255)),  # type: ignore[arg-type]
        ageing_offset=float(rng.normal(0.0, 3.5)),
        balding=float(rng.uniform(0.2, 1.0)) if male else float(rng.uniform(0.0, 0.25)),
        bearded=bool(male and rng.random() < 0.4),
        glasses_rate=float(rng.choice([0.0, 0.0, 0.15, 0.6])),
    )


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def look_for_age(age: float, ident: Identity, rng: np.random.Generator) -> Look:
    """Cue levels of a photo of ``ident`` at true age ``age``."""
    a = age + ident.ageing_offset + rng.normal(0.0, 2.5)
    return Look(
        child=_clip01(1.0 - a / 19.0) ** 0.9,
        wrinkles=_clip01((a - 24.0) / 52.0 + rng.normal(0, 0.05)),
        grey=_clip01((a - 36.0) / 38.0 + rng.normal(0, 0.06)),
        recede=_clip01((a - 28.0) / 40.0) * ident.balding,
        spots=_clip01((a - 52.0) / 28.0),
        beard=_clip01((a - 15.0) / 8.0) if ident.bearded else 0.0,
        glasses=bool(rng.random() < ident.glasses_rate),
    )


def look_for_source_class(label: int, ident: Identity, rng: np.random.Generator) -> Look:
    """Cue levels of the source task: class bits set line texture, hair brightness, proportions and glasses."""
    lined, light_hair, round_face, glasses = ((label >> bit) & 1 for bit in range(4))
    return Look(
        child=float(rng.uniform(0.5, 0.95) if round_face else rng.uniform(0.0, 0.2)),
        wrinkles=float(rng.uniform(0.5, 1.0) if lined else rng.uniform(0.0, 0.15)),
        grey=float(rng.uniform(0.6, 1.0) if light_hair else rng.uniform(0.0, 0.2)),
        recede=float(rng.uniform(0.0, 0.6)) * ident.balding,
        spots=float(rng.uniform(0.0, 0.5) if rng.random() < 0.3 else 0.0),
        beard=float(rng.uniform(0.3, 1.0)) if ident.bearded and not round_face else 0.0,
        glasses=bool(glasses),
    )


# ------------------------------------------------------------------------------------------------------- renderer
def _mix(a: tuple[int, ...] | np.ndarray, b: tuple[int, ...] | np.ndarray, t: float) -> tuple[int, int, int]:
    out = np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t
    return tuple(int(v) for v in np.clip(out, 0, 255))  # type: ignore[return-value]


def _shade(rgb: tuple[int, ...], factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(v * factor, 0, 255)) for v in rgb)  # type: ignore[return-value]


def _background(rng: np.random.Generator, size: int) -> Any:
    from PIL import Image, ImageDraw

    base = tuple(int(v) for v in rng.integers(40, 230, 3))
    img = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 9))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.5, 2) * size
        kind = int(rng.integers(3))
        if kind == 0:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.line((x0, y0, x0 + w, y0 + h), fill=colour, width=max(1, int(rng.uniform(0.005, 0.03) * size)))
    return img


def render_face(ident: Identity, look: Look, rng: np.random.Generator, resolution: int) -> Any:
    """Draw one photo (a PIL RGB image of resolution × resolution) of ``ident`` with cue levels ``look``."""
    from PIL import Image, ImageDraw, ImageFilter

    C = resolution * 2  # supersampled canvas
    img = _background(rng, C)
    layer = Image.new("RGBA", (C, C), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)

    scale = rng.uniform(0.80, 1.08)
    H = 0.56 * scale * (1 + 0.10 * look.child) * C
    W = H * (ident.face_ratio + 0.16 * look.child)
    cx, cy = 0.5 * C, 0.53 * C
    top, bottom = cy - H / 2, cy + H / 2

    skin = np.asarray(ident.skin_rgb, float)
    skin = skin + look.child * np.array([10.0, 2.0, 6.0]) - look.wrinkles * np.array([8.0, 10.0, 14.0])
    skin_c = _mix(skin, skin.mean() * np.ones(3), 0.25 * look.wrinkles)
    hair_c = _mix(ident.hair_rgb, (222, 222, 218), look.grey**0.8)
    line_c = _shade(skin_c, 0.72 - 0.22 * look.wrinkles)
    lw = max(1, int(round(C * 0.008)))

    shirt = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.ellipse((cx - 0.48 * C, bottom + 0.02 * H, cx + 0.48 * C, bottom + 1.2 * H), fill=(*shirt, 255))
    draw.rectangle((cx - 0.2 * W, cy + 0.25 * H, cx + 0.2 * W, bottom + 0.3 * H), fill=(*_shade(skin_c, 0.9), 255))
    if ident.hair_style == 1:  # long hair behind the face
        draw.ellipse((cx - 0.64 * W, top - 0.08 * H, cx + 0.64 * W, cy + 0.55 * H), fill=(*hair_c, 255))
    for side in (-1, 1):  # ears
        ex = cx + side * 0.49 * W
        draw.ellipse((ex - 0.07 * W, cy - 0.12 * H, ex + 0.07 * W, cy + 0.08 * H), fill=(*_shade(skin_c, 0.93), 255))
    draw.ellipse((cx - W / 2, top, cx + W / 2, bottom), fill=(*skin_c, 255))

    # hair on top: an ellipse cut off at the hairline, minus a bald patch that grows with ``recede``
    hairline = top + H * (0.17 + 0.03 * look.child + 0.20 * look.recede + (0.07 if ident.hair_style == 2 else 0.0))
    mask = Image.new("L", (C, C), 0)
    mdraw = ImageDraw.Draw(mask)
    mdraw.ellipse((cx - 0.55 * W, top - 0.10 * H, cx + 0.55 * W, top + 0.75 * H), fill=255)
    mdraw.rectangle((0, hairline, C, C), fill=0)
    mdraw.ellipse((cx - 0.55 * W, hairline - 0.05 * H, cx + 0.55 * W, hairline + 0.6 * H), fill=0)
    for side in (-1, 1):  # temples keep their hair
        mdraw.rectangle(
            (cx + side * 0.40 * W - 0.1 * W, top + 0.1 * H, cx + side * 0.40 * W + 0.1 * W, hairline + 0.05 * H),
            fill=255,
        )
    if look.recede > 0.05:
        r = 0.42 * W * look.recede
        mdraw.ellipse((cx - r, top - 0.1 * H, cx + r, top + 0.1 * H + 0.28 * H * look.recede), fill=0)
    alpha = 120 if ident.hair_style == 3 else 255
    layer.paste(Image.new("RGBA", (C, C), (*hair_c, alpha)), (0, 0), mask.point(lambda v: v * alpha // 255))

    # eyes, brows, bags and crow's feet
    eye_y = top + H * (0.45 + 0.11 * look.child)
    er = W * (0.062 + 0.035 * look.child) * ident.eye_size
    iris = tuple(int(v) for v in rng.integers(20, 90, 3))
    for side in (-1, 1):
        ex = cx + side * W * ident.eye_spacing
        draw.ellipse((ex - er, eye_y - 0.6 * er, ex + er, eye_y + 0.6 * er), fill=(240, 240, 235, 255))
        draw.ellipse((ex - 0.55 * er, eye_y - 0.55 * er, ex + 0.55 * er, eye_y + 0.55 * er), fill=(*iris, 255))
        draw.ellipse((ex - 0.22 * er, eye_y - 0.22 * er, ex + 0.22 * er, eye_y + 0.22 * er), fill=(10, 10, 10, 255))
        brow_y = eye_y - er * (1.5 + 0.3 * look.child)
        draw.line(
            (ex - 1.2 * er, brow_y + 0.2 * er, ex + 1.2 * er, brow_y - 0.1 * er * side),
            fill=(*hair_c, 255),
            width=max(1, int(lw * ident.brow_width * 1.5)),
        )
        if look.wrinkles > 0.12:
            a = int(90 + 150 * look.wrinkles)
            draw.arc((ex - er, eye_y, ex + er, eye_y + 1.3 * er), 20, 160, fill=(*line_c, a), width=lw)
            corner = ex + side * 1.15 * er
            for k in range(1 + int(look.wrinkles * 3)):
                dy = (k - 1) * 0.45 * er
                draw.line(
                    (corner, eye_y + 0.3 * dy, corner + side * er * (0.4 + 0.8 * look.wrinkles), eye_y + dy),
                    fill=(*line_c, a),
                    width=lw,
                )
        if look.glasses:
            gr = 1.55 * er
            draw.ellipse((ex - gr, eye_y - gr, ex + gr, eye_y + gr), outline=(15, 15, 20, 255), width=lw + 1)
    if look.glasses:
        gx = W * ident.eye_spacing - 1.55 * er
        draw.line((cx - gx, eye_y, cx + gx, eye_y), fill=(15, 15, 20, 255), width=lw + 1)

    # forehead lines: count and darkness grow with ``wrinkles``
    if look.wrinkles > 0.08:
        n_lines = 1 + int(look.wrinkles * 4.5)
        y_hi, y_lo = max(hairline + 0.03 * H, top + 0.12 * H), eye_y - er * 2.1
        a = int(80 + 170 * look.wrinkles)
        for k in range(n_lines):
            y = y_lo - (k + 0.5) * max(1.0, (y_lo - y_hi)) / n_lines
            half = W * rng.uniform(0.18, 0.30)
            draw.arc((cx - half, y - 0.05 * H, cx + half, y + 0.05 * H), 200, 340, fill=(*line_c, a), width=lw)

    # nose and mouth; nasolabial folds with ``wrinkles``
    nose_y = eye_y + H * (0.13 + 0.06 * (1 - look.child)) * ident.nose_length
    nose_c = _shade(skin_c, 0.78)
    draw.line((cx, eye_y + 0.3 * er, cx - 0.05 * W, nose_y), fill=(*nose_c, 255), width=lw)
    draw.line((cx - 0.05 * W, nose_y, cx + 0.04 * W, nose_y), fill=(*nose_c, 255), width=lw)
    mouth_y = nose_y + H * (0.11 - 0.02 * look.child)
    mw = W * ident.mouth_width * (1 - 0.15 * look.child) / 2
    lip_c = _mix(skin_c, (170, 60, 70), 0.45)
    draw.arc((cx - mw, mouth_y - 0.06 * H, cx + mw, mouth_y + 0.04 * H), 20, 160, fill=(*lip_c, 255), width=lw + 1)
    if look.wrinkles > 0.2:
        a = int(60 + 190 * look.wrinkles)
        for side in (-1, 1):
            x0 = cx + side * 0.09 * W
            draw.line((x0, nose_y - 0.01 * H, x0 + side * (mw * 0.4), mouth_y + 0.04 * H), fill=(*line_c, a), width=lw)
    if look.beard > 0.05:
        beard_c = _mix(hair_c, skin_c, 0.35)
        a = int(200 * look.beard)
        draw.chord((cx - 0.46 * W, mouth_y - 0.35 * H, cx + 0.46 * W, bottom + 0.02 * H), 10, 170, fill=(*beard_c, a))
    for _ in range(int(look.spots * 10)):
        sx, sy = cx + rng.uniform(-0.35, 0.35) * W, cy + rng.uniform(-0.3, 0.25) * H
        sr = C * rng.uniform(0.004, 0.01)
        draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(*_shade(skin_c, 0.7), 200))

    angle = float(np.clip(rng.normal(0, 7), -18, 18))
    shift = tuple(float(v) for v in rng.uniform(-0.07, 0.07, 2) * C)
    layer = layer.reduce(2).rotate(
        angle, resample=Image.Resampling.BILINEAR, center=(cx / 2, cy / 2), translate=(shift[0] / 2, shift[1] / 2)
    )
    img = Image.alpha_composite(img.reduce(2).convert("RGBA"), layer).convert("RGB")
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.9)) * resolution / 64))

    # lighting gradient, colour cast, pixel noise
    pixels = np.asarray(img, dtype=np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:resolution, 0:resolution] / max(1, resolution - 1) - 0.5
    ramp = 1.0 + rng.uniform(0.0, 0.5) * (xs * math.cos(theta) + ys * math.sin(theta))
    pixels = pixels * ramp[..., None] * rng.normal(1.0, 0.06, 3).astype(np.float32)
    pixels = pixels + rng.normal(0.0, rng.uniform(2.0, 11.0), pixels.shape)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------- dataset writing
def _params(
    task: str,
    seed: int,
    resolution: int,
    n_identities: int | None,
    images_per_identity: int | None,
    split_fractions: tuple[float, float, float],
) -> dict[str, Any]:
    default_ids, default_per = TASK_DEFAULTS[task]
    return {
        "task": task,
        "seed": int(seed),
        "resolution": int(resolution),
        "n_identities": int(n_identities or default_ids),
        "images_per_identity": int(images_per_identity or default_per),
        "split_fractions": [float(f) for f in split_fractions],
    }


def _split_identities(n: int, fractions: list[float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = rng.permutation(n)
    n_val = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise DataError(f"n_identities={n} is too small for three identity-disjoint splits; use at least 3")
    return {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# NOTE: workers are forked (not spawned) so no caller needs an ``if __name__ == "__main__"`` guard; they only run
# numpy and Pillow, never torch.
def _render_identity(job: tuple[dict[str, Any], int, str, str]) -> list[tuple[str, str]]:
    """Render and save every image of one identity; return its (file name, label letter) rows."""
    params, identity_id, split, out_dir = job
    task_code, seed = _TASK_CODE[params["task"]], params["seed"]
    ident = _identity(np.random.default_rng([seed, task_code, identity_id, 1_000_000]))
    rows = []
    for k in range(params["images_per_identity"]):
        rng = np.random.default_rng([seed, task_code, identity_id, k])
        if params["task"] == "age":
            group = int(rng.integers(len(AGE_GROUPS)))
            lo, hi = AGE_GROUPS[group]
            age = float(rng.uniform(lo, hi + 1))
            look = look_for_age(age, ident, rng)
            name = f"F{identity_id + 1:04d}_AGE_{ident.member}_{int(age):02d}_a{k + 1}.png"
        else:
            group = int(rng.integers(16))
            look = look_for_source_class(group, ident, rng)
            name = f"F{identity_id + 1:04d}_SRC_{ascii_lowercase[group]}_{k + 1}.png"
        image = render_face(ident, look, rng, params["resolution"])
        image.save(os.path.join(out_dir, f"{split}_images", name), format="PNG", optimize=False)
        rows.append((name, ascii_lowercase[group]))
    return rows


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def _manifest_matches(root: Path, params: dict[str, Any]) -> bool:
    manifest = _read_manifest(root)
    return bool(manifest and manifest.get("version") == GENERATOR_VERSION and manifest.get("params") == params)


def _check_replaceable(root: Path) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise DataError(f"{root} exists and is not a directory; choose another dataset.root for the generated data")
    entries = {p.name for p in root.iterdir()}
    if entries and (_read_manifest(root) is None or not entries <= _OWN_ENTRIES):
        foreign = sorted(entries - _OWN_ENTRIES) or sorted(entries)
        raise DataError(
            f"{root} already holds files that tlsweep did not generate ({', '.join(foreign[:5])}); refusing to "
            f"overwrite them: point dataset.root (or the output path) at an empty or new directory"
        )


def generate_dataset(
    root: Path | str,
    *,
    task: Task = "age",
    seed: int = 0,
    resolution: int = 64,
    n_identities: int | None = None,
    images_per_identity: int | None = None,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    workers: int | None = None,
) -> Path:
    """Write a generated dataset to ``root`` (replacing an earlier generated one); return ``root``.

    Defaults: age 430 identities × 10 images (~3000 train), source 600 × 10. ``workers`` None → all usable cores.
    """
    if task not in TASK_DEFAULTS:
        raise DataError(f"unknown synthetic task {task!r}; known: {sorted(TASK_DEFAULTS)}")
    if resolution < 16:
        raise DataError(f"resolution must be at least 16, got {resolution}")
    root = Path(root)
    params = _params(task, seed, resolution, n_identities, images_per_identity, split_fractions)
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        for split in SPLITS:
            (tmp / f"{split}_images").mkdir()
        members = _split_identities(
            params["n_identities"],
            params["split_fractions"],
            np.random.default_rng([seed, _TASK_CODE[task], 999_999_999]),
        )
        jobs = [(params, int(i), split, str(tmp)) for split in SPLITS for i in sorted(members[split])]
        n_workers = max(1, min(workers or _usable_cores(), len(jobs)))
        if n_workers == 1 or "fork" not in get_all_start_methods():
            results = [_render_identity(job) for job in jobs]
        else:
            with ProcessPoolExecutor(n_workers, mp_context=get_context("fork")) as pool:
                results = list(pool.map(_render_identity, jobs, chunksize=max(1, len(jobs) // (8 * n_workers))))
        preset = PRESETS["korean_face_age" if task == "age" else "synthetic_source"]
        counts: dict[str, int] = {}
        offset = 0
        for split in SPLITS:
            rows = sorted(row for res in results[offset : offset + len(members[split])] for row in res)
            offset += len(members[split])
            counts[split] = len(rows)
            lines = [f"{preset.path_column},{preset.label_column}"] + [f"{name},{label}" for name, label in rows]
            (tmp / preset.splits[split]).write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifest = {
            "generator": "tlsweep.data.synth",
            "version": GENERATOR_VERSION,
            "params": params,
            "counts": counts,
            "preset": "korean_face_age" if task == "age" else "synthetic_source",
            "identities": {s: len(m) for s, m in members.items()},
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _install(tmp, root, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _install(tmp: Path, root: Path, params: dict[str, Any]) -> None:
    """Move the finished dataset into place; if another process got there first with the same data, keep theirs."""
    if root.exists():
        if _manifest_matches(root, params):
            return
        _check_replaceable(root)
        for name in _OWN_ENTRIES:
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        try:
            root.rmdir()
        except OSError:
            pass
    try:
        os.rename(tmp, root)
    except OSError:
        if not _manifest_matches(root, params):
            raise DataError(f"could not move the generated dataset into {root}: it was changed concurrently") from None


def ensure_generated(spec: Any) -> Path:
    """Generate the dataset a SyntheticDatasetSpec describes unless ``spec.root`` already holds exactly it."""
    params = _params(
        spec.task, spec.seed, spec.resolution, spec.n_identities, spec.images_per_identity, tuple(spec.split_fractions)
    )
    root = Path(spec.root)
    if root.is_dir() and _manifest_matches(root, params):
        return root
    return generate_dataset(
        root,
        task=spec.task,
        seed=spec.seed,
        resolution=spec.resolution,
        n_identities=spec.n_identities,
        images_per_identity=spec.images_per_identity,
        split_fractions=tuple(spec.split_fractions),
    )


def read_manifest(root: Path | str) -> dict[str, Any] | None:
    """The manifest of a generated dataset, or None when ``root`` holds none."""
    return _read_manifest(Path(root))


__all__ = ["Identity", "Look", "asdict", "ensure_generated", "generate_dataset", "read_manifest", "render_face"]
