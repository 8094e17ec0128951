"""The contract timm holds its own models to, for every zoo architecture (torchvision-based and timm-based, with and
without ConvTwist) and for tagged checkpoints: head and feature API, features_only with FeatureInfo, pretrained
weights adapted to any in_chans and num_classes, torch.fx in train and eval mode, TorchScript, torch.compile."""
from __future__ import annotations

import pytest
import timm
import torch

from conftest import trained_like
from convtwist_zoo import create_model, list_models

ARCHS = list_models()
# one of each family, plain and ConvTwist, for the slower graph checks
FAMILIES = ["resnet18", "convtwist_resnet18", "xresnet18", "convtwist_xresnet18"]
TAGGED = ["convtwist_resnet18.imagewoof", "convtwist_xresnet18.imagewoof", "xresnet50.imagenette"]
X = torch.randn(2, 3, 64, 64)


def _options(name):
    return {"maxblur": True} if "xresnet" in name and "." not in name else {}


@pytest.mark.parametrize("name", ARCHS)
def test_head_and_feature_api(name):
    model = create_model(name, **_options(name)).eval()
    n = model.num_features
    assert model.num_classes == 10 and model.head_hidden_size == n and model.get_classifier().in_features == n
    cfg = model.pretrained_cfg
    assert cfg is model.default_cfg and cfg["input_size"] == (3, 128, 128) and cfg["pool_size"] == (4, 4)
    assert cfg["first_conv"] in dict(model.named_modules()) and cfg["classifier"] == "fc"
    assert [i["reduction"] for i in model.feature_info] == [2, 4, 8, 16, 32]
    assert model.feature_info[-1]["num_chs"] == n
    with torch.no_grad():
        features = model.forward_features(X)
        assert features.shape == (2, n, 2, 2)  # unpooled
        assert model.forward_head(features, pre_logits=True).shape == (2, n)
        assert torch.equal(model.forward_head(features), model(X))
        model.reset_classifier(0)
        assert model.num_classes == 0 and model(X).shape == (2, n)  # pooled features
        model.reset_classifier(5)
        assert model(X).shape == (2, 5)
    assert set(model.group_matcher()) >= {"stem", "blocks"}
    model.train().set_grad_checkpointing(True)
    model(X).sum().backward()  # recomputed stages still give gradients


@pytest.mark.parametrize("name", TAGGED)
def test_a_tagged_name_carries_its_checkpoints_cfg(name):
    arch, tag = name.split(".")
    zoo = create_model(name)
    via_timm = timm.create_model(name, pretrained=False)
    assert zoo.pretrained_cfg["hf_hub_id"].endswith(name) and zoo.pretrained_cfg["num_classes"] == 10
    assert via_timm.pretrained_cfg["tag"] == tag and via_timm.pretrained_cfg["input_size"] == (3, 128, 128)
    assert len(zoo.pretrained_cfg["label_names"]) == 10
    assert create_model(name, num_classes=3).pretrained_cfg["label_names"] is None  # a new head has no names


@pytest.mark.parametrize("name", FAMILIES + TAGGED)
def test_features_only_with_out_indices_and_feature_info(name):
    net = create_model(name, features_only=True, out_indices=(1, 3), **_options(name)).eval()
    info = net.feature_info
    assert info.reduction() == [4, 16] and len(info.channels()) == 2 and info.module_name() == ["layer1", "layer3"]
    assert net.pretrained_cfg is net.default_cfg and net.pretrained_cfg["input_size"] == (3, 128, 128)
    with torch.no_grad():
        outs = net(X)
    assert [tuple(o.shape[1:]) for o in outs] == [(c, 64 // r, 64 // r) for c, r in zip(info.channels(),
                                                                                       info.reduction())]


@pytest.mark.parametrize("name", ["convtwist_resnet18.imagewoof", "convtwist_xresnet18.imagewoof"])
@pytest.mark.parametrize("in_chans, num_classes", [(1, 5), (4, 10)])
def test_pretrained_weights_for_any_in_chans_and_num_classes(name, in_chans, num_classes):
    for model in (timm.create_model(name, pretrained=True, in_chans=in_chans, num_classes=num_classes),
                  create_model(name, in_chans=in_chans, num_classes=num_classes)):
        assert model.eval()(torch.rand(1, in_chans, 64, 64)).shape == (1, num_classes)
        first = dict(model.named_modules())[model.pretrained_cfg["first_conv"]]
        assert first.in_channels == in_chans


# train mode changes only the batch norms, the same in every block: one model of each family covers it
@pytest.mark.parametrize("name, mode", [(n, "eval") for n in ARCHS + TAGGED[:1]] + [(n, "train") for n in FAMILIES])
def test_fx_traces_and_matches_eager(name, mode):
    from torchvision.models.feature_extraction import create_feature_extractor
    torch.manual_seed(0)
    model = create_model(name, **_options(name))
    model = model if "." in name else trained_like(model)  # a checkpoint has trained weights of its own
    model.train(mode == "train")
    graph = torch.fx.symbolic_trace(model)
    torch.manual_seed(1)
    with torch.no_grad():
        expected = model(X)  # train mode: batch statistics, the same in both
        # batch statistics of 2 small images magnify the fused and plain paths' float rounding in deep nets
        tol = dict(atol=1e-5, rtol=1e-4) if mode == "eval" else dict(atol=2e-4, rtol=1e-3)
        assert torch.allclose(graph(X), expected, **tol)
    if mode == "eval":  # torchvision's FX feature extraction
        body = create_feature_extractor(model.eval(), return_nodes={"layer2": "mid", "layer4": "out"})
        with torch.no_grad():
            assert torch.allclose(body(X)["out"], model.forward_features(X), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ARCHS + TAGGED[:2])
def test_torchscript_scripts_and_matches_eager(name):
    model = create_model(name, **_options(name))
    model = (model if "." in name else trained_like(model)).eval()
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert torch.allclose(scripted(X), model(X), atol=1e-5, rtol=1e-4)
    features = torch.jit.script(create_model(name, features_only=True, **_options(name)).eval())
    assert len(features(X)) == 4


@pytest.mark.parametrize("name", ["convtwist_xresnet18", "convtwist_xresnet18.imagewoof"])
def test_timms_feature_wrappers_hooks_and_fx_take_a_zoo_model(name):
    torch.manual_seed(0)  # the same weights in both: the tag's, or the same seed's
    by_fx = timm.create_model(name, pretrained="." in name, features_only=True, feature_cls="fx",
                              out_indices=(2, 4)).eval()
    torch.manual_seed(0)
    by_list = timm.create_model(name, pretrained="." in name, features_only=True, out_indices=(2, 4)).eval()
    assert by_fx.feature_info.channels() == [128, 512] and by_fx.feature_info.reduction() == [8, 32]
    with torch.no_grad():
        for a, b, c in zip(by_fx(X), by_list(X), by_fx.feature_info.channels()):
            assert a.shape[1] == c and torch.allclose(a, b, atol=1e-5)


def test_torch_compile_matches_eager_on_the_torchvision_family():
    torch.manual_seed(0)
    model = trained_like(create_model("convtwist_resnet18")).eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(X), model(X), atol=1e-5, rtol=1e-4)
