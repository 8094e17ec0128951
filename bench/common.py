"""Shared by the benchmarks: timing (median of repeats), the machine's description, table printing, JSON output."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from convtwist_zoo import create_model
from convtwist_zoo.files.atomic import write_text_atomic
from convtwist_zoo.host import cpuinfo_fields
from convtwist_zoo.models._registry import parse_model_args

RESULTS = Path(__file__).resolve().parent / "results"
# the xresnets as the leaderboard trains them and the zoo publishes them (tools/leaderboard_queue.sh's MODEL_ARGS)
XRESNET_OPTIONS = "maxblur=true"


def zoo_options(name: str) -> str:
    """The builder options model ``name`` is benchmarked with: the leaderboard arms' for an xresnet, none for the
    torchvision ResNets."""
    return XRESNET_OPTIONS if "xresnet" in name else ""


def zoo_model(name: str) -> torch.nn.Module:
    """``create_model(name)`` with `zoo_options`: the architecture its checkpoints have."""
    return create_model(name, **parse_model_args(zoo_options(name)))


def median_time(fn, repeats: int = 10, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_times(fns: list, repeats: int = 10, warmup: int = 3, block: int = 1,
                      pause: float = 0.0) -> list[list[float]]:
    """Wall times of each of ``fns``, timed in turns (a, b, a, b, ...) so that a slow spell of a shared machine hits
    every contender alike: the ratios stay meaningful even when the absolute times drift. Returns, per function, the
    median of each turn.

    With ``block`` > 1 each turn is ``block`` timed calls after one untimed call, with ``pause`` seconds before it:
    for contenders that keep threads spinning after a call (ONNX Runtime sessions), which would otherwise slow the
    next contender's call (measured: 2x at batch 1 on two cores)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    turns = [[] for _ in fns]
    for _ in range(max(1, repeats // block)):
        for fn, bucket in zip(fns, turns):
            if block > 1:
                time.sleep(pause)
                fn()
            times = []
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            bucket.append(statistics.median(times))
    return turns


def interleaved_median_times(fns: list, repeats: int = 10, warmup: int = 3, block: int = 1,
                             pause: float = 0.0) -> list[float]:
    """Median over the turns of `interleaved_times`, per function."""
    return [statistics.median(t) for t in interleaved_times(fns, repeats, warmup, block, pause)]


def ort_session(path, threads: int):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (0 = all cores)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_turns(sessions: list, x, repeats: int) -> list[list[float]]:
    """`interleaved_times` of ONNX Runtime sessions on input ``x``, in blocks of calls with a pause before each
    (a session's threads spin after a call); blocks of 5 at batch 1, of 2 for larger batches."""
    return interleaved_times([lambda s=s: s.run(None, {"image": x}) for s in sessions], repeats,
                             block=5 if x.shape[0] == 1 else 2, pause=0.05)


def ratio_spread(a: list[float], b: list[float]) -> tuple[float, float]:
    """Quartiles of the turn-by-turn ratio a/b (turns of `interleaved_times`): how far the ratio moves between
    turns, which a single median hides."""
    ratios = [x / y for x, y in zip(a, b)]
    if len(ratios) < 2:  # one turn (very few repeats): no spread to report
        return ratios[0], ratios[0]
    q = statistics.quantiles(ratios, n=4)
    return q[0], q[2]


def cpu_model() -> str:
    """The CPU's name with its family/model numbers from /proc/cpuinfo ("AMD EPYC, family 25 model 17"): this
    project's machine is not always the same host, and the microarchitecture moves the ratios."""
    info = cpuinfo_fields()
    if not info:
        return platform.processor() or platform.machine()
    return f"{info.get('model name', '?')}, family {info.get('cpu family', '?')} model {info.get('model', '?')}"


def gemm_gflops(n: int = 1024, repeats: int = 20) -> float:
    """fp32 matmul throughput on all threads: one number for the host's speed, so that results from different hosts
    can be told apart."""
    a = torch.randn(n, n)
    seconds = median_time(lambda: a @ a, repeats=repeats)
    return 2 * n ** 3 / seconds / 1e9


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "gemm_fp32_gflops": round(gemm_gflops()), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else str(v)


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    write_text_atomic(path, json.dumps({"machine": machine(), **payload}, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def geomean(values) -> float:
    values = list(values)
    return float(torch.tensor(values, dtype=torch.float64).log().mean().exp())


def train_step(model, x, y, bf16: bool = True, path=contextlib.nullcontext):
    """One SGD training step of ``model`` on the fixed batch (``x``, ``y``), as a callable for the timers: bf16
    autocast (on ``x``'s device) or fp32, inside the context ``path()`` (for benchmarks that switch an implementation
    on and off)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        with path(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step
