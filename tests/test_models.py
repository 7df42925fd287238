"""Backbone registry, initialization (scratch / imagenet cache / checkpoint), freezing and parameter groups."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tlsweep.errors import SpecError, UnknownNameError, WeightsError
from tlsweep.training import backbones as models
from tlsweep.training.backbones import (
    apply_freeze,
    backbone_info,
    backbone_state_dict,
    create_model,
    head_parameters,
    list_backbones,
    train_mode,
    weights_cache_path,
)
from tlsweep.training.config import TrialConfig
from tlsweep.training.optim import build_optimizer

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration")


# the smallest backbone of each builder computes for real; the larger ones (resnet34/50/101) run on the meta device,
# which checks their shapes and gradient flow without the arithmetic (seconds each on 2 CPU cores)
COMPUTED = {"resnet18", "resnet_tiny", "small_cnn", "vgg16_bn"}


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_runs_forward_and_backward(name: str) -> None:
    torch.manual_seed(0)
    device = "cpu" if name in COMPUTED else "meta"
    with torch.device(device):
        model = create_model(name, 3)
    model.train()
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN's first call per layer shape costs seconds
        logits = model(torch.randn(2, 3, 32, 32, device=device))
        assert logits.shape == (2, 3)
        logits.sum().backward()
    assert all(p.grad is not None for p in head_parameters(model))
    assert models.body_parameters(model)[0].grad is not None


def test_registry_lists_and_describes() -> None:
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "vgg16_bn", "resnet_tiny"} <= set(list_backbones())
    assert list_backbones("resnet1*") == ["resnet101", "resnet18"]
    info = backbone_info("resnet18")
    assert info["params"] == 11_689_512 and info["imagenet_weights"] == "IMAGENET1K_V1"
    assert backbone_info("resnet50")["imagenet_weights"] == "IMAGENET1K_V2"
    assert backbone_info("resnet_tiny")["imagenet_weights"] is None


def test_unknown_backbone_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown backbone 'resnet7'.*resnet18.*resnet_tiny"):
        create_model("resnet7", 3)


def test_duplicate_registration_warns_and_replaces() -> None:
    original = models._BACKBONES["resnet_tiny"]
    try:
        with pytest.warns(UserWarning, match="registered twice"):

            @models.register_backbone("resnet")
            def resnet_tiny(num_classes: int) -> nn.Module:
                return models.TinyResNet(num_classes, width=8)

        assert create_model("resnet_tiny", 2).conv1.out_channels == 8
    finally:
        models._BACKBONES["resnet_tiny"] = original


def test_same_seed_same_head_whatever_the_init(tmp_path: Path) -> None:
    checkpoint = tmp_path / "body.pt"
    torch.save({"backbone": backbone_state_dict(create_model("resnet_tiny", 5, seed=99))}, checkpoint)
    scratch = create_model("resnet_tiny", 3, seed=1)
    transfer = create_model("resnet_tiny", 3, init=f"checkpoint:{checkpoint}", seed=1)
    again = create_model("resnet_tiny", 3, seed=1)
    assert torch.equal(scratch.fc.weight, transfer.fc.weight)
    assert torch.equal(scratch.conv1.weight, again.conv1.weight)
    assert not torch.equal(scratch.conv1.weight, transfer.conv1.weight)
    assert not torch.equal(scratch.fc.weight, create_model("resnet_tiny", 3, seed=2).fc.weight)


def test_seeded_creation_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    create_model("resnet_tiny", 3, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = models.imagenet_weights("resnet18")
    path = weights_cache_path(weights.url)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    torch.manual_seed(123)
    published = models.resnet18(1000).state_dict()
    path.parent.mkdir(parents=True)
    torch.save(published, path)

    model = create_model("resnet18", 4, init="imagenet", seed=0)
    state = model.state_dict()
    for key, value in published.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(state[key], value), key
    assert model.fc.weight.shape == (4, 512)
    assert torch.equal(model.fc.weight, create_model("resnet18", 4, seed=0).fc.weight)  # a new head


def test_missing_imagenet_weights_name_the_file_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    with pytest.raises(WeightsError) as caught:
        create_model("resnet50", 3, init="imagenet")
    message = str(caught.value)
    assert str(expected) in message and "tlsweep weights download resnet50" in message and "IMAGENET1K_V2" in message


def test_imagenet_init_errors() -> None:
    with pytest.raises(WeightsError, match=r"no published ImageNet weights.*checkpoint:PATH"):
        create_model("resnet_tiny", 3, init="imagenet")
    with pytest.raises(UnknownNameError, match=r"IMAGENET1K_V9.*IMAGENET1K_V1, IMAGENET1K_V2"):
        create_model("resnet50", 3, init="imagenet:IMAGENET1K_V9")
    with pytest.raises(SpecError, match="'pretrained' is not understood"):
        create_model("resnet18", 3, init="pretrained")


def test_checkpoint_round_trip_loads_the_body_never_the_head(tmp_path: Path) -> None:
    source = create_model("resnet_tiny", 7, seed=3)
    for key, path, content in [
        ("wrapped", tmp_path / "wrapped.pt", {"backbone": backbone_state_dict(source), "arch": "resnet_tiny"}),
        ("raw", tmp_path / "raw.pt", source.state_dict()),  # a whole classifier: its 7-class head is ignored
    ]:
        torch.save(content, path)
        model = create_model("resnet_tiny", 3, init=f"checkpoint:{path}", seed=4)
        for name, value in backbone_state_dict(source).items():
            assert torch.equal(model.state_dict()[name], value), (key, name)
        assert model.fc.out_features == 3


def test_checkpoint_mismatch_names_the_keys_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "r18.pt"
    torch.save(backbone_state_dict(create_model("resnet18", 2)), path)
    with pytest.raises(WeightsError) as caught:
        create_model("resnet_tiny", 3, init=f"checkpoint:{path}")
    message = str(caught.value)
    assert "shape mismatch" in message and "conv1.weight: file (64, 3, 7, 7) vs model (16, 3, 3, 3)" in message
    assert "unexpected" in message and "layer1.1.conv1.weight" in message

    state = backbone_state_dict(create_model("resnet_tiny", 2))
    del state["layer4.0.bn2.running_var"]
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing \(1\): layer4.0.bn2.running_var"):
        create_model("resnet_tiny", 3, init=f"checkpoint:{path}")
    with pytest.raises(WeightsError, match=r"does not exist.*tlsweep pretrain"):
        create_model("resnet_tiny", 3, init=f"checkpoint:{tmp_path / 'none.pt'}")


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4, 5])
def test_freeze_depth_resnet(depth: int) -> None:
    model = create_model("resnet_tiny", 3, freeze_depth=depth)
    stages = [["conv1.", "bn1."], ["layer1."], ["layer2."], ["layer3."], ["layer4."]]
    frozen_prefixes = tuple(p for stage in stages[:depth] for p in stage)
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == (not name.startswith(frozen_prefixes)), name
    assert all(p.requires_grad for p in head_parameters(model))

    optimizer = build_optimizer(TrialConfig(lr=0.1, backbone_lr_mult=0.5), model)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in model.parameters() if p.requires_grad}
    assert [g["lr"] for g in optimizer.param_groups] == ([0.1] if depth == 5 else [0.1, 0.05])

    train_mode(model)
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    for name, parameter in model.named_parameters():
        assert (parameter.grad is None) == name.startswith(frozen_prefixes), name


def test_freeze_depth_vgg_blocks() -> None:
    with torch.device("meta"):  # the parameter layout only
        model = create_model("vgg16_bn", 2, freeze_depth=2)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert {n.split(".")[1] for n in frozen} == {"0", "1", "3", "4", "7", "8", "10", "11"}  # blocks 1 and 2
    apply_freeze(model, 5)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["classifier.6.weight", "classifier.6.bias"]
    body = backbone_state_dict(model.to_empty(device="cpu"))  # memory without the initialisation
    assert not any(k.startswith("classifier.6.") for k in body) and "classifier.3.weight" in body
    assert set(models.body_state_dict(model.state_dict(), "vgg16_bn")) == set(body)


@pytest.mark.parametrize("depth", [-1, 6, 2.5, True])
def test_freeze_depth_out_of_range(depth: object) -> None:
    with pytest.raises(SpecError, match=r"freeze_depth must be an integer in 0..5"):
        create_model("resnet_tiny", 3, freeze_depth=depth)  # type: ignore[arg-type]


def test_frozen_batchnorm_keeps_its_running_stats() -> None:
    model = create_model("resnet_tiny", 3, freeze_depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    train_mode(model)
    assert not model.bn1.training and not model.layer1[0].bn1.training and model.layer2[0].bn1.training
    nn.functional.cross_entropy(
        model(torch.randn(8, 3, 16, 16) * 3 + 1), torch.tensor([0, 1, 2] * 2 + [0, 1])
    ).backward()
    optimizer.step()
    after = model.state_dict()
    for key, value in before.items():
        changed = not torch.equal(after[key], value)
        assert changed == (not key.startswith(("bn1.", "layer1."))), key
