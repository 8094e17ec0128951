"""The leaderboard's xresnet family: exact sizes, the fast.ai parts (deep stem, pooled shortcuts, Mish, zero-init last
BN), ConvTwist in the blocks only, the MaxBlurPool (and its fused kernels), self-attention and wide-stem options,
export parity."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

from conftest import trained_like
from convtwist_zoo import ConvTwist, create_model
from convtwist_zoo.evaluate import count_macs
from convtwist_zoo.export.onnx import export_onnx, run_onnx
from convtwist_zoo.models.xresnet import MaxBlurPool, PoolFirst, SimpleSelfAttention


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_exact_sizes_and_the_compute_matched_control():
    sizes = {name: _params(create_model(name)) for name in
             ("xresnet18", "convtwist_xresnet18", "xresnet34", "xresnet50", "convtwist_xresnet50")}
    assert sizes == {"xresnet18": 11_200_874, "convtwist_xresnet18": 20_973_418, "xresnet34": 21_309_034,
                     "xresnet50": 23_547_754, "convtwist_xresnet50": 33_615_082}
    for depth in (18, 50):
        twist = create_model(f"convtwist_xresnet{depth}")
        extra = sum(8 * m.out_channels * m.in_channels + 2 * m.out_channels
                    for m in twist.modules() if isinstance(m, ConvTwist))
        assert sizes[f"convtwist_xresnet{depth}"] == sizes[f"xresnet{depth}"] + extra
    # xresnet34 is the control for convtwist_xresnet18: as many parameters and MACs within 10%
    assert count_macs(create_model("convtwist_xresnet18"), 128) == 1_156_977_664
    assert count_macs(create_model("xresnet34"), 128) == 1_274_418_176


def test_built_from_timm_resnet_d_with_mish():
    model = create_model("xresnet50")
    reference = timm.create_model("resnet50d", num_classes=10, act_layer="mish")
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    stem = [m for m in model.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in stem] == [(3, 32, 2), (32, 32, 1), (32, 64, 1)]
    assert isinstance(model.layer2[0].downsample[0], nn.AvgPool2d)  # ResNet-D: the shortcut pools, then 1x1
    acts = {type(m) for m in model.modules() if isinstance(m, (nn.ReLU, nn.Mish))}
    assert acts == {nn.Mish}
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            assert torch.count_nonzero(block.bn3.weight) == 0  # each block starts as its shortcut


@pytest.mark.parametrize("depth,n", [(18, 16), (34, 32), (50, 16)])
def test_convtwist_in_the_blocks_only(depth, n):
    model = create_model(f"convtwist_xresnet{depth}")
    assert sum(isinstance(m, ConvTwist) for m in model.modules()) == n
    assert not any(isinstance(m, ConvTwist) for m in model.conv1.modules())  # the deep stem stays plain


def test_maxblur_pools_first_on_both_paths():
    plain, blur = create_model("xresnet50"), create_model("xresnet50", maxblur=True)
    assert _params(blur) == _params(plain)  # blur filters are buffers
    for stage in (blur.layer2, blur.layer3, blur.layer4):
        first = stage[0]
        assert isinstance(first, PoolFirst)
        assert first.block.conv2.stride == (1, 1) and isinstance(first.block.downsample[0], nn.Identity)
    # the bottleneck's first 1x1 now runs on the pooled map
    assert count_macs(blur, 128) < count_macs(plain, 128)
    x = torch.randn(2, 3, 128, 96)
    assert blur.eval()(x).shape == (2, 10)
    assert blur.forward_features(x).shape == (2, 2048, 4, 3)


def test_wide_stem_is_the_notebooks_3_32_64_64():
    plain, wide = create_model("xresnet18"), create_model("convtwist_xresnet18", wide_stem=True, maxblur=True)
    stem = [m for m in wide.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in stem] == [(3, 32, 2), (32, 64, 1), (64, 64, 1)]
    assert wide.conv1[4].num_features == 64 and isinstance(wide.conv1[4], nn.BatchNorm2d)
    # two wider 3x3 convs and one wider BN; the twist still leaves the stem plain
    extra = 9 * 32 * (64 - 32) + 9 * 64 * (64 - 32) + 2 * (64 - 32)
    assert _params(create_model("xresnet18", wide_stem=True)) == _params(plain) + extra == 11_228_586
    assert not any(isinstance(m, ConvTwist) for m in wide.conv1.modules())
    assert wide.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def _maxblur_both_paths(pool, x, grad, amp):
    """(output, input gradient) of MaxBlurPool as it runs, and of its two plain modules."""
    results = []
    for forward in (pool, lambda t: nn.Sequential.forward(pool, t)):
        leaf = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = forward(leaf)
        y.backward(grad.to(y.dtype))
        results.append((y, leaf.grad))
    return results


@pytest.mark.parametrize("shape", [(2, 8, 9, 7), (3, 16, 16, 16), (2, 5, 2, 3)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_maxblur_is_the_max_pool_then_the_blur(shape, channels_last):
    from convtwist_zoo.layers import _kernels as fused_kernels
    if fused_kernels.load() is None:
        pytest.skip("fused kernels could not be built here")
    torch.manual_seed(0)
    pool = MaxBlurPool(shape[1])
    x = torch.randn(shape)
    x[0, 0, :3, :3] = 0.5  # tied maxima: the gradient goes to the first, as torch's max pool sends it
    x[1, 1, 0, 1] = float("nan")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(shape[0], shape[1], (shape[2] + 1) // 2, (shape[3] + 1) // 2)
    (y, gx), (y_ref, gx_ref) = _maxblur_both_paths(pool, x, grad, amp=False)
    assert type(y.grad_fn).__name__ == "_MaxBlurFnBackward"  # the kernels ran
    assert torch.equal(y.isnan(), y_ref.isnan()) and y.isnan().any()
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-6, equal_nan=True)
    # bf16 training: the same maxima; the gradient summed in float here, in bf16 by the modules
    (y, gx), (y_ref, gx_ref) = _maxblur_both_paths(pool, x.nan_to_num().bfloat16(), grad, amp=True)
    assert type(y.grad_fn).__name__ == "_MaxBlurFnBackward"
    assert y.dtype == y_ref.dtype == torch.bfloat16 and torch.equal(y, y_ref)
    torch.testing.assert_close(gx.float(), gx_ref.float(), rtol=2 ** -7, atol=2 ** -6)
    # an fp32 input under bf16 autocast takes the modules (the maxima are taken in fp32 there)
    (y, gx), (y_ref, gx_ref) = _maxblur_both_paths(pool, x.nan_to_num(), grad, amp=True)
    assert type(y.grad_fn).__name__ != "_MaxBlurFnBackward" and torch.equal(y, y_ref) and torch.equal(gx, gx_ref)


def test_self_attention_starts_as_identity_after_the_first_stage():
    sa = create_model("xresnet18", sa=True)
    layer = sa.layer1[-1].se
    assert isinstance(layer, SimpleSelfAttention) and sa.layer2[-1].se is None
    torch.manual_seed(0)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        assert torch.equal(layer(x), x)  # gamma starts at 0
        layer.gamma.fill_(0.5)
        flat = x.reshape(2, 64, 64)
        expected = flat + 0.5 * torch.bmm(torch.bmm(flat, flat.transpose(1, 2)), layer.conv(flat))
        assert torch.allclose(layer(x), expected.reshape(2, 64, 8, 8), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{}, {"maxblur": True, "sa": True, "wide_stem": True}])
def test_onnx_parity_with_mish_blur_and_attention(kwargs, tmp_path):
    model = trained_like(create_model("convtwist_xresnet18", **kwargs))
    report = export_onnx(model, tmp_path / "m.onnx", 64, compare_unfolded=False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(run_onnx(report.path, x) - ref).max() <= 1e-4


def test_features_only_on_timm_trunk():
    full = create_model("convtwist_xresnet18").eval()
    net = create_model("convtwist_xresnet18", features_only=True).eval()
    net.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        outs = net(x)
        assert torch.equal(outs[-1], full.forward_features(x))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512]
    assert net.feature_info.reduction() == [4, 8, 16, 32]


def test_compiles_in_one_graph_and_matches_eager():
    torch.manual_seed(0)
    model = trained_like(create_model("convtwist_xresnet18"))
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=1e-5)
    torch._dynamo.reset()


def test_a_trained_xresnet_stages_loads_by_name_and_through_timm(tmp_path, monkeypatch):
    from conftest import make_run_dir, register_spec
    from convtwist_zoo.release.staging import stage_run
    run = make_run_dir(tmp_path / "run", arch="convtwist_xresnet18", num_classes=3)
    spec = register_spec(stage_run(run, tmp_path / "hub", tag="tinyset"), monkeypatch)
    monkeypatch.setenv("CONVTWIST_ZOO_HUB_DIR", str(tmp_path / "hub"))
    fp32 = create_model("convtwist_xresnet18", pretrained=run).eval()
    staged = create_model(spec.name).eval()  # the fp16 Hub copy, by name
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(staged(x), fp32(x), atol=1e-2)
    config = (tmp_path / "hub" / spec.name / "config.json").read_text()
    assert '"first_conv": "conv1.0"' in config and '"label_names"' in config
