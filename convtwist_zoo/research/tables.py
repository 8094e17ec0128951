"""The leaderboard table of a results file: mean ± std, min and max per arm (reported runs only, duplicates counted
once), ConvTwist minus its same-recipe twin and its compute-matched controls with Welch intervals and Holm-adjusted
p, time-matched controls from a sibling file, speeds from one named machine, the probes and what they chose, and
the published figures on the same protocol."""
from __future__ import annotations

import os
from pathlib import Path

import statistics

from .probes import PROBE_LRS, PROBE_SEED, _best_lr, is_probe, probe_choice, probe_grid
from .results import _check_one_protocol, arm_options, read_rows, unique_rows
from .statistics import difference_cells, holm, mean_std, p_value, welch

__all__ = ["CONTROLS", "REFERENCES", "DATASET_CAVEATS", "arms", "same_options_comparisons", "render_table"]


# ConvTwist model -> the plain models it is compared with: its same-recipe twin first, then compute-matched controls.
CONTROLS = {"convtwist_xresnet18": ("xresnet18", "xresnet34"), "convtwist_xresnet34": ("xresnet34",),
            "convtwist_xresnet50": ("xresnet50",)}


# Published figures on the same protocol, for the table's last column (top-1 %, 128px).
REFERENCES = {
    ("imagewoof", 128, 5): [
        ("fast.ai leaderboard, best entry (mean of 5)", "76.61"),
        ("xresnet50 + ConvTwist, Mish, MaxBlurPool, SA (ayasyrev/imagenette_experiments, 3 runs)", "75.13 ± 0.24"),
        ("xresnet50, Mish, MaxBlurPool, SA (ayasyrev/imagenette_experiments, 5 runs)", "73.59 ± 0.85")],
    ("imagewoof", 128, 20): [
        ("fast.ai leaderboard, best entry (mean of 5)", "86.27"),
        ("xresnet50 + ConvTwist, Mish, MaxBlurPool, SA (ayasyrev/imagenette_experiments, 2 runs)", "86.40"),
        ("xresnet50, Mish, MaxBlurPool, SA (ayasyrev/imagenette_experiments, 5 runs)", "85.23 ± 0.62")],
    ("imagenette", 128, 5): [("fast.ai leaderboard, best entry (mean of 5; aspect-kept images)", "85.77")],
    ("imagenette", 128, 20): [("fast.ai leaderboard, best entry (mean of 5; aspect-kept images)", "91.57")],
}


# How a dataset here differs from the one the published figures were measured on, said in its table's first line.
DATASET_CAVEATS = {
    "imagenette": "Imagenette here is a squashed variant (every image squashed to a square, aspect ratio not kept), "
                  "not the leaderboard's aspect-kept images, so its figures below are a guide, not a like-for-like "
                  "comparison",
}


def _probe_choices(rows: list[dict]) -> dict[tuple, dict]:
    """``{(model, options): probe_choice}`` for every arm whose probe grid is complete in ``rows``."""
    found: dict[tuple, dict] = {}
    for r in rows:
        if is_probe(r):
            found.setdefault((r["model"], arm_options(r)), {})[float(r["lr"])] = r["top1"]
    return {arm: probe_choice(f) for arm, f in found.items()
            if all(lr in f for lr in probe_grid(f))}


def arms(rows: list[dict]) -> dict[tuple, list[dict]]:
    """``{(model, options): rows}`` (options: `arm_options`): each model's reported runs (probes left out, a
    duplicated run counted once) at its rate: the best point of its complete probe grid, else the rate with the most
    runs (ties: the better probe, then the lower rate)."""
    rows = unique_rows(rows)
    chosen = _probe_choices(rows)
    probe_top1 = {(r["model"], arm_options(r), float(r["lr"])): r["top1"] for r in rows if is_probe(r)}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if not is_probe(r):
            groups.setdefault((r["model"], arm_options(r), float(r["lr"])), []).append(r)
    best: dict[tuple, tuple] = {}
    for (model, args, lr), group in sorted(groups.items()):
        if (model, args) in chosen and chosen[(model, args)]["lr"] != lr:
            continue
        rank = (len(group), probe_top1.get((model, args, lr), float("-inf")), -lr)
        if (model, args) not in best or rank > best[(model, args)][0]:
            best[(model, args)] = (rank, group)
    return {arm: group for arm, (_, group) in best.items()}


def _machines(row: dict) -> list[str]:
    """The machines that trained a run: each provenance segment's, else the row's ``trained_on``."""
    segments = (row.get("provenance") or {}).get("segments") or []
    names = [s["hardware"] for s in segments if s.get("hardware")]
    return list(dict.fromkeys(names)) or ([row["trained_on"]] if row.get("trained_on") else [])


def _speed_host(by_arm: dict[tuple, list[dict]]) -> str | None:
    """The one machine a table's speeds come from: the one that timed the most arms of the recipe's precision (bf16),
    then the most arms, then the most runs (runs trained wholly there)."""
    arms_on: dict[str, set] = {}
    runs_on: dict[str, int] = {}
    for arm, group in by_arm.items():
        for r in group:
            if r.get("train_images_per_s") and len(machines := _machines(r)) == 1:
                arms_on.setdefault(machines[0], set()).add(arm)
                runs_on[machines[0]] = runs_on.get(machines[0], 0) + 1

    def rank(m):
        return (sum(1 for _, options in arms_on[m] if "fp32 training" not in options), len(arms_on[m]), runs_on[m])
    return max(sorted(arms_on), key=rank) if arms_on else None


def _speed_cell(group: list[dict], host: str | None) -> str:
    """An arm's median train img/s over its runs trained wholly on ``host``, with their n; '–' where it has none."""
    speeds = [r["train_images_per_s"] for r in group if r.get("train_images_per_s") and _machines(r) == [host]]
    return f"{statistics.median(speeds):.1f} ({len(speeds)})" if speeds else "–"


def _seed_list(seeds) -> str:
    return ", ".join(str(s) for s in sorted(seeds))


def _mixed_machines_note(model: str, args: str, group: list[dict]) -> str | None:
    """A footnote where an arm's runs trained on more than one machine, naming which seeds ran where."""
    where: dict[str, list[int]] = {}
    for r in group:
        for m in _machines(r) or ["an unrecorded machine"]:
            where.setdefault(m, []).append(r["seed"])
    if len(where) < 2:
        return None
    return (f"{model}{' (' + args + ')' if args else ''} ran on more than one machine: " +
            "; ".join(f"seeds {_seed_list(s)} on {m}" for m, s in where.items()) + ".")


def _cost_cells(cost: dict | None) -> str:
    return f"{cost['macs']:.2f}x | {cost['ort']:.2f}x" if cost else "– | –"


def _time_matched_rows(path: Path, first: dict) -> list[dict]:
    """Rows beside ``path`` (same dataset and size, other epochs) recorded as the time-matched control of a model of
    this protocol (`run_protocol`'s ``time_matched_to``)."""
    rows = []
    for other in sorted(path.parent.glob(f"{Path(first['dataset']).name}-{first['image_size']}px-*ep.jsonl")):
        if other != path:
            rows += [r for r in read_rows(other)
                     if (r.get("time_matched_to") or {}).get("epochs") == first["epochs"]]
    return rows


def _time_matched_arms(rows: list[dict]) -> dict[tuple, tuple[str, list[float]]]:
    """``{(control, options, epochs): (ConvTwist model it matches, top-1s)}`` from `_time_matched_rows`."""
    by_epochs: dict[int, list[dict]] = {}
    for r in rows:
        by_epochs.setdefault(r["epochs"], []).append(r)
    return {(model, args, epochs): (group[0]["time_matched_to"]["model"], [r["top1"] for r in group])
            for epochs, same in sorted(by_epochs.items()) for (model, args), group in arms(same).items()}


def _probe_lines(rows: list[dict]) -> list[str]:
    """The probes' table: every probe of every arm, the rate chosen and whether it is interior to the grid."""
    probes: dict[tuple, dict] = {}
    reported = set(arms(rows))
    options_probes = []  # an architecture option tried once, or an arm with no reported run yet
    for r in rows:
        if is_probe(r):
            if (r["model"], arm_options(r)) in reported:
                probes.setdefault((r["model"], arm_options(r)), {})[float(r["lr"])] = r["top1"]
            else:
                options_probes.append(r)
    lines = []
    if options_probes:
        lines += ["", "Probes of no reported arm (seed 0; architecture options tried once, or an arm not run yet): "
                  + "; ".join(
            f"{r['model']} {arm_options(r) or 'without options'} at lr {float(r['lr']):g}: {r['top1']:.2f}"
            for r in options_probes) + "."]
    if not probes:
        return lines
    lines += ["", f"Learning-rate probes (seed {PROBE_SEED}, never a reported run): each arm at "
             f"{' and '.join(f'{lr:g}' for lr in PROBE_LRS)}, then one step past the edge the better one sits at; "
             "its rate is the best point of the grid.", "",
             "| model | options | probes (lr: top-1) | chosen lr | where in the grid |", "|---|---|---|---|---|"]
    for (model, args), found in sorted(probes.items()):
        complete = all(lr in found for lr in probe_grid(found))
        if complete:
            choice = probe_choice(found)
            first = _best_lr({lr: found[lr] for lr in PROBE_LRS})
            where = "interior" if choice["interior"] else "at the grid's edge"
            if choice["lr"] != first:
                where += f" (moved from {first:g})"
            chosen = f"{choice['lr']:g}"
        else:
            chosen, where = "–", "grid incomplete: " + ", ".join(f"{lr:g}" for lr in probe_grid(found)
                                                                  if lr not in found) + " to run"
        cells = ", ".join(f"{lr:g}: {t:.2f}" for lr, t in sorted(found.items()))
        lines.append(f"| {model} | {args or '–'} | {cells} | {chosen} | {where} |")
    return lines


def same_options_comparisons(by_model: dict[str, dict[str, list]]) -> list[tuple[str, str, str, str]]:
    """``(options, ConvTwist model, control, kind)`` for every ConvTwist arm beside a control trained with the same
    options: its same-recipe twin, then its compute-matched controls (`CONTROLS`).

    Args:
        by_model: ``{options: {model: its runs' top-1}}``.

    Example:
        >>> same_options_comparisons({"": {"convtwist_xresnet18": [75.0], "xresnet18": [72.0]}})
        [('', 'convtwist_xresnet18', 'xresnet18', 'same recipe')]
    """
    out = []
    for args, models in by_model.items():
        for twist, controls in CONTROLS.items():
            for control in controls:
                if twist in models and control in models:
                    kind = "same recipe" if control == twist.removeprefix("convtwist_") else "compute-matched"
                    out.append((args, twist, control, kind))
    return out


def render_table(path: str | os.PathLike, costs: dict | None = None) -> str:
    """Markdown for one results file: per model, then ConvTwist minus its controls (Welch intervals, Holm-adjusted
    p over the table's comparisons), the lr probes where the file holds them, then published figures.

    Args:
        path: a results file (`run_protocol`'s rows).
        costs: what ConvTwist costs against each control, ``{(twist, control, model_args): {"macs": x, "ort": y}}``
            (multiples of the control's multiply-adds and ONNX Runtime time): two more columns of the difference
            table, '–' where a pair has none. None: no such columns.

    Returns:
        The markdown (a line saying so where the file holds no rows).

    Raises:
        ResultsFileError: the file mixes protocols, or a row is unreadable (named by file and line).

    Example:
        >>> print(render_table("results/leaderboard/imagewoof-128px-5ep.jsonl"))  # doctest: +SKIP
    """
    path = Path(path)
    all_rows = read_rows(path)
    if not all_rows:
        return f"No finished runs in {path} yet."
    _check_one_protocol(path, all_rows)
    rows = unique_rows(all_rows)
    first = rows[0]
    by_arm = arms(rows)
    host = _speed_host(by_arm)
    lines = [f"**{first['dataset']}, {first['image_size']}px, {first['epochs']} epochs** (`{path.name}`): top-1 %, "
             "fp32 evaluation of the final weights; mean ± sample std over seeds"
             + (f"; {DATASET_CAVEATS[first['dataset']]}" if first["dataset"] in DATASET_CAVEATS else "")
             + (f"; train img/s: training speed (bf16 autocast unless the options say fp32), median over the arm's "
                f"runs on {host} (n in brackets; runs on other machines are left out), a machine shared with others "
                "whose speed varies from run to run, so compare costs with the benchmarks' step times, measured in "
                "turns" if host else "") + ".", "",
             "| model | options | peak lr | n | seeds | top-1 | min | max | train img/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    by_model, model_args, notes = {}, {}, []
    for (model, args), group in by_arm.items():
        model_args[args] = group[0].get("model_args", "")
        top1 = [r["top1"] for r in group]
        lines.append(f"| {model} | {args or '–'} | {float(group[0]['lr']):g} | {len(top1)} | "
                     f"{_seed_list(r['seed'] for r in group)} | {mean_std(top1)} | {min(top1):.2f} | "
                     f"{max(top1):.2f} | {_speed_cell(group, host)} |")
        by_model.setdefault(args, {})[model] = top1
        if note := _mixed_machines_note(model, args, group):
            notes.append(note)
    if len(rows) < len(all_rows):
        notes.append(f"{len(all_rows) - len(rows)} duplicated row(s) of the same run counted once.")
    if notes:
        lines += [""] + notes
    comparisons = [(args, twist, control, kind, by_model[args][control])
                   for args, twist, control, kind in same_options_comparisons(by_model)]
    for (control, args, epochs), (twist, control_top1) in _time_matched_arms(_time_matched_rows(path, first)).items():
        if twist in by_model.get(args, {}):
            comparisons.append((args, twist, f"{control} ({epochs} epochs)", "time-matched", control_top1))
    comparisons = [(args, twist, control, kind, by_model[args][twist], theirs,
                    welch(by_model[args][twist], theirs)) for args, twist, control, kind, theirs in comparisons]
    adjusted = iter(holm([w["p"] for *_, w in comparisons if w]))
    diffs = []
    for args, twist, control, kind, ours, theirs, w in comparisons:
        holm_cells = "– | –"
        if w:
            p = next(adjusted)
            holm_cells = f"{p_value(p)} | {'yes' if p < 0.05 else 'no'}"
        cost = "" if costs is None else " | " + _cost_cells(costs.get((twist, control, model_args[args])))
        diffs.append(f"| {twist} − {control} | {args or '–'} | {kind} | "
                     f"{difference_cells(ours, theirs)} | {holm_cells}{cost} |")
    if diffs:
        header = ("| difference | options | control | top-1 points | 95% CI (Welch) | p | reading | Holm p | "
                  "survives |")
        lines += ["", header + (" MACs ratio | ORT time ratio |" if costs is not None else ""),
                  "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if costs is not None else ""), *diffs,
                  "", "Holm p: the p-value adjusted for this table's comparisons together (Holm's step-down); "
                  "survives: below 0.05 after that adjustment."]
        if costs is not None:
            lines += ["", "MACs ratio and ORT time ratio: the ConvTwist model's multiply-adds and ONNX Runtime time "
                      "per image "
                      "(batch 1, 128px, all cores, timed in turns with its control) as multiples of the control's, "
                      "from `python bench/onnx.py` (`bench/results/onnx.json`)."]
    lines += _probe_lines(rows)
    refs = REFERENCES.get((first["dataset"], first["image_size"], first["epochs"]))
    if refs:
        lines += ["", "Published on this protocol: " + "; ".join(f"{name}: {value}%" for name, value in refs) + "."]
    return "\n".join(lines)
