"""The multi-seed runner: trains one model and seed after another (seeds outer, so pairs fill in together), skips a
run whose whole identity already has a row, resumes a killed run from its ``last.pt``, and holds a lock on the runs
folder so that two runners never share the machine. Each finished run becomes a row of its results file."""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from ..errors import InputError
from ..files.locks import BusyError, hold_lock
from ..run_config import read_run_config
from ..training.identity import describe_differences, differences, row_identity
from .results import ResultsFileError, append_row, duplicate_of, protocol_mismatch, protocol_name, read_rows

__all__ = ["REFERENCE_STEPS", "LEARNING_CURVE_IMAGES", "LeaderboardBusyError", "check_protocol", "run_protocol"]


# The learning curve's validation images per epoch (a fixed, class-balanced subset: `data.class_balanced_subset`); a
# row's top-1 is the final weights' on the whole validation split, in fp32.
LEARNING_CURVE_IMAGES = 1000
# Timed reference steps after each epoch (`training.step_timing`): the bound a row's wall time is set against.
REFERENCE_STEPS = 8


LeaderboardBusyError = BusyError  # another runner holds the runs folder


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

    from .. import data as data_lib
    from ..evaluate import evaluate
    from ..files.hashing import sha256_file
    from ..models._builder import create_model
    from ..host import ActiveClock
    from ..data.transforms import eval_transform

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
            **_against_reference(history, clock.seconds()),
            "weights_sha256": sha256_file(run_dir / "model.safetensors"), "run": run_dir.name,
            **({"provenance": config["provenance"]} if config.get("provenance") else {})}


def _against_reference(history: list[dict], final_eval_seconds: float) -> dict:
    """The run's wall time (train steps with their waits for batches, per-epoch evaluations, the final evaluation)
    against the bound its images would take at each epoch's reference step img/s, measured in the run itself; empty
    where an epoch has no reference."""
    if not history or not all("reference_images_per_s" in h and "eval_seconds" in h for h in history):
        return {}
    bound = sum(h["samples_per_s"] * h["seconds"] / h["reference_images_per_s"] for h in history)
    wall = sum(h["seconds"] + h["eval_seconds"] for h in history) + final_eval_seconds
    return {"reference_images_per_s": round(statistics.median(h["reference_images_per_s"] for h in history), 2),
            "reference_bound_seconds": round(bound, 1), "wall_over_reference": round(wall / bound, 3)}


def _peak_lrs(models, lr: dict | float) -> dict[str, float]:
    lrs = {m: float(lr[m]) for m in models if m in lr} if isinstance(lr, dict) else {m: float(lr) for m in models}
    if len(lrs) < len(models):
        raise InputError(f"no peak lr for {', '.join(m for m in models if m not in lrs)}: give one rate for every "
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
    from ..models._builder import create_model
    from ..models._registry import parse_model_args
    from ..training import TrainConfig

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

    from ..data import dataset_sha256
    from ..training.identity import recipe_of
    from ..training import TrainConfig, train

    runs_dir, results = Path(runs_dir).expanduser(), Path(results)
    lrs = _peak_lrs(models, lr) if checked else check_protocol(
        models, dataset, epochs, lr, model_args, image_size=image_size, data_dir=data_dir, workers=workers,
        progress=progress, **train_kwargs)
    data_sha256 = dataset_sha256(dataset, data_dir)
    amp = train_kwargs.get("amp", True)
    train_kwargs.setdefault("val_subset", LEARNING_CURVE_IMAGES)
    train_kwargs.setdefault("reference_steps", REFERENCE_STEPS)

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
