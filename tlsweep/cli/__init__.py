"""The ``tlsweep`` command line: the only place that reads argv.

Each area's commands live in ``tlsweep.cli.<area>`` as thin wrappers over the library; this module assembles them
into one group and turns ``TlsweepError`` into a clean one-line message with exit code 2.
"""

from __future__ import annotations

import sys

import click

from tlsweep import __version__
from tlsweep.cli.dashboard import dashboard
from tlsweep.cli.data import data
from tlsweep.cli.export import export
from tlsweep.cli.plan import plan
from tlsweep.cli.report import report
from tlsweep.cli.sweep import run, status, validate
from tlsweep.cli.train import models, predict, pretrain, train, weights
from tlsweep.cli.wandb import wandb_group
from tlsweep.errors import TlsweepError


class InputError(click.ClickException):
    """A ``TlsweepError`` as the command line shows it: one message, exit code 2 (also under click's CliRunner)."""

    exit_code = 2


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TlsweepError as exc:
            raise InputError(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tlsweep")
def cli() -> None:
    """Test, with real statistics, when transfer learning beats training from scratch.

    \b
    Typical use:
      tlsweep run sweeps/demo.yaml        # tune -> confirm -> Parquet -> report
      tlsweep status runs/demo            # progress per cell
      tlsweep report runs/demo            # re-render the report from Parquet alone
    """


for _command in (
    data,
    train,
    predict,
    pretrain,
    models,
    weights,
    run,
    validate,
    plan,
    status,
    report,
    export,
    dashboard,
    wandb_group,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``tlsweep`` console script."""
    try:
        cli.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if not isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
