"""A private autoscaling Ray cluster on this machine: Ray's own autoscaler (v2, what ``ray up`` runs) with its fake
multi-node provider, the node types copied from a cluster-launcher file (``cluster.yaml``).

Other programs run Ray on the same machine, so the head gets its own temp dir and ports, the driver is pointed at
it explicitly, and the teardown ends only the processes whose command line holds that temp dir (and their
children), by pid. Never ``ray stop`` (it kills every Ray process on the machine) and never
``ray.cluster_utils.AutoscalingCluster`` (it calls ``ray stop --force``; its yaml is missing from the wheel).
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FAKE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
HEAD_TYPE = "ray.head.default"  # the fake provider tags its head with this node type
MB = 2**20


@dataclass
class FakeCluster:
    address: str  # the head's GCS, for RAY_ADDRESS / --address
    head_node_id: str
    temp_dir: Path
    config_path: Path
    config: dict[str, Any]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def autoscaling_config(cluster_file: Path, *, gcs_address: str, head_node_id: str) -> dict[str, Any]:
    """``cluster_file``'s node types and node limits under the fake provider (no setup or start commands)."""
    source = yaml.safe_load(cluster_file.read_text())
    types = copy.deepcopy(source["available_node_types"])
    head = types.pop(source["head_node_type"])
    node_types: dict[str, Any] = {HEAD_TYPE: {"resources": head["resources"], "max_workers": 0, "node_config": {}}}
    for name, body in types.items():
        resources = {**body["resources"], "object_store_memory": 80 * MB}  # small stores: 2 cores, shared RAM
        node_types[name] = {
            "min_workers": body.get("min_workers", 0),
            "max_workers": body["max_workers"],
            "resources": resources,
            "node_config": {},
        }
    return {
        "cluster_name": f"fake-{source['cluster_name']}",
        "max_workers": source["max_workers"],
        "upscaling_speed": source.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": source.get("idle_timeout_minutes", 5),
        "provider": {
            "type": "external",
            "module": FAKE_PROVIDER,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "launch_multiple": True,
            "head_node_id": head_node_id,
            "gcs_address": gcs_address,
        },
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": node_types,
        "head_node_type": HEAD_TYPE,
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def own_processes(tag: str) -> list[Any]:
    """The processes whose command line holds ``tag``, and their children (this process and its parents left out)."""
    import psutil  # Ray's vendored copy, importable once ray is imported

    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found: dict[int, Any] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid in mine or not any(tag in arg for arg in proc.info["cmdline"] or []):
                continue
            for p in [proc, *proc.children(recursive=True)]:
                if p.pid not in mine:
                    found[p.pid] = p
        except psutil.Error:
            continue
    return list(found.values())


def stop_processes(tag: str) -> int:
    """End, by pid, every process ``own_processes(tag)`` finds: SIGTERM, then SIGKILL after 10 s. Returns how many."""
    import psutil

    procs = own_processes(tag)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


@contextmanager
def fake_autoscaling_cluster(cluster_file: Path, *, env: dict[str, str] | None = None) -> Iterator[FakeCluster]:
    """Start a head (its resources from ``cluster_file``'s head type) whose autoscaler launches worker nodes of
    ``cluster_file``'s types on demand; stop every process of it on exit."""
    import ray
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    ip = ray._private.services.get_node_ip_address()
    port = _free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="tlsw-as-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    config = autoscaling_config(cluster_file, gcs_address=f"{ip}:{port}", head_node_id=FAKE_HEAD_NODE_ID)
    config_path = temp_dir / "autoscaling.yaml"
    config_path.write_text(yaml.safe_dump(config))
    head = config["available_node_types"][HEAD_TYPE]["resources"]
    head_env = {
        **os.environ,
        **(env or {}),
        "RAY_FAKE_CLUSTER": "1",
        "RAY_enable_autoscaler_v2": "1",
        "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
        "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    head_env.pop("RAY_ADDRESS", None)
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        f"--node-ip-address={ip}",
        f"--port={port}",
        f"--temp-dir={temp_dir}",
        f"--autoscaling-config={config_path}",
        "--include-dashboard=false",
        f"--dashboard-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--num-cpus={int(head.get('CPU', 0))}",
        f"--num-gpus={int(head.get('GPU', 0))}",
        f"--object-store-memory={80 * MB}",
        "--disable-usage-stats",
    ]
    try:
        started = subprocess.run(command, env=head_env, capture_output=True, text=True, timeout=180)
        if started.returncode != 0:
            raise RuntimeError(f"ray start --head failed ({started.returncode}):\n{started.stderr[-3000:]}")
        yield FakeCluster(f"{ip}:{port}", FAKE_HEAD_NODE_ID, temp_dir, config_path, config)
    finally:
        stop_processes(str(temp_dir))
        time.sleep(0.5)
        shutil.rmtree(temp_dir, ignore_errors=True)
