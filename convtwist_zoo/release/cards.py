"""Model cards: ``MODEL_CARDS.md``, every ``hub/<name>/README.md``, ``docs/recipe-history.md`` and the README's zoo
and leaderboard tables, generated from the JSON beside the weights (``config.json`` from training, ``eval.json`` from
``convtwist-zoo eval``, ``robustness.json``, ``inspect/inspect.json``, ``metrics.jsonl``), the extra runs' logs in
``docs/runs/``, the leaderboard rows in ``results/leaderboard/`` and ``bench/results/onnx.json``. Nothing in them is
typed by hand; ``python -m convtwist_zoo.release cards`` rewrites them all."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import NamedTuple

from .. import leaderboard
from ..seed_robustness import render_robustness, retained, robustness_results
from ..atomic import write_text_atomic
from ..training import RECIPE_KNOBS, TrainConfig

__all__ = ["write_cards", "collect", "collect_extra_runs", "render_model_cards", "render_hub_readme",
           "render_recipe_history", "render_zoo_table", "render_readme", "read_json", "read_onnx_bench", "OnnxBench",
           "saved_knob", "PLANNED", "FASTAI_LEADERBOARD"]

# Knobs added to TrainConfig after some published runs were made, with the value those runs had: their recipes lack
# the key.
KNOBS_ADDED_LATER = {"model_args": "", "train_image_size": 0, "lookahead": 0, "lookahead_alpha": 0.5}


def saved_knob(saved: dict, key: str):
    """A knob of a published recipe, reading a missing key as what it was then."""
    return saved.get(key, KNOBS_ADDED_LATER.get(key, getattr(TrainConfig, key)))


# The zoo's checkpoints: the torchvision-ResNet pairs, then the leaderboard protocol's xresnet pairs (one seed each,
# picked from its arm's runs); a card lists the ones not published yet as pending.
PLANNED = [f"{arch}.{data}" for family in ("resnet", "xresnet") for data in ("imagenette", "imagewoof")
           for arch in (f"convtwist_{family}18", f"{family}18", f"convtwist_{family}50", f"{family}50")]
# fastai/imagenette leaderboard, best entry's top-1 at 128px by epochs (random init, no TTA); for context only.
FASTAI_LEADERBOARD = {"imagenette": {5: 85.77, 20: 91.57, 80: 93.55, 200: 94.24},
                      "imagewoof": {5: 76.61, 20: 86.27, 80: 87.83, 200: 87.20}}
REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "results" / "leaderboard"
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


def _final_top1(metrics: list) -> float | None:
    return metrics[-1].get("top1") if metrics else None


def _extra_run_rows(info: dict, extra: list[dict]) -> list[str]:
    """The extra runs against their checkpoint, both read from training logs (bf16 eval after the last epoch), and
    ConvTwist minus baseline for every seed that has both."""
    if not extra:
        return ["No replicate or recipe probe has been run yet (`docs/runs/index.json`)."]
    by_run = {r["run"]: r for r in extra}
    rows = ["| run | kind | flags | trained on | epochs | final top-1 | compared with | its top-1 | difference |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in extra:
        own = _final_top1(r["metrics"])
        # A run made against a checkpoint that has since been replaced names the former checkpoint's log instead.
        against = r.get("compared_with")
        if against is None:
            label, ck = "the checkpoint", _final_top1((info.get(r["checkpoint"]) or {}).get("metrics") or [])
        elif against in by_run:
            label, ck = against, _final_top1(by_run[against]["metrics"])
        else:
            raise ValueError(f"docs/runs/index.json: {r['run']} is compared with {against!r}, which is not a run "
                             "listed there")
        diff = own - ck if own is not None and ck is not None else None
        rows.append(f"| {r['run']} | {r['kind']} | `{r['flags']}` | {r['trained_on']} | {len(r['metrics'])} | "
                    f"{_fmt(own)} | {label} | {_fmt(ck)} | {_fmt(diff, '{:+.2f}')} |")
    pairs = []
    for name in PLANNED:
        base = _baseline_of(name)
        if not base or name not in info or base not in info:
            continue
        # the published pair counts only when trained the same way, and only beside at least one extra pair
        published = [] if _recipe_gap(info[name], info[base]) else \
            [("the published seed", _final_top1(info[name]["metrics"]), _final_top1(info[base]["metrics"]))]
        gaps = []
        for r in extra:
            twin = next((b for b in extra if b["checkpoint"] == base and b["flags"] == r["flags"]), None)
            if r["checkpoint"] == name and r["kind"] in ("replicate", "recipe", "former checkpoint") and twin:
                gaps.append((f"`{r['flags']}`", _final_top1(r["metrics"]), _final_top1(twin["metrics"])))
        gaps = published + gaps if gaps else []
        if gaps and all(a is not None and b is not None for _, a, b in gaps):
            pairs.append(f"- {name} − {base} (training-log top-1): " +
                         ", ".join(f"{label} {a - b:+.2f}" for label, a, b in gaps) + ".")
    return rows + ([""] + pairs if pairs else [])


def _baseline_of(name: str) -> str | None:
    return name.replace("convtwist_", "", 1) if name.startswith("convtwist_") else None


def _hardware(entry) -> str:
    return (entry.get("config") or {}).get("trained_on", "unknown")


def _top1(entry, size="128"):
    ev = entry and entry.get("eval")
    return ev["sizes"][size]["top1"] if ev and size in ev.get("sizes", {}) else None


def _fmt(v, spec="{:.2f}", none="–"):
    return none if v is None else spec.format(v)


def _train_hours(metrics: list[dict]) -> float | None:
    """Epochs x the median epoch's wall time: the time a stopped run waited before its resume would otherwise count
    as training."""
    seconds = [m["seconds"] for m in metrics]
    return len(seconds) * statistics.median(seconds) / 3600 if seconds else None


def _model_args(entry: dict) -> str:
    """A checkpoint's architecture options as trained (``maxblur=true``; empty: none)."""
    return saved_knob(entry["config"]["recipe"], "model_args")


def _arm_options(config: dict) -> str:
    """A checkpoint's leaderboard arm options: its architecture options, plus ``fp32 training`` where it was trained
    without the recipe's bf16 autocast (``leaderboard.options_of``)."""
    recipe = config["recipe"]
    return leaderboard.options_of(saved_knob(recipe, "model_args"), saved_knob(recipe, "amp"))


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _picked_arms(name: str, info: dict, results_dir: Path) -> tuple[dict, dict, dict] | None:
    """For a checkpoint picked from a leaderboard arm: its config, its pick and every arm of the results file it
    names (``leaderboard.arms``); None for a checkpoint of one training run or a results file not at hand."""
    config = (info.get(name) or {}).get("config") or {}
    pick = ((config.get("pretrained_spec") or {}).get("meta") or {}).get("leaderboard")
    path = Path(results_dir) / pick["results"] if pick else None
    if not pick or not path.is_file():
        return None
    return config, pick, leaderboard.arms(leaderboard.read_rows(path))


def _leaderboard_arms(name: str, info: dict, results_dir: Path
                      ) -> tuple[dict, list[float], list[float], float | None] | None:
    """For a checkpoint picked from a leaderboard arm: its pick (``{"seed", "mean", "std", "n", "results"}``), the
    top-1 of every seed of its arm and of its same-recipe baseline's arm (empty: no run yet), and the picked seed's own
    top-1 (None: its row is not in the file), read from the results file it names. None for a checkpoint of one
    training run."""
    return _arms_of(_picked_arms(name, info, results_dir))


def _arms_of(picked: tuple[dict, dict, dict] | None) -> tuple[dict, list[float], list[float], float | None] | None:
    """`_leaderboard_arms` from what `_picked_arms` read."""
    if not picked:
        return None
    config, pick, by_arm = picked
    model, args = config["recipe"]["model"], _arm_options(config)
    base = _baseline_of(model)
    own = by_arm.get((model, args), [])
    return (pick, [r["top1"] for r in own], [r["top1"] for r in by_arm.get((base, args), [])] if base else [],
            next((r["top1"] for r in own if r["seed"] == pick["seed"]), None))


def _arm_cells(own: list[float], base_top1: list[float]) -> tuple[str, str]:
    """The baseline arm's cell (mean ± std, seeds) and ConvTwist's lead over it: the difference of the arms' means,
    with Welch's 95% interval once each arm has two runs ('–': an arm has none)."""
    if not base_top1:
        return "–", "–"
    base_cell = f"{leaderboard.mean_std(base_top1)} ({_seeds(len(base_top1))})"
    if not own:
        return base_cell, "–"
    if w := leaderboard.welch(own, base_top1):
        return base_cell, f"{w['diff']:+.2f} [{w['low']:+.2f}, {w['high']:+.2f}]"
    return base_cell, f"{statistics.fmean(own) - statistics.fmean(base_top1):+.2f} (means)"


def _summary_rows(info: dict, results_dir: Path = RESULTS_DIR) -> list[str]:
    rows = ["| checkpoint | params | MACs @128 | top-1 @128 | top-5 @128 | top-1 @160 | epochs | train time | "
            "baseline | baseline top-1 @128 | ConvTwist − baseline | verdict |", "|" + "---|" * 12]
    for name in PLANNED + sorted(set(info) - set(PLANNED)):
        entry = info.get(name)
        if entry is None:
            rows.append(f"| {name} | | | not published yet | | | | | | | | |")
            continue
        ev, metrics = entry["eval"] or {}, entry["metrics"]
        s128 = (ev.get("sizes") or {}).get("128", {})
        hours = _train_hours(metrics)
        base = _baseline_of(name)
        diff, gap = _difference(name, info)
        base_cell = _fmt(_top1(info.get(base))) if base else "–"
        diff_cell = "not comparable (recipes differ)" if gap else _fmt(diff, "{:+.2f}")
        arms = _leaderboard_arms(name, info, results_dir)
        if base and arms and arms[1] and arms[2]:
            # a pick from a leaderboard arm compares arm with arm: its baseline need not be published
            base_cell, diff_cell = _arm_cells(arms[1], arms[2])
        rows.append(f"| {name} | {_fmt(ev.get('params'), '{:,}')} | {_fmt(s128.get('macs'), '{:,.0f}')} | "
                    f"{_fmt(s128.get('top1'))} | {_fmt(s128.get('top5'))} | {_fmt(_top1(entry, '160'))} | "
                    f"{len(metrics) or '–'} | {_fmt(hours, '{:.2f} h')} on {_hardware(entry)} | {base or '–'} | "
                    f"{base_cell} | {diff_cell} | {_verdict(name, info, arms=arms) or '–'} |")
    return rows


def _robustness_rows(info: dict) -> list[str]:
    entries = {n: e["robustness"] for n, e in info.items() if e.get("robustness")}
    if not entries:
        return ["No robustness sweep has been run yet (`convtwist-zoo robustness NAME... --json-dir hub`)."]
    first = next(iter(entries.values()))["rows"]
    header = [f"{r['kind']} {r['value']}" for r in first]
    rows = ["| checkpoint | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    for name, rob in sorted(entries.items()):
        marked = name if rob.get("amp", True) else f"{name} (fp32)"
        rows.append(f"| {marked} | " + " | ".join(_fmt(r["top1"], "{:.1f}") for r in rob["rows"]) + " |")
    return rows + [""] + _robustness_verdicts(entries, info)


def _robustness_verdicts(entries: dict, info: dict) -> list[str]:
    """Per ConvTwist/baseline pair trained the same way: does ConvTwist keep more of its clean accuracy under
    rotation and rescaling? Retention, not raw top-1, because the ConvTwist models start from a higher clean
    accuracy."""
    lines, tally = [], {}
    for name in sorted(entries):
        base = _baseline_of(name)
        if base not in entries or _recipe_gap(info.get(name), info.get(base)):
            continue
        try:
            mine, theirs = retained(entries[name]["rows"]), retained(entries[base]["rows"])
        except ValueError:  # a sweep without its clean row has nothing to be kept of
            continue
        shared = sorted(set(mine) & set(theirs))
        if not shared:
            continue
        parts = []
        for kind in ("rotation", "scale"):
            keys = [k for k in shared if k[0] == kind]
            if not keys:
                continue
            gap = sum(mine[k] - theirs[k] for k in keys) / len(keys)
            verdict = "more robust than" if gap > 1 else "less robust than" if gap < -1 else "about as robust as"
            tally.setdefault(kind, []).append(verdict.split()[0])
            detail = ", ".join(f"{v}: {mine[(kind, v)]:.0f}% vs {theirs[(kind, v)]:.0f}%" for _, v in keys)
            parts.append(f"under {kind} it is {verdict} {base} (mean retention gap {gap:+.1f} points; {detail})")
        lines.append(f"- {name}: " + "; ".join(parts) + ".")
    if lines:
        summary = "; ".join(f"under {kind}, ConvTwist is more robust in {v.count('more')} of {len(v)} pairs, about "
                            f"as robust in {v.count('about')}, less robust in {v.count('less')}"
                            for kind, v in tally.items())
        lines = ["Accuracy kept relative to each model's own clean top-1 (so a higher starting point does not count "
                 "as robustness), ConvTwist vs its baseline (a gap within 1 point counts as about as robust):", ""] + \
            lines + ["", f"In short: {summary}."]
    return lines


def _inspect_rows(info: dict) -> list[str]:
    entries = {n: e["inspect"] for n, e in info.items() if e.get("inspect")}
    if not entries:
        return ["No ConvTwist checkpoint has been inspected yet (`convtwist-zoo inspect NAME --out hub/NAME/inspect`)."]
    rows = ["| checkpoint | stage | layers | twist/main kernel norm (mean) | |center_x| mean | |center_y| mean |",
            "|---|---|---|---|---|---|"]
    for name, ins in sorted(entries.items()):
        for stage in ins["stages"]:
            rows.append(f"| {name} | {stage['stage']} | {stage['layers']} | {stage['twist_ratio']:.3f} | "
                        f"{stage['center_x_abs']:.2f} | {stage['center_y_abs']:.2f} |")
    return rows


def _recipe(entry) -> dict:
    """The knobs that make a recipe, a key older configs lack read as what it was then."""
    saved = ((entry or {}).get("config") or {}).get("recipe") or {}
    return {k: saved_knob(saved, k) for k in RECIPE_KNOBS}


def _recipe_gap(a, b) -> list[str]:
    """How two checkpoints' recipes differ (empty: trained the same way)."""
    ra, rb = _recipe(a), _recipe(b)
    return [f"{k} {ra[k]} vs {rb[k]}" for k in RECIPE_KNOBS if ra[k] != rb[k]]


def _recipe_rows(info: dict) -> list[str]:
    """One table, a column per recipe: the knobs that differ between recipes first, then the shared ones."""
    groups: dict[str, list[str]] = {}
    for name, entry in sorted(info.items()):
        key = _recipe(entry) | {"model_args": _model_args(entry)}
        groups.setdefault(json.dumps(key, sort_keys=True), []).append(name)
    if not groups:
        return ["(no checkpoint yet)"]
    ordered = sorted(groups.values(), key=len, reverse=True)
    recipes = []
    for names in ordered:
        entry = info[names[0]]
        shown = {k: v for k, v in entry["config"]["recipe"].items()
                 if k not in ("model", "model_args", "data", "seed")} | _recipe(entry)
        shown["model_args"] = _model_args(entry) or "none"
        recipes.append(shown)
    knobs = sorted(set().union(*recipes))
    differ = [k for k in knobs if len({json.dumps(r.get(k)) for r in recipes}) > 1]
    shared = [k for k in knobs if k not in differ]
    header = "| knob | " + " | ".join(f"recipe {chr(65 + i)}: {', '.join(n)}" for i, n in enumerate(ordered)) + " |"
    rows = [header, "|---|" + "---|" * len(ordered)]
    rows += [f"| **{k}** | " + " | ".join(str(r.get(k, "–")) for r in recipes) + " |" for k in differ]
    rows += [f"| {k} | " + " | ".join(str(r.get(k, "–")) for r in recipes) + " |" for k in shared]
    return rows + ["", "Bold: the knobs in which the recipes differ."]


def _difference(name: str, info: dict) -> tuple[float | None, list[str]]:
    """ConvTwist checkpoint ``name``'s top-1 @128 minus its baseline's (None until both are evaluated), and how
    their recipes differ (empty: the difference means something)."""
    base = _baseline_of(name)
    if not base or _top1(info.get(name)) is None or _top1(info.get(base)) is None:
        return None, []
    return _top1(info[name]) - _top1(info[base]), _recipe_gap(info[name], info[base])


def _arms_compared(own: list[float], other: list[float], other_model: str) -> str:
    """One arm's mean minus another's, in words: the points, the seeds, Welch's 95% interval and p, and the reading
    (or why there is no interval yet)."""
    w = leaderboard.welch(own, other)
    seeds = f"{_seeds(len(own))} against {_seeds(len(other))}"
    if w is None:
        return (f"{statistics.fmean(own) - statistics.fmean(other):+.2f} points against {other_model} ({seeds}): "
                f"no interval yet, {leaderboard.why_no_interval(own, other)}.")
    return (f"{w['diff']:+.2f} points against {other_model} ({seeds}; 95% interval [{w['low']:+.2f}, "
            f"{w['high']:+.2f}], Welch, p {leaderboard.p_value(w['p'])}): {leaderboard.reading(w)}.")


def _against_controls(picked: tuple[dict, dict, dict] | None, costs: dict) -> list[str]:
    """For a ConvTwist checkpoint picked from a leaderboard arm (``picked``, from `_picked_arms`): a sentence per
    compute-matched control (``leaderboard.CONTROLS`` after the same-recipe twin) whose arm with the same options has
    runs in its results file, giving what ConvTwist costs against it (``costs``, from `OnnxBench.costs`) and the
    difference of the arms."""
    if not picked:
        return []
    config, _, by_arm = picked
    model, options = config["recipe"]["model"], _arm_options(config)
    own = [r["top1"] for r in by_arm.get((model, options), [])]
    lines = []
    for control in leaderboard.CONTROLS.get(model, ())[1:]:
        theirs = [r["top1"] for r in by_arm.get((control, options), [])]
        if not own or not theirs:
            continue
        cost = costs.get((model, control, saved_knob(config["recipe"], "model_args")))
        at = (f" ({cost['macs']:.2f}x its multiply-adds, {cost['ort']:.2f}x its ONNX Runtime time per image)"
              if cost else "")
        lines.append(f"Against its compute-matched control, {control}{at}: {_arms_compared(own, theirs, control)}")
    return lines


def _verdict(name: str, info: dict, replicates: str = "docs/recipe-history.md's replicates",
             arms: tuple | None = None) -> str | None:
    """Does ConvTwist checkpoint ``name`` beat its baseline (None until both are evaluated): over the seeds of their
    leaderboard arms (``arms``, from ``_leaderboard_arms``) where it was picked from one, else checkpoint against
    checkpoint."""
    base = _baseline_of(name)
    if base and arms:
        _, own, base_top1, _ = arms
        if not own or not base_top1:
            return None
        return _arms_compared(own, base_top1, base.split('.')[0])
    d, gap = _difference(name, info)
    if d is None:
        return None
    if gap:
        return f"no verdict, it and {base} were trained with different recipes ({', '.join(gap)}); retrain one of them."
    return (f"{'ConvTwist wins' if d > 0 else 'ConvTwist loses' if d < 0 else 'a tie'} by {abs(d):.2f} points "
            f"against {base}; one seed each ({replicates} show how far another seed moves a run).")


def _lr_from_sentence(results_dir: Path) -> str:
    """Which protocols' arms take their rate from the probes, named from the results files there are."""
    others = sorted(f.stem for f in Path(results_dir).glob("*.jsonl") if f.stem != PROBED_PROTOCOL)
    if not others:
        return ""
    return (f" The arms of {', '.join(f'`{o}`' for o in others)} train at the peak lr their model's "
            f"`{PROBED_PROTOCOL}` probes chose (`--lr-from`).")


def _leaderboard_sections(results_dir: Path, costs: dict | None = None) -> list[str]:
    # the protocol whose probes set every arm's lr leads; the others follow by name
    files = sorted(Path(results_dir).glob("*.jsonl"), key=lambda f: (f.stem != PROBED_PROTOCOL, f.name))
    if not files:
        return ["No leaderboard run has finished yet: `convtwist-zoo leaderboard run` fills `results/leaderboard/`."]
    out, costs = [], read_onnx_bench().costs if costs is None else costs
    for f in files:
        out += [leaderboard.render_table(f, costs), ""]
        if (sweeps := robustness_results(f)).is_file():
            out += [render_robustness(sweeps), ""]
    return out


def render_model_cards(info: dict, extra: list[dict] | None = None,
                       results_dir: Path | None = None, costs: dict | None = None) -> str:
    """``MODEL_CARDS.md``: every checkpoint, the leaderboard tables, robustness and the twist's inspection.

    Args:
        info: `collect`'s record of the hub folders.
        extra: `collect_extra_runs`'s replicates and recipe probes.
        results_dir: the leaderboard's results files (default: the repository's ``results/leaderboard``).
        costs: what ConvTwist costs against each control (`OnnxBench.costs`); None reads ``bench/results/onnx.json``.

    Returns:
        The markdown.

    Example:
        >>> text = render_model_cards(collect(Path("hub")), collect_extra_runs(Path("docs/runs")))  # doctest: +SKIP
    """
    lines = ["# Model cards", "",
             "Generated by `python -m convtwist_zoo.release cards` from the JSON files in `hub/` (training config and "
             "metrics, `convtwist-zoo eval`, `convtwist-zoo robustness`, `convtwist-zoo inspect`) and the "
             "leaderboard rows in `results/leaderboard/`. Do not edit by hand.", "",
             "Every ConvTwist checkpoint stands beside a plain ResNet (torchvision's, or the leaderboard's xresnet) "
             "trained with the same recipe, the same data and the same number of epochs. Accuracy is top-1/top-5 on the full validation split, fp32, "
             "resize to size/0.875 then centre crop (no test-time augmentation).", "",
             "## Checkpoints", ""] + _summary_rows(info, results_dir or RESULTS_DIR) + [
             "", "Train time is the epochs times the median epoch's wall time (pauses of a resumed run do not count). "
             "A checkpoint picked from leaderboard runs is compared arm with arm: its baseline columns hold the "
             "baseline's runs (mean over seeds) and the difference is of the two arms' means. Other seeds, recipe probes and former checkpoints: `docs/recipe-history.md`.", ""]
    lines += ["## The fast.ai leaderboard protocol, several seeds", "",
              "xresnet18/34/50 and their ConvTwist twins (`convtwist-zoo leaderboard run`), one row per finished run "
              "in `results/leaderboard/`; xresnet34 is the compute-matched control of convtwist_xresnet18 (about "
              "as many parameters and MACs). An arm marked `fp32 training` ran the recipe without bf16 autocast, at "
              "its bf16 arm's learning rate, and is compared only with fp32 arms." + _lr_from_sentence(
                  results_dir or RESULTS_DIR), ""]
    lines += _leaderboard_sections(results_dir or RESULTS_DIR, costs)
    fp32_sweeps = any(e.get("robustness") and not e["robustness"].get("amp", True) for e in info.values())
    lines += [f"## Robustness: rotated and rescaled validation images (top-1 %, 128px, "
              f"{'bf16, or fp32 where marked' if fp32_sweeps else 'bf16'})", "",
              "The seed motivates ConvTwist by rotation and scaling. Each validation crop is rotated about its centre "
              "(black corners) or rescaled (0.75x zooms out with a black border, 1.25x zooms in); no such "
              "augmentation was used in training. Plots: `docs/robustness-<dataset>.png`.", ""] + _robustness_rows(info)
    if any(robustness_results(f).is_file() for f in Path(results_dir or RESULTS_DIR).glob("*.jsonl")):
        lines += ["", "Each checkpoint above is one seed, and a gap of a point or two between two checkpoints can "
                  "change sign from seed to seed. The leaderboard section's robustness over seeds (`convtwist-zoo "
                  "leaderboard robustness`) compares whole arms, with confidence intervals."]
    lines += ["", "## What the ConvTwist checkpoints learned", "",
              "Per stage: the norm of the twist kernels (`conv_x`, `conv_y`) relative to the main kernel, and the mean "
              "absolute learned centres (init uniform(-1.5, 1.5), mean 0.75). PNGs in `hub/<name>/inspect/`.", ""]
    lines += _inspect_rows(info)
    lines += ["", "## Recipe", ""]
    by_hw = {}
    for name, entry in sorted(info.items()):
        by_hw.setdefault(_hardware(entry), []).append(name)
    fp32 = [name for name, entry in sorted(info.items()) if not _recipe(entry)["amp"]]
    precision = (f"bf16 autocast; fp32 for {', '.join(fp32)}, `amp` below" if fp32 else
                 "bf16 autocast everywhere")
    lines += [f"Where each run trained ({precision}; the recipe does not depend on the machine): " +
              "; ".join(f"{hw}: {', '.join(names)}" for hw, names in sorted(by_hw.items())) + ".", ""]
    lines += _recipe_rows(info) + [""]
    lines += ["## Data", ""]
    lines += [f"- **{k}**: {v}." for k, v in DATA_NOTES.items()]
    lines += ["- Differences from the fast.ai protocol: Imagenette here is squashed to a square (the official "
              "archive keeps the aspect ratio) and both sets were re-encoded as JPEG q80, so accuracies are close "
              "to, not identical with, the leaderboard's.", "",
              "For context, the best entries of the fastai/imagenette leaderboard (random init, 128px, no TTA; the "
              "mean of 5 runs at 5 and 20 epochs, one run at 80 and 200):", "",
              "| dataset | 5 epochs | 20 | 80 | 200 |", "|---|---|---|---|---|"]
    for ds, row in FASTAI_LEADERBOARD.items():
        lines.append(f"| {ds} | " + " | ".join(f"{v:.2f}" for v in row.values()) + " |")
    lines += ["", "## Intended use and limitations", "",
              "- Research on ConvTwist and a starting point for fine-tuning on small image-classification sets "
              "(`convtwist-zoo finetune`). Ten classes each; not ImageNet-1k models.",
              "- Trained at 128px on about 9,000 images each: expect weaker transfer than ImageNet-pretrained weights.",
              "- The images come from ImageNet (research use only); the weights inherit that restriction.",
              "- The exported ONNX graphs are static in image size (the coordinate grids are constants).", ""]
    return "\n".join(lines)


def render_recipe_history(info: dict, extra: list[dict]) -> str:
    """``docs/recipe-history.md``: the runs beside the checkpoints (other seeds, recipe probes, former checkpoints)."""
    return "\n".join(
        ["# Recipe history", "",
         "Generated by `python -m convtwist_zoo.release cards` from `docs/runs/`. Runs beside the checkpoints, kept "
         "as training logs only: another seed of a checkpoint and of its baseline measures run-to-run noise; a recipe "
         "probe changes one knob of the recipe; a pipeline check trains a checkpoint's recipe again after a change to "
         "the input code; a former checkpoint is the log of weights once published under that name. Top-1 here is "
         "the training log's (bf16 eval after the last epoch), compared with the same number from the checkpoint's "
         "own log, or from the former checkpoint's where the run was made against that.", ""]
        + _extra_run_rows(info, extra) + [""])


ONNX_BENCH = REPO_ROOT / "bench" / "results" / "onnx.json"


class OnnxBench(NamedTuple):
    """The ONNX Runtime benchmark's figures at batch 1, 128px, all cores (``bench/results/onnx.json``).

    latency_ms: milliseconds per image by (architecture, builder options); a checkpoint trained with other options
        than the benchmark's has no figure.
    costs: what each ConvTwist model costs against its control, ``{(twist, control, model_args): {"macs", "ort"}}``,
        multiply-adds and ONNX Runtime time as multiples.
    """
    latency_ms: dict
    costs: dict


def read_onnx_bench(path: Path = ONNX_BENCH) -> OnnxBench:
    """Read the benchmark file once for every card and table; a missing file gives empty figures.

    Args:
        path: the file `python bench/onnx.py` writes.

    Returns:
        An `OnnxBench`.

    Example:
        >>> bench = read_onnx_bench()
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


def render_zoo_table(info: dict, results_dir: Path, latency: dict | None = None) -> str:
    """The README's table: every published checkpoint beside its same-recipe baseline. A checkpoint picked from a
    leaderboard arm shows its seed and the arm's mean, and the difference over both arms' seeds.

    Args:
        info: `collect`'s record of the hub folders.
        results_dir: the leaderboard's results files.
        latency: ONNX Runtime ms per image (`OnnxBench.latency_ms`); None reads ``bench/results/onnx.json``.

    Returns:
        The table in Markdown.

    Example:
        >>> print(render_zoo_table(collect(Path("hub")), RESULTS_DIR))  # doctest: +SKIP
    """
    latency = read_onnx_bench().latency_ms if latency is None else latency
    rows = ["| checkpoint | top-1 % | same-recipe baseline | its top-1 % | difference | params | MACs @128 | "
            "ORT ms/image | recipe |", "|---|---|---|---|---|---|---|---|---|"]
    for name in PLANNED + sorted(set(info) - set(PLANNED)):
        entry = info.get(name)
        if entry is None:
            continue
        ev = entry["eval"] or {}
        s128 = (ev.get("sizes") or {}).get("128", {})
        base = _baseline_of(name)
        arch = name.split(".")[0]
        recipe = entry["config"]["recipe"]
        if arms := _leaderboard_arms(name, info, results_dir):
            pick, own, base_top1, _ = arms
            top1 = f"{_fmt(s128.get('top1'))} (seed {pick['seed']}; {_seeds(len(own))}: {leaderboard.mean_std(own)})"
            base_cell, diff = _arm_cells(own, base_top1)
            how = (f"leaderboard, {len(entry['metrics'])} epochs, lr {float(recipe['lr']):g}"
                   + ("" if saved_knob(recipe, "amp") else ", fp32 training"))
        else:
            d, gap = _difference(name, info)
            top1 = f"{_fmt(s128.get('top1'))} (1 seed)"
            base_cell = _fmt(_top1(info.get(base))) if base else "–"
            diff = "–" if not base else "recipes differ" if gap else _fmt(d, "{:+.2f}")
            how = f"{len(entry['metrics'])} epochs, {'Ranger' if _recipe(entry)['lookahead'] else 'RAdam'} flat-cos"
        ort_ms = latency.get((arch, _model_args(entry)))
        rows.append(f"| {name} | {top1} | {base or '–'} | {base_cell} | {diff} | {_fmt(ev.get('params'), '{:,}')} | "
                    f"{_fmt((s128.get('macs') or 0) / 1e9, '{:.2f} G')} | {_fmt(ort_ms, '{:.1f}')} | {how} |")
    return "\n".join(rows)


def render_hub_readme(name: str, entry: dict, info: dict, results_dir: Path = RESULTS_DIR,
                      costs: dict | None = None) -> str:
    """A checkpoint's Hugging Face model card (``hub/<name>/README.md``): front matter, how to load it, its metrics,
    which seed it is, and how it compares with its baselines.

    Args:
        name: the checkpoint, ``<architecture>.<tag>``.
        entry: ``info[name]``.
        info: `collect`'s record of every hub folder (the baselines are read from it).
        results_dir: the leaderboard's results files.
        costs: what ConvTwist costs against each control (`OnnxBench.costs`); None reads ``bench/results/onnx.json``.

    Returns:
        The card's markdown.

    Example:
        >>> info = collect(Path("hub"))  # doctest: +SKIP
        >>> card = render_hub_readme("xresnet18.imagewoof", info["xresnet18.imagewoof"], info)  # doctest: +SKIP
    """
    config, ev = entry["config"], entry["eval"] or {}
    dataset = config["dataset"]
    arch = config["architecture"]
    s128 = (ev.get("sizes") or {}).get("128", {})
    base = _baseline_of(name)
    results = []
    if s128:
        results = ["    results:", "      - task: {type: image-classification}",
                   f"        dataset: {{name: {dataset} (160px, 10 classes), type: {dataset}}}",
                   "        metrics:",
                   f"          - {{type: accuracy, name: top-1 @128px, value: {s128['top1']:.2f}}}",
                   f"          - {{type: accuracy, name: top-5 @128px, value: {s128['top5']:.2f}}}"]
    front = ["---", "library_name: pytorch", "license: mit", "pipeline_tag: image-classification",
             "tags: [image-classification, convtwist, resnet, convtwist-zoo]", f"datasets: [{dataset}]",
             "model-index:", f"  - name: {name}"] + results + ["---", ""]
    options = f" ({arm})" if (arm := _arm_options(config)) else ""
    kind = ("every 3x3 convolution of its residual blocks a ConvTwist, the stem plain" if arch.startswith("convtwist")
            else "plain baseline")
    body = [f"# {name}", "",
            f"{arch}{options} trained from scratch on {dataset} at 128px with convtwist-zoo ({kind}).", "",
            "```python", "import torch",
            f'model = torch.hub.load("<owner>/convtwist-zoo", "{arch}", pretrained="{name.split(".", 1)[1]}")',
            "# or: convtwist_zoo.create_model(\"" + name + "\")",
            "# or, after `import convtwist_zoo`: timm.create_model(\"" + name + "\", pretrained=True)", "```", "",
            "| metric | value |", "|---|---|",
            f"| top-1 @128px | {_fmt(s128.get('top1'))} |", f"| top-5 @128px | {_fmt(s128.get('top5'))} |",
            f"| top-1 @160px | {_fmt(_top1(entry, '160'))} |", f"| parameters | {_fmt(ev.get('params'), '{:,}')} |",
            f"| MACs @128px | {_fmt(s128.get('macs'), '{:,.0f}')} |", f"| epochs | {len(entry['metrics'])} |",
            f"| trained on | {_hardware(entry)} |"]
    picked = _picked_arms(name, info, results_dir)  # the results file, read once for the card
    arms = _arms_of(picked)
    if base and arms:
        base_top1 = arms[2]
        body += [f"| baseline {base.split('.')[0]} top-1 @128px, same protocol | "
                 f"{f'{leaderboard.mean_std(base_top1)} ({_seeds(len(base_top1))})' if base_top1 else '–'} |"]
    elif base:
        body += [f"| baseline {base} top-1 @128px | {_fmt(_top1(info.get(base)))} |"]
    spec_meta = (config.get("pretrained_spec") or {}).get("meta") or {}
    if lb := spec_meta.get("leaderboard"):
        source = f"`results/leaderboard/{lb['results']}`"
        # one run count, the arm's as its rows stand now (the pick's own statistics are frozen in the spec and grow
        # stale as seeds finish)
        pick = (f"These weights are seed {lb['seed']} of the fast.ai leaderboard protocol ({source}), picked as the "
                "finished run closest to its arm's mean top-1")
        if passed := lb.get("closer_without_weights"):
            pick += f" among those whose weights were at hand ({_runs(passed)} nearer the mean had lost theirs)"
        pick += "."
        now = arms[1] if arms else []
        if len(now) > 1:
            pick += (f" Its arm has {len(now)} finished runs: {leaderboard.mean_std(now)}, min {min(now):.2f}, max "
                     f"{max(now):.2f}.")
            if (own := arms[3]) is not None:
                # a pick made from few seeds may now sit at an end of its arm: say where, so no one reads it as typical
                rank = sorted(now, reverse=True).index(own) + 1
                where = ("the arm's highest" if rank == 1 else "the arm's lowest" if rank == len(now) else
                         f"{rank} of {len(now)} from the top")
                pick += f" Seed {lb['seed']} scored {own:.2f}, {where}."
        else:
            pick += " It is its arm's only finished run so far: no spread over seeds yet."
        if not saved_knob(config["recipe"], "amp"):
            pick += (" That arm ran the recipe in fp32, without its bf16 autocast, and is compared only with fp32 "
                     "arms" + (f": its baseline is {base.split('.')[0]}'s fp32 arm." if base else "."))
        body += ["", pick]
        body += ["", "The table evaluates these weights as published (stored in fp16); the leaderboard's top-1 "
                 "figures are of the runs' fp32 weights."]
    else:
        body += ["", f"One training run (seed {config['recipe'].get('seed', 0)}), recipe: {len(entry['metrics'])} "
                 f"epochs, {'Ranger' if _recipe(entry)['lookahead'] else 'RAdam'} flat-cos (MODEL_CARDS.md)."]
    if verdict := _verdict(name, info, replicates="the replicates in the repository's docs/recipe-history.md",
                           arms=arms):
        body += ["", f"Against its plain baseline: {verdict}"]
    if picked and costs is None:
        costs = read_onnx_bench().costs
    for line in _against_controls(picked, costs or {}):
        body += ["", line]
    body += ["", f"Classes: {', '.join(config['class_names'])}.", "",
             f"Data: {DATA_NOTES.get(dataset, dataset)}. Evaluation: resize to 146, centre crop 128, ImageNet mean/std.",
             "", "See MODEL_CARDS.md in the convtwist-zoo repository for the recipe, robustness sweeps and limitations.",
             ""]
    return "\n".join(front + body)


def _robustness_plots(info: dict, out_dir: Path) -> list[Path]:
    """One PNG per dataset with every swept checkpoint (ConvTwist solid, baselines dashed)."""
    from ..plots import plot_robustness
    written = []
    for dataset in sorted({e["config"]["dataset"] for e in info.values()}):
        rows = {n: e["robustness"]["rows"] for n, e in sorted(info.items())
                if e.get("robustness") and e["config"]["dataset"] == dataset}
        if rows:
            written.append(plot_robustness(rows, out_dir / f"robustness-{dataset}.png"))
    return written


def _replace_block(text: str, name: str, block: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README.md lacks the {start} ... {end} markers")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}"


def render_readme(readme: str, info: dict, results_dir: Path, bench: OnnxBench | None = None) -> str:
    """README.md with its generated zoo and leaderboard tables brought up to date.

    Args:
        readme: the README's text, with its ``<!-- zoo:start -->`` and ``<!-- leaderboard:start -->`` blocks.
        info: `collect`'s record of the hub folders.
        results_dir: the leaderboard's results files.
        bench: the ONNX benchmark's figures (`read_onnx_bench`); None reads ``bench/results/onnx.json``.

    Returns:
        The new text; everything outside the two blocks is kept.

    Example:
        >>> text = render_readme(Path("README.md").read_text(), collect(Path("hub")), RESULTS_DIR)  # doctest: +SKIP
    """
    bench = read_onnx_bench() if bench is None else bench
    readme = _replace_block(readme, "zoo", render_zoo_table(info, results_dir, bench.latency_ms))
    return _replace_block(readme, "leaderboard", "\n".join(_leaderboard_sections(results_dir, bench.costs)).strip())


def write_cards(hub_root: str | Path, model_cards: str | Path) -> list[Path]:
    """Rewrite ``model_cards``, every ``hub_root/<name>/README.md``, ``docs/recipe-history.md``, the README's tables
    and the robustness plots (in ``docs/`` beside ``model_cards``), each file written atomically.

    Args:
        hub_root: the folder of checkpoint folders (``hub/``).
        model_cards: where ``MODEL_CARDS.md`` goes; its folder holds ``README.md``, ``docs/`` and ``results/``.

    Returns:
        The written paths.

    Example:
        >>> write_cards("hub", "MODEL_CARDS.md")  # doctest: +SKIP
    """
    root = Path(model_cards).parent
    info = collect(Path(hub_root))
    results_dir = root / "results" / "leaderboard"
    bench = read_onnx_bench()  # one reading for every card and table
    written = _robustness_plots(info, root / "docs")
    for name, entry in info.items():
        path = Path(hub_root) / name / "README.md"
        write_text_atomic(path, render_hub_readme(name, entry, info, results_dir, bench.costs))
        written.append(path)
    extra = collect_extra_runs(root / "docs" / "runs")
    write_text_atomic(Path(model_cards), render_model_cards(info, extra, results_dir, bench.costs))
    (root / "docs").mkdir(exist_ok=True)
    write_text_atomic(root / "docs" / "recipe-history.md", render_recipe_history(info, extra))
    written += [Path(model_cards), root / "docs" / "recipe-history.md"]
    readme = root / "README.md"
    if readme.exists():  # the repository's README holds the zoo and leaderboard tables
        write_text_atomic(readme, render_readme(readme.read_text(), info, results_dir, bench))
        written.append(readme)
    return written
