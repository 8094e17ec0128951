"""Inference latency: PyTorch eager, the folded PyTorch module, and ONNX Runtime (CPU), for the ConvTwist ResNets and
xresnets and their plain baselines (and xresnet34, the compute-matched control of convtwist_xresnet18; the xresnets
with the leaderboard's options, as published) at 128px, the size the zoo trains and publishes at (``--sizes 128 224``
adds 224px), batch 1 and 32, ONNX Runtime on all cores and on 1 thread (median of repeats, one process).

    python bench/onnx.py [--repeats 80] [--sizes 128] [--batches 1 32] [--threads 0 1]

Prints a table and writes bench/results/onnx.json, with the ConvTwist/plain ratios in ONNX Runtime beside the MAC
ratio of the two networks. Each ConvTwist model is timed
in ONNX Runtime in turns with its baseline, so the ratios hold on a shared machine: in blocks of calls with a pause
between them, because a session's threads spin after each call and slow whichever session runs next. Each ratio
comes with its middle half over the turns (``ort_ratio_q1``-``ort_ratio_q3``): at batch 1 on all cores it moves by
several percent from turn to turn. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

# this file is named onnx.py: keep its folder behind site-packages so `import onnx` finds the real package
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
from common import (median_time, ort_session, ort_turns, print_table, ratio_spread, write_json,  # noqa: E402
                    zoo_model, zoo_options)

from convtwist_zoo.evaluate import count_macs  # noqa: E402
from convtwist_zoo.export.folding import fold_model  # noqa: E402
from convtwist_zoo.export.onnx import export_onnx  # noqa: E402

# (ConvTwist model, plain model) timed in turns
PAIRS = [("convtwist_resnet18", "resnet18"), ("convtwist_resnet50", "resnet50"), ("convtwist_xresnet18", "xresnet18"),
         ("convtwist_xresnet18", "xresnet34"), ("convtwist_xresnet50", "xresnet50")]
MODELS = list(dict.fromkeys(name for pair in PAIRS for name in pair))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=80)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1],
                        help="ONNX Runtime intra-op threads per run (0 = all cores); batch-1 serving often uses 1")
    args = parser.parse_args()
    import onnxruntime as ort

    rows, spread = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            models, folded, sessions, macs = {}, {}, {}, {}
            for name in MODELS:
                models[name] = zoo_model(name).eval()
                folded[name] = fold_model(models[name], size)
                macs[name] = count_macs(models[name], size) / 1e9
                path = export_onnx(models[name], Path(tmp) / f"{name}-{size}.onnx", size, compare_unfolded=False).path
                for threads in args.threads:
                    sessions[name, threads] = ort_session(path, threads)
            for batch in args.batches:
                x = torch.randn(batch, 3, size, size)
                xn = x.numpy()
                reps = max(3, args.repeats // (4 if batch > 1 else 1))
                torch_ms = {}
                for name in MODELS:
                    with torch.inference_mode():
                        torch_ms[name] = (median_time(lambda: models[name](x), reps) * 1e3,
                                          median_time(lambda: folded[name](x), reps) * 1e3)
                for threads in args.threads:
                    for pair in PAIRS:  # each ConvTwist model timed in turns with its baseline
                        turns = ort_turns([sessions[n, threads] for n in pair], xn, reps)
                        spread[size, batch, threads, pair] = ratio_spread(*turns)
                        for name, tn in zip(pair, turns):
                            t = statistics.median(tn)
                            rows.append({"model": name, "model_args": zoo_options(name), "pair": "/".join(pair),
                                         "size": size, "batch": batch,
                                         "threads": threads, "eager_ms": torch_ms[name][0],
                                         "folded_ms": torch_ms[name][1], "ort_ms": t * 1e3, "ort_img_s": batch / t,
                                         "gmacs": macs[name]})
                            print_table([rows[-1]], list(rows[-1]))
    ratios = []
    for size in args.sizes:
        for batch in args.batches:
            for threads in args.threads:
                for pair in PAIRS:
                    sel = {r["model"]: r for r in rows if r["size"] == size and r["batch"] == batch
                           and r["threads"] == threads and r["pair"] == "/".join(pair)}
                    tw, plain = sel[pair[0]], sel[pair[1]]
                    ratios.append({"pair": "/".join(pair), "model_args": zoo_options(pair[0]), "size": size,
                                   "batch": batch,
                                   "threads": threads, "ort_ratio": tw["ort_ms"] / plain["ort_ms"],
                                   "ort_ratio_q1": spread[size, batch, threads, pair][0],
                                   "ort_ratio_q3": spread[size, batch, threads, pair][1],
                                   "eager_ratio": tw["eager_ms"] / plain["eager_ms"],
                                   "mac_ratio": tw["gmacs"] / plain["gmacs"]})
    print("\nConvTwist / plain latency ratios (ONNX Runtime vs eager PyTorch) against the MAC ratio")
    print_table(ratios, list(ratios[0]))
    write_json("onnx", {"rows": rows, "ratios": ratios, "ort_version": ort.__version__,
                        "ort_threads": "per row: 0 = all cores"})


if __name__ == "__main__":
    main()
