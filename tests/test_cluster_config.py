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
    assert install[0].count(f"ray=={ray.__version__} $(sha1sum") == 2  # the stamp that skips it names the same Ray
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


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("spec_path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_spec_fits_a_node_type(name: str, spec_path: Path) -> None:
    from tlsweep.engine.capacity import check_trial_fits, shape_from_autoscaling_config, trial_request, trial_slots
    from tlsweep.spec import ResourcesSpec

    resources = ResourcesSpec(**(yaml.safe_load(spec_path.read_text()).get("resources") or {}))
    shape = shape_from_autoscaling_config(prepared(name), source=name)
    check_trial_fits(shape, resources, source=str(spec_path))  # SpecError: no node type holds one trial
    slots = trial_slots(shape, trial_request(resources))
    assert slots >= 2, f"{name} runs {slots} trial(s) of {spec_path.name} at once"
    if resources.max_concurrent_trials:
        assert resources.max_concurrent_trials <= slots, (
            f"{spec_path.name} asks for more trials at once than {name} holds"
        )


_LOGGING_TOOL = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'
_FAKE_PYTHON3 = """#!/bin/sh
echo "python3 $*" >> "$CALLS"
[ "$1 $2" = "-m venv" ] || exit 0
mkdir -p "$3/bin"
for tool in pip python ray tlsweep; do printf '%s' "$TOOL" > "$3/bin/$tool"; chmod +x "$3/bin/$tool"; done
"""


def _run_setup(config: dict[str, Any], home: Path, tools: Path, calls: Path) -> list[str]:
    """Run the config's setup commands as Ray does on a node (bash, HOME and PATH of the node); the tools called."""
    import subprocess

    calls.write_text("")
    env = {"HOME": str(home), "PATH": f"{tools}:/usr/bin:/bin", "CALLS": str(calls), "TOOL": _LOGGING_TOOL}
    for command in config["setup_commands"] + config["head_setup_commands"]:
        command = PLACEHOLDER.sub("filled-in", command)
        done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    return calls.read_text().splitlines()


@pytest.mark.parametrize("name", CONFIGS)
def test_setup_on_a_ready_node_installs_nothing_and_puts_the_venv_on_the_path(name: str, tmp_path: Path) -> None:
    import shutil
    import subprocess

    config = load(name)
    home, tools, calls = tmp_path / "home", tmp_path / "tools", tmp_path / "calls.log"
    (home / "tlsweep").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", home / "tlsweep" / "pyproject.toml")
    tools.mkdir()
    for tool, body in {
        "python3": _FAKE_PYTHON3,
        "sudo": _LOGGING_TOOL,
        "aws": _LOGGING_TOOL,
        "gsutil": _LOGGING_TOOL,
    }.items():
        (tools / tool).write_text(body)
        (tools / tool).chmod(0o755)

    first = _run_setup(config, home, tools, calls)  # a bare node: venv, pip, torch, tlsweep
    assert any(c.startswith("python3 -m venv") for c in first) and "pip install -q --upgrade pip" in first
    assert any("-e" in c.split() and "pip install" in c for c in first)
    again = _run_setup(config, home, tools, calls)  # a prebuilt image or a rerun: nothing is installed again
    assert not any(c.startswith("python3") or "--upgrade pip" in c or "-e" in c.split() for c in again), again
    (home / "tlsweep" / "pyproject.toml").write_text("changed dependencies\n")
    assert any("-e" in c.split() for c in _run_setup(config, home, tools, calls))  # until pyproject.toml changes

    for rc in (".bashrc", ".profile"):
        assert (home / rc).read_text().count("venv/bin") == 1
    # how Ray's SSH command runner opens a shell on a node (an interactive login bash that sources ~/.bashrc), and
    # a `ray job submit -- bash -lc` entrypoint (a login shell: ~/.profile)
    for shell in (["bash", "--login", "-c", "-i", "source ~/.bashrc; "], ["bash", "-lc", ""]):
        done = subprocess.run(
            [*shell[:-1], shell[-1] + "command -v ray python tlsweep"],
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        found = done.stdout.split()
        assert found == [str(home / "venv" / "bin" / tool) for tool in ("ray", "python", "tlsweep")], done.stderr


def test_nodes_build_tlsweep_with_a_setuptools_that_reads_its_license() -> None:
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(data["project"]["license"], str)  # the SPDX string form (PEP 639): setuptools >= 77 only
    setuptools = [r for r in map(Requirement, data["build-system"]["requires"]) if r.name == "setuptools"]
    assert setuptools and not setuptools[0].specifier.contains("76.1.0") and setuptools[0].specifier.contains("77.0.3")
