"""Inference latency: PyTorch eager, the folded PyTorch module, and ONNX Runtime (CPU), for the ConvTwist ResNets and
their plain baselines at 128px and 224px, batch 1 and 32 (median of repeats, one process).

    python bench/onnx.py [--repeats 20] [--sizes 128 224] [--batches 1 32]

Prints a table and writes bench/results/onnx.json, with the ConvTwist/plain ratios in ONNX Runtime against the
targets (convtwist_resnet50 <= 1.5x resnet50, convtwist_resnet18 <= 2.0x resnet18). Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

# this file is named onnx.py: keep its folder behind site-packages so `import onnx` finds the real package
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
from common import median_time, print_table, write_json  # noqa: E402

from convtwist_zoo import create_model  # noqa: E402
from convtwist_zoo.evaluate import count_macs  # noqa: E402
from convtwist_zoo.folding import fold_model  # noqa: E402
from convtwist_zoo.onnx_export import export_onnx  # noqa: E402

MODELS = ["resnet18", "convtwist_resnet18", "resnet50", "convtwist_resnet50"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    import onnxruntime as ort

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for name in MODELS:
                model = create_model(name).eval()
                folded = fold_model(model, size)
                path = export_onnx(model, Path(tmp) / f"{name}-{size}.onnx", size, compare_unfolded=False).path
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for batch in args.batches:
                    x = torch.randn(batch, 3, size, size)
                    xn = x.numpy()
                    reps = max(3, args.repeats // (4 if batch > 1 else 1))
                    with torch.inference_mode():
                        eager = median_time(lambda: model(x), reps)
                        fold = median_time(lambda: folded(x), reps)
                    onnx_t = median_time(lambda: session.run(None, {"image": xn}), reps)
                    rows.append({"model": name, "size": size, "batch": batch, "eager_ms": eager * 1e3,
                                 "folded_ms": fold * 1e3, "ort_ms": onnx_t * 1e3, "ort_img_s": batch / onnx_t,
                                 "gmacs": count_macs(model, size) / 1e9})
                    print_table([rows[-1]], list(rows[-1]))
    ratios = []
    for size in args.sizes:
        for batch in args.batches:
            for depth in (18, 50):
                sel = {r["model"]: r for r in rows if r["size"] == size and r["batch"] == batch}
                tw, plain = sel[f"convtwist_resnet{depth}"], sel[f"resnet{depth}"]
                ratios.append({"pair": f"convtwist_resnet{depth}/resnet{depth}", "size": size, "batch": batch,
                               "ort_ratio": tw["ort_ms"] / plain["ort_ms"],
                               "eager_ratio": tw["eager_ms"] / plain["eager_ms"],
                               "mac_ratio": tw["gmacs"] / plain["gmacs"],
                               "target": 2.0 if depth == 18 else 1.5})
    print("\nConvTwist / plain latency ratios (ONNX Runtime vs eager PyTorch) against the MAC ratio")
    print_table(ratios, list(ratios[0]))
    write_json("onnx", {"rows": rows, "ratios": ratios, "ort_version": ort.__version__,
                        "ort_threads": "default (all cores)"})


if __name__ == "__main__":
    main()
