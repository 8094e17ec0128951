"""Export-time folding: ConvTwist + BatchNorm become constant convolutions and grids that compute the same function,
the source model is left untouched, a folded model refuses another input size, and Mish gets a form without
Softplus that stays finite in float16 arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import seed_and_ours, trained_like
from convtwist_zoo import ConvTwist, create_model
from convtwist_zoo.export.folding import FoldedConvTwist, FoldedMish, fold_model


@pytest.mark.parametrize("stride", [1, 2])
def test_a_folded_convtwist_with_batchnorm_is_the_references_formula_then_batchnorm(stride):
    ref, ours = seed_and_ours(8, 16, stride)  # the reference module, and ours loaded from its state dict
    bn = nn.BatchNorm2d(16)
    with torch.no_grad():
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.normal_(), bn.bias.normal_()
    folded = fold_model(nn.Sequential(ours, bn).eval(), 24)
    assert [type(m) for m in folded.modules()].count(FoldedConvTwist) == 1
    assert not any(isinstance(m, (ConvTwist, nn.BatchNorm2d)) for m in folded.modules())
    x = torch.randn(3, 8, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn.eval()(ref(x)), rtol=1e-4, atol=1e-4)


def test_fold_is_exact_in_pytorch_and_does_not_touch_the_source():
    model = trained_like(create_model("convtwist_resnet50"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_model(model, 64)
    assert any(isinstance(m, FoldedConvTwist) for m in folded.modules())
    assert not any(isinstance(m, (ConvTwist, nn.BatchNorm2d)) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max() <= 1e-4
        with pytest.raises(ValueError, match="built for 16x16"):
            folded(torch.randn(1, 3, 96, 96))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_exported_mish_formula_stays_finite_in_float16_arithmetic():
    # ONNX Runtime's CPU provider runs an fp16 graph's Exp/Div in float32; a provider with float16 kernels does not:
    # there exp(x) overflows above x = 11 and n/(n + 2) would be inf/inf = NaN, while 1 + 2/n goes to 1
    x = np.linspace(-60, 60, 4801).astype(np.float16)
    with np.errstate(over="ignore", divide="ignore", under="ignore"):
        e = np.exp(x)
        got = x / (np.float16(1) + np.float16(2) / (e * (e + np.float16(2))))
    assert got.dtype == np.float16 and np.isfinite(got).all()
    x64 = x.astype(np.float64)
    expected = x64 * np.tanh(np.logaddexp(0.0, x64))
    assert (np.abs(got - expected) / np.maximum(np.abs(expected), 1.0)).max() < 1e-3  # float16's epsilon
    with torch.no_grad():  # the same formula as FoldedMish's export branch, in float16 in torch
        torch.testing.assert_close(_exported_mish(torch.from_numpy(x)), torch.from_numpy(got), rtol=1e-3, atol=1e-3)


def _exported_mish(x: torch.Tensor) -> torch.Tensor:
    """FoldedMish's forward as the ONNX exporter traces it."""
    from unittest import mock
    with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
        return FoldedMish()(x)
