"""ConvTwist vs nn.Conv2d vs the seed's module: forward and forward+backward, fp32 and bf16 autocast, at ResNet
stage shapes (batch 32), plus a model-level train step (fwd+bwd+SGD) of the ConvTwist ResNets vs plain ones.

    python bench/layer.py [--repeats 10] [--skip-models]

Prints a table of ratios to Conv2d and writes bench/results/layer.json. The modules of a shape, and each model
with its baseline, are timed in turns, so the ratios hold on a shared machine. `convtwist_stacked` columns run the layer
with the stacked path at <= 64 input channels (bf16; off by default, see layers.STACKED_MAX_IN_CHANNELS), to show
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
from common import geomean, interleaved_median_times, print_table, write_json  # noqa: E402

from convtwist_zoo import ConvTwist, create_model, fused_kernels, layers  # noqa: E402
from convtwist_zoo.seed_reference import SeedConvTwist  # noqa: E402

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
    saved = layers.STACKED_MAX_IN_CHANNELS
    layers.STACKED_MAX_IN_CHANNELS = {torch.bfloat16: 64}
    try:
        yield
    finally:
        layers.STACKED_MAX_IN_CHANNELS = saved


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


def layer_rows(repeats: int) -> list[dict]:
    rows = []
    for dtype in ("fp32", "bf16"):
        for ch, size, stride in SHAPES:
            x = torch.randn(BATCH, ch, size, size).contiguous(memory_format=torch.channels_last)
            twist = ConvTwist(ch, ch, stride)
            modules = {"conv2d": nn.Conv2d(ch, ch, 3, stride, 1, bias=False), "convtwist": twist,
                       "convtwist_stacked": twist, "convtwist_plain": twist, "seed": SeedConvTwist(ch, ch, stride)}
            paths = {"convtwist_stacked": _stacked_path, "convtwist_plain": _plain_path}
            row = {"dtype": dtype, "shape": f"{ch}ch@{size} s{stride}"}
            fwds, fwd_bwds = [], []
            for name, m in modules.items():
                m = m.to(memory_format=torch.channels_last)
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
            for name in ("convtwist", "convtwist_stacked", "convtwist_plain", "seed"):
                row[f"{name}_fwd_x"] = row[f"{name}_fwd_ms"] / row["conv2d_fwd_ms"]
                row[f"{name}_fwdbwd_x"] = row[f"{name}_fwdbwd_ms"] / row["conv2d_fwdbwd_ms"]
            rows.append(row)
            print_table([row], list(row)[:2] + ["convtwist_fwd_x", "convtwist_fwdbwd_x", "convtwist_stacked_fwdbwd_x",
                                                "convtwist_plain_fwdbwd_x", "seed_fwd_x", "seed_fwdbwd_x",
                                                "conv2d_fwdbwd_ms"])
    return rows


def model_rows(repeats: int, batch: int = 32, size: int = 128) -> list[dict]:
    rows = []
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    for depth in (18, 50):
        # the ConvTwist model as it runs, with the stacked path at 64 channels (what it gains), and with its kernels
        # built by tensor ops (what the one-pass C++ preparation gains)
        runs = {"plain": (f"resnet{depth}", contextlib.nullcontext), "convtwist": (f"convtwist_resnet{depth}",
                contextlib.nullcontext), "stacked": (f"convtwist_resnet{depth}", _stacked_path),
                "plain_prep": (f"convtwist_resnet{depth}", _plain_kernel_prep)}
        steps = []
        for name, path in runs.values():
            model = create_model(name).to(memory_format=torch.channels_last).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step(model=model, opt=opt, path=path):
                with torch.autocast("cpu", dtype=torch.bfloat16), path():
                    loss = nn.functional.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            steps.append(step)
        # baseline and ConvTwist steps in turns: their ratio survives the machine's drift
        times = dict(zip(runs, interleaved_median_times(steps, repeats, warmup=2)))
        rows.append({"model": f"convtwist_resnet{depth} vs resnet{depth}", "dtype": "bf16", "batch": batch,
                     "image": size, "plain_ms": times["plain"] * 1e3, "convtwist_ms": times["convtwist"] * 1e3,
                     "ratio": times["convtwist"] / times["plain"], "stacked_ratio": times["stacked"] / times["plain"],
                     "plain_prep_ratio": times["plain_prep"] / times["plain"],
                     "convtwist_img_s": batch / times["convtwist"], "plain_img_s": batch / times["plain"]})
        print_table([rows[-1]], list(rows[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-models", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = layer_rows(args.repeats)
    summary = {}
    for dtype in ("fp32", "bf16"):
        sel = [r for r in rows if r["dtype"] == dtype]
        summary[dtype] = {
            "convtwist_fwdbwd_geomean_x": geomean(r["convtwist_fwdbwd_x"] for r in sel),
            "convtwist_fwdbwd_max_x": max(r["convtwist_fwdbwd_x"] for r in sel),
            "convtwist_fwd_geomean_x": geomean(r["convtwist_fwd_x"] for r in sel),
            "convtwist_stacked_fwdbwd_geomean_x": geomean(r["convtwist_stacked_fwdbwd_x"] for r in sel),
            "convtwist_plain_fwdbwd_geomean_x": geomean(r["convtwist_plain_fwdbwd_x"] for r in sel),
            "seed_fwdbwd_geomean_x": geomean(r["seed_fwdbwd_x"] for r in sel),
            "seed_fwd_geomean_x": geomean(r["seed_fwd_x"] for r in sel)}
    print("\nlayer summary (ratio to nn.Conv2d, geometric mean over the five shapes)")
    print_table([{"dtype": k, **v} for k, v in summary.items()], ["dtype", *next(iter(summary.values()))])
    models = [] if args.skip_models else model_rows(args.repeats)
    if models:
        print("\nmodel train step (fwd+bwd+SGD)")
        print_table(models, list(models[0]))
    write_json("layer", {"batch": BATCH, "layers": rows, "summary": summary, "models": models,
                         "targets": {"fwdbwd_geomean_x": 2.2, "fwdbwd_max_x": 3.0, "resnet18_ratio": 2.0,
                                     "resnet50_ratio": 1.3}})


if __name__ == "__main__":
    main()
