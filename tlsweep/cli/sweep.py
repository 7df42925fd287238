"""``tlsweep run``, ``tlsweep validate`` and ``tlsweep status``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from tlsweep.spec import SweepSpec

_SET_HELP = "Override any spec field: --set confirm.seeds=8 --set dataset.root=/data/faces (repeatable)."


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option(
    "--data-check/--no-data-check",
    default=True,
    show_default=True,
    help="Check what this machine must hold: every arm's pretrained weights, and the dataset (files, labels and "
    "image headers): missing splits, single-class data, empty classes, train/test copies, bad symlinks, files that "
    "are not images.",
)
@click.option("--full-decode", is_flag=True, help="Decode every image (slower), which also finds files cut short.")
def validate(spec_path: Path, overrides: tuple[str, ...], data_check: bool, full_decode: bool) -> None:
    """Check a sweep spec without running it; print the design and the number of trials per phase."""
    from tlsweep.design import studies, trial_counts
    from tlsweep.spec_load import load_spec
    from tlsweep.training.references import check_spec_references
    from tlsweep.training.weights import check_spec_weights

    spec = load_spec(spec_path, list(overrides))
    check_spec_references(spec, source=str(spec_path))
    if data_check:
        check_spec_weights(spec, source=str(spec_path))
        _check_data(spec, full_decode=full_decode)
    counts = trial_counts(spec)
    console = Console(soft_wrap=True)
    console.print(f"[green]✓[/] {spec_path}: sweep [bold]{spec.name}[/] is valid")
    factors = ", ".join(f"{k} {v}" for k, v in spec.design.factors.items())
    if spec.design.arms is not None:
        arms = "; ".join(
            f"{name} ({', '.join(f'{k} {v}' for k, v in settings.items())})"
            for name, settings in spec.design.arms.items()
        )
        console.print(f"  arms: {arms}")
    console.print(f"  factors: {factors or 'none'}  → {len(studies(spec))} studies (cell × arm)")
    console.print(
        f"  tuned: {', '.join(spec.design.tune) or 'nothing'} with {spec.design.budget.sampler}, "
        f"{spec.design.budget.trials_per_cell} trials per study (the recipe first)"
    )
    console.print(f"  tune phase: {counts['tune']} trials")
    console.print(
        f"  confirm phase: {counts['confirm']} trials ({spec.confirm.seeds} paired seeds × "
        f"{'/'.join(spec.confirm.configs)})"
    )
    claims = "; ".join(
        f"{c.treated} {'differs (two-sided) from' if c.direction == 'two-sided' else c.direction + ' than'} "
        f"{c.baseline}"
        for c in spec.compared_arms
    )
    family = f" over {len(spec.compared_arms)} comparisons × cells" if len(spec.compared_arms) > 1 else ""
    console.print(
        f"  total: {sum(counts.values())} trials; hypothesis: {spec.hypothesis.metric} "
        f"{claims}, alpha {spec.hypothesis.alpha} ({spec.hypothesis.correction}{family})"
    )
    region = spec.hypothesis_region()
    console.print(
        "  hypothesis region: "
        + (" × ".join(f"{k} {v}" for k, v in region.items()) or "every cell")
        + ("" if spec.hypothesis.region is not None else " (the default: smallest fraction × fewest epochs)")
    )
    _print_families(console, spec)
    _print_steps(console, spec)


def _print_families(console: Console, spec: SweepSpec) -> None:
    """Per multiplicity family: its tests, smallest threshold, the effect the t-test detects and the seeds the exact
    robustness test needs; a warning when the seeds cannot let that test reach the threshold."""
    from tlsweep.design import cell_id, studies
    from tlsweep.stats import family_facts

    cells = len({cell_id(levels) for levels in studies(spec)})
    comparisons = len(spec.compared_arms)
    seeds = spec.confirm.max_seeds
    families = [("primary", spec.hypothesis.correction)] + (
        [("secondary (recipe)", "bh")] if "recipe" in spec.confirm.configs and "best" in spec.confirm.configs else []
    )
    for name, correction in families:
        facts = family_facts(tests=cells * comparisons, alpha=spec.hypothesis.alpha, correction=correction, seeds=seeds)
        console.print(
            f"  {name} family: {cells} cell(s) × {comparisons} comparison(s) = {facts.tests} tests, both directions "
            f"in one {correction} family ({2 * facts.tests} one-sided); smallest threshold {facts.threshold:.3g}; "
            f"with {seeds} paired seeds the t-test detects d_z ≥ {facts.detectable_dz:.2f} at 80% power; the exact "
            f"robustness test needs {facts.robust_needs} seeds to reach the threshold"
        )
        if not facts.robust_reachable:
            console.print(
                f"[yellow]warning:[/] with {seeds} paired seeds the exact sign-flip test cannot reach the {name} "
                f"family's smallest threshold {facts.threshold:.3g} (its floor is 1/2^{seeds}): the paired t-test "
                "decides and the report flags each decided cell the exact test does not confirm. Fix, if you want "
                f"the robust test to confirm: confirm.seeds: {facts.robust_needs}"
                + (" (or confirm.adaptive.max_seeds)" if spec.confirm.adaptive is not None else "")
            )


def _check_data(spec: SweepSpec, *, full_decode: bool = False) -> None:
    """Print the dataset's warnings; raise one DataError listing its errors (``tlsweep.data.dataset_check``, and images that
    do not open: ``tlsweep.data.decodable``)."""
    from tlsweep.data.dataset_check import check_dataset, raise_errors
    from tlsweep.data.decodable import undecodable_images
    from tlsweep.errors import DataError

    problems = check_dataset(spec.dataset)
    if not any(problem.level == "error" for problem in problems):
        problems = undecodable_images(spec.dataset, full=full_decode) + problems
    try:
        raise_errors(problems, source=str(spec.dataset.root))
    except DataError as exc:
        raise DataError(f"{exc}\n(`tlsweep validate --no-data-check` checks the spec without its dataset)") from None
    for problem in problems:
        click.echo(f"warning: {problem.message}", err=True)


def _print_steps(console: Console, spec: SweepSpec) -> None:
    """Optimizer steps per run of every cell, and a warning for cells below ``MIN_OPTIMIZER_STEPS``."""
    from tlsweep.data.size import train_size
    from tlsweep.design import MIN_OPTIMIZER_STEPS, cell_steps

    n_train, source = train_size(spec.dataset)
    if n_train is None:
        console.print(f"  optimizer steps per cell: not known yet ({source})")
        return
    cells = cell_steps(spec, n_train)
    batch = cells[0].batch_size if cells else spec.model.batch_size
    console.print(f"  optimizer steps per run ({n_train} training images from {source}; batch {batch}):")
    for cell in cells:
        where = ", ".join(f"{k} {v}" for k, v in cell.levels.items()) or "the single cell"
        mark = "  [yellow]⚠ too few[/]" if cell.too_few else ""
        console.print(f"    {where}: {cell.n_train} images × {cell.epochs} epochs → {cell.steps} steps{mark}")
    few = [cell for cell in cells if cell.too_few]
    if few:
        listed = "; ".join(", ".join(f"{k} {v}" for k, v in c.levels.items()) + f": {c.steps}" for c in few)
        console.print(
            f"[yellow]warning:[/] {len(few)} cell(s) give fewer than {MIN_OPTIMIZER_STEPS} optimizer steps "
            f"per run ({listed}); an arm trained from scratch barely moves from its initialisation there, "
            "so every arm may sit at chance and the cell cannot decide anything. Fix: more epochs "
            "(design.factors.epochs), a smaller batch (model.batch_size) or a larger fraction "
            "(design.factors.train_fraction)."
        )


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option(
    "--storage",
    default=None,
    metavar="URI",
    help="Where results go: a path (shared FS on a cluster), s3://bucket/prefix or gs://bucket/prefix. "
    "Default: the spec's `storage` (runs).",
)
@click.option(
    "--address",
    default=None,
    metavar="auto|HOST:PORT",
    help="Join an existing Ray cluster instead of starting a local instance sized to this machine.",
)
@click.option(
    "--new",
    is_flag=True,
    help="Start over when the results directory holds a different spec's results "
    "(the old ones are moved aside, never deleted).",
)
@click.option(
    "--wandb",
    "wandb_mode",
    type=click.Choice(["online", "offline", "disabled"]),
    default=None,
    help="W&B mirror mode (default: online with an API key configured, else offline).",
)
@click.option("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all).")
@click.option("--no-report", is_flag=True, help="Skip the report at the end.")
def run(
    spec_path: Path,
    overrides: tuple[str, ...],
    storage: str | None,
    address: str | None,
    new: bool,
    wandb_mode: str | None,
    num_cpus: int | None,
    no_report: bool,
) -> None:
    """Run (or resume) a sweep: data → pretraining → tune → confirm → Parquet → report."""
    from tlsweep.engine.run import run_sweep
    from tlsweep.spec_load import load_spec

    spec = load_spec(spec_path, list(overrides))
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    rerun = f"tlsweep run {spec_path}" + "".join(f" --set {o}" for o in overrides)
    if storage:
        rerun += f" --storage {storage}"
    try:
        outcome = run_sweep(
            spec,
            source=str(spec_path),
            storage=storage,
            address=address,
            new=new,
            wandb_mode=wandb_mode,
            num_cpus=num_cpus,
            report=not no_report,
            console=console,
        )
    except KeyboardInterrupt:  # a second Ctrl-C while the first one stops the sweep: the rows written stay
        console.print(f"\n[yellow]stopped before the end.[/] Resume with:\n  {rerun}")
        raise SystemExit(130) from None
    console.print()
    console.print(
        f"recorded {outcome.trials_recorded} trials in {outcome.wall_time_s / 60:.1f} min → {outcome.location}"
    )
    from tlsweep.engine.progress import efficiency_line

    if (line := efficiency_line(outcome.efficiency_figures)) is not None:
        console.print(f"{line} (in status.json)")
    for line in outcome.skipped:
        console.print(f"[yellow]not confirmed[/] {line}")
    failed = outcome.failed
    for phase in outcome.failures:
        if phase is not failed:
            console.print(f"[yellow]failed trials[/] {escape(phase.describe(outcome.location))}")
    if outcome.wandb_sweep_url:
        console.print(f"W&B sweep: {outcome.wandb_sweep_url}")
    if outcome.wandb_sync:
        console.print(f"W&B runs are offline; upload them with:\n  {outcome.wandb_sync}")
        if Path(outcome.location).is_dir():
            console.print(f"or, into one W&B Sweep:\n  tlsweep wandb sync {outcome.location}")
    if outcome.interrupted:
        console.print(f"[yellow]stopped before the end.[/] Resume with:\n  {rerun}")
        raise SystemExit(130)
    if failed is not None:
        raise click.ClickException(
            f"the sweep could not do its job: {failed.describe(outcome.location)}\n"
            f"  first error: {failed.first_error}\n"
            "  no report was written. Fix the cause, then run again: with a changed spec add --new (these results "
            "are moved aside); with the same spec, move the results directory aside first (failed trials are "
            "recorded, not retried)"
        )
    if outcome.report_path:
        console.print(f"[bold green]report:[/] {outcome.report_path}")
        click.echo(outcome.report_path)


@click.command()
@click.argument("results", metavar="DIR")
def status(results: str) -> None:
    """Progress per cell and arm of a sweep's results directory (running or finished)."""
    from tlsweep.design import split_study_key, study_trial_counts
    from tlsweep.engine.progress import StatusBoard, efficiency_line
    from tlsweep.engine.status import STATUS_FILE, StatusDocument
    from tlsweep.results.integrity import check_spec, check_trials
    from tlsweep.results.store import TRIALS_FILE, ResultsStore

    store = ResultsStore(results)
    spec = store.read_spec()
    check_spec(store, spec)
    trials = store.read_trials()
    warnings = check_trials(trials, source=store.location.join(TRIALS_FILE).uri)
    board = StatusBoard(study_trial_counts(spec), mode=spec.objective.mode)
    for row in trials.to_pylist():
        board.add_row(row)
    live = StatusDocument.parse(store.read_text(STATUS_FILE), source=store.location.join(STATUS_FILE).uri)
    fresh = live.fresh(time.time())
    for item in live.running if fresh else ():
        phase, study = item["phase"], item["study"]
        cell, arm = split_study_key(study)
        board.line(phase, cell, arm).running.add(item["trial_id"])
    state = "running" if fresh else "not running"
    console = Console(width=None if sys.stdout.isatty() else 1000)  # piped: the table at its own width, never squeezed
    console.print(
        board.table(
            title=f"{spec.name} ({state}) · {store.location.uri}", concurrency=spec.resources.max_concurrent_trials or 1
        )
    )
    if live.finished and (line := efficiency_line(live.figures)) is not None:
        console.print(f"last run: {line}")
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
