"""The zoo inside timm: registry names and tags, timm's own resnets untouched, pretrained loads equal to the zoo's,
one Hub repo read by both loaders (``hf-hub:`` on the loopback server), and timm's data config on real images."""
from __future__ import annotations


import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config

from conftest import ROOT, one_per_architecture, register_spec, val_sample_by_class
from convtwist_zoo import create_model, list_models
from convtwist_zoo.cli import main
from convtwist_zoo.models._hub import IntegrityError

EMBEDDED = sorted(p.parent.name for p in (ROOT / "hub").glob("convtwist_*/model.safetensors"))
TINY = "convtwist_resnet18.tinyset"


def logits(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, 128, 128))


def test_the_zoos_names_are_in_timm_and_timms_own_resnets_are_untouched():
    ours = [n for n in list_models() if "convtwist" in n or "xresnet" in n]
    assert set(timm.list_models("*convtwist*")) | set(timm.list_models("xresnet*")) == set(ours)
    assert set(EMBEDDED) <= set(timm.list_pretrained("*convtwist*"))
    for name in ("resnet18", "resnet50"):  # timm's architectures: never registered over
        assert timm.models.model_entrypoint(name).__module__ == "timm.models.resnet"
        model = timm.create_model(name)
        assert type(model) is timm.models.resnet.ResNet and model.fc.out_features == 1000
    assert sum(p.numel() for p in timm.create_model("resnet50").parameters()) == 25_557_032
    model = timm.create_model("convtwist_xresnet18", num_classes=37)
    assert model.fc.out_features == 37 and model.pretrained_cfg["first_conv"] == "conv1.0"


@pytest.mark.skipif(not EMBEDDED, reason="no ConvTwist checkpoint in hub/")
@pytest.mark.parametrize("name", one_per_architecture(EMBEDDED))
def test_timm_pretrained_equals_the_zoos_load_and_carries_its_transform(name):
    ours = create_model(name)
    theirs = timm.create_model(name, pretrained=True)
    assert torch.equal(logits(theirs), logits(ours))
    cfg = theirs.pretrained_cfg
    spec = ours.pretrained_spec
    assert cfg["hf_hub_id"] == spec.repo_id() and cfg["tag"] == spec.tag and cfg["classifier"] == "fc"
    assert list(cfg["label_names"]) == list(spec.class_names)
    data = resolve_data_config({}, model=theirs)
    assert data == {"input_size": (3, 128, 128), "interpolation": "bilinear", "mean": spec.mean, "std": spec.std,
                    "crop_pct": 0.875, "crop_mode": "center"}
    tuned = timm.create_model(name, pretrained=True, num_classes=37)
    assert tuned.fc.out_features == 37 and torch.equal(tuned.layer1[0].conv1.weight, ours.layer1[0].conv1.weight)


def test_one_hub_repo_two_loaders_same_logits(tiny_hub, served_tiny_repo, monkeypatch):
    register_spec(tiny_hub[1], monkeypatch)
    via_timm = timm.create_model(f"hf-hub:zoo-test/{TINY}", pretrained=True)
    assert via_timm.pretrained_cfg["num_classes"] == 3 and list(via_timm.pretrained_cfg["label_names"]) == \
        ["class 0", "class 1", "class 2"]
    via_zoo = create_model(TINY)  # the zoo's spec, downloaded from the same server
    assert torch.equal(logits(via_timm), logits(via_zoo))
    assert ("GET", f"/lfs-blob/zoo-test/{TINY}/model.safetensors") in served_tiny_repo.requests


def test_the_hf_hub_path_checks_the_recorded_hash(served_tiny_repo):
    weights = served_tiny_repo.repo / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        timm.create_model(f"hf-hub:zoo-test/{TINY}", pretrained=True)


@pytest.mark.skipif("convtwist_resnet18.imagenette" not in EMBEDDED, reason="checkpoint not in hub/")
def test_timms_eval_transform_gives_the_zoos_top1_on_real_images(tmp_path, capsys):
    name = "convtwist_resnet18.imagenette"
    sample = val_sample_by_class("imagenette", per_class=10)
    for wnid, images in sample.items():  # the 100 images as an ImageFolder for `convtwist-zoo eval`
        (tmp_path / "val" / wnid).mkdir(parents=True)
        for i, im in enumerate(images):
            im.save(tmp_path / "val" / wnid / f"{i}.png")
    assert main(["eval", "--model", name, "--data", str(tmp_path), "--workers", "0", "--no-progress",
                 "--json", str(tmp_path / "eval.json")]) == 0
    import json
    zoo_top1 = json.loads((tmp_path / "eval.json").read_text())["sizes"]["128"]["top1"]
    model = timm.create_model(name, pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    hits = 0
    with torch.no_grad():
        for k, (wnid, images) in enumerate(sample.items()):
            batch = torch.stack([transform(im) for im in images])
            hits += int((model(batch).argmax(1) == k).sum())
    timm_top1 = 100 * hits / sum(map(len, sample.values()))
    assert abs(timm_top1 - zoo_top1) <= 1.0, (timm_top1, zoo_top1)  # at most one image of the 100
    assert zoo_top1 > 50  # a trained checkpoint on its own dataset
