"""bf16 autocast against fp32 in a training step, per model and per CPU: bf16 is fast only where the CPU computes it
in hardware (AMX, AVX512-BF16); elsewhere oneDNN emulates it and fp32 trains faster. channels_last, 128px, SGD step
on a fixed batch, the two precisions timed in turns.

    python bench/precision.py [--models xresnet18 convtwist_xresnet18] [--batch-size 32] [--repeats 3]

Prints a table and writes bench/results/precision.json, which keeps one block per CPU: a run on another machine
adds its block, a rerun on the same machine replaces it. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (RESULTS, interleaved_median_times, machine, print_table, train_step,  # noqa: E402
                    write_json)

from convtwist_zoo import create_model  # noqa: E402
from convtwist_zoo.host import cpuinfo_fields, has_native_bf16  # noqa: E402
from convtwist_zoo.models._registry import parse_model_args  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["xresnet18", "convtwist_xresnet18"])
    parser.add_argument("--model-args", default="maxblur=true", help="builder options, key=value[,key=value]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    kwargs = parse_model_args(args.model_args)
    rows = []
    for name in args.models:
        model = create_model(name, **kwargs).to(memory_format=torch.channels_last).train()
        bf16, fp32 = interleaved_median_times([train_step(model, x, y), train_step(model, x, y, bf16=False)],
                                              args.repeats, warmup=1)
        rows.append({"model": f"{name} {args.model_args}".strip(), "bf16_img_s": args.batch_size / bf16,
                     "fp32_img_s": args.batch_size / fp32, "bf16_over_fp32": fp32 / bf16})
        print_table(rows[-1:], list(rows[-1]))
    print()
    print_table(rows, list(rows[0]))
    here = {"machine": machine(), "native_bf16": has_native_bf16(cpuinfo_fields()), "batch": args.batch_size,
            "image_size": args.image_size, "rows": rows}
    path = RESULTS / "precision.json"
    blocks = json.loads(path.read_text())["hosts"] if path.exists() else []
    blocks = [b for b in blocks if b["machine"]["cpu_model"] != here["machine"]["cpu_model"]] + [here]
    write_json("precision", {"hosts": blocks})


if __name__ == "__main__":
    main()
