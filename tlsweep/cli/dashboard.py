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
    trial id, seed, cell and arm as user attributes; and per phase × cell one study "PHASE/CELL|all arms" with
    every arm's trials and arm as a parameter, so the Slice, Parallel Coordinate, Rank and Importance plots
    compare the arms (kept current while a sweep runs). The Compare links it prints show each cell's arm studies
    side by side. DIR may be a local results directory (served live while a
    sweep runs) or s3:// / gs:// results (a local copy). Results without a journal get it built from
    trials.parquet. Runs until Ctrl-C; from another machine use an SSH tunnel (ssh -L PORT:127.0.0.1:PORT).
    Needs the optional package optuna-dashboard (pip install 'tlsweep[dashboards]').
    """
    import optuna

    from tlsweep.tracking.study_dashboard import (
        add_arm_views,
        compare_url,
        keep_views_current,
        make_server,
        prepare_journal,
        server_url,
        study_url,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one INFO line per study read from the journal
    journal = prepare_journal(results, rebuild=rebuild)
    failed = None
    try:
        views = add_arm_views(journal)
    except Exception as exc:  # noqa: BLE001 - a journal the dashboard cannot write is still served
        views, failed = [], f"{type(exc).__name__}: {exc}"
    server = make_server(journal.path, port=port)
    built = " (built from trials.parquet)" if journal.built else ""
    click.echo(f"Optuna journal: {journal.path}{built}: {journal.studies} studies, {journal.trials} trials")
    if journal.lacks:
        click.echo(
            f"Note: {journal.lacks}; a running sweep shows this until it records them, otherwise rebuild it with "
            "`tlsweep dashboard DIR --rebuild`"
        )
    if failed:
        click.echo(f"Note: no cross-arm studies ({failed}); the arm studies are served as they are")
    if views:
        click.echo(
            f"Across arms: {len(views)} studies PHASE/CELL|all arms, every arm's trials with arm as a parameter "
            "(Slice, Parallel Coordinate, Rank and Importance compare the arms); compare: the arm studies side by side"
        )
        width = max(len(view.name) for view in views[:_LISTED])
        for view in views[:_LISTED]:
            click.echo(
                f"  {view.name:<{width}}  {study_url(server, view.study_id)}  "
                f"compare: {compare_url(server, view.arm_study_ids)}"
            )
        if len(views) > _LISTED:
            click.echo(f"  ... and {len(views) - _LISTED} more on the dashboard's study list")
    stop = None if failed else keep_views_current(journal.path, journal.arms)
    click.echo(f"optuna-dashboard: {server_url(server)}  (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if stop is not None:
            stop.set()
        server.server_close()


_LISTED = 12  # cross-arm studies listed with their links
