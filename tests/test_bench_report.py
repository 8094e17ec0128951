"""docs/benchmarks.md's table is the one bench/report.py generates from bench/results/*.json."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report():
    return _load("report")


def test_readme_benchmark_table_matches_the_json_results():
    report = _report()
    readme = (ROOT / "docs" / "benchmarks.md").read_text()
    block = readme.split(report.START, 1)[1].split(report.END, 1)[0].strip()
    assert block == report.table(), "docs/benchmarks.md is stale: run `python bench/report.py --write`"
    assert all(f"bench/{name}.py" in block for name in ("layer", "onnx", "train", "maxblur", "precision"))


def test_rows_give_a_ratio_absolute_times_and_the_mac_floor_without_targets():
    rows = _report().rows()
    assert rows and all(ratio.split()[0].endswith("x") for what, ratio, _, _ in rows if "bench/train.py" not in what)
    layer_rows = [r for r in rows if r[0].startswith("ConvTwist layer")]
    assert {r[0].split(", ")[2] for r in layer_rows} == {"channels_last", "nchw"}
    assert all(r[3] == "1.89x" and " ms" in r[2] for r in layer_rows)
    assert "target" not in _report().table().lower()


def test_ratio_spread_gives_quartiles_and_survives_a_single_turn():
    spread = _load("common").ratio_spread
    assert spread([2.0, 3.0, 4.0, 5.0, 6.0], [1.0] * 5) == (2.5, 5.5)  # statistics.quantiles' exclusive method
    assert spread([3.0], [2.0]) == (1.5, 1.5)


def test_gpu_bench_rows_reach_the_report_naming_their_device():
    gpu, report = _load("gpu"), _report()
    cpu = torch.device("cpu")  # the same code as on CUDA, minus the synchronisation
    layer = gpu.layer_row("fp32", 8, 8, 2, batch=2, repeats=1, device=cpu)
    assert layer["shape"] == "8ch@8 s2" and layer["device"] == "cpu"
    assert layer["convtwist_fwdbwd_x"] == layer["convtwist_fwdbwd_ms"] / layer["conv2d_fwdbwd_ms"]
    model = gpu.model_row("convtwist_resnet18", "resnet18", batch=2, size=32, repeats=1, device=cpu)
    assert model["ratio"] == model["convtwist_ms"] / model["plain_ms"]
    assert model["plain_img_s"] == pytest.approx(2 / model["plain_ms"] * 1e3)
    payload = {"gpu": "Test GPU 80GB", "cuda": "12.8", "machine": {"date": "2026-12-04 12:00"}, "layers": [layer],
               "summary": gpu.summarize([layer]), "models": [model]}
    (layer_line, ratio, times, floor), (model_line, model_ratio, _, mac) = report.gpu_rows(payload)
    assert layer_line.endswith("geomean of 1 ResNet shapes, Test GPU 80GB (bench/gpu.py, 2026-12-04 12:00)")
    assert ratio.startswith(f"{layer['convtwist_fwdbwd_x']:.2f}x (max ") and floor == "1.89x"
    assert times == f"{layer['convtwist_fwdbwd_ms']:.1f} vs {layer['conv2d_fwdbwd_ms']:.1f} ms (1 shapes summed)"
    assert model_line.startswith("train step convtwist_resnet18 vs resnet18, bf16, channels_last, batch 2, 32px, Test")
    assert model_ratio == f"{model['ratio']:.2f}x" and mac == f"{model['mac_ratio']:.2f}x"
    assert report.gpu_rows(None) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the benchmark would run")
def test_gpu_bench_without_a_gpu_says_where_to_time_the_cpu(monkeypatch):
    import runpy
    monkeypatch.setattr(sys, "argv", ["gpu.py"])
    with pytest.raises(SystemExit) as done:  # the script as `python bench/gpu.py` runs it, in this process
        runpy.run_path(str(ROOT / "bench" / "gpu.py"), run_name="__main__")
    message = done.value.code  # sys.exit(message): printed to stderr, exit status 1
    assert isinstance(message, str) and message.startswith("no CUDA GPU here") and "bench/layer.py" in message
