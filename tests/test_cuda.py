"""The CUDA path (plain PyTorch ops; the fused kernels are CPU-only): parity with the CPU and the seed's reference,
bf16 autocast, channels_last, inductor, a training run and a pretrained model on the GPU. Skipped without CUDA (CI
has none); run on a GPU machine with ``pytest tests/test_cuda.py``."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from conftest import make_image_folder, seed_and_ours
from convtwist_zoo import ConvTwist
from convtwist_zoo import create_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("ni,nf,stride,h,w", [(3, 5, 1, 7, 9), (4, 6, 2, 9, 7), (16, 8, 2, 16, 16)])
def test_cuda_forward_and_grads_match_the_seed_in_float64(ni, nf, stride, h, w):
    ref, ours = seed_and_ours(ni, nf, stride, dtype=torch.float64)
    ref, ours = ref.to(CUDA), ours.to(CUDA)
    x = torch.randn(2, ni, h, w, dtype=torch.float64, device=CUDA)
    got, expected = ours(x), ref(x)
    assert (got - expected).abs().max().item() < 1e-10
    grad = torch.randn_like(got)
    # input and centre gradients against autograd through the seed's plain ops
    x.requires_grad_()
    g_ours = torch.autograd.grad(ours(x), [x, ours.center_x, ours.center_y], grad)
    g_ref = torch.autograd.grad(ref(x), [x, ref.center_x, ref.center_y], grad)
    for a, b in zip(g_ours, g_ref):
        assert (a - b).abs().max().item() < 1e-10


def test_cuda_gradcheck_float64():
    torch.manual_seed(0)
    for stride in (1, 2):
        layer = ConvTwist(2, 3, stride, bias=True).double().to(CUDA)
        x = torch.randn(2, 2, 5, 6, dtype=torch.float64, device=CUDA, requires_grad=True)
        names = [n for n, _ in layer.named_parameters()]

        def f(x, *ps):
            return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))
        assert torch.autograd.gradcheck(f, (x, *layer.parameters()))


def test_cuda_equals_cpu_and_keeps_channels_last_under_bf16_autocast():
    torch.manual_seed(0)
    layer = ConvTwist(32, 48, 2)
    x = torch.randn(4, 32, 20, 20)
    with torch.no_grad():
        cpu = layer(x)
        layer_gpu = layer.to(CUDA)
        x_gpu = x.to(CUDA).contiguous(memory_format=torch.channels_last)
        torch.backends.cudnn.allow_tf32 = False
        fp32 = layer_gpu(x_gpu)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = layer_gpu(x_gpu)
    assert (fp32.cpu() - cpu).abs().max() / cpu.abs().max() < 1e-5
    assert bf16.dtype == torch.bfloat16 and bf16.is_contiguous(memory_format=torch.channels_last)
    assert (bf16.float() - fp32).abs().max() / fp32.abs().max() < 0.03


def test_cuda_inductor_compile_forward_and_backward():
    torch.manual_seed(0)
    model = nn.Sequential(ConvTwist(3, 8), nn.ReLU(), ConvTwist(8, 8, 2)).to(CUDA)
    x = torch.randn(2, 3, 16, 16, device=CUDA)
    eager = model(x)
    g_eager = torch.autograd.grad(eager.square().sum(), list(model.parameters()))
    compiled = torch.compile(model)(x)
    g_compiled = torch.autograd.grad(compiled.square().sum(), list(model.parameters()))
    assert torch.allclose(eager, compiled, atol=1e-4, rtol=1e-4)
    for a, b in zip(g_eager, g_compiled):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)


def test_cuda_training_run_records_the_gpu(tmp_path):
    from convtwist_zoo.training import TrainConfig, train
    folder = make_image_folder(tmp_path / "imgs")
    out = tmp_path / "run"
    metrics = train(TrainConfig(model="convtwist_resnet18", data=str(folder), out=str(out), image_size=32,
                                batch_size=8, epochs=2, workers=0, progress=False, warmup_epochs=0.5))
    config = json.loads((out / "config.json").read_text())
    assert config["trained_on"] == torch.cuda.get_device_name(0)
    assert metrics["epoch"] == 2 and torch.isfinite(torch.tensor(metrics["train_loss"]))


def test_cuda_pretrained_model_agrees_with_cpu(tmp_path):
    from conftest import make_run_dir
    model = create_model("convtwist_resnet18", pretrained=make_run_dir(tmp_path / "run")).eval()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to(CUDA)(x.to(CUDA)).cpu()
    assert (gpu - cpu).abs().max() / cpu.abs().max() < 1e-3
    assert torch.equal(gpu.argmax(1), cpu.argmax(1))
