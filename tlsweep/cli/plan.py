"""``tlsweep plan``: a sweep's work, time and detectable effect before it runs."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from tlsweep.cli.sweep import _SET_HELP

if TYPE_CHECKING:
    from tlsweep.engine.capacity import ClusterShape
    from tlsweep.plan import Detectable, Estimate, ProbeTiming
    from tlsweep.spec import SweepSpec
    from tlsweep.training.config import TrialConfig


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option(
    "--probe-epochs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Epochs each timed probe trains (one trial per arm at the smallest and largest training fraction).",
)
@click.option("--no-probe", is_flag=True, help="No probe: the design's trials and epochs and the detectable effect.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--storage",
    default=None,
    metavar="URI",
    help="Where the sweep's results are (default: the spec's `storage`): the tune phase's spread gives the "
    "detectable effect in the metric's units.",
)
@click.option("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance, as `run` (default: all).")
@click.option(
    "--cluster-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A Ray cluster config (cluster.yaml): trials at once on its node types instead of this machine "
    "(default: TLSWEEP_CLUSTER_CONFIG when set).",
)
def plan(
    spec_path: Path,
    overrides: tuple[str, ...],
    probe_epochs: int,
    no_probe: bool,
    as_json: bool,
    storage: str | None,
    num_cpus: int | None,
    cluster_config: Path | None,
) -> None:
    """Estimate a sweep before running it: trials, epochs, trial-hours and wall time from a timed probe of one short
    trial per arm on this machine, and per cell the smallest difference the confirm seeds can detect."""
    from tlsweep.engine.capacity import planned_concurrency, trial_request, trial_slots
    from tlsweep.plan import detectable, estimate, sweep_work, to_json
    from tlsweep.spec_load import load_spec
    from tlsweep.training.references import check_spec_references

    spec = load_spec(spec_path, list(overrides))
    source = str(spec_path)
    check_spec_references(spec, source=source)
    shape = _cluster_shape(spec, num_cpus=num_cpus, cluster_config=cluster_config)
    concurrency = planned_concurrency(spec.resources, shape)
    notes: list[str] = []
    if not spec.resources.max_concurrent_trials and trial_slots(shape, trial_request(spec.resources)) == 0:
        notes.append(
            f"no node of {shape.source} holds one trial ({spec.resources.cpus_per_trial:g} CPU, "
            f"{spec.resources.gpus_per_trial:g} GPU): `tlsweep run` would refuse it here; the wall time counts one "
            "trial at once (--cluster-config cluster.yaml plans for a cluster's node types)"
        )
    timings, device, data_s = None, None, None
    if not no_probe:
        timings, device, data_s = _probe(spec, source=source, epochs=probe_epochs, notes=notes)
        if concurrency > 1 and not shape.autoscaling:
            notes.append(
                f"each probe ran alone; the run's {concurrency} trials at once share this machine's cores, memory "
                "bandwidth and whatever else runs here, so each may take longer than its probe"
            )
    plan_estimate = estimate(spec, sweep_work(spec), timings, concurrency=concurrency)
    tune_rows, results = _tune_rows(spec, storage)
    found = detectable(spec, tune_rows)
    if as_json:
        click.echo(
            to_json(
                plan_estimate,
                found,
                sweep=spec.name,
                device=device,
                probe_epochs=None if no_probe else probe_epochs,
                probes=[vars(t) for t in timings or []],
                data_seconds=data_s,
                concurrency_from=shape.source,
                results=results,
                notes=notes,
            )
        )
        return
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
    _print_estimate(console, spec, plan_estimate, timings, device=device, data_s=data_s, shape=shape)
    _print_detectable(console, spec, found, results=results)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")


def _cluster_shape(spec: SweepSpec, *, num_cpus: int | None, cluster_config: Path | None) -> ClusterShape:
    """Where the trials would run: the cluster config's node types, else this machine as ``run`` starts Ray on it."""
    import os

    from tlsweep.engine.capacity import CLUSTER_CONFIG_ENV, load_autoscaling_config, local_shape

    config = cluster_config or os.environ.get(CLUSTER_CONFIG_ENV)
    if config:
        return load_autoscaling_config(config)
    gpus = 0
    if spec.resources.gpus_per_trial:
        import torch

        gpus = torch.cuda.device_count()
    return local_shape(num_cpus or os.cpu_count() or 1, gpus)


def _probe(spec: SweepSpec, *, source: str, epochs: int, notes: list[str]) -> tuple[list[ProbeTiming], str, float]:
    """The dataset prepared as a run prepares it (timed), then one probe per ``plan.probe_plans`` entry."""
    from tlsweep.data.loading import load_dataset
    from tlsweep.design import recipe_params, trial_config
    from tlsweep.plan import ProbeTiming, probe_plans
    from tlsweep.training.probe import probe_trial
    from tlsweep.training.weights import check_spec_weights

    check_spec_weights(spec, source=source)
    started = time.perf_counter()
    data = load_dataset(spec.dataset, image_size=spec.model.image_size)
    data_s = time.perf_counter() - started
    threads = max(1, int(spec.resources.cpus_per_trial))
    timings = []
    device = "cpu"
    for probe in probe_plans(spec):
        config = trial_config(spec, probe.levels, recipe_params(spec, probe.levels), spec.confirm.seed_base)
        config = config.replace(num_threads=threads)
        if not spec.resources.gpus_per_trial and config.device == "auto":
            config = config.replace(device="cpu")  # Ray hides the GPUs from a trial that asks for none
        config = _timing_init(spec, config, notes)
        run = probe_trial(config, data, epochs=epochs)
        device = run.device
        timings.append(ProbeTiming(probe.key, probe.train_fraction, run.epoch_seconds, run.one_off_s, run.n_train))
    if spec.resources.gpus_per_trial and device == "cpu":
        notes.append(
            f"the spec asks for {spec.resources.gpus_per_trial:g} GPU per trial but this machine probed on the CPU: "
            "the times are the CPU's; run `tlsweep plan` on a GPU node for the GPU's"
        )
    return timings, device, data_s


def _timing_init(spec: SweepSpec, config: TrialConfig, notes: list[str]) -> TrialConfig:
    """A checkpoint that the run pretrains first (``model.pretrain``) is not there yet: the probe times the same
    architecture from random weights (the same arithmetic per epoch), and says pretraining is not estimated."""
    from tlsweep.training.config import parse_init

    init = parse_init(config.init)
    if init.kind != "checkpoint" or init.argument is None or Path(init.argument).exists():
        return config
    pre = spec.model.pretrain
    note = (
        f"model.pretrained.checkpoint {init.argument} is not there yet: `tlsweep run` pretrains it first "
        f"(model.pretrain: {pre.epochs if pre is not None else '?'} epochs on {pre.dataset.root if pre else '?'}), "
        "which this estimate leaves out; its arms were timed with the same backbone from random weights"
    )
    if note not in notes:
        notes.append(note)
    return config.replace(init="scratch")


def _tune_rows(spec: SweepSpec, storage: str | None) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The recorded tune trials of the spec's results directory (None when it holds none) and its address."""
    from tlsweep.results.location import resolve_location
    from tlsweep.results.store import ResultsStore

    store = ResultsStore(resolve_location(storage or spec.storage).join(spec.name))
    if not store.exists():
        return None, None
    rows = [row for row in store.read_trials().to_pylist() if row["phase"] == "tune"]
    return (rows or None), store.location.uri if rows else None


def _hours(hours: float) -> str:
    if not math.isfinite(hours):
        return "–"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.1f} h"


def _print_estimate(
    console: Console,
    spec: SweepSpec,
    plan_estimate: Estimate,
    timings: list[ProbeTiming] | None,
    *,
    device: str | None,
    data_s: float | None,
    shape: ClusterShape,
) -> None:
    probed = timings is not None
    table = Table(title=f"plan of sweep {spec.name}", title_justify="left")
    table.add_column("arm")
    if probed:
        table.add_column("s/epoch", justify="right")
        table.add_column("one-off s", justify="right")
    table.add_column("trials tune + confirm", justify="right")
    table.add_column("trial-epochs", justify="right")
    if probed:
        table.add_column("trial-hours", justify="right")
    for arm in plan_estimate.arms:
        low, high = arm.seconds_per_epoch
        per_epoch = f"{low:.2g}" if f"{low:.2g}" == f"{high:.2g}" else f"{low:.2g}–{high:.2g}"
        trials = f"{arm.tune_trials} + {arm.confirm_trials}"
        cells = [arm.arm, *([per_epoch, f"{arm.one_off_s:.2g}"] if probed else []), trials, str(arm.trial_epochs)]
        table.add_row(*cells, *([_hours(arm.trial_hours)] if probed else []))
    total = plan_estimate
    table.add_row(
        "[bold]total[/]",
        *(["", ""] if probed else []),
        f"{total.tune_trials} + {total.confirm_trials}",
        str(total.trial_epochs),
        *([_hours(total.trial_hours)] if probed else []),
    )
    console.print(table)
    if total.early_stopping:
        console.print(
            f"  the tune phase's {total.tune_trial_epochs} trial-epochs are an upper bound: ASHA "
            "(design.early_stopping) stops trials early"
        )
    if spec.confirm.adaptive is not None:
        console.print("  the confirm phase counts its maximum seeds (confirm.adaptive may stop cells earlier)")
    console.print(f"  trials at once: {total.concurrency} (from {shape.source})")
    if not probed:
        console.print("  no probe (--no-probe): no times; drop --no-probe to time one short trial per arm")
        return
    kind = "GPU" if spec.resources.gpus_per_trial else "CPU"
    resource = total.resource_hours.get(kind, float("nan"))
    console.print(
        f"  [bold]estimate:[/] {_hours(total.trial_hours)} of trials = {resource:.2f} {kind}-hours "
        f"({spec.resources.gpus_per_trial if kind == 'GPU' else spec.resources.cpus_per_trial:g} {kind} per trial); "
        f"wall time ≈ {_hours(total.wall_hours)} at {total.concurrency} trials at once, plus "
        f"{data_s:.0f} s of data preparation (Ray's start-up and any pretraining not included)"
    )
    epochs = {len(t.epoch_seconds) for t in timings or []}
    console.print(
        f"  an estimate from {len(timings or [])} probe(s) of {'/'.join(map(str, sorted(epochs)))} epoch(s) on THIS "
        f"machine's {device}; seconds per epoch are interpolated over train_fraction, and the wall time assumes "
        "every slot stays busy"
    )


def _print_detectable(console: Console, spec: SweepSpec, found: Detectable, *, results: str | None) -> None:
    head = (
        f"smallest detectable effect: {found.seeds} paired seeds, one-sided paired t-test at the family's smallest "
        f"threshold {found.threshold:.3g} ({spec.hypothesis.correction} over {found.tests} cell × comparison tests, "
        f"both directions), {found.power:.0%} power: d_z = {found.d_z:.2f} SD of the paired differences"
    )
    console.print(head)
    if not found.cells:
        console.print(
            "  no tune results yet: in the metric's units it is d_z × the SD of the paired differences "
            "(run the tune phase, or pass --storage, for the SD per cell)"
        )
        return
    what = found.metric_name + (", the objective" if found.metric == "objective" else "")
    table = Table(title=f"per cell: SD of paired tune differences ({what}) from {results}", title_justify="left")
    unit = " (points)" if found.accuracy_like else ""
    scale = 100.0 if found.accuracy_like else 1.0
    for column in ("cell", "comparison", "tune pairs", f"SD{unit}", f"detectable difference{unit}"):
        table.add_column(column, justify="left" if column in ("cell", "comparison") else "right")
    for cell in found.cells:
        shown = (
            (f"{cell.sd * scale:.3g}", f"{cell.difference * scale:.3g}")
            if math.isfinite(cell.sd)
            else ("–", "– (fewer than 2 pairs)")
        )
        table.add_row(cell.cell, cell.comparison, str(cell.pairs), *shown)
    console.print(table)
    console.print(
        "  the tune trials of a pair share a seed but not a config, so their SD is an upper bound on the seeds' own"
    )
