"""The ``tlsweep`` command line: the only place that reads argv and the environment.

Each area's commands live in ``tlsweep.commands.<area>``; this module assembles them into one group and turns
``TlsweepError`` into a clean one-line message with exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from tlsweep import __version__
from tlsweep.errors import TlsweepError

# (module, attribute) of every command or sub-group; modules that are missing are skipped so a partial
# checkout still has a working CLI.
_COMMANDS: list[tuple[str, str]] = [
    ("tlsweep.commands.data", "data"),
    ("tlsweep.commands.train", "train"),
    ("tlsweep.commands.train", "predict"),
    ("tlsweep.commands.train", "pretrain"),
    ("tlsweep.commands.train", "models"),
    ("tlsweep.commands.train", "weights"),
    ("tlsweep.commands.sweep", "run"),
    ("tlsweep.commands.sweep", "validate"),
    ("tlsweep.commands.sweep", "status"),
    ("tlsweep.commands.report", "report"),
    ("tlsweep.commands.wandb", "wandb_group"),
]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TlsweepError as exc:
            raise click.ClickException(str(exc)) from exc


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


def _register() -> None:
    for module_name, attr in _COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        command = getattr(module, attr, None)
        if command is not None:
            cli.add_command(command)


_register()


def main() -> None:
    ClickException = click.ClickException
    try:
        cli.main(standalone_mode=False)
    except ClickException as exc:
        exc.show()
        sys.exit(2 if not isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
