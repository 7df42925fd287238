"""timm backbones, the small CNN, heads and per-backbone freeze levels; pretrained weights without network."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from tlsweep.errors import SpecError, UnknownNameError, WeightsError
from tlsweep.training import backbones as models
from tlsweep.training.backbones import (
    MLPHead,
    TimmClassifier,
    apply_freeze,
    backbone_state_dict,
    body_parameters,
    check_backbone_settings,
    create_model,
    freeze_levels,
    frozen_batchnorm_modules,
    head_module,
    head_parameters,
    list_backbones,
    train_mode,
)

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration")

# small timm models (timm's own test models) and the flowers study's pre-activation ResNet50V2
TIMM_SAMPLE = ["timm:test_resnet", "timm:test_efficientnet", "timm:test_convnext", "timm:resnetv2_50"]
TIMM_LEVELS = {"timm:test_resnet": 5, "timm:test_efficientnet": 6, "timm:test_convnext": 6, "timm:resnetv2_50": 6}


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline: nothing can be downloaded."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _put_in_hf_cache(cache: Path, repo: str, filename: str, write: object) -> Path:
    """Lay a file out exactly as huggingface_hub's download leaves it: refs/main → snapshots/<commit>/<file>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit / filename
    path.parent.mkdir(parents=True)
    write(path)  # type: ignore[operator]
    return path


# ---------------------------------------------------------------------------------------------- forward, freeze


@pytest.mark.parametrize("name", ["timm:test_resnet", "timm:test_efficientnet", "timm:resnetv2_50"])
def test_timm_backbones_run_forward_and_backward(name: str) -> None:
    torch.manual_seed(0)
    device = "meta" if name == "timm:resnetv2_50" else "cpu"  # the large one: shapes and gradient flow only
    with torch.device(device):
        model = create_model(name, 3, seed=0)
    assert isinstance(model, TimmClassifier) and isinstance(model.head, nn.Linear)
    model.train()
    with torch.backends.mkldnn.flags(enabled=False):
        logits = model(torch.randn(2, 3, 32, 32, device=device))
        assert logits.shape == (2, 3)
        logits.sum().backward()
    assert all(p.grad is not None for p in head_parameters(model))
    assert all(p.grad is not None for p in body_parameters(model)[:3])


def _frozen_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("name", [*list_backbones(), *TIMM_SAMPLE])
def test_every_backbone_freezes_level_by_level_up_to_the_whole_body(name: str) -> None:
    levels = freeze_levels(name)
    with torch.device("meta"):  # the parameter layout only: no weights, no time
        model = create_model(name, 3)
    body = {n for n, p in model.named_parameters() if any(p is q for q in body_parameters(model))}
    head = set(dict(model.named_parameters())) - body
    frozen: list[set[str]] = []
    for depth in range(levels + 1):
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        frozen.append(_frozen_names(apply_freeze(model, depth)))
    assert frozen[0] == set() and frozen[-1] == body and head and not (frozen[-1] & head)
    for shallower, deeper in itertools.pairwise(frozen):
        assert shallower < deeper, name  # each level freezes more
    with pytest.raises(SpecError, match=rf"freeze_depth must be an integer in 0..{levels}"):
        apply_freeze(model, levels + 1)


def test_freeze_levels_per_backbone() -> None:
    assert {name: freeze_levels(name) for name in list_backbones()} == {
        "resnet18": 5,
        "resnet34": 5,
        "resnet50": 5,
        "resnet101": 5,
        "vgg16_bn": 5,
        "resnet_tiny": 5,
        "small_cnn": 4,
    }
    assert {name: freeze_levels(name) for name in TIMM_SAMPLE} == TIMM_LEVELS


def test_timm_levels_follow_the_models_own_parameter_groups() -> None:
    from timm.models import group_parameters

    with torch.device("meta"):  # the parameter layout only
        model = create_model("timm:resnetv2_50", 2, freeze_depth=1)
    groups = group_parameters(model.body, model.body.group_matcher(coarse=True))
    assert _frozen_names(model) == {f"body.{n}" for n in groups[0]} == {"body.stem.conv.weight"}
    apply_freeze(model, 3)  # stem + stages 0 and 1
    assert {n.split(".")[1] + "." + n.split(".")[2] for n in _frozen_names(model) if "stages" in n} == {
        "stages.0",
        "stages.1",
    }
    assert not any(n.startswith(("body.stages.2", "body.stages.3", "body.norm")) for n in _frozen_names(model))


def test_small_cnn_levels_and_image_sizes() -> None:
    model = create_model("small_cnn", 5, freeze_depth=3)
    assert {n.split(".")[0] for n in _frozen_names(model)} == {"block1", "block2", "block3"}
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "hidden.1.weight",
        "hidden.1.bias",
        "fc.weight",
        "fc.bias",
    ]
    for size in (16, 32, 48):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 5)
    with pytest.raises(SpecError, match=r"freeze_depth must be an integer in 0..4 for backbone small_cnn"):
        create_model("small_cnn", 5, freeze_depth=5)


def test_frozen_timm_batchnorm_keeps_its_running_stats() -> None:
    model = create_model("timm:test_resnet", 3, freeze_depth=2, seed=0)  # stem + layer1
    frozen_bn = {id(m) for m in frozen_batchnorm_modules(model)}
    assert frozen_bn and len(frozen_bn) < sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    train_mode(model)
    nn.functional.cross_entropy(
        model(torch.randn(8, 3, 32, 32) * 3 + 1), torch.tensor([0, 1, 2] * 2 + [0, 1])
    ).backward()
    optimizer.step()
    after = model.state_dict()
    for key, value in before.items():
        changed = not torch.equal(after[key], value)
        assert changed == (not key.startswith(("body.conv1.", "body.bn1.", "body.layer1."))), key


# ---------------------------------------------------------------------------------------------- heads


@pytest.mark.parametrize("name", [*list_backbones(), "timm:resnetv2_50"])
def test_mlp_head_sits_on_the_pooled_features_of_every_backbone(name: str) -> None:
    with torch.device("meta"):
        linear, mlp = create_model(name, 4), create_model(name, 4, head="mlp", freeze_depth=freeze_levels(name))
    assert isinstance(head_module(mlp), MLPHead) and isinstance(head_module(linear), nn.Linear)
    assert head_module(mlp).in_features == head_module(linear).in_features
    assert [m.out_features for m in head_module(mlp) if isinstance(m, nn.Linear)] == [32, 4]
    assert all(p.requires_grad for p in head_parameters(mlp)) and not any(p.requires_grad for p in body_parameters(mlp))
    body = models.body_state_dict  # same body, whatever the head
    assert set(body(mlp.state_dict(), name)) == set(body(linear.state_dict(), name))


@pytest.mark.parametrize("name", ["resnet_tiny", "small_cnn", "timm:test_resnet"])
def test_mlp_head_trains(name: str) -> None:
    model = create_model(name, 3, head="mlp", freeze_depth=1, seed=0)
    train_mode(model)
    with torch.backends.mkldnn.flags(enabled=False):
        model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in head_parameters(model))
    assert torch.equal(
        create_model(name, 3, head="mlp", seed=0).state_dict()[
            f"{models._head_name(models._family_of(model))}.0.weight"
        ],
        model.state_dict()[f"{models._head_name(models._family_of(model))}.0.weight"],
    )
    with pytest.raises(SpecError, match="head must be one of linear, mlp"):
        create_model(name, 3, head="conv")


def test_trained_model_files_keep_their_head(tmp_path: Path) -> None:
    from tlsweep.training.predict import load_trained_model, save_trained_model

    images = torch.randn(3, 3, 32, 32)
    for name, head in [("resnet_tiny", "mlp"), ("timm:test_resnet", "mlp"), ("timm:test_resnet", "linear")]:
        model = create_model(name, 3, head=head, seed=5).eval()
        path = tmp_path / f"{name.replace(':', '-')}-{head}.pt"
        save_trained_model(
            path, arch=name, state_dict=model.state_dict(), class_names=["a", "b", "c"], image_size=32, init="scratch"
        )
        loaded = load_trained_model(path)
        assert isinstance(head_module(loaded.model), MLPHead if head == "mlp" else nn.Linear)
        with torch.no_grad():
            assert torch.equal(loaded.model(images), model(images))
        # the same file as init: checkpoint: body loaded, head new
        fresh = create_model(name, 2, init=f"checkpoint:{path}", seed=1)
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in backbone_state_dict(model).items())


def test_a_linear_classifier_loads_into_the_library_s_own_model() -> None:
    """What ``tlsweep export`` writes as weights.pt: plain timm / torchvision load it strictly and compute the same."""
    import timm
    import torchvision

    from tlsweep.training.backbones import library_model

    images = torch.randn(2, 3, 32, 32)
    for name in ("timm:test_resnet", "timm:test_convnext", "timm:test_efficientnet", "resnet18"):
        model = create_model(name, 3, seed=5).eval()
        call, weights = library_model(name, model.state_dict())
        if name.startswith("timm:"):
            assert call == f"timm.create_model({name[5:]!r}, num_classes=3)"
            plain = timm.create_model(name[5:], num_classes=3)
        else:
            assert call == "torchvision.models.resnet18(num_classes=3)"
            plain = torchvision.models.resnet18(num_classes=3)
        plain.load_state_dict(weights)  # strict
        with torch.no_grad():
            assert torch.allclose(plain.eval()(images), model(images)), name
    # no library model has tlsweep's MLP head or tlsweep's own backbones
    assert library_model("timm:test_resnet", create_model("timm:test_resnet", 3, head="mlp").state_dict()) is None
    assert library_model("resnet_tiny", create_model("resnet_tiny", 3).state_dict()) is None


def test_run_trial_with_a_timm_backbone_and_mlp_head() -> None:
    from tlsweep.data.types import DatasetTensors, SplitTensors
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.loop import run_trial

    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> SplitTensors:
        labels = torch.randint(0, 2, (n,), generator=generator)
        images = torch.randint(0, 256, (n, 3, 16, 16), generator=generator, dtype=torch.uint8)
        return SplitTensors(images, labels, [f"{i}.png" for i in range(n)])

    data = DatasetTensors(split(24), split(8), split(8), ["a", "b"])
    config = TrialConfig(backbone="timm:test_resnet", head="mlp", freeze_depth=3, epochs=1, batch_size=8, num_threads=1)
    result = run_trial(config, data)
    assert result.status == "ok" and result.best_state is not None and "head.3.weight" in result.best_state
    with pytest.raises(SpecError, match=r"freeze_depth must be an integer in 0..5 for backbone timm:test_resnet"):
        run_trial(config.replace(freeze_depth=6), data)


# ---------------------------------------------------------------------------------------------- weights offline


def test_timm_imagenet_weights_load_from_the_hugging_face_cache(hf_cache: Path) -> None:
    import timm
    from safetensors.torch import save_file

    published = timm.create_model("test_resnet", pretrained=False)  # the whole published classifier
    for parameter in published.parameters():
        nn.init.normal_(parameter)
    state = {k: v.contiguous() for k, v in published.state_dict().items()}
    path = _put_in_hf_cache(hf_cache, "timm/test_resnet.r160_in1k", "model.safetensors", lambda p: save_file(state, p))
    assert models.timm_weights("timm:test_resnet").cached_file() == path  # type: ignore[union-attr]

    model = create_model("timm:test_resnet", 4, init="imagenet", seed=0)
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(model.state_dict()[f"body.{key}"], value), key
    assert model.head.weight.shape == (4, 96)
    assert torch.equal(model.head.weight, create_model("timm:test_resnet", 4, seed=0).head.weight)  # a new head
    assert models.backbone_info("timm:test_resnet")["imagenet_weights"] == "r160_in1k"


def test_timm_imagenet_weights_from_a_local_file(tmp_path: Path, hf_cache: Path) -> None:
    import timm

    published = timm.create_model("test_resnet", pretrained=False)
    for parameter in published.parameters():
        nn.init.normal_(parameter)
    torch.save(published.state_dict(), tmp_path / "test_resnet.pth")
    model = create_model("timm:test_resnet", 5, init=f"imagenet:{tmp_path / 'test_resnet.pth'}", freeze_depth=5)
    assert torch.equal(model.body.conv1[0].weight, published.conv1[0].weight)
    assert torch.equal(model.body.layer4[0].bn2.running_var, published.layer4[0].bn2.running_var)
    assert not any(p.requires_grad for p in body_parameters(model))

    torch.save(timm.create_model("test_efficientnet").state_dict(), tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=r"other.pth does not fit timm:test_resnet"):  # strict: never half loaded
        create_model("timm:test_resnet", 5, init=f"imagenet:{tmp_path / 'other.pth'}")
    with pytest.raises(WeightsError, match=r"none.pth for timm:test_resnet does not exist"):
        create_model("timm:test_resnet", 5, init=f"imagenet:{tmp_path / 'none.pth'}")


def test_missing_timm_weights_name_the_cache_and_the_command(hf_cache: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        create_model("timm:resnetv2_50", 3, init="imagenet")
    message = str(caught.value)
    assert str(hf_cache / "models--timm--resnetv2_50.a1h_in1k") in message and "model.safetensors" in message
    assert "tlsweep weights download timm:resnetv2_50.a1h_in1k" in message
    with pytest.raises(WeightsError, match=r"not cached.*models--timm--resnet50.a1_in1k"):
        create_model("timm:resnet50", 3, init="imagenet:a1_in1k")
    with pytest.raises(UnknownNameError, match=r"no pretrained tag 'zz_in1k'; its tags: a1_in1k"):
        create_model("timm:resnet50", 3, init="imagenet:zz_in1k")


def test_weights_download_finds_cached_timm_weights_without_network(hf_cache: Path) -> None:
    import timm

    from tlsweep.cli import cli

    state = timm.create_model("test_resnet").state_dict()
    path = _put_in_hf_cache(hf_cache, "timm/test_resnet.r160_in1k", "pytorch_model.bin", lambda p: torch.save(state, p))
    result = CliRunner().invoke(cli, ["weights", "download", "timm:test_resnet"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"timm:test_resnet: {path}"


def test_weights_download_fetches_timm_weights_through_timm(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    import timm.models._hub as timm_hub
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}
    asked = []

    def hub_download(repo_id: str, filename: str, **kwargs: object) -> str:  # the network, as huggingface_hub would
        asked.append((repo_id, filename))
        return str(_put_in_hf_cache(hf_cache, repo_id, filename, lambda p: save_file(state, p)))

    monkeypatch.setattr(timm_hub, "hf_hub_download", hub_download)
    path = models.download_timm_weights("timm:test_resnet")
    assert asked == [("timm/test_resnet.r160_in1k", "model.safetensors")]
    assert path == hf_cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / path.parent.name / path.name
    model = create_model("timm:test_resnet", 2, init="imagenet")  # from the cache now, without network
    assert torch.equal(model.body.conv1[0].weight, state["conv1.0.weight"]) and len(asked) == 1


# ---------------------------------------------------------------------------------------------- errors, listing


def test_backbone_name_errors_suggest_close_names(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown backbone 'small_cnm' \(did you mean small_cnn"):
        create_model("small_cnm", 3)
    with pytest.raises(UnknownNameError, match=r"timm has no model 'resnetv2_5O'.*close names: timm:resnetv2_50"):
        create_model("timm:resnetv2_5O", 3)
    with pytest.raises(UnknownNameError, match=r"spec.yaml: backbone: unknown backbone 'resnet7'"):
        check_backbone_settings("resnet7", [0], source="spec.yaml")
    with pytest.raises(SpecError, match=r"^spec.yaml: freeze_depth must be an integer in 0..4 for backbone small_cnn"):
        check_backbone_settings("small_cnn", [0, 4, 5], source="spec.yaml")

    monkeypatch.setitem(sys.modules, "timm", None)  # timm not installed
    with pytest.raises(UnknownNameError, match=r"needs the timm package.*pip install timm"):
        models.get_backbone("timm:resnetv2_101")


def test_validate_checks_freeze_depths_against_the_backbone(tmp_path: Path) -> None:
    import yaml

    from tlsweep.cli import cli

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml").read_text())
    spec["model"]["backbone"] = "small_cnn"
    spec["design"]["tune"]["freeze_depth"] = {"type": "int", "low": 0, "high": 5, "when": {"init": ["checkpoint"]}}
    spec["design"]["recipe"]["freeze_depth"] = 0
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code != 0
    assert f"{path}: freeze_depth must be an integer in 0..4 for backbone small_cnn" in result.output
    result = CliRunner().invoke(cli, ["validate", str(path), "--set", "model.backbone=timm:resnetv2_5O"])
    assert result.exit_code != 0 and "close names: timm:resnetv2_50" in result.output


def test_spec_references_check_names_first_then_freeze_depths() -> None:
    # one check for `tlsweep validate` and run_sweep: every backbone name, then each backbone's freeze depths
    from tlsweep.spec_load import load_spec
    from tlsweep.training.references import check_spec_references, spec_freeze_depths

    demo = Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml"
    tuned = "design.tune.freeze_depth={type: int, low: 1, high: 5, when: {init: [checkpoint]}}"
    spec = load_spec(demo, ["model.backbone=small_cnn", tuned])
    assert spec_freeze_depths(spec) == {"small_cnn": [5, 1]}  # the recipe's 5 in every study, the range's ends
    with pytest.raises(SpecError, match=r"^spec.yaml: freeze_depth must be an integer in 0..4 for backbone small_cnn"):
        check_spec_references(spec, source="spec.yaml")
    fits = load_spec(
        demo, ["model.backbone=small_cnn", tuned.replace("high: 5", "high: 4"), "design.recipe.freeze_depth=4"]
    )
    assert spec_freeze_depths(fits) == {"small_cnn": [4, 1]}
    check_spec_references(fits, source="spec.yaml")
    misspelt = load_spec(demo, ["model.backbone=small_cnm", tuned])  # depth 5 too, but the name is found first
    with pytest.raises(SpecError, match=r"^spec.yaml: model.backbone: unknown backbone 'small_cnm' \(did you mean"):
        check_spec_references(misspelt, source="spec.yaml")


def test_models_lists_freeze_levels_and_timm_models() -> None:
    from tlsweep.cli import cli

    result = CliRunner().invoke(cli, ["models", "small*"])
    assert result.exit_code == 0 and "small_cnn" in result.output and "0..4" in result.output
    result = CliRunner().invoke(cli, ["models", "--timm", "resnetv2_50*"])
    assert result.exit_code == 0, result.output
    assert "timm:resnetv2_50 " in result.output and "0..6" in result.output and "a1h_in1k" in result.output
