"""``tlsweep data``: generate a synthetic dataset, build/inspect the decode-once tensor cache."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("data")
def data() -> None:
    """Generate datasets and build their tensor caches."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--task",
    type=click.Choice(["age", "source"]),
    default="age",
    show_default=True,
    help="age: 8 age groups (target task); source: 16 appearance classes (for pretraining a backbone).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed → byte-identical dataset.")
@click.option("--resolution", type=click.IntRange(16, 512), default=64, show_default=True, help="Image side in pixels.")
@click.option(
    "--identities",
    type=click.IntRange(3),
    default=None,
    help="Number of identities (default: 430 for age, 600 for source).",
)
@click.option("--per-identity", type=click.IntRange(1), default=None, help="Images per identity (default: 10).")
@click.option(
    "--split",
    "split_fractions",
    type=(float, float, float),
    default=(0.7, 0.15, 0.15),
    show_default=True,
    help="Identity-disjoint train/val/test fractions.",
)
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes to draw with (default: all cores).")
def synth(
    out: Path,
    task: str,
    seed: int,
    resolution: int,
    identities: int | None,
    per_identity: int | None,
    split_fractions: tuple[float, float, float],
    workers: int | None,
) -> None:
    """Draw a synthetic face dataset into OUT (layout of the Korean face age dataset)."""
    import time

    from tlsweep.data.synth import generate_dataset, read_manifest
    from tlsweep.errors import DataError

    if any(f <= 0 for f in split_fractions) or abs(sum(split_fractions) - 1) > 1e-6:
        raise DataError(f"--split must be three positive fractions summing to 1, got {split_fractions}")
    start = time.perf_counter()
    root = generate_dataset(
        out,
        task=task,  # type: ignore[arg-type]
        seed=seed,
        resolution=resolution,
        n_identities=identities,
        images_per_identity=per_identity,
        split_fractions=split_fractions,
        workers=workers,
    )
    manifest = read_manifest(root) or {}
    counts = manifest.get("counts", {})
    ids = manifest.get("identities", {})
    summary = ", ".join(f"{s} {counts.get(s, 0)} images / {ids.get(s, 0)} identities" for s in ("train", "val", "test"))
    click.echo(f"wrote {sum(counts.values())} {task} images ({summary}) in {time.perf_counter() - start:.1f} s")
    click.echo(f"dataset: {root}")
    preset = "korean_face_age" if task == "age" else "synthetic_source"
    click.echo(f"load it with:  dataset: {{format: csv, preset: {preset}, root: {root}}}")


@data.command("cache")
@click.argument("root", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "imagefolder", "synthetic"]),
    default=None,
    help="Dataset layout under ROOT [default: detected: a dataset tlsweep generated, the CSV layout "
    "(custom_train_dataset.csv ...), else an ImageFolder tree].",
)
@click.option("--preset", default=None, help="CSV preset (format csv) [default: korean_face_age].")
@click.option(
    "--task",
    type=click.Choice(["age", "source"]),
    default="age",
    show_default=True,
    help="Generated task (format synthetic).",
)
@click.option(
    "--image-size",
    type=click.IntRange(1),
    default=None,
    help="Side the images are resized to [default: a generated dataset's resolution, else the shorter side of the "
    "first training image, at most 224].",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the tensor files go (default: ROOT/.tlsweep-cache).",
)
def cache(
    root: Path, fmt: str | None, preset: str | None, task: str, image_size: int | None, cache_dir: Path | None
) -> None:
    """Decode ROOT's images once into the tensor cache; print counts per split and class."""
    from collections import Counter

    from tlsweep.data.dataset_check import check_dataset, raise_errors
    from tlsweep.data.dataset_spec import (
        CsvDatasetSpec,
        DatasetSpec,
        ImageFolderDatasetSpec,
        dataset_spec_for_directory,
        parse_dataset_spec,
    )
    from tlsweep.data.loading import load_dataset
    from tlsweep.data.size import natural_image_size
    from tlsweep.errors import DataError

    if fmt is None:
        if not root.is_dir():
            raise DataError(f"{root} does not exist or is not a directory; give the folder that holds the dataset")
        spec: DatasetSpec = dataset_spec_for_directory(root)
        if preset is not None and isinstance(spec, CsvDatasetSpec):
            spec = parse_dataset_spec({"format": "csv", "root": str(root), "preset": preset}, source="--preset")
    else:
        raw: dict[str, object] = {"format": fmt, "root": str(root)}
        if fmt == "csv":
            raw["preset"] = preset or "korean_face_age"
        if fmt == "synthetic":
            raw["task"] = task
        spec = parse_dataset_spec(raw, source="tlsweep data cache")
    problems = check_dataset(spec)  # the checks `tlsweep validate` makes: errors stop, warnings are printed
    raise_errors(problems, source=str(spec.root))
    for problem in problems:
        click.echo(f"warning: {problem.message}", err=True)
    if image_size is None:
        if not isinstance(spec, CsvDatasetSpec | ImageFolderDatasetSpec):
            raise click.UsageError("a synthetic dataset needs --image-size")
        image_size, where = natural_image_size(spec)
        click.echo(f"image size {image_size} ({where}; --image-size chooses another)")
    click.echo(f"format {spec.format} ({'given' if fmt else 'detected'})")
    ds = load_dataset(spec, image_size=image_size, cache_dir=cache_dir)
    click.echo(f"{ds.name}: {ds.num_classes} classes, images {image_size}x{image_size}")
    width = max(len(n) for n in ds.class_names)
    header = "  ".join(f"{s:>6}" for s in ("train", "val", "test"))
    click.echo(f"{'class':<{width}}  {header}")
    counts = {s: Counter(getattr(ds, s).labels.tolist()) for s in ("train", "val", "test")}
    for k, name in enumerate(ds.class_names):
        click.echo(f"{name:<{width}}  " + "  ".join(f"{counts[s][k]:>6}" for s in ("train", "val", "test")))
    click.echo(f"{'total':<{width}}  " + "  ".join(f"{len(getattr(ds, s)):>6}" for s in ("train", "val", "test")))
    click.echo(f"cache: {ds.extra['cache_dir']}")
