"""What a cluster holds (tlsweep.engine.capacity): trials per node, slots over node types, the preflight refusal,
where the autoscaling config is found, and Tune's pending-trials limit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from cli_exit import run_tlsweep
from sweep_fixtures import tiny_spec_dict

from tlsweep.engine.capacity import (
    CLUSTER_CONFIG_ENV,
    PENDING_TRIALS_ENV,
    ClusterShape,
    NodeType,
    check_trial_fits,
    load_autoscaling_config,
    monitor_autoscaling_config,
    pending_trials_limit,
    planned_concurrency,
    shape_from_autoscaling_config,
    shape_from_nodes,
    trial_request,
    trial_slots,
    trials_per_node,
)
from tlsweep.errors import SpecError
from tlsweep.spec import ResourcesSpec

ROOT = Path(__file__).resolve().parents[1]


def _config(**workers: dict) -> dict:
    types = {"head": {"resources": {"CPU": 0, "GPU": 0}}}
    types.update(workers)
    return {"max_workers": 4, "head_node_type": "head", "available_node_types": types}


def test_trials_per_node_counts_the_scarcest_resource_and_fractional_gpus() -> None:
    node = {"CPU": 48.0, "GPU": 4.0}
    assert trials_per_node(node, {"CPU": 4.0, "GPU": 0.25}) == 12  # CPUs bind
    assert trials_per_node(node, {"CPU": 4.0, "GPU": 0.5}) == 8  # GPUs bind
    assert trials_per_node(node, {"CPU": 0.1, "GPU": 0.1}) == 40  # 4 / 0.1 is 39.999... in floats
    assert trials_per_node({"CPU": 3.0}, {"CPU": 4.0}) == 0
    assert trials_per_node({"CPU": 8.0}, {"CPU": 1.0, "GPU": 0.5}) == 0  # no GPU on the node
    assert trials_per_node({"CPU": 0.0, "GPU": 0.0}, {"CPU": 1.0}) == 0  # the CPU:0 head


def test_trial_request_is_what_tune_is_asked_for() -> None:
    assert trial_request(ResourcesSpec(cpus_per_trial=4, gpus_per_trial=0.25)) == {"CPU": 4.0, "GPU": 0.25}
    assert trial_request(ResourcesSpec(cpus_per_trial=2)) == {"CPU": 2.0}


def test_slots_come_from_the_node_types_not_from_what_runs_at_start() -> None:
    shape = shape_from_autoscaling_config(
        _config(gpu_worker={"min_workers": 0, "max_workers": 4, "resources": {"CPU": 48, "GPU": 4}}), source="t"
    )
    assert [t.name for t in shape.node_types if t.head] == ["head"]
    assert trial_slots(shape, {"CPU": 4.0, "GPU": 0.25}) == 4 * 12
    assert trial_slots(shape, {"CPU": 4.0, "GPU": 0.5}) == 4 * 8
    assert trial_slots(shape, {"CPU": 64.0}) == 0


def test_slots_fill_the_cluster_cap_with_the_roomiest_node_types_first() -> None:
    config = _config(
        small={"max_workers": 3, "resources": {"CPU": 8, "GPU": 1}},
        big={"max_workers": 2, "resources": {"CPU": 48, "GPU": 4}},
        cpu_only={"max_workers": 5, "resources": {"CPU": 96}},
    )
    config["max_workers"] = 3  # the cluster's cap on worker nodes, whatever the types allow
    shape = shape_from_autoscaling_config(config, source="t")
    assert trial_slots(shape, {"CPU": 4.0, "GPU": 1.0}) == 2 * 4 + 1 * 1
    assert trial_slots(shape, {"CPU": 4.0}) == 3 * 24  # three cpu_only nodes


def test_a_type_without_declared_resources_counts_one_trial_per_node_and_is_not_refused() -> None:
    shape = shape_from_autoscaling_config(_config(auto={"max_workers": 3, "resources": {}}), source="t")
    assert trial_slots(shape, {"CPU": 4.0, "GPU": 0.5}) == 3
    check_trial_fits(shape, ResourcesSpec(cpus_per_trial=512), source="s.yaml")  # Ray detects them: cannot tell


def test_the_preflight_names_the_fields_the_request_and_the_largest_node() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    shape = shape_from_autoscaling_config(config, source="the autoscaling config cluster.yaml")
    with pytest.raises(SpecError) as caught:
        check_trial_fits(shape, ResourcesSpec(cpus_per_trial=64, gpus_per_trial=0.25), source="sweeps/big.yaml")
    message = str(caught.value)
    assert message.startswith("sweeps/big.yaml: resources.cpus_per_trial: 64, resources.gpus_per_trial: 0.25")
    assert "{CPU: 64, GPU: 0.25}" in message and "the largest node: gpu_worker {CPU: 48, GPU: 4}" in message
    assert "cluster.yaml" in message and "resources.cpus_per_trial at most 48" in message
    assert "gpus_per_trial at most" not in message
    with pytest.raises(SpecError, match=r"resources\.gpus_per_trial at most 4\b"):
        check_trial_fits(shape, ResourcesSpec(cpus_per_trial=4, gpus_per_trial=8), source="s.yaml")


def test_the_preflight_names_a_request_that_only_fits_split_over_two_types() -> None:
    shape = shape_from_autoscaling_config(
        _config(
            cpu={"max_workers": 2, "resources": {"CPU": 64}}, gpu={"max_workers": 2, "resources": {"CPU": 8, "GPU": 4}}
        ),
        source="t",
    )
    with pytest.raises(SpecError, match="no type has both the CPUs and the GPUs"):
        check_trial_fits(shape, ResourcesSpec(cpus_per_trial=16, gpus_per_trial=1), source="s.yaml")
    check_trial_fits(shape, ResourcesSpec(cpus_per_trial=8, gpus_per_trial=1), source="s.yaml")


def test_alive_nodes_are_the_shape_without_an_autoscaler() -> None:
    nodes = [
        {"NodeID": "a" * 56, "Alive": True, "Resources": {"CPU": 0.0, "node:__internal_head__": 1.0}},
        {"NodeID": "b" * 56, "Alive": True, "Resources": {"CPU": 2.0, "GPU": 1.0}},
        {"NodeID": "c" * 56, "Alive": True, "Resources": {"CPU": 2.0, "GPU": 1.0}},
        {"NodeID": "d" * 56, "Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
    ]
    shape = shape_from_nodes(nodes, source="the nodes")
    assert not shape.autoscaling and len(shape.node_types) == 3
    assert trial_slots(shape, {"CPU": 1.0, "GPU": 0.5}) == 4
    with pytest.raises(SpecError, match=r"no node of the cluster can hold.*the largest node: b+ \{CPU: 2, GPU: 1\}"):
        check_trial_fits(shape, ResourcesSpec(cpus_per_trial=4), source="s.yaml")


def test_the_autoscaling_config_is_the_one_of_this_clusters_monitor() -> None:
    def monitor(gcs: str, *config: str) -> list[str]:
        return ["/venv/bin/python3", "-u", "/venv/lib/ray/autoscaler/v2/monitor.py", f"--gcs-address={gcs}", *config]

    lines = [
        ["/usr/bin/bash", "-c", "echo --gcs-address=10.0.0.1:6379 --autoscaling-config=/x.yaml monitor.py"],
        monitor("10.0.0.1:6380", "--autoscaling-config=/other.yaml"),  # someone else's cluster
        monitor("10.0.0.1:6379", "--autoscaling-config=/home/ubuntu/ray_bootstrap_config.yaml"),
    ]
    assert monitor_autoscaling_config("10.0.0.1:6379", lines) == "/home/ubuntu/ray_bootstrap_config.yaml"
    assert monitor_autoscaling_config("10.0.0.1:6381", lines) is None
    assert monitor_autoscaling_config("10.0.0.1:6379", [monitor("10.0.0.1:6379")]) is None  # no autoscaler config


def test_an_unreadable_cluster_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=f"{tmp_path}/missing.yaml: cannot read the cluster config"):
        load_autoscaling_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match="not a Ray cluster config"):
        load_autoscaling_config(tmp_path / "list.yaml")
    shape = load_autoscaling_config(ROOT / "cluster-gcp.yaml")
    assert shape.autoscaling and "cluster-gcp.yaml" in shape.source


def test_max_concurrent_trials_wins_over_the_cluster() -> None:
    shape = ClusterShape((NodeType("w", {"CPU": 48.0, "GPU": 4.0}, 4),), 4, "t", autoscaling=True)
    assert planned_concurrency(ResourcesSpec(cpus_per_trial=4, max_concurrent_trials=3), shape) == 3
    assert planned_concurrency(ResourcesSpec(cpus_per_trial=4), shape) == 48
    assert planned_concurrency(ResourcesSpec(cpus_per_trial=64), shape) == 1


def test_tunes_pending_trials_follow_the_concurrency_unless_the_user_set_them(monkeypatch) -> None:
    monkeypatch.delenv(PENDING_TRIALS_ENV, raising=False)
    with pending_trials_limit(32):
        assert os.environ[PENDING_TRIALS_ENV] == "32"
    assert PENDING_TRIALS_ENV not in os.environ
    monkeypatch.setenv(PENDING_TRIALS_ENV, "7")
    with pending_trials_limit(32):
        assert os.environ[PENDING_TRIALS_ENV] == "7"
    assert os.environ[PENDING_TRIALS_ENV] == "7"


@pytest.mark.ray
def test_tlsweep_run_refuses_a_trial_larger_than_the_machine_in_seconds(
    ray_local, tiny_assets, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv(CLUSTER_CONFIG_ENV, raising=False)
    spec = tiny_spec_dict(tiny_assets, tmp_path / "runs", resources={"cpus_per_trial": 4})
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(spec))
    started = time.monotonic()
    code, _, err = run_tlsweep(["run", path, "--no-report"], capsys, monkeypatch)  # on the session's 2-CPU Ray
    elapsed = time.monotonic() - started
    message = " ".join(err.split())
    assert code == 2, err
    assert f"{path}: resources.cpus_per_trial: 4, resources.gpus_per_trial: 0" in message
    assert "{CPU: 4}" in message and "no node of the cluster can hold" in message
    assert "resources.cpus_per_trial at most 2" in message
    assert elapsed < 60, f"refused after {elapsed:.0f} s"
    assert not (tmp_path / "runs" / "tiny" / "trials.parquet").exists()


@pytest.mark.ray
def test_a_named_cluster_config_gives_the_worker_types_and_the_running_head(ray_stopped, monkeypatch) -> None:
    import ray

    from tlsweep.engine.capacity import cluster_shape

    monkeypatch.setenv(CLUSTER_CONFIG_ENV, str(ROOT / "cluster.yaml"))
    ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    try:
        shape = cluster_shape()
    finally:
        ray.shutdown()
    head = [t for t in shape.node_types if t.head]
    assert len(head) == 1 and head[0].resources is not None and head[0].resources["CPU"] == 1.0  # as it runs
    assert [(t.name, t.max_count) for t in shape.node_types if not t.head] == [("gpu_worker", 4)]
    assert shape.autoscaling and "cluster.yaml" in shape.source
    assert trial_slots(shape, {"CPU": 1.0}) == 1 + 4 * 48
