"""What a run needs from this machine is checked before any work (issue 24, item 2): every arm's pretrained weights,
images that open; and an error no retry can fix fails its trial once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_exit import run_tlsweep
from data_fixtures import write_imagefolder
from faults import INJECTED, TrialFault, injected
from sweep_fixtures import smallest_spec_dict

from tlsweep.errors import WeightsError
from tlsweep.spec_load import parse_spec


def _two_arm_spec(data: Path, storage: Path) -> dict[str, Any]:
    return {
        "name": "weights",
        "dataset": {
            "format": "imagefolder",
            "root": str(data),
            "split_ratios": {"train": 0.5, "val": 0.25, "test": 0.25},
        },
        "model": {"backbone": "resnet18", "image_size": 16, "batch_size": 4},
        "design": {
            "arms": {"finetune": {"init": "imagenet"}, "scratch": {"init": "scratch"}},
            "factors": {"epochs": [1]},
            "recipe": {"lr": 0.01},
            "budget": {"trials_per_cell": 1},
        },
        "confirm": {"seeds": 2},
        "storage": str(storage),
        "tracking": {"wandb": {"mode": "disabled"}},
    }


def test_missing_imagenet_weights_are_refused_by_validate_and_run_and_shown_by_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import torchvision

    from tlsweep.engine import run
    from tlsweep.training.backbones import create_model, imagenet_weights, weights_cache_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = write_imagefolder(tmp_path / "images", {"ants": 8, "bees": 8})
    spec_path = tmp_path / "study.yaml"
    spec_path.write_text(yaml.safe_dump(_two_arm_spec(data, tmp_path / "runs")))
    expected = weights_cache_path(imagenet_weights("resnet18").url)
    command = "tlsweep weights download resnet18:IMAGENET1K_V1"

    code, _, err = run_tlsweep(["validate", spec_path], capsys, monkeypatch)
    assert code == 2 and str(expected) in err and command in err and "arm finetune (resnet18" in err
    assert "arm scratch" not in err
    code, out, _ = run_tlsweep(["models", "resnet18"], capsys, monkeypatch)
    assert code == 0 and f"resnet18: not cached; `{command}`" in out

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Ray started")

    monkeypatch.setattr(run.RaySession, "__enter__", no_ray)
    with pytest.raises(WeightsError, match="resnet18:IMAGENET1K_V1"):
        run.run_sweep(parse_spec(_two_arm_spec(data, tmp_path / "runs")), live=False, report=False)

    # the file a download leaves in torch.hub's cache, here a state dict saved locally (no network)
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    expected.parent.mkdir(parents=True)
    torch.save(state, expected)
    code, out, err = run_tlsweep(["validate", spec_path], capsys, monkeypatch)
    assert code == 0, err
    code, out, _ = run_tlsweep(["models", "resnet18"], capsys, monkeypatch)
    assert code == 0 and f"resnet18: {expected}" in out
    model = create_model("resnet18", 2, init="imagenet")  # what a trial of the finetune arm loads
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


def test_validate_lists_files_that_are_not_images_and_full_decode_finds_cut_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_imagefolder(tmp_path / "images", {"ants": 6, "bees": 6})
    spec = _two_arm_spec(data, tmp_path / "runs")
    spec["design"]["arms"]["finetune"] = {"init": "scratch", "freeze_depth": 0, "label_smoothing": 0.1}
    spec_path = tmp_path / "study.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    assert run_tlsweep(["validate", spec_path], capsys, monkeypatch)[0] == 0

    (data / "bees" / "bees_2.png").write_bytes(b"these bytes are not an image")
    code, _, err = run_tlsweep(["validate", spec_path], capsys, monkeypatch)
    assert code == 2 and "1 of 12 image(s) do not open" in err and "bees/bees_2.png: UnidentifiedImageError" in err
    assert run_tlsweep(["validate", spec_path, "--no-data-check"], capsys, monkeypatch)[0] == 0

    write_imagefolder(tmp_path / "images", {"ants": 6, "bees": 6})
    whole = (data / "ants" / "ants_4.png").read_bytes()
    (data / "ants" / "ants_4.png").write_bytes(whole[: len(whole) // 2])  # the header is intact
    assert run_tlsweep(["validate", spec_path], capsys, monkeypatch)[0] == 0
    code, _, err = run_tlsweep(["validate", spec_path, "--full-decode"], capsys, monkeypatch)
    assert code == 2 and "1 of 12 image(s) do not decode" in err and "ants/ants_4.png: OSError" in err


@pytest.mark.ray
def test_an_error_no_retry_can_fix_fails_its_trial_once(
    ray_local, tiny_assets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlsweep.engine import run
    from tlsweep.engine.run import run_sweep
    from tlsweep.results.store import ResultsStore

    data = smallest_spec_dict(tiny_assets, tmp_path / "runs", name="unfixable", failures={"max_retries": 2})
    with injected(TrialFault({"phase": "confirm", "arm": "scratch"}, unfixable=True)):
        run_sweep(parse_spec(data), live=False, report=False)
    rows = ResultsStore(tmp_path / "runs" / "unfixable").read_trials().to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 4 and len(failed) == 1 and failed[0]["arm"] == "scratch"
    assert failed[0]["attempts"] == 1 and f"WeightsError: {INJECTED}" in failed[0]["error"]
    assert all(r["attempts"] == 1 for r in rows)

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Ray started")

    monkeypatch.setattr(run.RaySession, "__enter__", no_ray)  # a finished sweep answers from its results
    again = run_sweep(parse_spec(data), live=False, report=False)
    assert again.trials_recorded == 0 and [f.failed for f in again.failures] == [1]
