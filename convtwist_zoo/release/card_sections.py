"""The sections several documents share: the checkpoint summary, the leaderboard arms a checkpoint was picked from,
robustness and inspection rows, recipe differences, and each checkpoint's verdict against its baseline and
controls."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .. import research as leaderboard
from ..errors import InputError
from ..research.robustness import render_robustness, retained, robustness_results

from .card_sources import hardware_of, PLANNED, PROBED_PROTOCOL, arm_options_of, baseline_of, entry_top1, final_top1, fmt, model_args_of, recipe_gap, recipe_of_entry, saved_knob, seeds_phrase, train_hours

__all__ = ["short_verdict", "extra_run_rows", "picked_arms", "leaderboard_arms", "arms_of", "arm_cells", "summary_rows", "robustness_rows", "inspect_rows", "recipe_rows", "difference_to_baseline", "against_controls", "verdict_lines", "lr_from_sentence", "leaderboard_sections"]


def extra_run_rows(info: dict, extra: list[dict]) -> list[str]:
    """The extra runs against their checkpoint, both read from training logs (bf16 eval after the last epoch), and
    ConvTwist minus baseline for every seed that has both."""
    if not extra:
        return ["No replicate or recipe probe has been run yet (`docs/runs/index.json`)."]
    by_run = {r["run"]: r for r in extra}
    rows = ["| run | kind | flags | trained on | epochs | final top-1 | compared with | its top-1 | difference |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in extra:
        own = final_top1(r["metrics"])
        # A run made against a checkpoint that has since been replaced names the former checkpoint's log instead.
        against = r.get("compared_with")
        if against is None:
            label, ck = "the checkpoint", final_top1((info.get(r["checkpoint"]) or {}).get("metrics") or [])
        elif against in by_run:
            label, ck = against, final_top1(by_run[against]["metrics"])
        else:
            raise InputError(f"docs/runs/index.json: {r['run']} is compared with {against!r}, which is not a run "
                             "listed there")
        diff = own - ck if own is not None and ck is not None else None
        rows.append(f"| {r['run']} | {r['kind']} | `{r['flags']}` | {r['trained_on']} | {len(r['metrics'])} | "
                    f"{fmt(own)} | {label} | {fmt(ck)} | {fmt(diff, '{:+.2f}')} |")
    pairs = []
    for name in PLANNED:
        base = baseline_of(name)
        if not base or name not in info or base not in info:
            continue
        # the published pair counts only when trained the same way, and only beside at least one extra pair
        published = [] if recipe_gap(info[name], info[base]) else \
            [("the published seed", final_top1(info[name]["metrics"]), final_top1(info[base]["metrics"]))]
        gaps = []
        for r in extra:
            twin = next((b for b in extra if b["checkpoint"] == base and b["flags"] == r["flags"]), None)
            if r["checkpoint"] == name and r["kind"] in ("replicate", "recipe", "former checkpoint") and twin:
                gaps.append((f"`{r['flags']}`", final_top1(r["metrics"]), final_top1(twin["metrics"])))
        gaps = published + gaps if gaps else []
        if gaps and all(a is not None and b is not None for _, a, b in gaps):
            pairs.append(f"- {name} − {base} (training-log top-1): " +
                         ", ".join(f"{label} {a - b:+.2f}" for label, a, b in gaps) + ".")
    return rows + ([""] + pairs if pairs else [])


def picked_arms(name: str, info: dict, results_dir: Path) -> tuple[dict, dict, dict] | None:
    """For a checkpoint picked from a leaderboard arm: its config, its pick and every arm of the results file it
    names (``leaderboard.arms``); None for a checkpoint of one training run or a results file not at hand."""
    config = (info.get(name) or {}).get("config") or {}
    pick = config.get("leaderboard")
    path = Path(results_dir) / pick["results"] if pick else None
    if not pick or not path.is_file():
        return None
    return config, pick, leaderboard.arms(leaderboard.read_rows(path))


def leaderboard_arms(name: str, info: dict, results_dir: Path
                      ) -> tuple[dict, list[float], list[float], float | None] | None:
    """For a checkpoint picked from a leaderboard arm: its pick (``{"seed", "mean", "std", "n", "results"}``), the
    top-1 of every seed of its arm and of its same-recipe baseline's arm (empty: no run yet), and the picked seed's own
    top-1 (None: its row is not in the file), read from the results file it names. None for a checkpoint of one
    training run."""
    return arms_of(picked_arms(name, info, results_dir))


def arms_of(picked: tuple[dict, dict, dict] | None) -> tuple[dict, list[float], list[float], float | None] | None:
    """`leaderboard_arms` from what `picked_arms` read."""
    if not picked:
        return None
    config, pick, by_arm = picked
    model, args = config["recipe"]["model"], arm_options_of(config)
    base = baseline_of(model)
    own = by_arm.get((model, args), [])
    return (pick, [r["top1"] for r in own], [r["top1"] for r in by_arm.get((base, args), [])] if base else [],
            next((r["top1"] for r in own if r["seed"] == pick["seed"]), None))


def arm_cells(own: list[float], base_top1: list[float]) -> tuple[str, str]:
    """The baseline arm's cell (mean ± std, seeds) and ConvTwist's lead over it: the difference of the arms' means,
    with Welch's 95% interval once each arm has two runs ('–': an arm has none)."""
    if not base_top1:
        return "–", "–"
    base_cell = f"{leaderboard.mean_std(base_top1)} ({seeds_phrase(len(base_top1))})"
    if not own:
        return base_cell, "–"
    if w := leaderboard.welch(own, base_top1):
        return base_cell, f"{w['diff']:+.2f} [{w['low']:+.2f}, {w['high']:+.2f}]"
    return base_cell, f"{statistics.fmean(own) - statistics.fmean(base_top1):+.2f} (means)"


def short_verdict(name: str, info: dict, arms: tuple | None) -> str:
    """A ConvTwist checkpoint's verdict against its baseline in a word or two (the footnote under the table says what
    each means): over seeds, whether Welch's 95% interval excludes 0; one seed each, only which is higher."""
    base = baseline_of(name)
    if not base:
        return "–"
    if arms:
        _, own, base_top1, _ = arms
        w = leaderboard.welch(own, base_top1) if own and base_top1 else None
        if w is None:
            return "too few seeds"
        return {"ConvTwist ahead": "ahead", "ConvTwist behind": "behind"}.get(leaderboard.reading(w),
                                                                            "not significant")
    d, gap = difference_to_baseline(name, info)
    if d is None:
        return "–"
    return "recipes differ" if gap else ("higher, 1 seed" if d > 0 else "lower, 1 seed" if d < 0 else "tie, 1 seed")


def _machine_kind(entry: dict) -> str:
    """What trained a checkpoint, short: the GPU's name, or "CPU" (the recipe section names the CPUs)."""
    hardware = hardware_of(entry)
    return "CPU" if hardware.startswith("CPU") else hardware


def summary_rows(info: dict, results_dir: Path) -> list[str]:
    """The checkpoint table: accuracy, its baseline's and the difference, a short verdict, size and cost."""
    rows = ["| checkpoint | top-1 @128 | top-5 | top-1 @160 | baseline top-1 @128 | ConvTwist − baseline | verdict | "
            "params | GMACs @128 | epochs | train time |", "|" + "---|" * 11]
    for name in PLANNED + sorted(set(info) - set(PLANNED)):
        entry = info.get(name)
        if entry is None:
            rows.append(f"| {name} | not published yet | | | | | | | | | |")
            continue
        ev, metrics = entry["eval"] or {}, entry["metrics"]
        s128 = (ev.get("sizes") or {}).get("128", {})
        hours = train_hours(metrics)
        base = baseline_of(name)
        diff, gap = difference_to_baseline(name, info)
        base_cell = f"{fmt(entry_top1(info.get(base)))} ({base.split('.')[0]})" if base else "–"
        diff_cell = "–" if gap else fmt(diff, "{:+.2f}")
        arms = leaderboard_arms(name, info, results_dir)
        if base and arms and arms[1] and arms[2]:
            # a pick from a leaderboard arm compares arm with arm: its baseline need not be published
            base_cell, diff_cell = arm_cells(arms[1], arms[2])
        rows.append(f"| {name} | {fmt(s128.get('top1'))} | {fmt(s128.get('top5'))} | {fmt(entry_top1(entry, '160'))} | "
                    f"{base_cell} | {diff_cell} | {short_verdict(name, info, arms)} | "
                    f"{fmt((ev.get('params') or 0) / 1e6, '{:.1f} M')} | {fmt((s128.get('macs') or 0) / 1e9, '{:.2f}')} | "
                    f"{len(metrics) or '–'} | {fmt(hours, '{:.2f} h')}, {_machine_kind(entry)} |")
    return rows + ["", "Verdict: *ahead* or *behind* where the 95% interval of the difference over seeds (Welch) "
                   "excludes 0, *not significant* where it does not; *1 seed* where each side is one training run, "
                   "so only which is higher is known (docs/recipe-history.md shows how far another seed moves a "
                   "run); *recipes differ* where the two were trained differently and no verdict is drawn."]


def robustness_rows(info: dict) -> list[str]:
    entries = {n: e["robustness"] for n, e in info.items() if e.get("robustness")}
    if not entries:
        return ["No robustness sweep has been run yet (`convtwist-zoo robustness NAME... --json-dir hub`)."]
    first = next(iter(entries.values()))["rows"]
    header = [f"{r['kind']} {r['value']}" for r in first]
    rows = ["| checkpoint | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    for name, rob in sorted(entries.items()):
        marked = name if rob.get("amp", True) else f"{name} (fp32)"
        rows.append(f"| {marked} | " + " | ".join(fmt(r["top1"], "{:.1f}") for r in rob["rows"]) + " |")
    return rows + [""] + _robustness_verdicts(entries, info)


def _robustness_verdicts(entries: dict, info: dict) -> list[str]:
    """Per ConvTwist/baseline pair trained the same way: does ConvTwist keep more of its clean accuracy under
    rotation and rescaling? Retention, not raw top-1, because the ConvTwist models start from a higher clean
    accuracy."""
    lines, tally = [], {}
    for name in sorted(entries):
        base = baseline_of(name)
        if base not in entries or recipe_gap(info.get(name), info.get(base)):
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


def inspect_rows(info: dict) -> list[str]:
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


def recipe_rows(info: dict) -> list[str]:
    """One table, a column per recipe, of the knobs in which the recipes differ; the knobs they share follow in a
    folded block."""
    groups: dict[str, list[str]] = {}
    for name, entry in sorted(info.items()):
        key = recipe_of_entry(entry) | {"model_args": model_args_of(entry)}
        groups.setdefault(json.dumps(key, sort_keys=True), []).append(name)
    if not groups:
        return ["(no checkpoint yet)"]
    ordered = sorted(groups.values(), key=len, reverse=True)
    recipes = []
    for names in ordered:
        entry = info[names[0]]
        shown = {k: v for k, v in entry["config"]["recipe"].items()
                 if k not in ("model", "model_args", "data", "seed")} | recipe_of_entry(entry)
        shown["model_args"] = model_args_of(entry) or "none"
        recipes.append(shown)
    knobs = sorted(set().union(*recipes))
    differ = [k for k in knobs if len({json.dumps(r.get(k)) for r in recipes}) > 1]
    shared = [k for k in knobs if k not in differ]
    rows = ["| recipe | checkpoints | " + " | ".join(differ) + " |", "|---|---|" + "---|" * len(differ)]
    rows += [f"| {chr(65 + i)} | {', '.join(n)} | " + " | ".join(str(r.get(k, "–")) for k in differ) + " |"
             for i, (n, r) in enumerate(zip(ordered, recipes))]
    return rows + ["", f"<details><summary>The {len(shared)} knobs every recipe shares</summary>", "",
                   "| knob | value |", "|---|---|"] + [f"| {k} | {recipes[0].get(k, '–')} |" for k in shared] + [
                   "", "</details>"]


def difference_to_baseline(name: str, info: dict) -> tuple[float | None, list[str]]:
    """ConvTwist checkpoint ``name``'s top-1 @128 minus its baseline's (None until both are evaluated), and how
    their recipes differ (empty: the difference means something)."""
    base = baseline_of(name)
    if not base or entry_top1(info.get(name)) is None or entry_top1(info.get(base)) is None:
        return None, []
    return entry_top1(info[name]) - entry_top1(info[base]), recipe_gap(info[name], info[base])


def _arms_compared(own: list[float], other: list[float], other_model: str) -> str:
    """One arm's mean minus another's, in words: the points, the seeds, Welch's 95% interval and p, and the reading
    (or why there is no interval yet)."""
    w = leaderboard.welch(own, other)
    seeds = f"{seeds_phrase(len(own))} against {seeds_phrase(len(other))}"
    if w is None:
        return (f"{statistics.fmean(own) - statistics.fmean(other):+.2f} points against {other_model} ({seeds}): "
                f"no interval yet, {leaderboard.why_no_interval(own, other)}.")
    return (f"{w['diff']:+.2f} points against {other_model} ({seeds}; 95% interval [{w['low']:+.2f}, "
            f"{w['high']:+.2f}], Welch, p {leaderboard.p_value(w['p'])}): {leaderboard.reading(w)}.")


def against_controls(picked: tuple[dict, dict, dict] | None, costs: dict) -> list[str]:
    """For a ConvTwist checkpoint picked from a leaderboard arm (``picked``, from `picked_arms`): a sentence per
    compute-matched control (``leaderboard.CONTROLS`` after the same-recipe twin) whose arm with the same options has
    runs in its results file, giving what ConvTwist costs against it (``costs``, from `OnnxBench.costs`) and the
    difference of the arms."""
    if not picked:
        return []
    config, _, by_arm = picked
    model, options = config["recipe"]["model"], arm_options_of(config)
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


def verdict_lines(name: str, info: dict, replicates: str = "docs/recipe-history.md's replicates",
             arms: tuple | None = None) -> str | None:
    """Does ConvTwist checkpoint ``name`` beat its baseline (None until both are evaluated): over the seeds of their
    leaderboard arms (``arms``, from ``leaderboard_arms``) where it was picked from one, else checkpoint against
    checkpoint."""
    base = baseline_of(name)
    if base and arms:
        _, own, base_top1, _ = arms
        if not own or not base_top1:
            return None
        return _arms_compared(own, base_top1, base.split('.')[0])
    d, gap = difference_to_baseline(name, info)
    if d is None:
        return None
    if gap:
        return f"no verdict, it and {base} were trained with different recipes ({', '.join(gap)}); retrain one of them."
    return (f"{'ConvTwist wins' if d > 0 else 'ConvTwist loses' if d < 0 else 'a tie'} by {abs(d):.2f} points "
            f"against {base}; one seed each ({replicates} show how far another seed moves a run).")


def lr_from_sentence(results_dir: Path) -> str:
    """Which protocols' arms take their rate from the probes, named from the results files there are."""
    others = sorted(f.stem for f in Path(results_dir).glob("*.jsonl") if f.stem != PROBED_PROTOCOL)
    if not others:
        return ""
    return (f" The arms of {', '.join(f'`{o}`' for o in others)} train at the peak lr their model's "
            f"`{PROBED_PROTOCOL}` probes chose (`--lr-from`).")


def leaderboard_sections(results_dir: Path, costs: dict | None = None) -> list[str]:
    # the protocol whose probes set every arm's lr leads; the others follow by name
    files = sorted(Path(results_dir).glob("*.jsonl"), key=lambda f: (f.stem != PROBED_PROTOCOL, f.name))
    if not files:
        return ["No leaderboard run has finished yet: `convtwist-zoo leaderboard run` fills `results/leaderboard/`."]
    out, costs = [], {} if costs is None else costs
    for f in files:
        out += [leaderboard.render_table(f, costs), ""]
        if (sweeps := robustness_results(f)).is_file():
            out += [render_robustness(sweeps), ""]
    return out
