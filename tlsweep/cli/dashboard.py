"""``tlsweep dashboard DIR``: every Optuna study of a sweep in optuna-dashboard, on loopback."""

from __future__ import annotations

import click


@click.command(name="dashboard")
@click.argument("results", metavar="DIR")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=0,
    show_default="a free port",
    help="Port to listen on (127.0.0.1 only).",
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Build the journal again from trials.parquet (the old one is moved aside); not while a sweep writes it.",
)
def dashboard(results: str, port: int, rebuild: bool) -> None:
    """Serve the sweep's Optuna studies (DIR/optuna.journal) with optuna-dashboard on 127.0.0.1.

    One study per phase × cell × arm, each trial with its objective, tuned parameters, per-epoch curve and the
    trial id, seed, cell and arm as user attributes. DIR may be a local results directory (served live while a
    sweep runs) or s3:// / gs:// results (a local copy). Results without a journal get it built from
    trials.parquet. Runs until Ctrl-C; from another machine use an SSH tunnel (ssh -L PORT:127.0.0.1:PORT).
    Needs the optional package optuna-dashboard (pip install 'tlsweep[dashboards]').
    """
    import optuna

    from tlsweep.tracking.study_dashboard import make_server, prepare_journal, server_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one INFO line per study read from the journal
    journal = prepare_journal(results, rebuild=rebuild)
    server = make_server(journal.path, port=port)
    built = " (built from trials.parquet)" if journal.built else ""
    click.echo(f"Optuna journal: {journal.path}{built}: {journal.studies} studies, {journal.trials} trials")
    if journal.lacks:
        click.echo(
            f"Note: {journal.lacks}; a running sweep shows this until it records them, otherwise rebuild it with "
            "`tlsweep dashboard DIR --rebuild`"
        )
    click.echo(f"optuna-dashboard: {server_url(server)}  (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
