"""What the Ray cluster can hold: its node types, how many trials run at once, and the preflight that refuses a
trial request no node can hold.

On an autoscaling cluster (``ray up cluster.yaml``) the resources present at start say nothing: the head has
``CPU: 0`` and no worker exists yet. The node types of the autoscaling config do: each type's resources and how many
nodes of it the autoscaler may start. Without an autoscaling config (a local instance, a fixed set of ``ray start``
nodes) the nodes alive now are the whole cluster.

The autoscaling config is found, in this order, at ``TLSWEEP_CLUSTER_CONFIG``, or as the ``--autoscaling-config`` of
the autoscaler (Ray's ``monitor.py``) serving this cluster's GCS on this machine: the head, where ``ray exec`` and
``ray job submit`` run the driver.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tlsweep.errors import SpecError
from tlsweep.spec import ResourcesSpec

log = logging.getLogger(__name__)
CLUSTER_CONFIG_ENV = "TLSWEEP_CLUSTER_CONFIG"
PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"  # Tune's cap on trials waiting for resources (ray#43451)
_EPS = 1e-9


@dataclass(frozen=True)
class NodeType:
    """One kind of node: its resources (``None``: not declared, the autoscaler detects them) and how many at most."""

    name: str
    resources: Mapping[str, float] | None
    max_count: int
    head: bool = False

    def describe(self) -> str:
        if self.resources is None:
            return f"{self.name} (resources not declared)"
        shown = {k: v for k, v in self.resources.items() if k in ("CPU", "GPU")}
        return f"{self.name} {{{', '.join(f'{k}: {_number(v)}' for k, v in shown.items())}}}"


@dataclass(frozen=True)
class ClusterShape:
    """The node types a sweep can use, the cap on worker nodes, and where they were read."""

    node_types: tuple[NodeType, ...]
    max_workers: int
    source: str
    autoscaling: bool


def trial_request(resources: ResourcesSpec) -> dict[str, float]:
    """One trial's Ray resources, as ``tune.with_resources`` asks for them: ``{"CPU": c}`` plus ``"GPU"`` when > 0."""
    request = {"CPU": float(resources.cpus_per_trial)}
    if resources.gpus_per_trial:
        request["GPU"] = float(resources.gpus_per_trial)
    return request


def trials_per_node(node: Mapping[str, float], request: Mapping[str, float]) -> int:
    """How many trials asking for ``request`` one node with ``node``'s resources holds at once."""
    fits = [math.floor(node.get(key, 0.0) / amount + _EPS) for key, amount in request.items() if amount > 0]
    return max(0, min(fits)) if fits else 0


def trial_slots(shape: ClusterShape, request: Mapping[str, float]) -> int:
    """Trials the whole cluster holds at once once the autoscaler started every node it may: the head, then the
    worker types that hold the most trials per node first, within each type's and the cluster's node limits.
    A type without declared resources counts as one trial per node (a lower bound)."""
    slots = sum(trials_per_node(t.resources or {}, request) for t in shape.node_types if t.head)
    workers = [t for t in shape.node_types if not t.head and t.max_count > 0]
    per_node = {t.name: 1 if t.resources is None else trials_per_node(t.resources, request) for t in workers}
    nodes_left = shape.max_workers
    for node_type in sorted(workers, key=lambda t: -per_node[t.name]):
        nodes = min(node_type.max_count, nodes_left)
        if per_node[node_type.name] > 0 and nodes > 0:
            slots += nodes * per_node[node_type.name]
            nodes_left -= nodes
    return slots


def shape_from_autoscaling_config(config: Mapping[str, Any], *, source: str) -> ClusterShape:
    """The node types of a Ray cluster-launcher config (``cluster.yaml``, or the bootstrap config on a head)."""
    types = config.get("available_node_types") or {}
    head_type = config.get("head_node_type")
    total = config.get("max_workers")
    node_types = []
    for name, body in types.items():
        body = body or {}
        declared = body.get("resources")
        resources = None if not declared or "CPU" not in declared else {k: float(v) for k, v in declared.items()}
        is_head = name == head_type
        max_count = 1 if is_head else int(body.get("max_workers", total if total is not None else 0))
        node_types.append(NodeType(name=str(name), resources=resources, max_count=max_count, head=is_head))
    workers_cap = int(total) if total is not None else sum(t.max_count for t in node_types if not t.head)
    return ClusterShape(tuple(node_types), workers_cap, source, autoscaling=True)


def shape_from_nodes(nodes: Iterable[Mapping[str, Any]], *, source: str) -> ClusterShape:
    """The alive nodes of ``ray.nodes()``, each a node type of its own (a cluster nothing is added to)."""
    node_types = []
    for node in nodes:
        if not node.get("Alive"):
            continue
        resources = {k: float(v) for k, v in (node.get("Resources") or {}).items()}
        resources.setdefault("CPU", 0.0)
        head = "node:__internal_head__" in resources
        node_types.append(NodeType(str(node.get("NodeID", "?"))[:12], resources, 1, head=head))
    return ClusterShape(tuple(node_types), sum(not t.head for t in node_types), source, autoscaling=False)


def local_shape(num_cpus: int, num_gpus: int = 0) -> ClusterShape:
    """This machine alone, as the local Ray instance ``tlsweep run`` starts sees it (``--num-cpus``, its GPUs)."""
    resources = {"CPU": float(num_cpus), **({"GPU": float(num_gpus)} if num_gpus else {})}
    head = NodeType("this machine", resources, 1, head=True)
    return ClusterShape((head,), 0, f"this machine ({num_cpus} CPUs, {num_gpus} GPUs)", autoscaling=False)


def monitor_autoscaling_config(gcs_address: str, cmdlines: Iterable[list[str]]) -> str | None:
    """The ``--autoscaling-config`` of the Ray autoscaler (``monitor.py``) serving ``gcs_address``, from the command
    lines of this machine's processes; None when no such autoscaler runs here or it has no config."""
    for args in cmdlines:
        if not any(a.endswith("monitor.py") for a in args[:4]) or f"--gcs-address={gcs_address}" not in args:
            continue
        for arg in args:
            if arg.startswith("--autoscaling-config="):
                return arg.split("=", 1)[1]
        return None
    return None


def _process_cmdlines() -> Iterator[list[str]]:
    """The command lines of this machine's processes (Linux ``/proc``; nothing elsewhere)."""
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            raw = entry.read_bytes()
        except OSError:
            continue
        if raw:
            yield raw.decode(errors="replace").rstrip("\0").split("\0")


def load_autoscaling_config(path: str | Path) -> ClusterShape:
    """The node types of the autoscaling config at ``path``.

    Raises:
        SpecError: the file is missing or not a cluster config (naming it).
    """
    path = Path(path).expanduser()
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(
            f"{path}: cannot read the cluster config ({exc}); fix the file or {CLUSTER_CONFIG_ENV}"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("available_node_types"), dict):
        raise SpecError(
            f"{path}: not a Ray cluster config (no `available_node_types` mapping); fix {CLUSTER_CONFIG_ENV}"
        )
    return shape_from_autoscaling_config(config, source=f"the autoscaling config {path}")


def cluster_shape() -> ClusterShape:
    """The shape of the Ray cluster this process is connected to (``ray.init`` first): its autoscaling config's
    node types when there is one, with the head as it runs; else the nodes alive now."""
    import ray

    gcs_address = ray.get_runtime_context().gcs_address
    config = os.environ.get(CLUSTER_CONFIG_ENV) or monitor_autoscaling_config(gcs_address, _process_cmdlines())
    if not config:
        return shape_from_nodes(ray.nodes(), source=f"the nodes of the Ray cluster at {gcs_address}")
    shape = load_autoscaling_config(config)
    running_head = shape_from_nodes(
        [n for n in ray.nodes() if "node:__internal_head__" in n.get("Resources", {})], source=""
    )
    if not running_head.node_types:
        return shape
    workers = tuple(t for t in shape.node_types if not t.head)
    return ClusterShape(running_head.node_types + workers, shape.max_workers, shape.source, autoscaling=True)


def check_trial_fits(shape: ClusterShape, resources: ResourcesSpec, *, source: str) -> None:
    """Refuse a trial request that no node of ``shape`` can hold (Ray would wait for it forever).

    Raises:
        SpecError: naming ``resources.cpus_per_trial``/``gpus_per_trial``, the request, the largest node and the fix.
    """
    request = trial_request(resources)
    usable = [t for t in shape.node_types if t.head or t.max_count > 0]
    if any(t.resources is None for t in usable):
        log.warning("%s: some node types declare no resources; the trial request is not checked", shape.source)
        return
    if any(trials_per_node(t.resources or {}, request) >= 1 for t in usable):
        return
    largest = max(usable, key=lambda t: (_amount(t, "GPU"), _amount(t, "CPU")), default=None)
    most_cpu = max((_amount(t, "CPU") for t in usable), default=0.0)
    most_gpu = max((_amount(t, "GPU") for t in usable), default=0.0)
    fixes = []
    if request["CPU"] > most_cpu + _EPS:
        fixes.append(f"resources.cpus_per_trial at most {_number(most_cpu)}")
    if request.get("GPU", 0.0) > most_gpu + _EPS:
        fixes.append(f"resources.gpus_per_trial at most {_number(most_gpu)}")
    fix = " and ".join(fixes) or "a request that one node type holds whole (no type has both the CPUs and the GPUs)"
    asked = ", ".join(f"{k}: {_number(v)}" for k, v in request.items())
    where = "node type" if shape.autoscaling else "node"
    raise SpecError(
        f"{source}: resources.cpus_per_trial: {_number(resources.cpus_per_trial)}, resources.gpus_per_trial: "
        f"{_number(resources.gpus_per_trial)}: one trial asks for {{{asked}}}, which no {where} of the cluster can hold "
        f"(from {shape.source}; the largest node: {largest.describe() if largest else 'none'}), so it would wait "
        f"forever. Fix: {fix}, or a larger node type in the cluster config."
    )


def preflight(resources: ResourcesSpec, *, source: str) -> ClusterShape:
    """Before any trial: the connected cluster's shape, after checking that one trial fits some node of it."""
    shape = cluster_shape()
    check_trial_fits(shape, resources, source=source)
    return shape


def planned_concurrency(resources: ResourcesSpec, shape: ClusterShape | None = None) -> int:
    """Trials at once: ``max_concurrent_trials`` when set, else what the cluster's node types hold (at least 1)."""
    if resources.max_concurrent_trials:
        return resources.max_concurrent_trials
    shape = shape or cluster_shape()
    return max(1, trial_slots(shape, trial_request(resources)))


@contextmanager
def pending_trials_limit(concurrency: int) -> Iterator[None]:
    """Let Tune queue as many trials as run at once, so an autoscaling cluster sees the whole demand at once (a
    value the user set in the environment wins); the previous value is restored on exit."""
    previous = os.environ.get(PENDING_TRIALS_ENV)
    if previous is None:
        os.environ[PENDING_TRIALS_ENV] = str(max(1, concurrency))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PENDING_TRIALS_ENV, None)


def _amount(node_type: NodeType, key: str) -> float:
    return (node_type.resources or {}).get(key, 0.0)


def _number(value: float) -> str:
    return f"{value:g}"
