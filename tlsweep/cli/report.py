"""``tlsweep report DIR``: re-render the statistical report of a results directory from Parquet alone."""

from __future__ import annotations

from pathlib import Path

import click


def _formats(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(set(chosen) - {"md", "html"})
    if unknown or not chosen:
        raise click.BadParameter(f"expected a comma-separated subset of md,html, got {value!r}")
    return chosen


@click.command("report")
@click.argument("results", metavar="RESULTS")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write the report (default: RESULTS_DIR/report).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of every bootstrap and permutation."
)
@click.option(
    "--format",
    "formats",
    default="md,html",
    show_default=True,
    callback=_formats,
    help="Comma-separated outputs: md, html.",
)
@click.option(
    "--wandb",
    "wandb_mode",
    type=click.Choice(["online", "offline", "disabled"]),
    default=None,
    help="Mirror the report to the sweep's W&B summary run (default: the spec's tracking settings).",
)
@click.option(
    "--confusion-cell",
    default=None,
    metavar="CELL_ID",
    help="The cell whose confusion matrices are drawn, e.g. 'train_fraction=0.1|epochs=2' (default: the cell with "
    "the most training data); the report's per-class section names each cell's id.",
)
def report(
    results: str,
    out_dir: Path | None,
    seed: int,
    formats: tuple[str, ...],
    wandb_mode: str | None,
    confusion_cell: str | None,
) -> None:
    """Write report.md, report.html and figures/ for RESULTS (a results directory, or s3://... / gs://...)."""
    from tlsweep.report.publish import publish_report
    from tlsweep.results.store import ResultsStore

    store = ResultsStore(results)  # the report's folder is checked before any statistics (report.build)
    result, where = publish_report(
        store, wandb_mode=wandb_mode, seed=seed, out_dir=out_dir, formats=formats, confusion_cell=confusion_cell
    )
    for path in (result.markdown_path, result.html_path):
        if path is not None:
            click.echo(f"wrote {path}")
    if where.startswith(("s3://", "gs://")):
        click.echo(f"uploaded to {where.rsplit('/', 1)[0]}")
    click.echo(f"verdict: {result.overall.label} — {result.overall.sentence}")
    click.echo(result.crossover)
