"""``tlsweep wandb ...``: Weights & Biases views of a sweep (the mirror itself runs inside ``tlsweep run``)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(name="wandb")
def wandb_group() -> None:
    """Weights & Biases views of a sweep's results."""


@wandb_group.command(name="dashboard")
@click.argument("results_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the W&B server before giving up.",
)
def dashboard(results_dir: Path, timeout_s: float) -> None:
    """Create or update the saved W&B workspace view of the sweep in DIR.

    The view filters the sweep's group and shows parallel coordinates of factors and tuned parameters against
    the objective, parameter importance, validation curves grouped by arm and a runs table with the test
    metric. Needs the optional package wandb-workspaces (pip install 'tlsweep[dashboards]'), a W&B API key
    and a reachable server; DIR is only read.
    """
    from tlsweep.tracking.dashboard import save_dashboard

    url = save_dashboard(results_dir, timeout_s=timeout_s)
    click.echo(f"W&B workspace view: {url}")
