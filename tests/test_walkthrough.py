"""The README's "Your own images" section, walked from the folder that holds the study (issue 24, item 3)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SHORT = [
    "--set",
    "confirm.seeds=1",
    "--set",
    "design.budget.trials_per_cell=1",
    "--set",
    "design.factors.train_fraction=[1.0]",
]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _section_blocks() -> dict[str, str]:
    """The section's code blocks by language (bash blocks joined)."""
    section = README.read_text().split("## Your own images\n", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, str] = {}
    for lang, code in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        blocks[lang] = blocks.get(lang, "") + code
    return blocks


def test_the_own_images_walkthrough_runs_from_the_folder_that_holds_the_study(tmp_path: Path) -> None:
    import torch
    import torchvision

    from tlsweep.training.backbones import imagenet_weights, weights_cache_path

    blocks = _section_blocks()
    assert set(blocks) == {"python", "yaml", "bash"}
    home = tmp_path / "home"  # also holds a clone's tlsweep/ folder and a data/ folder
    (home / "tlsweep").mkdir(parents=True)
    (home / "tlsweep" / "__init__.py").write_text('raise ImportError("the tlsweep folder of the current folder")\n')
    (home / "data").mkdir()
    env = {
        **os.environ,
        "TORCH_HOME": str(tmp_path / "torch"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }

    def tlsweep(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-P", "-m", "tlsweep", *args]
        return subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=900)

    subprocess.run([sys.executable, "-P", "-c", blocks["python"]], cwd=home, env=env, check=True)
    assert len(list((home / "study" / "images").glob("*/*.png"))) == 90
    (home / "study" / "spec.yaml").write_text(blocks["yaml"])

    commands = [shlex.split(line.split("#")[0]) for line in blocks["bash"].splitlines() if line.startswith("tlsweep ")]
    verbs = [c[:2] for c in commands]
    assert verbs == [["tlsweep", x] for x in ("weights", "validate", "plan", "run", "export", "predict")]
    validate, plan, run, export, predict = (c[1:] for c in commands[1:])
    expected = weights_cache_path(imagenet_weights("resnet18").url).relative_to(Path(torch.hub.get_dir()).parent)
    refused = tlsweep(*validate)  # before the download: the file expected and the command that fetches it
    assert refused.returncode == 2 and str(expected) in refused.stderr and "tlsweep weights download" in refused.stderr

    # what `tlsweep weights download resnet18` leaves in the cache: a state dict saved locally (no network)
    path = tmp_path / "torch" / expected
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    checked = tlsweep(*validate)
    assert checked.returncode == 0, checked.stderr
    assert "finetune" in checked.stdout and "linear_probe" in checked.stdout and "too few" not in checked.stdout

    planned = tlsweep(*plan, *SHORT, "--json")  # the README's plan, with the short design run below
    assert planned.returncode == 0, planned.stderr[-3000:]
    estimate = json.loads(planned.stdout)
    arms = {a["arm"]: a["tune_trials"] + a["confirm_trials"] for a in estimate["estimate"]["arms"]}
    assert arms == {"finetune": 2, "linear_probe": 2, "scratch": 2}  # what the run below records
    assert {p["key"] for p in estimate["probes"]} == {f"arm={arm}" for arm in arms}
    done = tlsweep(*run, *SHORT, "--num-cpus", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    results = home / "runs" / "own-study"
    rows = pq.read_table(results / "trials.parquet").to_pylist()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    assert {r["arm"] for r in rows} == {"finetune", "linear_probe", "scratch"}
    for row in (r for r in rows if r["phase"] == "confirm"):  # per-class accuracy and the confusion matrix
        assert len(json.loads(row["test_class_acc"])) == 3 and sum(map(sum, json.loads(row["test_confusion"]))) == 12
    assert (results / "report" / "report.html").is_file()
    assert tlsweep("status", "runs/own-study").returncode == 0

    exported = tlsweep(*export)
    assert exported.returncode == 0, exported.stderr
    for arm in ("finetune", "linear_probe", "scratch"):
        assert (
            f"{arm}: {results / 'export' / arm / 'model.pt'} (train_fraction=1|epochs=3, seed 1000" in exported.stdout
        )
        assert (results / "export" / arm / "metrics.json").is_file() and (
            results / "export" / arm / "config.json"
        ).is_file()
    predicted = tlsweep(*predict)
    assert predicted.returncode == 0 and "wrote 90 predictions" in predicted.stdout, predicted.stderr
    saved = torch.load(results / "export" / "finetune" / "model.pt", weights_only=True)
    plain = torchvision.models.resnet18(num_classes=3)
    plain.load_state_dict(saved["state_dict"])  # plain PyTorch, no tlsweep
    assert saved["class_names"] == ["blue", "green", "red"]
    for arm in ("finetune", "linear_probe", "scratch"):  # weights.pt: the library's own model, as export prints
        weights = results / "export" / arm / "weights.pt"
        assert f"  plain weights: {weights} (load into torchvision.models.resnet18(num_classes=3))" in exported.stdout
        torchvision.models.resnet18(num_classes=3).load_state_dict(torch.load(weights, weights_only=True))
        info = json.loads((results / "export" / arm / "config.json").read_text())
        assert info["weights"] == {"file": "weights.pt", "load_into": "torchvision.models.resnet18(num_classes=3)"}
    kept = {p.parent.parent.name.split("-", 1)[0] for p in (results / "ray").glob("sweep-*/*/checkpoint_*/state.pt")}
    assert kept == {"confirm"}  # keep: best: the tune trials' checkpoints are gone
