"""Multi-node behaviour on one machine: a head that runs no trials and two workers with fake GPUs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confirm_plans import plan_confirm
from faults import TrialFault, injected
from ray._private import ray_constants
from sweep_fixtures import tiny_spec_dict

from tlsweep.design import trial_counts
from tlsweep.spec_load import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]
MB = 2**20


@pytest.fixture(scope="module")
def cluster(ray_stopped):
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": 80 * MB,
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 1000,
                "health_check_failure_threshold": 5,
            },
        },
    )
    workers = [c.add_node(num_cpus=2, num_gpus=1, object_store_memory=80 * MB) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _spec(assets, storage, name, **changes):
    data = tiny_spec_dict(assets, storage, name=name, **changes)
    data["design"]["factors"]["epochs"] = [3]
    data["resources"] = {"cpus_per_trial": 1, "gpus_per_trial": 0.5, "max_concurrent_trials": 4}
    data["failures"] = {"max_retries": 2}
    data["checkpoints"] = {"every": {"epochs": 1}}  # these tests resume from an epoch's checkpoint
    return parse_spec(data)


def _children(pid: int) -> list[int]:
    return [
        int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _stat(stat.parent.name)[1] == str(pid)
    ]


def _alive(pid: int) -> bool:
    """The process runs (a zombie, dead but not yet reaped, does not)."""
    state = _stat(str(pid))
    return bool(state) and state[0] != "Z"


def _stat(pid: str) -> list[str]:
    """State, parent id, ... of a process from /proc (empty once it is gone)."""
    try:
        return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return []


def _max_overlap(rows) -> int:
    events = []
    for r in rows:
        end = r["finished_at"].timestamp()
        events += [(end - r["wall_time_s"], 1), (end, -1)]
    level = peak = 0
    for _, step in sorted(events):
        level += step
        peak = max(peak, level)
    return peak


def test_trials_spread_over_workers_pack_fractional_gpus_and_resume_from_checkpoints(
    cluster, tiny_assets, tmp_path
) -> None:
    from tlsweep.data.loading import load_dataset
    from tlsweep.engine.run import run_sweep
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.loop import run_trial

    spec = _spec(tiny_assets, tmp_path, "cluster")
    fault = TrialFault(
        {"phase": "confirm", "replicate": 0, "arm": "checkpoint"}, after_epoch=2, first_attempt_only=True
    )
    with injected(fault):
        outcome = run_sweep(spec, live=False, report=False)
    rows = pq.read_table(tmp_path / "cluster" / "trials.parquet").to_pylist()
    assert not outcome.interrupted and len(rows) == sum(trial_counts(spec).values())
    head_id = cluster[0].head_node.node_id
    nodes = {r["node_id"] for r in rows}
    assert len(nodes) == 2 and head_id not in nodes  # both workers, never the CPU-less head
    assert _max_overlap(rows) > 2  # more trials at once than GPUs: 0.5 GPU each packs two per GPU
    retried = [r for r in rows if r["attempts"] > 1]
    assert retried and all(r["status"] == "ok" for r in retried)
    # a retried trial continued from its epoch-2 checkpoint; its result equals an uninterrupted run's
    import json

    data = load_dataset(spec.dataset, image_size=spec.model.image_size)
    for row in retried:
        config = TrialConfig.from_dict(json.loads(row["params_json"])["config"]).replace(num_threads=1)
        fresh = run_trial(config, data)
        assert (fresh.best_val_acc, fresh.test_acc, fresh.best_epoch) == (
            row["best_val_acc"],
            row["test_acc"],
            row["best_epoch"],
        )


def test_a_lost_worker_node_costs_retries_not_trials(cluster, tiny_assets, tmp_path) -> None:
    from tlsweep.engine.run import run_sweep

    c, workers = cluster
    spec = _spec(tiny_assets, tmp_path, "nodeloss", confirm__seeds=4)
    trials_file = tmp_path / "nodeloss" / "trials.parquet"
    node_gone = tmp_path / "node-gone"
    # every first attempt holds still after its epoch-1 checkpoint until the node is gone, so the loss comes early
    # whatever the machine's speed (an idle one ran this whole sweep within seconds) and most trials run after it
    hold = TrialFault({}, after_epoch=1, first_attempt_only=True, pause_until=str(node_gone))

    removed: dict[str, float] = {}

    def kill_a_worker() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if any((trials_file.parent / "ray").glob("sweep-*/*/checkpoint_*")):
                removed["node_id"] = workers[1].node_id
                raylet = workers[1].all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
                doomed = _children(raylet)  # its Ray workers, the trials among them
                removed["at"] = time.time()  # SIGKILL of the node's processes starts now
                c.remove_node(workers[1], allow_graceful=False)
                # the workers die with their raylet, a moment later: wait, so that none finishes a trial after the loss
                while any(_alive(pid) for pid in doomed) and time.time() < deadline:
                    time.sleep(0.05)
                removed["took"] = time.time() - removed["at"]
                node_gone.touch()
                return
            time.sleep(0.2)
        node_gone.touch()

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    with injected(hold):
        outcome = run_sweep(spec, live=False, report=False)
    killer.join(timeout=5)
    rows = pq.read_table(trials_file).to_pylist()
    assert not outcome.interrupted
    assert {r["status"] for r in rows} <= {"ok", "diverged"}  # nothing lost to the node
    tune = [r for r in rows if r["phase"] == "tune"]
    assert len(tune) == trial_counts(spec)["tune"]
    expected, _ = plan_confirm(spec, tune)
    assert {p.trial_id for p in expected} == {r["trial_id"] for r in rows if r["phase"] == "confirm"}
    assert len({r["trial_id"] for r in rows}) == len(rows)
    assert removed, "the worker was never removed"
    survivor = workers[0].node_id
    late = [r for r in rows if r["finished_at"].timestamp() > removed["at"]]
    assert len(late) == len(rows)  # the hold worked: no trial finished before the loss
    assert late and {r["node_id"] for r in late} == {survivor}  # after the loss everything ran on the survivor
    # trials cut short on the lost node reran on the survivor; those that had checkpointed continued from it
    assert all(r["node_id"] == survivor for r in rows if r["resumed_from_epoch"] is not None)
