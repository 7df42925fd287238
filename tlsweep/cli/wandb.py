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
    from tlsweep.tracking.wandb_workspace import save_dashboard

    url = save_dashboard(results_dir, timeout_s=timeout_s)
    click.echo(f"W&B workspace view: {url}")


@wandb_group.command(name="sync")
@click.argument("results_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1.0),
    default=600.0,
    show_default=True,
    help="Seconds the upload may take.",
)
@click.option(
    "--finish/--no-finish",
    default=True,
    show_default=True,
    help="Mark the W&B Sweep finished (use --no-finish while the sweep still runs).",
)
def sync(results_dir: Path, timeout_s: float, finish: bool) -> None:
    """Upload the sweep's offline W&B runs in DIR into its W&B Sweep and print the Sweep's URL.

    The sweep recorded in DIR/wandb.json is reused when the server has it; otherwise a W&B Sweep is created (its
    id is recorded there) and the uploaded runs are added to it through W&B's prior-runs mechanism. Needs a W&B
    API key and a reachable server.
    """
    from tlsweep.tracking.wandb_sync import sync_to_sweep

    record = sync_to_sweep(results_dir, timeout_s=timeout_s, finish=finish)
    click.echo(f"W&B sweep: {record.url or record.sweep_id}")
