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
@click.argument("results_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where to write the report (default: RESULTS_DIR/report).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every bootstrap and permutation.")
@click.option("--format", "formats", default="md,html", show_default=True, callback=_formats,
              help="Comma-separated outputs: md, html.")
def report(results_dir: Path, out_dir: Path | None, seed: int, formats: tuple[str, ...]) -> None:
    """Write report.md, report.html and figures/ for RESULTS_DIR (trials.parquet + epochs.parquet)."""
    from tlsweep.report import build_report

    result = build_report(results_dir, out_dir=out_dir, seed=seed, formats=formats)
    for path in (result.markdown_path, result.html_path):
        if path is not None:
            click.echo(f"wrote {path}")
    click.echo(f"verdict: {result.overall.label} — {result.overall.sentence}")
    click.echo(result.crossover)
