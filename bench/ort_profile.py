"""Where ONNX Runtime spends an exported model's time: CPU kernel time by op type (batch 1, all cores), for the
graph `convtwist-zoo export` writes and, for a model with Mish, for the same graph with torch's own Mish export
(Softplus, Tanh, Mul) beside it: the reason the exporter folds every Mish (export/README.md).

    python bench/ort_profile.py [--models xresnet50 convtwist_xresnet50 resnet50] [--size 128] [--runs 20]

Prints a table per model and writes bench/results/ort_profile.json. The xresnets are built with the leaderboard's
options, as published. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch

# keep this folder behind site-packages, as bench/onnx.py does, so `import onnx` finds the real package
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
from common import median_time, ort_session, print_table, write_json, zoo_model, zoo_options  # noqa: E402

from convtwist_zoo.export.folding import FoldedMish  # noqa: E402
from convtwist_zoo.export.onnx import export_onnx  # noqa: E402

TOP = 6  # op types listed per graph; the rest are summed as "other"


def _export(model: torch.nn.Module, path: Path, size: int, torch_mish: bool) -> Path:
    # torch_mish: FoldedMish behaves as nn.Mish while exporting, i.e. the graph torch writes for Mish
    patch = mock.patch.object(FoldedMish, "forward", torch.nn.Mish.forward) if torch_mish else contextlib.nullcontext()
    with patch:
        return export_onnx(model, path, size, compare_unfolded=False).path


def profile(path: Path, size: int, runs: int) -> tuple[float, dict]:
    """Median wall time per run (ms, without profiling), and kernel time per op type: {op: (nodes, ms per run)}."""
    import onnxruntime as ort
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    plain = ort_session(path, 0)
    wall_ms = median_time(lambda: plain.run(None, {"image": x}), runs) * 1e3
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, {"image": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    total, nodes = collections.Counter(), collections.defaultdict(set)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            total[op] += e["dur"]
            nodes[op].add(e["name"])
    seen = max(1, sum(1 for e in events if e.get("name") == "model_run"))
    return wall_ms, {op: (len(nodes[op]), us / 1e3 / seen) for op, us in total.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["xresnet50", "convtwist_xresnet50", "resnet50"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = zoo_model(name).eval()
            has_mish = any(isinstance(m, torch.nn.Mish) for m in model.modules())
            for torch_mish in ([False, True] if has_mish else [False]):
                graph = "torch's Mish export" if torch_mish else "as exported"
                path = _export(model, Path(tmp) / f"{name}-{int(torch_mish)}.onnx", args.size, torch_mish)
                wall_ms, by_op = profile(path, args.size, args.runs)
                kernel_ms = sum(ms for _, ms in by_op.values())
                ranked = sorted(by_op.items(), key=lambda kv: -kv[1][1])
                shown = ranked[:TOP] + ([("other", (sum(n for _, (n, _) in ranked[TOP:]),
                                                    sum(ms for _, (_, ms) in ranked[TOP:])))] if ranked[TOP:] else [])
                table = [{"model": name, "model_args": zoo_options(name), "graph": graph, "op": op, "nodes": n,
                          "ms_per_run": ms, "share": ms / kernel_ms, "wall_ms": wall_ms} for op, (n, ms) in shown]
                print(f"\n{name} ({graph}): {wall_ms:.1f} ms per image, {args.size}px, batch 1, all cores")
                print_table(table, ["op", "nodes", "ms_per_run", "share"])
                rows += table
    write_json("ort_profile", {"rows": rows, "size": args.size, "batch": 1, "threads": "all cores"})


if __name__ == "__main__":
    main()
