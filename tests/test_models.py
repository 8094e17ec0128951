"""Registry models: exact parameter counts, the timm-style backbone API, and twistify beyond ResNet."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from convtwist_zoo import ConvTwist, create_model, list_models, twistify


def test_parameter_counts_exact():
    for depth in (18, 50):
        plain = sum(p.numel() for p in create_model(f"resnet{depth}").parameters())
        tv = sum(p.numel() for p in torchvision.models.__dict__[f"resnet{depth}"](num_classes=10).parameters())
        assert plain == tv
        twist = create_model(f"convtwist_resnet{depth}")
        extra = sum(8 * m.out_channels * m.in_channels + 2 * m.out_channels
                    for m in twist.modules() if isinstance(m, ConvTwist))
        assert sum(p.numel() for p in twist.parameters()) == plain + extra
    assert sum(p.numel() for p in create_model("convtwist_resnet18").parameters()) == 20_954_186
    assert sum(p.numel() for p in create_model("convtwist_resnet50").parameters()) == 33_595_850


def test_every_3x3_is_a_convtwist_and_the_stem_stays():
    for depth, n in ((18, 16), (50, 16)):
        model = create_model(f"convtwist_resnet{depth}")
        assert sum(isinstance(m, ConvTwist) for m in model.modules()) == n
        assert type(model.conv1) is nn.Conv2d and model.conv1.kernel_size == (7, 7)


@pytest.mark.parametrize("name", list_models())
def test_backbone_api(name):
    model = create_model(name).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
        assert torch.allclose(logits, model(x))
    width = 2048 if "50" in name else 512
    assert feats.shape == (2, width, 3, 4) and pooled.shape == (2, width)
    assert model.get_classifier() is model.fc
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    model.reset_classifier(0)
    assert model(x).shape == (2, width)


@pytest.mark.parametrize("name", ["convtwist_resnet18", "resnet50"])
def test_features_only(name):
    full = create_model(name).eval()
    torch.manual_seed(0)
    net = create_model(name, features_only=True, out_indices=(1, 2, 3, 4)).eval()
    net.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")})
    info = net.feature_info  # timm's FeatureInfo
    assert info.reduction() == [4, 8, 16, 32] and info.module_name() == ["layer1", "layer2", "layer3", "layer4"]
    expect = [64, 128, 256, 512] if "18" in name else [256, 512, 1024, 2048]
    assert info.channels() == expect
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        outs = net(x)
        assert torch.equal(outs[-1], full.forward_features(x))
    for o, r, c in zip(outs, info.reduction(), expect):
        assert o.shape == (1, c, 128 // r, 96 // r)
    sub = create_model(name, features_only=True, out_indices=(0, 2))
    assert sub.feature_info.reduction() == [4, 8] and len(sub(x)) == 2
    with pytest.raises(ValueError, match="out_indices"):
        create_model(name, features_only=True, out_indices=(5,))


def test_model_input_errors():
    model = create_model("resnet18").eval()
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, H, W\), got \(1, 1, 64, 64\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="too small"):
        model(torch.randn(1, 3, 16, 16))


def test_twistify_vgg_mobilenet_convnext():
    vgg, report = twistify(torchvision.models.vgg11(num_classes=10), return_report=True)
    assert len(report.replaced) == 8 and not report.skipped
    mobile, report = twistify(torchvision.models.mobilenet_v3_small(num_classes=10), return_report=True)
    assert report.replaced == ["features.0.0"]  # the stem; every other 3x3/5x5 conv is depthwise
    reasons = {why for _, why in report.skipped}
    assert {"depthwise", "kernel 5x5, depthwise", "kernel 1x1"} <= reasons
    assert mobile(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    convnext, report = twistify(torchvision.models.convnext_tiny(num_classes=10), return_report=True)
    assert report.replaced == [] and ("features.1.0.block.0", "kernel 7x7, depthwise") in report.skipped
    assert ("features.0.0", "kernel 4x4, stride (4, 4)") in report.skipped
    assert report.params_after == report.params_before
    text = str(report)
    assert "replaced 0 conv(s)" in text and "features.0.0 (kernel 4x4, stride (4, 4))" in text


def test_twistify_timm_model_if_installed():
    timm = pytest.importorskip("timm")
    model, report = twistify(timm.create_model("resnet10t", num_classes=3), return_report=True)
    assert report.replaced and model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
