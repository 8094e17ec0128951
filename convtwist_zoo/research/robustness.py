"""Robustness over seeds: the rotation and scale sweep of every leaderboard run whose weights are at hand, and
ConvTwist minus its baselines in accuracy kept, with Welch intervals.

A published checkpoint is one seed, and its robustness gap to its baseline moves by points from seed to seed. So each
run of an arm is swept (fp32, the `robustness` command's rotations and scales) and gives one row of
``results/leaderboard/robustness/<protocol>.jsonl`` (for ``results/leaderboard/<protocol>.jsonl``): model, options,
seed, lr, the sha256 of the run's weights and the sweep. Arms are compared by retention: top-1 under rotation (or
rescaling) as a % of the run's own clean top-1, averaged over the angles (or scales), so a higher starting point does
not count as robustness.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from ..errors import InputError
from ..run_config import read_run_config
from .results import append_row, arm_options, read_rows
from .statistics import difference_cells, mean_std
from .tables import CONTROLS, arms

__all__ = ["robustness_results", "retained", "retention", "sweep_arms", "render_robustness"]

KINDS = ("rotation", "scale")


def robustness_results(results: str | os.PathLike) -> Path:
    """Where the sweeps of a leaderboard results file go: ``results/leaderboard/X.jsonl`` ->
    ``results/leaderboard/robustness/X.jsonl`` (a sub-folder, so the results folder's tables do not read it)."""
    results = Path(results)
    return results.parent / "robustness" / results.name


def retained(sweep: list[dict]) -> dict[tuple, float]:
    """Top-1 under each shifted setting as a % of the clean (rotation 0) top-1.

    Args:
        sweep: rows ``{"kind", "value", "top1"}`` of `evaluate.robustness_sweep`.

    Returns:
        ``{(kind, value): %}`` for every row but the clean one.

    Raises:
        ValueError: the sweep has no clean row, or its top-1 is 0.

    Example:
        >>> retained([{"kind": "rotation", "value": 0, "top1": 80.0}, {"kind": "rotation", "value": 30, "top1": 60.0}])
        {('rotation', 30): 75.0}
    """
    clean = _clean_top1(sweep)
    if not clean:
        raise InputError("a robustness sweep needs its clean row (rotation 0) with a top-1 above 0")
    return {(r["kind"], r["value"]): 100 * r["top1"] / clean for r in sweep
            if (r["kind"], r["value"]) != ("rotation", 0)}


def _clean_top1(sweep: list[dict]) -> float | None:
    return next((r["top1"] for r in sweep if (r["kind"], r["value"]) == ("rotation", 0)), None)


def _kind_means(kept: dict[tuple, float]) -> dict[str, float]:
    """`retained`'s percentages averaged per kind (over the angles, and over the scales)."""
    means = {}
    for kind in KINDS:
        values = [pct for (k, _), pct in kept.items() if k == kind]
        if values:
            means[kind] = statistics.fmean(values)
    return means


def retention(sweep: list[dict]) -> dict[str, float]:
    """Mean top-1 kept under rotation and under rescaling: `retained` averaged over the angles, and over the scales.

    Args:
        sweep: rows ``{"kind", "value", "top1"}`` of `evaluate.robustness_sweep`.

    Returns:
        ``{"rotation": %, "scale": %}`` for the kinds the sweep holds.

    Raises:
        ValueError: the sweep has no clean row, or its top-1 is 0.

    Example:
        >>> retention([{"kind": "rotation", "value": 0, "top1": 80.0}, {"kind": "rotation", "value": 30, "top1": 60.0},
        ...            {"kind": "scale", "value": 0.75, "top1": 72.0}])
        {'rotation': 75.0, 'scale': 90.0}
    """
    return _kind_means(retained(sweep))


def sweep_arms(results: str | os.PathLike, runs_dir: str | os.PathLike, models, options: str | None = None,
               data_dir: str | None = None, workers: int = 1, progress: bool = True, log=print) -> list[dict]:
    """Sweep every run of the named models' arms in ``results`` that `robustness_results` lacks, one at a time, seed
    by seed in the order of ``models``.

    A run counts only where its folder still holds the weights its row's sha256 names; the others are named and
    skipped (their rows stay in the leaderboard table, which needs no weights).

    Args:
        results: a leaderboard results file.
        runs_dir: the runner's runs folder (``<runs_dir>/<protocol>/<run>``).
        models: model names whose arms are swept.
        options: only the arms with these options (`arm_options`, e.g. ``"maxblur=true, fp32 training"``);
            None: every arm of those models.
        data_dir: where the dataset archives are (else ``$CONVTWIST_DATA``).
        workers, progress, log: DataLoader workers, progress bars, where one line per run goes.

    Returns:
        The rows appended by this call.

    Example:
        >>> sweep_arms("results/leaderboard/imagewoof-128px-5ep.jsonl", "~/.cache/convtwist-zoo/runs/leaderboard",
        ...            ["xresnet18", "convtwist_xresnet18"], "maxblur=true, fp32 training")  # doctest: +SKIP
    """
    from ..data import val_split
    from ..evaluate import robustness_sweep
    from ..models._builder import create_model
    from ..files.hashing import sha256_file

    results = Path(results)
    rows = read_rows(results)
    if not rows:
        raise FileNotFoundError(f"no finished runs in {results}: `convtwist-zoo leaderboard run` writes them")
    out = robustness_results(results)
    runs_dir = Path(runs_dir).expanduser() / results.stem
    picked = sorted((r for (model, opts), group in arms(rows).items() if model in models
                     and (options is None or opts == options) for r in group),
                    key=lambda r: (r["seed"], list(models).index(r["model"])))  # seed by seed: pairs fill in together
    if not picked:
        raise InputError(f"{results} has no arm of {', '.join(models)}"
                         f"{' with options ' + repr(options) if options is not None else ''}")
    swept = {r["weights_sha256"] for r in read_rows(out)}
    new_rows = []
    for row in picked:
        if row["weights_sha256"] in swept:
            continue
        run_dir = runs_dir / row["run"]
        weights = run_dir / "model.safetensors"
        if not weights.is_file() or sha256_file(weights) != row["weights_sha256"]:
            log(f"{row['run']}: the weights of this row are not in {run_dir}; skipped")
            continue
        config = read_run_config(run_dir, required=("architecture", "class_ids", "mean", "std", "crop_pct"))
        dataset = row["dataset"]
        val_dir = val_split(dataset, data_dir)
        model = create_model(config["architecture"], pretrained=Path(run_dir)).eval()
        sweep = robustness_sweep(model, val_dir, config["class_ids"], row["image_size"], config["mean"],
                                 config["std"], config["crop_pct"], amp=False, workers=workers, progress=progress)
        new = {"model": row["model"], "model_args": row.get("model_args", ""), "options": arm_options(row),
               "seed": row["seed"], "lr": row["lr"], "dataset": dataset, "image_size": row["image_size"],
               "epochs": row["epochs"], "weights_sha256": row["weights_sha256"], "run": row["run"], "amp": False,
               "sweep": sweep}
        append_row(out, new)
        swept.add(row["weights_sha256"])
        new_rows.append(new)
        kept = retention(sweep)
        log(f"{row['run']}: kept {kept['rotation']:.1f}% under rotation, {kept['scale']:.1f}% under scale -> {out}")
    return new_rows


def render_robustness(path: str | os.PathLike) -> str:
    """Markdown for one sweeps file: each arm's retention over its seeds, then ConvTwist minus its controls.

    Args:
        path: a `robustness_results` file.

    Returns:
        The section's markdown (a line saying so where the file holds no rows).

    Example:
        >>> print(render_robustness("results/leaderboard/robustness/imagewoof-128px-5ep.jsonl"))  # doctest: +SKIP
    """
    path = Path(path)
    rows = read_rows(path)
    if not rows:
        return f"No robustness sweep of a leaderboard run in {path} yet."
    arms: dict[tuple, list[dict]] = {}
    for r in rows:
        arms.setdefault((r["model"], r["options"]), []).append(r)
    first = rows[0]
    shifted = [(s["kind"], s["value"]) for s in first["sweep"] if (s["kind"], s["value"]) != ("rotation", 0)]
    settings = "; ".join(f"{kind} {', '.join(f'{v:g}' for k, v in shifted if k == kind)}" for kind in KINDS)
    lines = [f"**Robustness over seeds, {first['dataset']}, {first['image_size']}px, {first['epochs']} epochs** "
             f"(`{path.name}`): each run's top-1 under rotation and rescaling ({settings}) as a % of its own clean "
             "top-1, averaged over the angles or the scales (fp32 evaluation of each run's final weights); mean ± "
             "sample std over the seeds whose weights were swept.", "",
             "| model | options | n | seeds | clean top-1 | kept under rotation % | kept under scale % |",
             "|---|---|---|---|---|---|---|"]
    kept: dict[tuple, dict[str, list[float]]] = {}
    per_setting = []
    for (model, options), group in sorted(arms.items()):
        group = sorted(group, key=lambda r: r["seed"])
        runs = [retained(r["sweep"]) for r in group]
        per_setting.append(f"| {model} | {options or '–'} | "
                           + " | ".join(f"{statistics.fmean(k[setting] for k in runs):.1f}" for setting in shifted)
                           + " |")
        per_run = [_kind_means(k) for k in runs]
        kept[(model, options)] = {kind: [k[kind] for k in per_run] for kind in KINDS}
        clean = [_clean_top1(r["sweep"]) for r in group]
        lines.append(f"| {model} | {options or '–'} | {len(group)} | {', '.join(str(r['seed']) for r in group)} | "
                     f"{mean_std(clean)} | {mean_std(kept[(model, options)]['rotation'])} | "
                     f"{mean_std(kept[(model, options)]['scale'])} |")
    diffs = []
    for (model, options), mine in sorted(kept.items()):
        for control in CONTROLS.get(model, ()):
            theirs = kept.get((control, options))
            if theirs is None:
                continue
            for kind in KINDS:
                diffs.append(f"| {model} − {control} | {options or '–'} | {kind} | "
                             f"{difference_cells(mine[kind], theirs[kind])} |")
    if diffs:
        lines += ["", "| difference in accuracy kept | options | under | points | 95% CI (Welch) | p | reading |",
                  "|---|---|---|---|---|---|---|", *diffs]
    lines += ["", "Where it is kept or lost: each setting's % of the clean top-1, mean over the same seeds.", "",
              "| model | options | " + " | ".join(f"{kind} {v:g}" for kind, v in shifted) + " |",
              "|---|---|" + "---|" * len(shifted), *per_setting]
    return "\n".join(lines)
