"""The learning-rate probes: each arm (model and options) is probed at `PROBE_LRS` with seed `PROBE_SEED`, and the grid
takes one step past an edge its best point sits at; the grid's best point is the arm's rate for its reported runs."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .results import arm_options, read_rows

__all__ = ["PROBE_LRS", "PROBE_STEP", "PROBE_SEED", "PROBE_PROTOCOL", "probe_grid", "probe_plan", "probe_choice", "probe_lrs", "is_probe"]


# The peak learning rates every arm is probed at first (one seed each), and the factor of the one step the grid then
# takes past the edge the better of them sits at (`probe_grid`); the grid's best point is the arm's rate.
PROBE_LRS = (4e-3, 8e-3)


PROBE_STEP = 2.0


# The probes' seed: an arm's reported runs are the other seeds, so a probe picked for scoring high never counts.
PROBE_SEED = 0


# The protocol the probes run on (dataset, image size, epochs): every other protocol takes its rates from it.
PROBE_PROTOCOL = ("imagewoof", 128, 5)


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
            raise InputError(f"{path} has no probe of {model}{' ' + model_args if model_args else ''} at lr "
                             f"{', '.join(f'{lr:g}' for lr in missing)}; run the probes first: convtwist-zoo "
                             f"leaderboard run --models {model} --probe"
                             f"{' --model-args ' + model_args if model_args else ''} "
                             f"--results {path} (and the same --data and --epochs)")
        chosen[model] = probe_choice(found)["lr"]
    return chosen


def is_probe(row: dict) -> bool:
    """Whether a row is an lr probe: the probe seed of a bf16 run on the protocol the probes run on
    (`PROBE_PROTOCOL`). A probe chooses its arm's rate and is never one of the arm's reported runs."""
    return ((row.get("dataset"), row.get("image_size"), row.get("epochs")) == PROBE_PROTOCOL
            and row["seed"] == PROBE_SEED and row["recipe"].get("amp", True))
