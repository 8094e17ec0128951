"""ConvTwist vs nn.Conv2d on a CUDA GPU: the layer at ResNet stage shapes (forward+backward, fp32 and bf16 autocast,
channels_last, against the seed's module too) and a model train step (fwd+bwd+SGD, bf16 autocast, channels_last) of
each ConvTwist model against its plain baselines, the xresnets with the leaderboard's options. On CUDA the layer runs
on plain PyTorch ops (the fused kernels are CPU-only); `--compile` adds train steps under torch.compile.

    python bench/gpu.py [--repeats 20] [--batch-size 64] [--compile] [--skip-models]

Prints a table of ratios to the plain module or model, timed in turns with a device synchronisation after each call,
and writes bench/results/gpu.json, whose rows name the GPU that measured them. Needs a CUDA GPU; bench/layer.py times
the same on the CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import geomean, interleaved_median_times, print_table, train_step, write_json, zoo_model, zoo_options  # noqa: E402
from layer import MAC_FLOOR, MODEL_PAIRS, SHAPES, XRESNET_PAIRS  # noqa: E402

from convtwist_zoo import ConvTwist  # noqa: E402
from convtwist_zoo.evaluate import count_macs  # noqa: E402
from convtwist_zoo.layers.reference import SeedConvTwist  # noqa: E402


def synced(fn, device: torch.device):
    """``fn`` followed by a wait for the device: kernel launches return at once, so a timer needs the wait."""
    if device.type != "cuda":
        return fn

    def call():
        fn()
        torch.cuda.synchronize(device)
    return call


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def layer_row(dtype: str, ch: int, size: int, stride: int, batch: int, repeats: int, device: torch.device) -> dict:
    """Forward+backward times of Conv2d, ConvTwist and the seed's module at one stage shape, timed in turns."""
    x = torch.randn(batch, ch, size, size, device=device).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    modules = {"conv2d": nn.Conv2d(ch, ch, 3, stride, 1, bias=False), "convtwist": ConvTwist(ch, ch, stride),
               "seed": SeedConvTwist(ch, ch, stride)}
    calls = []
    for m in modules.values():
        m = m.to(device, memory_format=torch.channels_last)

        def fwd_bwd(m=m):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                y = m(x)
            y.float().sum().backward()
        calls.append(synced(fwd_bwd, device))
    times = dict(zip(modules, interleaved_median_times(calls, repeats)))
    row = {"device": device_name(device), "dtype": dtype, "shape": f"{ch}ch@{size} s{stride}", "batch": batch,
           "mac_floor_x": MAC_FLOOR}
    row.update({f"{name}_fwdbwd_ms": t * 1e3 for name, t in times.items()})
    row["convtwist_fwdbwd_x"] = times["convtwist"] / times["conv2d"]
    row["seed_fwdbwd_x"] = times["seed"] / times["conv2d"]
    return row


def model_row(twist: str, plain: str, batch: int, size: int, repeats: int, device: torch.device,
              compile_models: bool = False) -> dict:
    """Train-step times (bf16 autocast, channels_last) of a ConvTwist model and a plain one, timed in turns."""
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    kinds = {"plain": (plain, False), "convtwist": (twist, False)}
    if compile_models:
        kinds.update(plain_compiled=(plain, True), convtwist_compiled=(twist, True))
    steps = []
    for name, compiled in kinds.values():
        model = zoo_model(name).to(device, memory_format=torch.channels_last).train()
        steps.append(synced(train_step(torch.compile(model) if compiled else model, x, y), device))
    times = dict(zip(kinds, interleaved_median_times(steps, repeats, warmup=3)))
    options = f" ({opts})" if (opts := zoo_options(twist)) else ""
    row = {"device": device_name(device), "model": f"{twist} vs {plain}{options}", "dtype": "bf16", "batch": batch,
           "image": size, "mac_ratio": count_macs(zoo_model(twist), size) / count_macs(zoo_model(plain), size),
           "plain_ms": times["plain"] * 1e3, "convtwist_ms": times["convtwist"] * 1e3,
           "ratio": times["convtwist"] / times["plain"], "convtwist_img_s": batch / times["convtwist"],
           "plain_img_s": batch / times["plain"]}
    if compile_models:
        row.update(compiled_ratio=times["convtwist_compiled"] / times["plain_compiled"],
                   convtwist_compiled_img_s=batch / times["convtwist_compiled"],
                   plain_compiled_img_s=batch / times["plain_compiled"])
    return row


def summarize(layers: list[dict]) -> list[dict]:
    """Per dtype: the geometric mean and the largest of the shapes' ratios."""
    out = []
    for dtype in sorted({r["dtype"] for r in layers}, reverse=True):
        sel = [r for r in layers if r["dtype"] == dtype]
        out.append({"device": sel[0]["device"], "dtype": dtype, "mac_floor_x": MAC_FLOOR,
                    "convtwist_fwdbwd_geomean_x": geomean(r["convtwist_fwdbwd_x"] for r in sel),
                    "convtwist_fwdbwd_max_x": max(r["convtwist_fwdbwd_x"] for r in sel),
                    "seed_fwdbwd_geomean_x": geomean(r["seed_fwdbwd_x"] for r in sel)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64, help="the layer's and the train step's batch")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="also time the train steps under torch.compile")
    parser.add_argument("--skip-models", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: this benchmark times the GPU; python bench/layer.py times the CPU")
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    layers = []
    for dtype in ("fp32", "bf16"):
        for ch, size, stride in SHAPES:
            layers.append(layer_row(dtype, ch, size, stride, args.batch_size, args.repeats, device))
            print_table(layers[-1:], list(layers[-1]))
    summary = summarize(layers)
    print("\nlayer summary (ratio to nn.Conv2d, geometric mean over the five shapes)")
    print_table(summary, list(summary[0]))
    models = []
    if not args.skip_models:
        print("\nmodel train step (fwd+bwd+SGD, bf16 autocast)")
        for twist, plain in MODEL_PAIRS + XRESNET_PAIRS:
            models.append(model_row(twist, plain, args.batch_size, args.image_size, args.repeats, device,
                                    args.compile))
            print_table(models[-1:], list(models[-1]))
    write_json("gpu", {"gpu": device_name(device), "cuda": torch.version.cuda, "layers": layers,
                       "summary": summary, "models": models})


if __name__ == "__main__":
    main()
