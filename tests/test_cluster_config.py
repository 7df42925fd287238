"""cluster.yaml and cluster-gcp.yaml: Ray's own offline validation plus the properties tlsweep relies on."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["cluster.yaml", "cluster-gcp.yaml"]
DOC = ROOT / "docs" / "cluster.md"
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*>")

validation = pytest.importorskip("ray.autoscaler._private.util", reason="ray[tune] is not installed")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def prepared(name: str) -> dict[str, Any]:
    """The config after Ray fills in its defaults and validates it against its schema (no cloud calls)."""
    config = validation.prepare_config(load(name))
    validation.validate_config(config)
    return config


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}


@pytest.mark.parametrize("name", CONFIGS)
def test_ray_accepts_the_config(name: str) -> None:
    config = prepared(name)
    assert config["provider"]["type"] == {"cluster.yaml": "aws", "cluster-gcp.yaml": "gcp"}[name]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize(
    ("corrupt", "unexpected"),
    [
        (lambda c: c.update(max_worker=4), "max_worker"),  # a typo of max_workers
        (lambda c: c["available_node_types"]["gpu_worker"].update(gpus=4), "gpus"),
        (lambda c: c["auth"].update(ssh_usr="ubuntu"), "ssh_usr"),
    ],
    ids=["top-level", "node-type", "auth"],
)
def test_ray_rejects_unknown_keys(name: str, corrupt, unexpected: str) -> None:
    import jsonschema

    config = copy.deepcopy(load(name))
    corrupt(config)
    with pytest.raises(jsonschema.ValidationError, match=f"'{unexpected}' was unexpected"):
        validation.validate_config(validation.prepare_config(config))


def test_ray_rejects_an_unknown_provider() -> None:
    config = load("cluster.yaml")
    config["provider"]["type"] = "azurre"
    with pytest.raises(NotImplementedError, match="azurre"):
        validation.validate_config(validation.prepare_config(config))


@pytest.mark.parametrize("name", CONFIGS)
def test_head_runs_only_the_driver_and_workers_bring_gpus(name: str) -> None:
    config = prepared(name)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"]["CPU"] == 0 and head["resources"].get("GPU", 0) == 0
    workers = worker_types(config)
    assert workers
    for node_type in workers.values():
        assert node_type["resources"]["GPU"] >= 2  # multi-GPU nodes
        assert node_type["resources"]["CPU"] >= 4 * node_type["resources"]["GPU"]
        assert node_type["min_workers"] == 0 < node_type["max_workers"] <= config["max_workers"]
    assert config["max_workers"] >= 1 and 1 <= config["idle_timeout_minutes"] <= 60


def test_aws_workers_are_spot_with_storage_access() -> None:
    config = prepared("cluster.yaml")
    head = config["available_node_types"]["head"]["node_config"]
    for node_type in worker_types(config).values():
        node = node_type["node_config"]
        assert node["InstanceMarketOptions"]["MarketType"] == "spot"
        assert node["IamInstanceProfile"]["Arn"] == head["IamInstanceProfile"]["Arn"]
        assert node["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")


def test_gcp_workers_are_preemptible_gpus_with_storage_access() -> None:
    config = prepared("cluster-gcp.yaml")
    for node_type in worker_types(config).values():
        node = node_type["node_config"]
        # A mapping: the list form of Ray's examples is rejected by the Compute API (ray#46248).
        assert node["scheduling"] == {"preemptible": True, "automaticRestart": False, "onHostMaintenance": "TERMINATE"}
        accelerators = node["guestAccelerators"]
        assert sum(a["acceleratorCount"] for a in accelerators) == node_type["resources"]["GPU"]
        assert {"key": "install-nvidia-driver", "value": "True"} in node["metadata"]["items"]
        account = node["serviceAccounts"][0]
        assert account["email"].startswith("ray-autoscaler-sa-v1@")
        assert "https://www.googleapis.com/auth/cloud-platform" in account["scopes"]


@pytest.mark.parametrize("name", CONFIGS)
def test_dashboard_is_not_exposed(name: str) -> None:
    config = prepared(name)  # after defaults: Ray's own defaults use --dashboard-host=0.0.0.0
    commands = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "0.0.0.0" not in commands
    head_start = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert len(head_start) == 1 and "--dashboard-host=127.0.0.1" in shlex.split(head_start[0])
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    assert rules == []  # Ray then opens only SSH and intra-cluster traffic


@pytest.mark.parametrize("name", CONFIGS)
def test_setup_installs_tlsweep_with_pins_weights_and_data(name: str) -> None:
    import ray

    config = prepared(name)
    setup = config["setup_commands"]
    assert any("torch==2.14.1" in c and "torchvision==0.29.1" in c for c in setup)
    install = [c for c in setup if "-e ~/tlsweep" in c]
    assert len(install) == 1 and f'"ray[default,tune]=={ray.__version__}"' in install[0]
    assert setup.index(install[0]) > next(i for i, c in enumerate(setup) if "torch==" in c)
    weights = [c for c in setup if "tlsweep weights download resnet50" in c]
    assert weights and setup.index(weights[0]) > setup.index(install[0])
    sync = {"cluster.yaml": "aws s3 sync", "cluster-gcp.yaml": "gsutil -m -q rsync -r"}[name]
    assert any(sync in c and "~/data/" in c for c in setup)
    assert config["file_mounts"] == {"~/tlsweep": "."}
    # Anchored excludes: an unanchored "data" would also drop the tlsweep/data package.
    assert {"/.venv", "/.git", "/data", "/runs"} <= set(config["rsync_exclude"])
    assert not {"data", ".venv", "runs"} & set(config["rsync_exclude"])
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert "~/venv/bin/ray" in command  # the venv's Ray, not whatever the image ships


@pytest.mark.parametrize("name", CONFIGS)
def test_every_placeholder_is_explained(name: str) -> None:
    text = (ROOT / name).read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    header = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    placeholders = set(PLACEHOLDER.findall(body))
    assert placeholders  # the account-specific values are placeholders, not someone's real ids
    for placeholder in placeholders:
        assert placeholder in header, f"{name}: {placeholder} is not explained in the header"
        assert placeholder in DOC.read_text(), f"docs/cluster.md does not explain {placeholder}"


def test_the_weights_prefetch_command_exists() -> None:
    from click.testing import CliRunner

    from tlsweep.cli import cli

    if "weights" not in cli.commands:
        pytest.skip("tlsweep.cli.train (the `weights` group) is not in this checkout")
    result = CliRunner().invoke(cli, ["weights", "download", "--help"])
    assert result.exit_code == 0, result.output


def test_the_guide_uses_only_real_tlsweep_flags() -> None:
    from tlsweep.cli import cli

    text = DOC.read_text()
    for command in ("ray up cluster.yaml", "ray dashboard cluster.yaml", "ray down cluster.yaml", "--address auto"):
        assert command in text
    calls = re.findall(r"tlsweep (run|status|report) ([^\n`\"]*)", text)
    assert any(name == "run" for name, _ in calls)
    for name, rest in calls:
        command = cli.commands.get(name)
        if command is None:
            continue  # that command's module is not installed in this checkout
        known = {opt for param in command.params for opt in getattr(param, "opts", [])}
        used = set(re.findall(r"(?<!\S)(--[a-z][a-z-]*)", rest))
        assert used <= known, f"`tlsweep {name}` has no option(s) {sorted(used - known)}"
