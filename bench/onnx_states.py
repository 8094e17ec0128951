"""The same ONNX Runtime pair timed again and again: does the host give one ratio, or does it drift between states?

    python bench/onnx_states.py [--depths 18 50] [--runs 6] [--size 128] [--batch 1] [--threads 0]

Each run is what bench/onnx.py does for one row (the ConvTwist model and its baseline in turns, 80 calls each, in
blocks with a pause), repeated back to back in one process with the same sessions. On this project's 2-core host
the batch-1 all-core ratio comes in two levels a few minutes apart (README, "Benchmarks"); this prints each run's
times and ratio and writes bench/results/onnx_states.json. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# this folder holds onnx.py: keep it behind site-packages so `import onnx` finds the real package
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
from common import ort_session, ort_turns, print_table, ratio_spread, write_json  # noqa: E402

from convtwist_zoo import create_model  # noqa: E402
from convtwist_zoo.onnx_export import export_onnx  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depths", type=int, nargs="+", default=[18, 50])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=80)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    args = parser.parse_args()
    import onnxruntime as ort

    rows = []
    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for depth in args.depths:
            sessions = [ort_session(export_onnx(create_model(name).eval(), Path(tmp) / f"{name}.onnx", args.size,
                                                compare_unfolded=False).path, args.threads)
                        for name in (f"convtwist_resnet{depth}", f"resnet{depth}")]
            t0 = time.monotonic()
            for run in range(args.runs):
                turns = ort_turns(sessions, x, args.repeats)
                twist, plain = (statistics.median(t) * 1e3 for t in turns)
                q1, q3 = ratio_spread(*turns)
                rows.append({"pair": f"convtwist_resnet{depth}/resnet{depth}", "run": run,
                             "minute": round((time.monotonic() - t0) / 60, 2), "convtwist_ms": twist,
                             "plain_ms": plain, "ort_ratio": twist / plain, "ort_ratio_q1": q1, "ort_ratio_q3": q3})
                print_table([rows[-1]], list(rows[-1]))
    print()
    print_table(rows, list(rows[0]))
    write_json("onnx_states", {"rows": rows, "size": args.size, "batch": args.batch, "threads": args.threads,
                               "ort_version": ort.__version__})


if __name__ == "__main__":
    main()
