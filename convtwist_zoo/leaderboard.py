"""The fast.ai leaderboard protocol, several seeds per model: a resumable runner and the results table.

One protocol (dataset, image size, epochs) is one results file, ``results/leaderboard/<dataset>-<size>px-<E>ep.jsonl``,
one JSON row per finished run: model, seed, learning rate, top-1/top-5 (fp32 evaluation at the image size), the
full recipe, the machine, train seconds and the sha256 of the final weights. Rows are appended atomically as runs
finish, so the results outlive the run folders (which stay outside the work tree).

`run_protocol` trains one model and seed after another (seeds outer, so pairs fill in together), skips what the
results file already holds, resumes a killed run from its ``last.pt`` and holds a lock so that two runners never share
the machine. `render_table` turns the rows into mean ± std, min and max per model, and ConvTwist minus its
same-recipe baseline and minus its compute-matched control, each with a Welch 95% confidence interval and p-value.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

from .extras import require
from .locks import BusyError, hold_lock
from .run_config import read_run_config
from .run_identity import describe_differences, differences, protocol_differences, row_identity

__all__ = ["protocol_name", "read_rows", "append_row", "run_protocol", "render_table", "welch", "why_no_interval",
           "difference_cells", "p_value", "arms", "mean_std", "probe_lrs", "CONTROLS", "PROBE_LRS", "REFERENCES",
           "DATASET_CAVEATS", "LeaderboardBusyError", "ResultsFileError", "duplicate_of", "protocol_mismatch",
           "probe_grid", "probe_plan", "probe_choice", "PROBE_STEP", "PROBE_SEED", "PROBE_PROTOCOL", "is_probe",
           "unique_rows", "holm"]

# The peak learning rates every arm is probed at first (one seed each), and the factor of the one step the grid then
# takes past the edge the better of them sits at (`probe_grid`); the grid's best point is the arm's rate.
PROBE_LRS = (4e-3, 8e-3)
PROBE_STEP = 2.0
# The probes' seed: an arm's reported runs are the other seeds, so a probe picked for scoring high never counts.
PROBE_SEED = 0
# The learning curve's validation images per epoch (a fixed, class-balanced subset: `data.class_balanced_subset`); a
# row's top-1 is the final weights' on the whole validation split, in fp32.
LEARNING_CURVE_IMAGES = 1000
# The protocol the probes run on (dataset, image size, epochs): every other protocol takes its rates from it.
PROBE_PROTOCOL = ("imagewoof", 128, 5)

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


LeaderboardBusyError = BusyError  # another runner holds the runs folder


def protocol_name(dataset: str, image_size: int, epochs: int) -> str:
    """``imagewoof-128px-5ep``: the results file's stem and the runs' parent folder (a folder dataset: its name)."""
    from .data import DATASETS
    name = dataset if dataset in DATASETS else Path(dataset).resolve().name  # "." is a folder too
    return f"{name}-{image_size}px-{epochs}ep"


class ResultsFileError(ValueError):
    """A results file (or a row for it) that the tables cannot count: unreadable, a duplicate, another protocol."""


def _check_row(row, where: str) -> None:
    """Refuse a row the tables cannot read, naming it (``where``: ``file:line``)."""
    if not isinstance(row, dict):
        raise ResultsFileError(f"{where} is not a JSON object; fix or remove that line")
    if "recipe" in row or "top1" in row:  # a leaderboard run's row (robustness rows have their own fields)
        missing = [k for k in ("model", "seed", "lr", "top1", "recipe") if k not in row]
        if missing:
            raise ResultsFileError(f"{where} lacks {', '.join(missing)}; fix or remove that line")
        top1 = row["top1"]
        if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not math.isfinite(top1):
            raise ResultsFileError(f"{where}: top1 {top1!r} is not a finite number; fix or remove that line")
        if not isinstance(row["recipe"], dict):
            raise ResultsFileError(f"{where}: recipe is not a JSON object; fix or remove that line")


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a results file (none when it does not exist yet); a row that is not valid JSON, or a run's row
    without its model, seed, lr, finite top-1 or recipe, is refused with its file and line."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ResultsFileError(f"{path}:{n} is not a JSON row ({e}); fix or remove that line") from e
            _check_row(row, f"{path}:{n}")
            rows.append(row)
    return rows


def _results_lock(path: Path):
    """One writer at a time per results file: read, check and rewrite happen under it, so no row is lost."""
    return hold_lock(path.parent / f".{path.name}.lock", wait=True)


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Add one row to a results file atomically (the file is rewritten beside itself, then renamed) under the file's
    lock, so that concurrent writers never drop each other's rows. A run's row (one with a recipe) is refused where
    the file already holds the same run (`duplicate_of`) or runs of another protocol (`protocol_mismatch`)."""
    from .atomic import write_text_atomic
    path = Path(path)
    with _results_lock(path):
        rows = read_rows(path)
        if "recipe" in row:
            if (same := duplicate_of(rows, row)) is not None:
                raise ResultsFileError(f"{path} already holds this run ({same['model']} seed {same['seed']}, lr "
                                       f"{same['lr']:g}, top-1 {same['top1']}): a run is counted once; nothing added")
            if why := protocol_mismatch(rows, row, path):
                raise ResultsFileError(why + "; nothing added")
        old = path.read_text() if path.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        write_text_atomic(path, old + json.dumps(row, sort_keys=True) + "\n")


def duplicate_of(rows: list[dict], row: dict) -> dict | None:
    """The first of ``rows`` that is the same run as ``row`` (the same whole identity, `run_identity`), or None."""
    identity = row_identity(row)
    return next((r for r in rows if "recipe" in r and not differences(row_identity(r), identity)), None)


def protocol_mismatch(rows: list[dict], row: dict, path) -> str | None:
    """Why ``row`` cannot join the runs in ``rows`` (another protocol: epochs, size, data, label smoothing...), or
    None. A results file holds one protocol, so that no table averages runs of two."""
    for n, other in enumerate(rows, start=1):
        if "recipe" in other and (diffs := protocol_differences(row_identity(other), row_identity(row))):
            return (f"{path} holds runs of another protocol than this one (" +
                    describe_differences(diffs, f"its row {n}", "this run") +
                    "); give this protocol a results file of its own (--results)")
    return None


def _run_name(model: str, model_args: str, lr: float, seed: int, amp: bool = True) -> str:
    args = "+" + model_args.replace(",", "+").replace("=", "-") if model_args else ""
    return f"{model}{args}-lr{lr:g}{'' if amp else '-fp32'}-seed{seed}"


def _exclusive(runs_dir: Path):
    """One runner per runs folder: two trainings on the same cores would each run at half speed or worse."""
    return hold_lock(runs_dir / ".leaderboard.lock", wait=False,
                     busy=f"another leaderboard runner (pid {{pid}}) is using {runs_dir}; wait for it to finish or "
                          "stop it first")


def _final_row(run_dir: Path, cfg, image_size: int, workers: int, progress: bool) -> dict:
    """Evaluate a finished run's final weights in fp32 at ``image_size`` and build its results row."""
    import torch
    from torch.utils.data import DataLoader

    from . import data as data_lib
    from .evaluate import evaluate
    from .hub import sha256_file
    from .factory import create_model
    from .host import ActiveClock
    from .transforms import eval_transform

    config = read_run_config(run_dir, required=("architecture", "recipe"))
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    timed = bool(history) and all("paused_seconds" in h for h in history)  # epoch times with pauses left out
    model = create_model(config["architecture"], pretrained=Path(run_dir)).eval()
    _, val, class_ids, _ = data_lib.build_datasets(cfg.data, cfg.data_dir, 0)
    val.transform = eval_transform(image_size, crop_pct=cfg.crop_pct)
    loader = DataLoader(val, batch_size=100, num_workers=workers)
    with ActiveClock() as clock:
        result = evaluate(model, loader, len(class_ids), torch.device("cpu"), amp=False, progress=progress)
    return {"model": cfg.model, "model_args": cfg.model_args, "dataset": cfg.data, "image_size": image_size,
            "epochs": cfg.epochs, "seed": cfg.seed, "lr": cfg.lr, "top1": round(result["top1"], 4),
            "top5": round(result["top5"], 4), "top1_train_log": history[-1]["top1"] if history else None,
            "recipe": config["recipe"], "trained_on": config.get("trained_on"),
            "train_seconds": round(sum(h["seconds"] for h in history), 1),
            # seconds the run sat stopped (Ctrl-Z, kill -STOP), left out of train_seconds; None: not recorded
            "paused_seconds": round(sum(h["paused_seconds"] for h in history), 1) if timed else None,
            "train_images_per_s": round(sum(h["samples_per_s"] * h["seconds"] for h in history)
                                        / sum(h["seconds"] for h in history), 2) if timed else None,
            # where the run's time went besides the train steps (None: a run older than these records)
            **{key: round(sum(h[key] for h in history), 1) if all(key in h for h in history) else None
               for key in ("data_wait_seconds", "eval_seconds")},
            "final_eval_seconds": round(clock.seconds(), 1),
            "weights_sha256": sha256_file(run_dir / "model.safetensors"), "run": run_dir.name,
            **({"provenance": config["provenance"]} if config.get("provenance") else {})}


def _peak_lrs(models, lr: dict | float) -> dict[str, float]:
    lrs = {m: float(lr[m]) for m in models if m in lr} if isinstance(lr, dict) else {m: float(lr) for m in models}
    if len(lrs) < len(models):
        raise ValueError(f"no peak lr for {', '.join(m for m in models if m not in lrs)}: give one rate for every "
                         "model, or one per model")
    return lrs


def check_protocol(models, dataset: str, epochs: int, lr: dict | float, model_args: str = "",
                   **train_kwargs) -> dict[str, float]:
    """Each model's peak learning rate, once every knob and each model's options have been checked: a typo fails
    before the first run, not hours into a queue.

    Args:
        models, dataset, epochs, lr, model_args: as for `run_protocol`.
        **train_kwargs: other `TrainConfig` fields (``image_size``, ``amp``, ``batch_size``...).

    Returns:
        ``{model: lr}``.

    Raises:
        ValueError: a knob out of range, an option a model does not take, or a model without a rate.

    Example:
        >>> check_protocol(["xresnet18", "convtwist_xresnet18"], "imagewoof", 5, 8e-3, "maxblur=true")
        {'xresnet18': 0.008, 'convtwist_xresnet18': 0.008}
    """
    from .factory import create_model
    from .registry import parse_model_args
    from .training import TrainConfig

    lrs = _peak_lrs(models, lr)
    for model in models:
        TrainConfig(model=model, model_args=model_args, data=dataset, epochs=epochs, lr=lrs[model],
                    **train_kwargs).validate()
        create_model(model, **parse_model_args(model_args))
    return lrs


def run_protocol(models, dataset: str, epochs: int, seeds, runs_dir: str | os.PathLike,
                 results: str | os.PathLike, lr: dict | float = 4e-3, model_args: str = "", image_size: int = 128,
                 data_dir: str | None = None, workers: int = 1, progress: bool = True, log=print,
                 checked: bool = False, time_matched_to: dict | None = None, **train_kwargs):
    """Train and evaluate every (model, seed) of one protocol that ``results`` lacks, one at a time.

    Args:
        models: model names (``xresnet50``, ``convtwist_xresnet50``...).
        dataset: ``imagewoof``, ``imagenette`` or a folder.
        epochs: epochs per run.
        seeds: the seeds to run (an iterable of ints).
        runs_dir: where run folders go (``<protocol>/<model>-lr<lr>-seed<k>``); keep it outside the work tree.
        results: the results file rows are appended to.
        lr: one peak learning rate, or ``{model: lr}``.
        model_args: builder options for every model (``"maxblur=true"``), part of a row's identity.
        image_size: training and evaluation size.
        data_dir: where the dataset archives are (else ``$CONVTWIST_DATA``).
        workers: DataLoader workers.
        progress: progress bars.
        log: where one line per run goes.
        checked: the caller has already passed these arguments through `check_protocol` (which builds every
            model once), so it is not run again.
        time_matched_to: ``{"model": M, "epochs": E}``: these runs are the time-matched control of M at E epochs
            (their epochs take M's E epochs' step time); recorded in each row, where M's table finds them.
        **train_kwargs: other `TrainConfig` fields, the same for every run.

    Returns:
        The rows appended by this call.

    Example:
        >>> run_protocol(["xresnet18", "convtwist_xresnet18"], "imagewoof", 5, range(5),
        ...              "~/.cache/convtwist-zoo/runs/leaderboard", "results/leaderboard/imagewoof-128px-5ep.jsonl")
    """
    from dataclasses import asdict

    from .data import dataset_sha256
    from .run_identity import recipe_of
    from .training import TrainConfig, train

    runs_dir, results = Path(runs_dir).expanduser(), Path(results)
    lrs = _peak_lrs(models, lr) if checked else check_protocol(
        models, dataset, epochs, lr, model_args, image_size=image_size, data_dir=data_dir, workers=workers,
        progress=progress, **train_kwargs)
    data_sha256 = dataset_sha256(dataset, data_dir)
    amp = train_kwargs.get("amp", True)
    train_kwargs.setdefault("val_subset", LEARNING_CURVE_IMAGES)

    def planned(model, seed):
        cfg = TrainConfig(model=model, model_args=model_args, data=dataset, data_dir=data_dir, epochs=epochs,
                          image_size=image_size, seed=seed, lr=lrs[model], workers=workers, progress=progress,
                          **train_kwargs)
        cfg.out = str(runs_dir / protocol_name(dataset, image_size, epochs) / _run_name(model, model_args, cfg.lr,
                                                                                        seed, amp))
        row = {"recipe": recipe_of(asdict(cfg)), "provenance": {"data_sha256": data_sha256}}
        return cfg, row

    seeds = list(seeds)
    for model in models:  # another protocol's file fails now, not after the first run's hours
        if why := protocol_mismatch(read_rows(results), planned(model, seeds[0] if seeds else 0)[1], results):
            raise ResultsFileError(why)
    new_rows = []
    with _exclusive(runs_dir):
        for seed in seeds:
            for model in models:
                cfg, intended = planned(model, seed)
                if duplicate_of(read_rows(results), intended) is not None:
                    continue  # this whole recipe has its row already
                run_dir = Path(cfg.out)
                cfg.resume = (run_dir / "last.pt").exists()
                log(f"{run_dir.name}: {'resuming' if cfg.resume else 'training'} ({dataset}, {epochs} epochs)")
                if (run_dir / "model.safetensors").exists():
                    _check_finished_run(run_dir, intended)
                else:
                    train(cfg)
                row = _final_row(run_dir, cfg, image_size, workers, progress)
                if time_matched_to:
                    row["time_matched_to"] = time_matched_to
                append_row(results, row)
                new_rows.append(row)
                log(f"{run_dir.name}: top-1 {row['top1']:.2f}% (fp32, {image_size}px) -> {results}")
    return new_rows


def _check_finished_run(run_dir: Path, intended: dict) -> None:
    """A finished run folder's weights count for a row only where its config.json records the intended recipe."""
    config = read_run_config(run_dir, required=("architecture", "recipe"))
    recorded = {"recipe": config["recipe"], "provenance": config.get("provenance")}
    if diffs := differences(row_identity(recorded), row_identity(intended)):
        raise ResultsFileError(f"{run_dir} holds a finished run of another recipe (" +
                               describe_differences(diffs, "its config.json", "this protocol") +
                               "); move it away or point --runs elsewhere")


# ---------------------------------------------------------------------------------------------------- statistics
def welch(a: list[float], b: list[float]) -> dict | None:
    """Mean of ``a`` minus mean of ``b`` with Welch's 95% confidence interval and two-sided p-value, or None where
    no interval exists (`why_no_interval` says why)."""
    if why_no_interval(a, b):
        return None
    stats = require("scipy.stats")
    test = stats.ttest_ind(a, b, equal_var=False)
    low, high = test.confidence_interval(0.95)
    return {"diff": statistics.fmean(a) - statistics.fmean(b), "low": float(low), "high": float(high),
            "p": float(test.pvalue)}


def why_no_interval(a: list[float], b: list[float]) -> str | None:
    """Why two arms' runs give no Welch interval (``"one run on a side"``, ``"no spread on a side (its runs all
    scored alike)"``), or None when they give one. A side whose runs all scored alike has a sample variance of 0,
    which no arm's noise really is: the interval would count the other side's spread only and come out too narrow
    (with both sides alike, 0 wide)."""
    if len(a) < 2 or len(b) < 2:
        return "one run on a side"
    if statistics.stdev(a) == 0 or statistics.stdev(b) == 0:
        return "no spread on a side (its runs all scored alike)"
    return None


def reading(w: dict) -> str:
    """What a `welch` result says of ConvTwist minus its control, in words."""
    return ("within noise (the interval holds 0)" if w["low"] <= 0 <= w["high"] else
            "ConvTwist ahead" if w["low"] > 0 else "ConvTwist behind")


def p_value(p: float) -> str:
    """A p-value to three places: ``"0.010"``, or ``"< 0.001"`` where those places would read 0."""
    return "< 0.001" if p < 0.0005 else f"{p:.3f}"


def difference_cells(a: list[float], b: list[float]) -> str:
    """The cells of one markdown difference row, mean of ``a`` minus mean of ``b``: points, 95% CI (Welch), p and
    reading, or the gap with why there is no interval.

    Args:
        a: the ConvTwist arm's values, one per seed.
        b: its control's values.

    Returns:
        ``"+1.50 | [+0.20, +2.80] | 0.031 | ConvTwist ahead"`` (no leading or trailing ``|``).

    Example:
        >>> difference_cells([75.0], [74.0])
        '+1.00 | – | – | one run on a side: no interval'
    """
    w = welch(a, b)
    if w is None:
        return f"{statistics.fmean(a) - statistics.fmean(b):+.2f} | – | – | {why_no_interval(a, b)}: no interval"
    return f"{w['diff']:+.2f} | [{w['low']:+.2f}, {w['high']:+.2f}] | {p_value(w['p'])} | {reading(w)}"


def mean_std(values: list[float]) -> str:
    """``"64.88"`` for one run, ``"64.88 ± 0.31"`` (sample std) for several."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def _probe_results(rows: list[dict], model: str, model_args: str) -> dict[float, float]:
    """``{lr: top-1}`` of a model's probes (seed 0, bf16) among ``rows``."""
    return {float(r["lr"]): r["top1"] for r in rows
            if r["model"] == model and arm_options(r) == model_args and r["seed"] == PROBE_SEED}


def _best_lr(found: dict[float, float]) -> float:
    """The rate whose probe scored the higher top-1 (ties: the lower rate)."""
    return max(found, key=lambda lr: (found[lr], -lr))


def probe_grid(found: dict[float, float]) -> tuple[float, ...]:
    """The rates a model is probed at, given the probes it has (``{lr: top-1}``): `PROBE_LRS`, and once both are in,
    one step (a factor `PROBE_STEP`) past the edge the better of them sits at. Every model follows this one
    procedure; its rate is then the best of the grid's points, interior unless the extension won too.

    Example:
        >>> probe_grid({4e-3: 70.0, 8e-3: 72.0})
        (0.004, 0.008, 0.016)
        >>> probe_grid({4e-3: 75.0, 8e-3: 73.0})
        (0.002, 0.004, 0.008)
    """
    grid = tuple(PROBE_LRS)
    if not all(lr in found for lr in grid):
        return grid
    best = _best_lr({lr: found[lr] for lr in grid})
    edge = max(grid) * PROBE_STEP if best == max(grid) else min(grid) / PROBE_STEP
    return tuple(sorted({*grid, round(edge, 12)}))


def probe_plan(path: str | os.PathLike, model: str, model_args: str = "") -> list[float]:
    """The probe rates ``model`` still needs in the results file ``path``, in the order to run them (`probe_grid`)."""
    found = _probe_results(read_rows(path), model, model_args)
    return [lr for lr in probe_grid(found) if lr not in found]


def probe_choice(found: dict[float, float]) -> dict:
    """A model's probes read together: ``{"lr": chosen, "grid": rates, "interior": bool}``; the grid must be complete
    (`probe_grid`)."""
    grid = probe_grid(found)
    lr = _best_lr({g: found[g] for g in grid})
    return {"lr": lr, "grid": grid, "interior": min(grid) < lr < max(grid)}


def probe_lrs(path: str | os.PathLike, models, model_args: str = "") -> dict[str, float]:
    """Each model's peak learning rate from its one-seed probes in ``path``: the best of its `probe_grid`. The
    probes train the recipe, in bf16, at seed `PROBE_SEED`, which no arm reports; an arm trained in fp32 takes its
    bf16 arm's rate, so that the two differ in precision alone.

    Args:
        path: a results file holding the probes.
        models: model names.
        model_args: the architecture options the probes were run with.

    Returns:
        ``{model: lr}``.

    Raises:
        FileNotFoundError: no such results file.
        ValueError: a model lacks a probe of its grid; the message names the runs to make.

    Example:
        >>> probe_lrs("results/leaderboard/imagewoof-128px-5ep.jsonl", ["xresnet18"], "maxblur=true")  # doctest: +SKIP
        {'xresnet18': 0.016}
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"--lr-from {path}: no such results file; give the results file that holds the lr "
                                "probes (convtwist-zoo leaderboard run --probe writes them)")
    rows = read_rows(path)
    chosen = {}
    for model in models:  # bf16 rows only: an fp32 row's options end in "fp32 training"
        found = _probe_results(rows, model, model_args)
        missing = [lr for lr in probe_grid(found) if lr not in found]
        if missing:
            raise ValueError(f"{path} has no probe of {model}{' ' + model_args if model_args else ''} at lr "
                             f"{', '.join(f'{lr:g}' for lr in missing)}; run the probes first: convtwist-zoo "
                             f"leaderboard run --models {model} --probe"
                             f"{' --model-args ' + model_args if model_args else ''} "
                             f"--results {path} (and the same --data and --epochs)")
        chosen[model] = probe_choice(found)["lr"]
    return chosen


def options_of(model_args: str, amp: bool) -> str:
    """An arm's options from its architecture options and precision: ``model_args``, plus ``fp32 training`` for a run
    trained without the recipe's bf16 autocast (``"maxblur=true"``, ``"maxblur=true, fp32 training"``)."""
    if amp:
        return model_args
    return f"{model_args}, fp32 training" if model_args else "fp32 training"


def arm_options(row: dict) -> str:
    """What sets a row's arm apart besides its model and lr (`options_of` its options and precision)."""
    return options_of(row.get("model_args", ""), row["recipe"].get("amp", True))


def is_probe(row: dict) -> bool:
    """Whether a row is an lr probe: the probe seed of a bf16 run on the protocol the probes run on
    (`PROBE_PROTOCOL`). A probe chooses its arm's rate and is never one of the arm's reported runs."""
    return ((row.get("dataset"), row.get("image_size"), row.get("epochs")) == PROBE_PROTOCOL
            and row["seed"] == PROBE_SEED and row["recipe"].get("amp", True))


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


def unique_rows(rows: list[dict]) -> list[dict]:
    """``rows`` with each run once: a later row of the same identity (`duplicate_of`) is left out."""
    kept: list[dict] = []
    for r in rows:
        if duplicate_of(kept, r) is None:
            kept.append(r)
    return kept


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (one family of comparisons), in their order.

    Example:
        >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
        [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


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


def _check_one_protocol(path: Path, rows: list[dict]) -> None:
    """Refuse a results file whose runs are of more than one protocol: no arm averages two."""
    for n, r in enumerate(rows[1:], start=2):
        if diffs := protocol_differences(row_identity(rows[0]), row_identity(r)):
            raise ResultsFileError(f"{path}:{n} is a run of another protocol than {path}:1 (" +
                                   describe_differences(diffs, "line 1", f"line {n}") +
                                   "); move it to a results file of its own")


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
    comparisons = []
    for args, models in by_model.items():
        for twist, controls in CONTROLS.items():
            for control in controls:
                if twist in models and control in models:
                    kind = "same recipe" if control == twist.removeprefix("convtwist_") else "compute-matched"
                    comparisons.append((args, twist, control, kind, models[control]))
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
