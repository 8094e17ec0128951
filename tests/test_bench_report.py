"""The README's benchmark table is the one bench/report.py generates from bench/results/*.json."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_benchmark_table_matches_the_json_results():
    report = _report()
    readme = (ROOT / "README.md").read_text()
    block = readme.split(report.START, 1)[1].split(report.END, 1)[0].strip()
    assert block == report.table(), "README is stale: run `python bench/report.py --readme`"
    assert "bench/layer.py" in block and "bench/onnx.py" in block and "bench/train.py" in block


def test_rows_mark_targets_met_or_not():
    rows = _report().rows()
    assert rows and all(met in ("yes", "**no**") for *_, met in rows)
