"""ConvTwist vs nn.Conv2d vs the seed's module: forward and forward+backward, fp32 and bf16 autocast, at ResNet
stage shapes (batch 32), in channels_last and in PyTorch's default NCHW, plus a model-level train step
(fwd+bwd+SGD) of the ConvTwist ResNets vs plain ones in both formats, and of the ConvTwist xresnets vs their
baselines (and convtwist_xresnet18 vs xresnet34, its compute-matched control) in channels_last, the xresnets with the
leaderboard's options (MaxBlurPool), as published.

    python bench/layer.py [--repeats 10] [--skip-models] [--formats channels_last nchw]

Prints a table of ratios to Conv2d in the same memory format (the operator's MAC floor is 17/9 = 1.89x) and writes
bench/results/layer.json; ``nchw_over_cl`` is a shape's NCHW ratio over its channels_last ratio. The modules of a shape, and each model
with its baseline, are timed in turns, so the ratios hold on a shared machine. `convtwist_stacked` columns run the layer
with the stacked path at <= 64 input channels (bf16; off by default, see fused_kernels.STACKED_MAX_IN_CHANNELS), to show
what it gains or loses on this host; `plain_prep` builds the
layers' kernels from their parameters with tensor ops, to show what the one-pass C++ preparation gains. Run it on an
idle machine.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (geomean, interleaved_median_times, print_table, train_step, write_json, zoo_model,  # noqa: E402
                    zoo_options)

from convtwist_zoo import ConvTwist  # noqa: E402
from convtwist_zoo.layers import _kernels as fused_kernels  # noqa: E402
from convtwist_zoo.evaluate import count_macs  # noqa: E402
from convtwist_zoo.layers.reference import SeedConvTwist  # noqa: E402

SHAPES = [(64, 32, 1), (128, 16, 1), (256, 8, 1), (512, 4, 1), (128, 32, 2)]  # channels, size, stride
BATCH = 32


@contextlib.contextmanager
def _plain_path():
    """Run ConvTwist on its plain-PyTorch fallback (as on a machine without a C++ compiler)."""
    saved = fused_kernels.load()
    fused_kernels._STATE["module"] = None
    try:
        yield
    finally:
        fused_kernels._STATE["module"] = saved


@contextlib.contextmanager
def _stacked_path():
    """Run ConvTwist on the stacked convolution at <= 64 input channels in bf16 (the rule once default), to measure
    it against the 4-tap path the layer takes by default."""
    saved = fused_kernels.STACKED_MAX_IN_CHANNELS
    fused_kernels.STACKED_MAX_IN_CHANNELS = {torch.bfloat16: 64}
    try:
        yield
    finally:
        fused_kernels.STACKED_MAX_IN_CHANNELS = saved


@contextlib.contextmanager
def _plain_kernel_prep():
    """Build the layer's kernels from its parameters with tensor ops instead of the one-pass C++ operator."""
    saved = ConvTwist._compute_kernels
    ConvTwist._compute_kernels = lambda self, x, dtype, stacked: self._plain_kernels(dtype, stacked)
    try:
        yield
    finally:
        ConvTwist._compute_kernels = saved


def _autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


FORMATS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
MAC_FLOOR = 17 / 9  # a ConvTwist's multiply-adds over a 3x3 Conv2d's


def layer_rows(repeats: int, formats=tuple(FORMATS)) -> list[dict]:
    rows = []
    for dtype in ("fp32", "bf16"):
        for ch, size, stride in SHAPES:
            by_format = {}
            for fmt in formats:
                by_format[fmt] = row = _layer_row(dtype, fmt, ch, size, stride, repeats)
                rows.append(row)
            if {"channels_last", "nchw"} <= set(by_format):
                by_format["nchw"]["nchw_over_cl"] = (by_format["nchw"]["convtwist_fwdbwd_x"] /
                                                     by_format["channels_last"]["convtwist_fwdbwd_x"])
            for row in by_format.values():
                print_table([row], [k for k in ("dtype", "format", "shape", "convtwist_fwd_x", "convtwist_fwdbwd_x",
                                                "mac_floor_x", "nchw_over_cl", "convtwist_stacked_fwdbwd_x",
                                                "convtwist_plain_fwdbwd_x", "seed_fwdbwd_x", "conv2d_fwdbwd_ms",
                                                "convtwist_fwdbwd_ms") if k in row])
    return rows


def _layer_row(dtype: str, fmt: str, ch: int, size: int, stride: int, repeats: int) -> dict:
    memory_format = FORMATS[fmt]
    x = torch.randn(BATCH, ch, size, size).contiguous(memory_format=memory_format)
    twist = ConvTwist(ch, ch, stride)
    modules = {"conv2d": nn.Conv2d(ch, ch, 3, stride, 1, bias=False), "convtwist": twist,
               "seed": SeedConvTwist(ch, ch, stride)}
    if fmt == "channels_last":  # the variants of the layer's own path
        modules.update(convtwist_stacked=twist, convtwist_plain=twist)
    paths = {"convtwist_stacked": _stacked_path, "convtwist_plain": _plain_path}
    row = {"dtype": dtype, "format": fmt, "shape": f"{ch}ch@{size} s{stride}", "mac_floor_x": MAC_FLOOR}
    fwds, fwd_bwds = [], []
    for name, m in modules.items():
        m = m.to(memory_format=memory_format)
        xg = x.clone().requires_grad_()
        path = paths.get(name, contextlib.nullcontext)

        def fwd(m=m, path=path):
            with torch.no_grad(), _autocast(dtype), path():
                m(x)

        def fwd_bwd(m=m, path=path, xg=xg):
            with _autocast(dtype), path():
                y = m(xg)
            y.float().sum().backward()
        fwds.append(fwd)
        fwd_bwds.append(fwd_bwd)
    # the modules timed in turns, so a slow spell of the machine hits all of them
    for name, t in zip(modules, interleaved_median_times(fwds, repeats)):
        row[f"{name}_fwd_ms"] = t * 1e3
    for name, t in zip(modules, interleaved_median_times(fwd_bwds, repeats)):
        row[f"{name}_fwdbwd_ms"] = t * 1e3
    for name in modules:
        if name != "conv2d":
            row[f"{name}_fwd_x"] = row[f"{name}_fwd_ms"] / row["conv2d_fwd_ms"]
            row[f"{name}_fwdbwd_x"] = row[f"{name}_fwdbwd_ms"] / row["conv2d_fwdbwd_ms"]
    return row


def model_rows(repeats: int, batch: int = 32, size: int = 128, formats=tuple(FORMATS)) -> list[dict]:
    rows = []
    for fmt in formats:
        rows += _model_rows(repeats, batch, size, fmt)
    return rows


# (ConvTwist model, plain model) train steps timed in turns; the xresnet pairs (with the leaderboard's options) in
# channels_last only, as they train
MODEL_PAIRS = [("convtwist_resnet18", "resnet18"), ("convtwist_resnet50", "resnet50")]
XRESNET_PAIRS = [("convtwist_xresnet18", "xresnet18"), ("convtwist_xresnet18", "xresnet34"),
                 ("convtwist_xresnet50", "xresnet50")]


def _model_rows(repeats: int, batch: int, size: int, fmt: str) -> list[dict]:
    rows = []
    memory_format = FORMATS[fmt]
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,))
    for twist, plain in MODEL_PAIRS + (XRESNET_PAIRS if fmt == "channels_last" else []):
        # the ConvTwist model as it runs; for the ResNets in channels_last also with the stacked path at 64 channels
        # (what it gains) and with its kernels built by tensor ops (what the one-pass C++ preparation gains)
        runs = {"plain": (plain, contextlib.nullcontext), "convtwist": (twist, contextlib.nullcontext)}
        if fmt == "channels_last" and (twist, plain) in MODEL_PAIRS:
            runs.update(stacked=(twist, _stacked_path), plain_prep=(twist, _plain_kernel_prep))
        steps = [train_step(zoo_model(name).to(memory_format=memory_format).train(), x, y, path=path)
                 for name, path in runs.values()]
        # baseline and ConvTwist steps in turns: their ratio survives the machine's drift
        times = dict(zip(runs, interleaved_median_times(steps, repeats, warmup=2)))
        macs = count_macs(zoo_model(twist), size) / count_macs(zoo_model(plain), size)
        options = f" ({opts})" if (opts := zoo_options(twist)) else ""
        row = {"model": f"{twist} vs {plain}{options}", "format": fmt, "dtype": "bf16", "batch": batch,
               "image": size, "plain_ms": times["plain"] * 1e3, "convtwist_ms": times["convtwist"] * 1e3,
               "mac_ratio": macs,
               "ratio": times["convtwist"] / times["plain"], "convtwist_img_s": batch / times["convtwist"],
               "plain_img_s": batch / times["plain"]}
        if "stacked" in times:
            row.update(stacked_ratio=times["stacked"] / times["plain"],
                       plain_prep_ratio=times["plain_prep"] / times["plain"])
        rows.append(row)
        print_table([rows[-1]], list(rows[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = layer_rows(args.repeats, args.formats)
    summary = []
    for dtype in ("fp32", "bf16"):
        for fmt in args.formats:
            sel = [r for r in rows if r["dtype"] == dtype and r["format"] == fmt]
            entry = {"dtype": dtype, "format": fmt, "mac_floor_x": MAC_FLOOR}
            for col in ("convtwist_fwdbwd", "convtwist_fwd", "convtwist_stacked_fwdbwd", "convtwist_plain_fwdbwd",
                        "seed_fwdbwd", "seed_fwd"):
                if f"{col}_x" in sel[0]:
                    entry[f"{col}_geomean_x"] = geomean(r[f"{col}_x"] for r in sel)
            entry["convtwist_fwdbwd_max_x"] = max(r["convtwist_fwdbwd_x"] for r in sel)
            if "nchw_over_cl" in sel[0]:
                entry["nchw_over_cl_max"] = max(r["nchw_over_cl"] for r in sel)
            summary.append(entry)
    print("\nlayer summary (ratio to nn.Conv2d in the same format, geometric mean over the five shapes)")
    for entry in summary:
        print_table([entry], list(entry))
    models = [] if args.skip_models else model_rows(args.repeats, formats=args.formats)
    if models:
        print("\nmodel train step (fwd+bwd+SGD)")
        for row in models:
            print_table([row], list(row))
    write_json("layer", {"batch": BATCH, "layers": rows, "summary": summary, "models": models})


if __name__ == "__main__":
    main()
