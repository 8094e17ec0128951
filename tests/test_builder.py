"""Building a model with weights (timm's build_model_with_cfg): a tag is a tag and a path is a path, a user's run
folder is checked against its config, the checkpoint's options apply, a new class count replaces the head, other
input channels adapt the first convolution, and features_only keeps the trunk's weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import ROOT, make_run_dir
from convtwist_zoo import create_model
from convtwist_zoo.errors import InputError
from convtwist_zoo.models._hub import WeightsError

NAME = "convtwist_resnet18.tinyset"


def test_local_run_folder_loads_by_path_and_refuses_another_architecture(tmp_path):
    run = make_run_dir(tmp_path / "mine", arch="resnet18", num_classes=4)
    model = create_model("resnet18", pretrained=run)
    assert model.fc.out_features == 4
    with pytest.raises(WeightsError, match="holds a resnet18, not a resnet50"):
        create_model("resnet50", pretrained=run)
    with pytest.raises(WeightsError, match="does not exist"):
        create_model("resnet18", pretrained=tmp_path / "nothing" / "model.safetensors")
    # a string is a tag: a path given as one is refused, saying how to pass it
    with pytest.raises(WeightsError, match=r"pretrained='.*mine' is not a tag of resnet18 but a path: .* "
                                           r"pretrained=pathlib.Path\('.*mine'\) \(on the command line: --checkpoint"):
        create_model("resnet18", pretrained=str(run))


def test_a_folder_named_like_a_tag_never_shadows_the_tag(tmp_path, monkeypatch):
    make_run_dir(tmp_path / "imagewoof", arch="resnet18", num_classes=4)  # ./imagewoof holds a run of 4 classes
    monkeypatch.chdir(tmp_path)
    model = create_model("resnet18", pretrained="imagewoof")
    assert model.pretrained_spec.name == "resnet18.imagewoof" and model.fc.out_features == 10
    assert create_model("resnet18.imagewoof").pretrained_spec.name == "resnet18.imagewoof"
    assert create_model("resnet18", pretrained=Path("imagewoof")).fc.out_features == 4  # a path, said explicitly


def test_num_classes_change_drops_head(tiny_hub, spec, monkeypatch):
    monkeypatch.setenv("CONVTWIST_ZOO_HUB_DIR", str(tiny_hub[0]))
    full = create_model(NAME).eval()
    with pytest.warns(UserWarning, match="classifier for 3 classes dropped"):
        tuned = create_model(NAME, num_classes=7).eval()
    assert tuned.fc.out_features == 7
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(full.forward_features(x), tuned.forward_features(x))


@pytest.mark.skipif(not (ROOT / "hub" / "convtwist_resnet18.imagenette" / "model.safetensors").exists(),
                    reason="checkpoint not in hub/")
def test_pretrained_backbone_features_equal_the_full_models_trunk():
    full = create_model("convtwist_resnet18.imagenette").eval()
    net = create_model("convtwist_resnet18", pretrained="imagenette", features_only=True).eval()
    x = torch.randn(2, 3, 128, 160)
    with torch.no_grad():
        feats = net(x)
        assert torch.equal(feats[-1], full.forward_features(x))
        assert torch.equal(feats[0], full.layer1(full.maxpool(full.relu(full.bn1(full.conv1(x))))))


def test_checkpoint_path_is_timms_spelling_of_a_path_object(tmp_path):
    run = make_run_dir(tmp_path / "mine", arch="resnet18", num_classes=4)
    by_path, by_keyword = create_model("resnet18", pretrained=run), create_model("resnet18", checkpoint_path=str(run))
    assert all(torch.equal(a, b) for a, b in zip(by_path.state_dict().values(), by_keyword.state_dict().values()))
    with pytest.raises(InputError, match="not both"):
        create_model("resnet18", pretrained="imagenette", checkpoint_path=run)


def test_a_checkpoints_builder_options_apply_unless_the_caller_overrides_them():
    from convtwist_zoo.layers import MaxBlurPool
    net = create_model("xresnet18.imagewoof")  # trained with maxblur=true: its spec says so
    assert isinstance(net.maxpool, MaxBlurPool) and net.pretrained_spec.model_args == "maxblur=true"
    with pytest.raises(WeightsError, match="does not fit"):
        create_model("xresnet18.imagewoof", maxblur=False)  # other options: the weights do not fit, and it says so
