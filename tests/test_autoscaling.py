"""``ray up cluster.yaml`` end to end on one machine: Ray's own autoscaler (v2) with its fake multi-node provider and
cluster.yaml's node types (cluster-gcp.yaml's too, one run when they are the same), a tiny sweep through the real
``tlsweep run --address auto``, with trials that ask for the largest request of the shipped specs.

A CPU:0 head, no worker at start, no ``max_concurrent_trials``: the autoscaler must launch workers for the trials'
requests, no trial may run on the head, several trials run at once, and a request no node type holds is refused
in seconds (exit 2) instead of waiting forever.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_autoscaler import fake_autoscaling_cluster
from sweep_fixtures import tiny_spec_dict

from tlsweep.design import trial_counts
from tlsweep.engine.capacity import shape_from_autoscaling_config, trial_request, trial_slots
from tlsweep.results.store import ResultsStore
from tlsweep.spec import ResourcesSpec
from tlsweep.spec_load import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = ["cluster.yaml", "cluster-gcp.yaml"]
SWEEP_DEADLINE_S = 420  # exit 0 within this, or it hangs (measured 52-193 s on 2 cores at load averages 5-27)
REFUSAL_DEADLINE_S = 45  # Python, torch and a Ray connection on 2 busy cores, then the refusal


def _node_shapes(name: str) -> tuple[Any, ...]:
    config = yaml.safe_load((ROOT / name).read_text())
    types = config["available_node_types"]
    return (
        config["max_workers"],
        types[config["head_node_type"]]["resources"],
        sorted(
            (n, sorted(t["resources"].items()), t["max_workers"])
            for n, t in types.items()
            if n != config["head_node_type"]
        ),
    )


def _distinct_clusters() -> list[Any]:
    """One parameter per distinct set of node types (cluster files with the same ones share a run)."""
    groups: dict[str, list[str]] = {}
    for name in CLUSTER_FILES:
        groups.setdefault(repr(_node_shapes(name)), []).append(name)
    return [pytest.param(names[0], id="+".join(names)) for names in groups.values()]


def shipped_request() -> ResourcesSpec:
    """At least every shipped spec's trial request: the largest cpus_per_trial and gpus_per_trial of sweeps/*.yaml."""
    requests = [
        ResourcesSpec(**(yaml.safe_load(path.read_text()).get("resources") or {}))
        for path in sorted((ROOT / "sweeps").glob("*.yaml"))
    ]
    return ResourcesSpec(
        cpus_per_trial=max(r.cpus_per_trial for r in requests), gpus_per_trial=max(r.gpus_per_trial for r in requests)
    )


@pytest.fixture(scope="module", params=_distinct_clusters())
def cluster(request, ray_stopped):
    import ray

    name = request.param
    with fake_autoscaling_cluster(ROOT / name, env={"PYTHONPATH": _pythonpath()}) as fake:
        ray.init(address=fake.address, log_to_driver=False)  # this process watches nodes and placement groups
        try:
            yield name, fake
        finally:
            ray.shutdown()


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def _workers(head_node_id: str) -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n["Alive"] and n["NodeID"] != head_node_id]


def _write_spec(tmp_path: Path, tiny_assets, name: str, resources: dict[str, Any]) -> Path:
    data = tiny_spec_dict(tiny_assets, tmp_path / "runs", name=name)
    # 8 trials (2 arms × 2 tuned + 2 arms × 2 seeds); 3 epochs, so trials that start together overlap in training
    data["design"]["factors"] = {"init": ["checkpoint", "scratch"], "train_fraction": [1.0], "epochs": [3]}
    data["resources"] = resources  # no max_concurrent_trials: the cluster decides
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _tlsweep_run(spec_path: Path, address: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``tlsweep run SPEC --address auto`` in a subprocess, its output in a file beside the spec (no pipe to fill)."""
    # `--address auto` as users type it; RAY_ADDRESS pins "auto" to this test's head, never another Ray on the machine
    env = {**os.environ, "RAY_ADDRESS": address, "PYTHONPATH": _pythonpath()}
    command = [sys.executable, "-m", "tlsweep", "run", str(spec_path), "--address", "auto", "--no-report"]
    log = spec_path.with_suffix(".log")
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return proc, log


def test_a_request_no_node_type_holds_is_refused_in_seconds(cluster, tiny_assets, tmp_path) -> None:
    name, fake = cluster
    shape = shape_from_autoscaling_config(yaml.safe_load((ROOT / name).read_text()), source=name)
    largest_cpus = max((t.resources or {}).get("CPU", 0) for t in shape.node_types)
    cpus = int(largest_cpus) + 16
    spec_path = _write_spec(tmp_path, tiny_assets, "toolarge", {"cpus_per_trial": cpus, "gpus_per_trial": 0.25})
    started = time.monotonic()
    proc, log = _tlsweep_run(spec_path, fake.address)
    proc.wait(timeout=REFUSAL_DEADLINE_S + 60)
    elapsed = time.monotonic() - started
    err = log.read_text()
    assert proc.returncode == 2, err[-3000:]
    assert elapsed < REFUSAL_DEADLINE_S, f"refused after {elapsed:.0f} s"
    message = " ".join(err.split())
    assert f"resources.cpus_per_trial: {cpus}" in message and "resources.gpus_per_trial: 0.25" in message
    assert f"{{CPU: {cpus}, GPU: 0.25}}" in message
    assert f"the largest node: gpu_worker {{CPU: {int(largest_cpus)}, GPU: 4}}" in message
    assert f"at most {int(largest_cpus)}" in message and "Traceback" not in err
    assert not _workers(fake.head_node_id)  # nothing was launched for it
    print(f"\nrefused in {elapsed:.1f} s: {message[-400:]}")


def test_ray_up_cluster_runs_a_sweep_on_workers_it_launches(cluster, tiny_assets, tmp_path) -> None:
    import ray

    name, fake = cluster
    resources = shipped_request()
    request = trial_request(resources)
    spec_path = _write_spec(
        tmp_path,
        tiny_assets,
        "autoscaled",
        {"cpus_per_trial": resources.cpus_per_trial, "gpus_per_trial": resources.gpus_per_trial},
    )
    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    shape = shape_from_autoscaling_config(fake.config, source=name)
    expected_slots = trial_slots(shape, request)

    assert not _workers(fake.head_node_id), "a worker node before any demand"
    started = time.monotonic()
    proc, log = _tlsweep_run(spec_path, fake.address)
    seen_workers: dict[str, float] = {}  # node id -> when first seen (s after the start)
    most_workers = 0
    bundles: set[tuple[tuple[str, float], ...]] = set()
    while proc.poll() is None and time.monotonic() - started < SWEEP_DEADLINE_S:
        workers = _workers(fake.head_node_id)
        most_workers = max(most_workers, len(workers))
        for node in workers:
            seen_workers.setdefault(node["NodeID"], time.monotonic() - started)
        for group in ray.util.placement_group_table().values():
            for bundle in group["bundles"].values():
                bundles.add(tuple(sorted((k, float(v)) for k, v in bundle.items())))
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 0, f"exit {proc.returncode} after {elapsed:.0f} s:\n{err[-4000:]}"
    assert elapsed < SWEEP_DEADLINE_S
    assert expected_slots >= 2, f"{name}'s node types hold {expected_slots} trial(s) of {request} at once"

    rows = ResultsStore(tmp_path / "runs" / spec.name).read_trials().to_pylist()
    planned = sum(trial_counts(spec).values())
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == planned == len(set(ids)), f"{len(ids)} rows for {planned} planned trials"
    assert all(r["status"] != "failed" for r in rows), [r["error"] for r in rows if r["status"] == "failed"]
    nodes_used = {r["node_id"] for r in rows}
    assert fake.head_node_id not in nodes_used, "a trial ran on the CPU:0 head"
    assert nodes_used <= set(seen_workers), "a trial ran on a node that is not one of this cluster's workers"
    assert 1 <= most_workers <= fake.config["max_workers"]
    assert bundles == {tuple(sorted(request.items()))}, f"trials asked for {bundles}, the spec for {request}"
    at_once = _trials_at_once(rows)
    assert at_once >= 2, "trials ran one at a time"
    status = json.loads(ResultsStore(tmp_path / "runs" / spec.name).read_text("status.json") or "{}")
    assert status.get("slots") == expected_slots, (
        f"{status.get('slots')} slots planned, the node types hold {expected_slots}"
    )
    print(
        f"\n{name}: first worker at +{min(seen_workers.values()):.0f} s, {len(seen_workers)} worker(s) launched "
        f"(at most {most_workers} at once), {planned} trials in {elapsed:.0f} s, {expected_slots} slots, "
        f"{at_once} trials at once at most, request {request}"
    )


def _trials_at_once(rows: list[dict[str, Any]]) -> int:
    spans = [(r["finished_at"].timestamp() - r["wall_time_s"], r["finished_at"].timestamp()) for r in rows]
    return max(sum(start <= begin < end for start, end in spans) for begin, _ in spans)
