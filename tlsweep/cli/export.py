"""``tlsweep export``: the sweep's models to take home."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("results", metavar="DIR")
@click.option("--best", is_flag=True, help="One model per arm: the selected config's median seed (or --seed).")
@click.option("--cell", default=None, help="The cell (a cell_id) [default: the largest train fraction, most epochs].")
@click.option("--seed", type=int, default=None, help="Export this confirm seed instead of the median one.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="[default: DIR/export]")
def export(results: str, best: bool, cell: str | None, seed: int | None, out: Path | None) -> None:
    """Write the sweep's models: DIR/export/<arm>/model.pt (with config.json, metrics.json) for `tlsweep predict`."""
    from tlsweep.engine.export import export_best

    if not best:
        raise click.UsageError("say which models: --best (one per arm, the selected config)")
    for model in export_best(results, out, cell=cell, seed=seed):
        click.echo(f"{model.arm}: {model.path / 'model.pt'} ({model.cell_id}, seed {model.seed}, {model.how})")
        if model.load_into is not None:
            click.echo(f"  plain weights: {model.path / 'weights.pt'} (load into {model.load_into})")
