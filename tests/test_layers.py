"""ConvTwist against the seed's reference formulas, its parametrisation, init, autograd, and twistify."""
import copy
import os

import pytest
import torch
import torch.nn as nn
import torchvision

from conftest import seed_and_ours
from convtwist_zoo import ConvTwist, to_seed_state_dict, twistify
from convtwist_zoo.layers._twist_math import antisymmetric_kernel, twist_taps_from_kernel
from convtwist_zoo.layers.reference import SeedConvTwist


@pytest.fixture(params=["fused", "plain", "stacked"])
def kernel_path(request, monkeypatch):
    """Run a test on the fused C++ kernels (tap path), on the plain PyTorch fallback, and on the stacked path (one
    convolution with 3*nf outputs; stride 1 only, stride 2 stays on the taps) forced for every dtype and size."""
    from convtwist_zoo.layers import _kernels as fused_kernels
    if request.param == "plain":
        monkeypatch.setitem(fused_kernels._STATE, "module", None)
    elif fused_kernels.load() is None:
        pytest.skip("fused kernels could not be built here")
    if request.param == "stacked":
        monkeypatch.setattr(fused_kernels, "STACKED_MAX_IN_CHANNELS",
                            {dt: 10 ** 6 for dt in (torch.float64, torch.float32, torch.bfloat16, torch.float16)})
    return request.param


def test_stacked_path_is_chosen_where_it_is_asked_for(monkeypatch):
    from convtwist_zoo.layers import _kernels as fused_kernels
    from convtwist_zoo.layers._kernels import stacked_is_faster as _stacked_is_faster
    if fused_kernels.load() is None:
        pytest.skip("fused kernels could not be built here")
    x = torch.zeros(1)
    if not os.environ.get("CONVTWIST_ZOO_STACKED_MAX_CHANNELS"):
        assert not _stacked_is_faster(x, torch.bfloat16, 64, 1)   # off by default
    monkeypatch.setattr(fused_kernels, "STACKED_MAX_IN_CHANNELS", {torch.bfloat16: 64})
    assert _stacked_is_faster(x, torch.bfloat16, 64, 1)
    assert not _stacked_is_faster(x, torch.bfloat16, 64, 2)       # stride 2: taps
    assert not _stacked_is_faster(x, torch.bfloat16, 128, 1)      # a tie at 128 channels: taps
    assert not _stacked_is_faster(x, torch.float32, 64, 1)        # fp32: taps
    layer = ConvTwist(64, 64)
    with torch.no_grad():
        x = torch.randn(2, 64, 12, 10).contiguous(memory_format=torch.channels_last)
        ref = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
            assert layer(x.contiguous()).is_contiguous()  # NCHW in, NCHW out on this path too
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    assert (out.float() - ref).abs().max() / ref.abs().max() < 0.02


def test_fused_kernels_build_where_a_compiler_exists():
    import shutil
    from convtwist_zoo.layers import _kernels as fused_kernels
    if shutil.which("c++") is None or shutil.which("ninja") is None:
        pytest.skip("no C++ compiler/ninja: the plain path is used")
    assert fused_kernels.load() is not None


@pytest.mark.parametrize("ni,nf,stride,h,w", [
    (3, 5, 1, 7, 9), (4, 6, 2, 8, 8), (4, 6, 2, 9, 7), (8, 8, 1, 16, 16), (2, 3, 2, 5, 12), (5, 4, 1, 1, 1)])
def test_matches_seed_forward(ni, nf, stride, h, w, kernel_path):
    ref, ours = seed_and_ours(ni, nf, stride)
    x = torch.randn(3, ni, h, w)
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-5


def test_matches_seed_channels_last_and_deepcopy():
    ref, ours = seed_and_ours(6, 7, 2, seed=1)
    x = torch.randn(2, 6, 11, 10)
    with torch.no_grad():
        expected = ref(x)
        got = copy.deepcopy(ours).to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert (got - expected).abs().max().item() < 1e-5


def test_parameter_count_is_the_seeds_done_properly():
    for ni, nf in [(3, 5), (64, 64), (128, 256)]:
        layer = ConvTwist(ni, nf)
        assert sum(p.numel() for p in layer.parameters()) == nf * ni * (9 + 4 + 4) + 2 * nf
    assert sum(p.numel() for p in ConvTwist(4, 6, bias=True).parameters()) == 6 * 4 * 17 + 2 * 6 + 6


def test_init_antisymmetric_rotated_and_centres_in_range():
    torch.manual_seed(3)
    layer = ConvTwist(16, 32, init_max=1.5)
    _, wx, wy = (k.detach() for k in layer.kernels())
    assert torch.equal(wx, -wx.flip(2).flip(3))
    assert torch.equal(wx[:, :, 1, 1], torch.zeros(32, 16))
    assert torch.equal(wy, wx.transpose(2, 3).flip(3))  # seed: conv_y = conv_x rotated 90 degrees
    for c in (layer.center_x, layer.center_y):
        assert c.abs().max() <= 1.5 and c.std() > 0.5  # uniform(-1.5, 1.5): std 0.87
    assert wx.abs().max() > 0


def test_taps_round_trip_and_antisymmetrisation():
    k = torch.randn(4, 3, 3, 3)
    anti = (k - k.flip(2).flip(3)) / 2  # the seed's symmetrize
    assert torch.allclose(antisymmetric_kernel(twist_taps_from_kernel(k)), anti)
    taps = torch.randn(4, 3, 4)
    assert torch.equal(twist_taps_from_kernel(antisymmetric_kernel(taps)), taps)


def test_seed_layout_round_trip():
    ref, ours = seed_and_ours(3, 4, 1, seed=2)
    seed_sd = to_seed_state_dict(ours)
    assert set(seed_sd) == {"conv.weight", "conv_x.weight", "conv_y.weight", "center_x", "center_y"}
    fresh = SeedConvTwist(3, 4)
    fresh.load_state_dict(seed_sd)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert (fresh(x) - ours(x)).abs().max() < 1e-5
    back = ConvTwist(3, 4)
    back.load_state_dict(seed_sd)
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_seed_layout_loads_into_a_whole_model():
    seedy = twistify(torchvision.models.resnet18(num_classes=3))
    sd = to_seed_state_dict(seedy)
    assert "layer1.0.conv1.conv_x.weight" in sd
    other = twistify(torchvision.models.resnet18(num_classes=3))
    other.load_state_dict(sd)
    seedy.eval(), other.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(seedy(x), other(x), atol=1e-5)


def test_forward_does_not_modify_parameters_and_grads_flow():
    layer = ConvTwist(3, 4, 2)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(torch.randn(2, 3, 8, 8)).square().sum().backward()
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k])
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gradcheck_float64(kernel_path):
    torch.manual_seed(0)
    for stride in (1, 2):
        layer = ConvTwist(2, 3, stride, bias=True).double()
        x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
        params = tuple(layer.parameters())

        def f(x, *ps):
            return torch.func.functional_call(layer, dict(zip([n for n, _ in layer.named_parameters()], ps)), (x,))
        assert torch.autograd.gradcheck(f, (x, *params))


def test_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    layer = ConvTwist(16, 16)
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        ref = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() / ref.abs().max() < 0.03


def test_bad_input_errors():
    layer = ConvTwist(3, 4)
    with pytest.raises(ValueError, match="4-D"):
        layer(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="expects 3 input channels, got 1"):
        layer(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="stride"):
        ConvTwist(3, 4, stride=3)


def test_twistify_torchvision_resnet():
    model = torchvision.models.resnet18(num_classes=10)
    convs3 = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    model, report = twistify(model, return_report=True)
    assert report.replaced == convs3 and len(convs3) == 16
    assert ("conv1", "kernel 7x7") in report.skipped
    twists = {n: m for n, m in model.named_modules() if isinstance(m, ConvTwist)}
    assert set(twists) == set(convs3)
    assert twists["layer2.0.conv1"].stride == 2 and twists["layer2.0.conv2"].stride == 1
    assert report.params_after - report.params_before == sum(2 * m.weight_x.numel() + 2 * m.out_channels
                                                              for m in twists.values())
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert "layer1.0.conv1" in str(report)


def test_twistify_keeps_bias_and_weights_and_exclude():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 4, 3, padding=2, dilation=2))
    w0, b0 = model[0].weight.clone(), model[0].bias.clone()
    model, report = twistify(model, exclude=["2"], return_report=True)
    assert isinstance(model[0], ConvTwist) and torch.equal(model[0].weight, w0) and torch.equal(model[0].bias, b0)
    assert isinstance(model[2], nn.Conv2d) and not isinstance(model[2], ConvTwist)
    assert dict(report.skipped) == {"2": "excluded", "3": "depthwise", "4": "dilation (2, 2)"}


def test_torch_compile_small_model(kernel_path):
    """One graph (fullgraph=True: the C++ kernels are torch operators with shape functions; without them the
    compiler traces the plain ops), forward and backward equal to eager, on every kernel path."""
    torch.manual_seed(0)
    model = nn.Sequential(ConvTwist(3, 4), nn.ReLU(), ConvTwist(4, 4, 2)).train()
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    results = []
    for fn in (model, compiled):
        xi = x.clone().requires_grad_()
        out = fn(xi)
        grads = torch.autograd.grad(out.square().sum(), [xi, *model.parameters()])
        results.append((out, grads))
    (eager, eager_grads), (got, got_grads) = results
    torch.testing.assert_close(got, eager, rtol=0, atol=1e-5)
    for a, b in zip(got_grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    torch._dynamo.reset()


@pytest.mark.parametrize("stride,h,w", [(1, 9, 7), (2, 8, 8), (2, 9, 11)])
def test_fused_backward_equals_autograd_of_plain_ops(stride, h, w, kernel_path):
    """The hand-written backward of the fused path against autograd through the plain-ops reference."""
    from convtwist_zoo.layers._twist_functions import twist_reference as _twist_reference
    torch.manual_seed(stride)
    layer = ConvTwist(5, 6, stride, bias=True)
    x = torch.randn(2, 5, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = layer(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, *layer.parameters()], grad)
    ref_out = _twist_reference(x, layer.folded_kernel(), torch.cat([layer.weight_x, layer.weight_y]), layer.bias,
                               stride)
    ref = torch.autograd.grad(ref_out, [x, *layer.parameters()], grad)
    assert (out - ref_out).abs().max() < 1e-5
    for (name, _), a, b in zip([("x", None), *layer.named_parameters()], got, ref):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4, name


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_prepared_kernels_and_their_gradients_equal_the_parameter_formulas(stacked, dtype, fmt):
    """The one-pass C++ kernel preparation (fp32 parameters -> compute-dtype kernels, and back) against autograd
    through the formulas it replaces: folded main kernel, [Wx; Wy] taps or the stacked [main; Kx; Ky]; with the
    kernel as a model's .to(memory_format=...) leaves it."""
    from convtwist_zoo.layers import _kernels as fused_kernels
    if fused_kernels.load() is None:
        pytest.skip("fused kernels could not be built here")
    torch.manual_seed(7)
    layer = ConvTwist(6, 5).to(memory_format=fmt)
    assert layer.weight.is_contiguous(memory_format=fmt)
    got = layer._compute_kernels(torch.zeros(1, 6, 4, 4), dtype, stacked)
    assert type(got[0].grad_fn).__name__ == "PreparedKernelsBackward"
    main = layer.folded_kernel()
    if stacked:
        ref = (torch.cat([main, antisymmetric_kernel(layer.weight_x), antisymmetric_kernel(layer.weight_y)]).to(dtype),)
        assert got[1] is None
    else:
        ref = (main.to(dtype), torch.cat([layer.weight_x, layer.weight_y]).to(dtype))
    got = got[:len(ref)]
    grads_out = [torch.randn_like(r) for r in ref]
    for a, b in zip(got, ref):
        assert a.dtype == dtype and a.shape == b.shape
        tol = 1e-6 if dtype == torch.float32 else 2 ** -8 * b.abs().max().item()  # one bf16 rounding step
        torch.testing.assert_close(a, b, rtol=0, atol=tol)
    g_ref = torch.autograd.grad(ref, list(layer.parameters()), grads_out, retain_graph=True)
    layouts = [grads_out]
    if not stacked:
        # the tap path hands out the layouts its consumers use, and takes their gradients back in them, uncopied
        assert got[0].is_contiguous(memory_format=torch.channels_last) and got[1].transpose(1, 2).is_contiguous()
        layouts.append([grads_out[0].contiguous(memory_format=torch.channels_last),
                        grads_out[1].transpose(1, 2).contiguous().transpose(1, 2)])
    for grads in layouts:
        g_got = torch.autograd.grad(got, list(layer.parameters()), grads, retain_graph=True)
        for (name, param), a, b in zip(layer.named_parameters(), g_got, g_ref):
            assert a.dtype == torch.float32 and a.stride() == param.stride(), name  # laid out like the parameter
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("stride", [1, 2])
def test_output_and_input_gradient_keep_the_callers_memory_format(stride, kernel_path):
    layer = ConvTwist(8, 16, stride)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 8, 12, 10).contiguous(memory_format=fmt).requires_grad_()
        y = layer(x)
        assert y.is_contiguous(memory_format=fmt), (fmt, y.stride())
        y.sum().backward()
        assert x.grad.is_contiguous(memory_format=fmt), (fmt, x.grad.stride())
    ref = layer(x.detach().contiguous())
    assert torch.allclose(ref, layer(x.detach()), atol=1e-5)  # same values in both formats


def test_conv2d_keyword_names_and_the_seeds_positional_call():
    a = ConvTwist(in_channels=4, out_channels=6, stride=2, bias=True, kernel_size=3, padding=1)
    b = ConvTwist(4, 6, 2)  # the seed's ConvTwist(ni, nf, stride)
    assert (a.in_channels, a.out_channels, a.stride, a.bias is not None) == (4, 6, 2, True)
    assert (b.in_channels, b.out_channels, b.stride, b.bias) == (4, 6, 2, None)
    with pytest.raises(ValueError, match="3x3 convolution with padding 1"):
        ConvTwist(4, 6, kernel_size=5)


def test_kernels_that_cannot_build_warn_once_saying_why_and_what_it_costs(monkeypatch, tmp_path, capsys):
    import torch.utils.cpp_extension as ext

    from convtwist_zoo.layers import _kernels as fused_kernels

    def no_ninja(**kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")
    monkeypatch.setattr(fused_kernels, "_STATE", {})
    monkeypatch.setattr(fused_kernels, "_build_dir", lambda: tmp_path)  # nothing built there yet
    monkeypatch.setattr(ext, "load", no_ninja)
    with pytest.warns(UserWarning, match=r"Ninja is required.*slower.*pip install ninja"):
        assert fused_kernels.load() is None
    # a first build says what the pause is while it happens
    assert capsys.readouterr().err == (f"convtwist-zoo: compiling ConvTwist's fused CPU kernels into {tmp_path} "
                                       "(once per machine and torch install)...\n")
    assert fused_kernels.describe() == \
        "ConvTwist runs on its plain PyTorch path (RuntimeError: Ninja is required to load C++ extensions)"
    layer = ConvTwist(4, 4)
    assert layer(torch.randn(1, 4, 8, 8)).shape == (1, 4, 8, 8)  # the plain path computes the same layer


def test_every_kernel_file_is_compiled_or_included_and_ships_with_the_package():
    import fnmatch
    import tomllib

    from conftest import ROOT
    from convtwist_zoo.layers import _kernels as fused_kernels
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["convtwist_zoo"]
    csrc = ROOT / "convtwist_zoo" / "layers" / "csrc"
    files = sorted(p.relative_to(ROOT / "convtwist_zoo").as_posix() for p in csrc.iterdir())
    assert files == ["layers/csrc/maxblur_cpu.cpp", "layers/csrc/nhwc.h", "layers/csrc/twist_cpu.cpp"]
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files)  # an sdist/wheel would build
    # every file is in the build key: editing the header rebuilds the extension
    assert sorted(f"layers/csrc/{p.name}" for p in fused_kernels.SOURCES + fused_kernels.HEADERS) == files


def test_the_build_folder_is_one_per_torch_install_and_shared_by_checkouts(tmp_path, monkeypatch):
    """Two environments (their torch include paths differ) would rebuild each other's module at every load if they
    shared a folder; two copies of the same sources share one."""
    from convtwist_zoo.layers import _kernels as fused_kernels
    monkeypatch.setenv("CONVTWIST_ZOO_CACHE", str(tmp_path))
    here = fused_kernels._build_dir()
    assert here.parent == tmp_path / "ext"
    assert (here / "twist_cpu.cpp").read_bytes() == fused_kernels.SOURCE.read_bytes()
    copy = tmp_path / "checkout" / "csrc"
    copy.mkdir(parents=True)
    for src in fused_kernels.SOURCES + fused_kernels.HEADERS:
        (copy / src.name).write_bytes(src.read_bytes())
    monkeypatch.setattr(fused_kernels, "SOURCES", tuple(copy / s.name for s in fused_kernels.SOURCES))
    monkeypatch.setattr(fused_kernels, "HEADERS", tuple(copy / s.name for s in fused_kernels.HEADERS))
    assert fused_kernels._build_dir() == here
    monkeypatch.setattr(torch, "__file__", str(tmp_path / "other-venv" / "torch" / "__init__.py"))
    assert fused_kernels._build_dir() != here
