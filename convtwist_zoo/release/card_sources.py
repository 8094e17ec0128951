"""What the cards read, and nothing they write: the JSON beside each checkpoint in ``hub/`` (``config.json``,
``eval.json``, ``robustness.json``, ``inspect/inspect.json``, ``metrics.jsonl``), the extra runs' logs in
``docs/runs/``, ``bench/results/onnx.json``; and the small formatters every document shares."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import NamedTuple

from .. import research as leaderboard
from ..models._pretrained import GITHUB_REPO
from ..training import RECIPE_KNOBS, TrainConfig

__all__ = ["CITATION_BIBTEX", "GITHUB_REPO", "KNOBS_ADDED_LATER", "saved_knob", "PLANNED", "FASTAI_LEADERBOARD", "PROBED_PROTOCOL", "DATA_NOTES", "read_json", "collect", "collect_extra_runs", "final_top1", "baseline_of", "hardware_of", "entry_top1", "fmt", "train_hours", "model_args_of", "arm_options_of", "runs_phrase", "seeds_phrase", "recipe_of_entry", "recipe_gap", "OnnxBench", "read_onnx_bench"]


# Knobs added to TrainConfig after some published runs were made, with the value those runs had: their recipes lack
# the key.
KNOBS_ADDED_LATER = {"model_args": "", "train_image_size": 0, "lookahead": 0, "lookahead_alpha": 0.5}


def saved_knob(saved: dict, key: str):
    """A knob of a published recipe, reading a missing key as what it was then."""
    return saved.get(key, KNOBS_ADDED_LATER.get(key, getattr(TrainConfig, key)))


# How to cite the method and the zoo: the README's citation block and every hub card print it.
CITATION_BIBTEX = f"""@article{{liu2023convtwist,
  title   = {{A Novel Convolutional Neural Network Architecture with a Continuous Symmetry}},
  author  = {{Liu, Yao and Shao, Hang and Bai, Bing}},
  journal = {{arXiv preprint arXiv:2308.01621}},
  year    = {{2023}}
}}
@software{{convtwist_zoo,
  title  = {{convtwist-zoo: ConvTwist ResNets with pretrained weights, training and ONNX export}},
  author = {{{{The convtwist-zoo authors}}}},
  year   = {{2026}},
  url    = {{https://github.com/{GITHUB_REPO}}}
}}"""

# The zoo's checkpoints: the torchvision-ResNet pairs, then the leaderboard protocol's xresnet pairs (one seed each,
# picked from its arm's runs); a card lists the ones not published yet as pending.
PLANNED = [f"{arch}.{data}" for family in ("resnet", "xresnet") for data in ("imagenette", "imagewoof")
           for arch in (f"convtwist_{family}18", f"{family}18", f"convtwist_{family}50", f"{family}50")]


# fastai/imagenette leaderboard, best entry's top-1 at 128px by epochs (random init, no TTA); for context only.
FASTAI_LEADERBOARD = {"imagenette": {5: 85.77, 20: 91.57, 80: 93.55, 200: 94.24},
                      "imagewoof": {5: 76.61, 20: 86.27, 80: 87.83, 200: 87.20}}


# its lr probes choose every arm's peak lr (`leaderboard run --lr-from`)
PROBED_PROTOCOL = leaderboard.protocol_name("imagewoof", 128, 5)


DATA_NOTES = {
    "imagenette": "imagenette2-160sq: the official Imagenette2 file list and 70/30 split, rebuilt from a public copy in "
                  "which every image was squashed to 224x224 (aspect ratio not kept), resized to 160x160, JPEG q80",
    "imagewoof": "imagewoof2-160: the official Imagewoof2 file list and split, rebuilt from a public copy of "
                 "imagewoof2-320 (shortest side 320, aspect kept), shortest side resized to 160 (bicubic), JPEG q80",
}


def read_json(path: Path):
    """A JSON file's object, or a JSONL file's list of rows; None where the file does not exist."""
    if not path.exists():
        return None
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def collect(hub_root: Path) -> dict:
    """Everything known about each checkpoint folder under ``hub_root``."""
    out = {}
    for folder in sorted(Path(hub_root).glob("*/config.json")):
        folder = folder.parent
        out[folder.name] = {
            "config": read_json(folder / "config.json"), "eval": read_json(folder / "eval.json"),
            "robustness": read_json(folder / "robustness.json"), "inspect": read_json(folder / "inspect" / "inspect.json"),
            "metrics": read_json(folder / "metrics.jsonl") or []}
    return out


def collect_extra_runs(runs_dir: Path) -> list[dict]:
    """Replicates and recipe probes listed in ``runs_dir/index.json``, each with its ``metrics.jsonl``."""
    index = read_json(Path(runs_dir) / "index.json")
    return [{**r, "metrics": read_json(Path(runs_dir) / f"{r['run']}.metrics.jsonl") or []}
            for r in (index or {}).get("runs", [])]


def final_top1(metrics: list) -> float | None:
    return metrics[-1].get("top1") if metrics else None


def baseline_of(name: str) -> str | None:
    return name.replace("convtwist_", "", 1) if name.startswith("convtwist_") else None


def hardware_of(entry) -> str:
    return (entry.get("config") or {}).get("trained_on", "unknown")


def entry_top1(entry, size="128"):
    ev = entry and entry.get("eval")
    return ev["sizes"][size]["top1"] if ev and size in ev.get("sizes", {}) else None


def fmt(v, spec="{:.2f}", none="–"):
    return none if v is None else spec.format(v)


def train_hours(metrics: list[dict]) -> float | None:
    """Epochs x the median epoch's wall time: the time a stopped run waited before its resume would otherwise count
    as training."""
    seconds = [m["seconds"] for m in metrics]
    return len(seconds) * statistics.median(seconds) / 3600 if seconds else None


def model_args_of(entry: dict) -> str:
    """A checkpoint's architecture options as trained (``maxblur=true``; empty: none)."""
    return saved_knob(entry["config"]["recipe"], "model_args")


def arm_options_of(config: dict) -> str:
    """A checkpoint's leaderboard arm options: its architecture options, plus ``fp32 training`` where it was trained
    without the recipe's bf16 autocast (``leaderboard.options_of``)."""
    recipe = config["recipe"]
    return leaderboard.options_of(saved_knob(recipe, "model_args"), saved_knob(recipe, "amp"))


def runs_phrase(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def seeds_phrase(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def recipe_of_entry(entry) -> dict:
    """The knobs that make a recipe, a key older configs lack read as what it was then."""
    saved = ((entry or {}).get("config") or {}).get("recipe") or {}
    return {k: saved_knob(saved, k) for k in RECIPE_KNOBS}


def recipe_gap(a, b) -> list[str]:
    """How two checkpoints' recipes differ (empty: trained the same way)."""
    ra, rb = recipe_of_entry(a), recipe_of_entry(b)
    return [f"{k} {ra[k]} vs {rb[k]}" for k in RECIPE_KNOBS if ra[k] != rb[k]]


class OnnxBench(NamedTuple):
    """The ONNX Runtime benchmark's figures at batch 1, 128px, all cores (``bench/results/onnx.json``).

    latency_ms: milliseconds per image by (architecture, builder options); a checkpoint trained with other options
        than the benchmark's has no figure.
    costs: what each ConvTwist model costs against its control, ``{(twist, control, model_args): {"macs", "ort"}}``,
        multiply-adds and ONNX Runtime time as multiples.
    """
    latency_ms: dict
    costs: dict


def read_onnx_bench(path: Path) -> OnnxBench:
    """Read the benchmark file once for every card and table; a missing file gives empty figures.

    Args:
        path: the file `python bench/onnx.py` writes.

    Returns:
        An `OnnxBench`.

    Example:
        >>> bench = read_onnx_bench(Path("bench/results/onnx.json"))
        >>> bench.costs[("convtwist_xresnet18", "xresnet34", "maxblur=true")]["macs"]  # doctest: +SKIP
    """
    if not path.exists():
        return OnnxBench({}, {})
    bench = json.loads(path.read_text())

    def wanted(r):
        return r["size"] == 128 and r["batch"] == 1 and r.get("threads") == 0

    latency = {}
    for r in filter(wanted, bench["rows"]):  # a model timed in two pairs (xresnet34's twin) keeps its first
        latency.setdefault((r["model"], r.get("model_args", "")), r["ort_ms"])
    costs = {(*r["pair"].split("/"), r.get("model_args", "")): {"macs": r["mac_ratio"], "ort": r["ort_ratio"]}
             for r in filter(wanted, bench.get("ratios", []))}
    return OnnxBench(latency, costs)
