"""ONNX export: folding is exact, ONNX Runtime matches PyTorch, graphs are static and clean, errors are clear."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from conftest import ROOT, one_per_architecture, run_cli, trained_like, val_sample
from convtwist_zoo import ConvTwist, create_model, list_models, twistify
from convtwist_zoo.export.folding import FoldedMish, UnsupportedLayerError, fold_model
from convtwist_zoo.export.onnx import FP16_TOLERANCE, export_onnx, onnx_metadata, run_onnx


@pytest.mark.parametrize("name", list_models())
def test_every_registry_model_matches_in_onnx_runtime(name, tmp_path):
    model = trained_like(create_model(name))
    report = export_onnx(model, tmp_path / "m.onnx", 64, compare_unfolded=False)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    got = run_onnx(report.path, x)
    assert np.abs(got - ref).max() <= 1e-4
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_non_square_stride2_batch_and_static_size(tmp_path):
    model = trained_like(create_model("convtwist_resnet18"), seed=1)
    report = export_onnx(model, tmp_path / "m.onnx", (96, 64), dynamic_batch=True, compare_unfolded=False)
    x = torch.randn(5, 3, 96, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(run_onnx(report.path, x) - ref).max() <= 1e-4
    with pytest.raises(Exception, match="Got invalid dimensions|Expected: 96"):
        run_onnx(report.path, torch.randn(1, 3, 64, 64))
    static = export_onnx(model, tmp_path / "s.onnx", (96, 64), dynamic_batch=False, compare_unfolded=False)
    dims = [d.dim_value for d in onnx.load(str(static.path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 96, 64]


def test_folded_graph_has_no_grid_subgraphs_and_checker_passes(tmp_path):
    model = trained_like(create_model("convtwist_resnet18"))
    report = export_onnx(model, tmp_path / "m.onnx", 128)
    ops = report.nodes_after
    for op in ("Range", "Shape", "Gather", "Unsqueeze", "ConstantOfShape", "BatchNormalization", "Sub", "Slice",
               "Pad", "Split", "Concat"):
        assert ops.get(op, 0) == 0, (op, ops)
    n_twist = sum(isinstance(m, ConvTwist) for m in model.modules())
    # main, per tap a depthwise diff and two 1x1, the identity conv into the blocked layout; stem and 3 shortcuts
    assert ops["Conv"] == 14 * n_twist + 4
    assert ops["Mul"] == 2 * n_twist  # one grid each for x and y, per layer
    assert report.nodes_before.get("Range", 0) > 0 or report.nodes_before.get("Slice", 0) > 0
    onnx.checker.check_model(onnx.load(str(report.path)), full_check=True)
    text = str(report)
    assert "unfolded" in text and "folded" in text and "Conv" in text
    # the grids are constants, one 1x1xHxW pair per layer (not per channel) holding 2*j/W - 1 and 2*i/H - 1
    from onnx import numpy_helper
    grids = [numpy_helper.to_array(i) for i in onnx.load(str(report.path)).graph.initializer
             if len(i.dims) == 4 and i.dims[0] == i.dims[1] == 1 and i.dims[2] > 1 and i.dims[3] > 1]
    kinds = collections.Counter()
    for g in grids:
        h, w = g.shape[-2:]
        gx = np.broadcast_to(2 * np.arange(w) / w - 1, (h, w))
        gy = np.broadcast_to((2 * np.arange(h) / h - 1)[:, None], (h, w))
        kind = "x" if np.allclose(g[0, 0], gx) else "y" if np.allclose(g[0, 0], gy) else "?"
        kinds[kind, h] += 1
    assert set(kinds) == {(k, r) for k in "xy" for r in (32, 16, 8, 4)}, kinds


def test_twist_joins_the_main_conv_in_onnx_runtimes_blocked_layout(tmp_path):
    import onnxruntime as ort
    model = trained_like(nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                       ConvTwist(32, 32), nn.BatchNorm2d(32), nn.ReLU(),
                                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)))
    report = export_onnx(model, tmp_path / "m.onnx", 32, metadata={})
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    nodes = onnx.load(str(tmp_path / "opt.onnx")).graph.node
    if not any(n.domain == "com.microsoft.nchwc" for n in nodes):
        pytest.skip("ONNX Runtime uses no blocked layout on this CPU")
    ops = collections.Counter(n.op_type for n in nodes)
    # the twist's Mul/Add run in NCHW; the sum with the main conv and the ReLU are fused into that conv
    assert ops["Mul"] == 2 and ops["Add"] == 1 and ops["Relu"] == 0, ops
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    main = [(n, a) for n, a in zip(nodes, attrs) if n.op_type == "Conv" and a.get("group", 1) == 1
            and list(a.get("kernel_shape", [])) == [3, 3] and n.input[1] and len(n.input) > 3 and n.input[3]]
    assert len(main) == 1 and main[0][1].get("activation") == b"Relu"  # the stem conv has no sum


def test_metadata_embedded(tmp_path):
    model = trained_like(create_model("resnet18", num_classes=3))
    model.pretrained_config = {"class_ids": ["a", "b", "c"], "class_names": ["A", "B", "C"]}
    export_onnx(model, tmp_path / "m.onnx", 64, compare_unfolded=False, metadata={"model_name": "resnet18.test"})
    meta = onnx_metadata(tmp_path / "m.onnx")
    assert meta["model_name"] == "resnet18.test" and meta["class_names"] == ["A", "B", "C"]
    assert meta["input_size"] == [3, 64, 64] and meta["mean"] == [0.485, 0.456, 0.406]


def test_twistified_vgg_exports(tmp_path):
    import torchvision
    model = trained_like(twistify(torchvision.models.vgg11_bn(num_classes=4)))
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, 4)
    report = export_onnx(model, tmp_path / "vgg.onnx", 64, compare_unfolded=False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert np.abs(run_onnx(report.path, x) - model(x).numpy()).max() <= 1e-4


def test_bad_inputs_are_clear_and_leave_no_file(tmp_path):
    model = create_model("resnet18").eval()
    with pytest.raises(ValueError, match="not a multiple of the network's stride 32"):
        export_onnx(model, tmp_path / "a.onnx", 100)
    with pytest.raises(ValueError, match="ONNX opset 11 is too old for these models: use 13 or newer"):
        export_onnx(model, tmp_path / "a.onnx", 64, opset=11)
    with pytest.raises(FileNotFoundError, match="missing does not exist; create it first"):
        export_onnx(model, tmp_path / "missing" / "a.onnx", 64)
    odd = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LSTM(4, 4))
    with pytest.raises(UnsupportedLayerError, match="'1' of type LSTM"):
        export_onnx(odd, tmp_path / "b.onnx", 64)
    assert list(tmp_path.iterdir()) == []


def test_ort_optimized_variant(tmp_path):
    model = trained_like(create_model("convtwist_resnet18"))
    report = export_onnx(model, tmp_path / "m.onnx", 64, optimize=True, compare_unfolded=False)
    assert report.optimized_path.exists()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert np.abs(run_onnx(report.optimized_path, x) - model(x).numpy()).max() <= 1e-4


def test_mish_is_exported_without_softplus(tmp_path):
    # ONNX Runtime's Softplus kernel is unvectorised: the folded graph computes Mish from Exp, Mul and Div
    model = trained_like(create_model("xresnet18", maxblur=True))
    report = export_onnx(model, tmp_path / "m.onnx", 64)
    mish = sum(isinstance(m, nn.Mish) for m in model.modules())
    assert mish == 19 and report.nodes_before["Softplus"] == report.nodes_before["Tanh"] == mish
    assert "Softplus" not in report.nodes_after and "Tanh" not in report.nodes_after
    assert report.nodes_after["Exp"] == mish
    folded = fold_model(model, 64)
    assert sum(type(m) is FoldedMish for m in folded.modules()) == mish
    assert not any(type(m) is FoldedMish for m in model.modules())  # the source model keeps nn.Mish


@pytest.mark.parametrize("fp16", [False, True])
def test_exported_mish_is_mish_to_float32_rounding_over_the_float_range(fp16, tmp_path):
    from onnxruntime.transformers.float16 import convert_float_to_float16
    x = np.concatenate([np.linspace(-120, 120, 48001), [-3e38, -1e30, -0.0, 1e-30, 1e30, 3e38]]).astype(np.float32)
    path = tmp_path / "mish.onnx"
    torch.onnx.export(FoldedMish(), (torch.zeros(1, 8),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {1: "n"}})
    graph = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in graph.graph.node if n.op_type != "Constant")
    assert ops == {"Exp": 1, "Add": 2, "Mul": 1, "Div": 2}  # 2 / n is one Div, not Reciprocal then Mul
    if fp16:
        graph = convert_float_to_float16(graph, keep_io_types=True)
    import onnxruntime as ort
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x[None]})[0][0].astype(np.float64)
    x64 = x.astype(np.float64)
    expected = x64 * np.tanh(np.logaddexp(0.0, x64))  # mish in float64
    assert np.isfinite(got).all()
    assert np.abs(got - expected).max() <= 1e-6 * np.maximum(np.abs(expected), 1.0).max()
    big = np.abs(expected) > 1e-6
    assert (np.abs(got - expected)[big] / np.abs(expected[big])).max() < 1e-6
    with torch.no_grad():  # eager PyTorch keeps torch's own kernel
        assert torch.equal(FoldedMish()(torch.from_numpy(x)), nn.functional.mish(torch.from_numpy(x)))


def test_fp16_export_halves_the_weights_and_keeps_float32_io(tmp_path):
    model = trained_like(create_model("convtwist_resnet18"))
    full = export_onnx(model, tmp_path / "fp32.onnx", 64, compare_unfolded=False)
    half = export_onnx(model, tmp_path / "fp16.onnx", 64, compare_unfolded=False, fp16=True)
    graph = onnx.load(str(half.path))
    weights = [i for i in graph.graph.initializer if len(i.dims) == 4 and i.dims[0] > 1]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    assert [i.type.tensor_type.elem_type for i in (graph.graph.input[0], graph.graph.output[0])] == \
        [onnx.TensorProto.FLOAT] * 2
    assert half.path.stat().st_size < 0.6 * full.path.stat().st_size
    assert onnx_metadata(half.path)["precision"] == "fp16" and onnx_metadata(full.path)["precision"] == "fp32"
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    out = run_onnx(half.path, x)
    assert out.dtype == np.float32 and np.abs(out - ref).max() <= FP16_TOLERANCE * np.abs(ref).max()
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_cli_export_with_parity_check(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code, stdout, stderr = run_cli(capsys, "export", "convtwist_resnet18", "-o", out, "--image-size", "64",
                                   "--check", "2")
    assert code == 0, stderr
    assert "parity: ONNX Runtime vs PyTorch" in stdout and out.exists() and onnx_metadata(out)["precision"] == "fp32"
    code, stdout, stderr = run_cli(capsys, "export", "resnet18", "-o", out, "--image-size", "64", "--check", "2",
                                   "--fp16")
    assert code == 0, stdout + stderr
    assert "parity: ONNX Runtime vs PyTorch" in stdout and onnx_metadata(out)["precision"] == "fp16"


HUB_CHECKPOINTS = sorted(p.parent.name for p in (ROOT / "hub").glob("*/model.safetensors"))

@pytest.mark.skipif(not HUB_CHECKPOINTS, reason="no checkpoint in hub/")
@pytest.mark.parametrize("name", one_per_architecture(HUB_CHECKPOINTS))
def test_hub_checkpoint_matches_in_onnx_runtime_on_real_val_images(name, tmp_path):
    """A zoo checkpoint of each architecture, exported at its input size: the same logits (<= 1e-4) and the same
    top-1 on a validation sample (2 real images of each class) and on random inputs."""
    from convtwist_zoo import get_transform
    model = create_model(name).eval()
    transform = get_transform(name)
    images = torch.stack([transform(im) for im in val_sample(name.split(".", 1)[1], per_class=2)])
    assert images.shape == (20, 3, 128, 128)
    report = export_onnx(model, tmp_path / "m.onnx", 128, compare_unfolded=False)
    for x in (images, torch.randn(2, 3, 128, 128)):
        with torch.no_grad():
            ref = model(x).numpy()
        got = run_onnx(report.path, x)
        assert np.abs(got - ref).max() <= 1e-4, name
        assert (got.argmax(1) == ref.argmax(1)).all(), name
