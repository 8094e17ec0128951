"""The README's benchmark table is the one bench/report.py generates from bench/results/*.json."""
import importlib.util
from pathlib import Path

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
    readme = (ROOT / "README.md").read_text()
    block = readme.split(report.START, 1)[1].split(report.END, 1)[0].strip()
    assert block == report.table(), "README is stale: run `python bench/report.py --readme`"
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
