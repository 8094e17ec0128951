"""A run's ``last.pt``: written atomically after every epoch, read back safely (``weights_only``), and refused when
it belongs to another run (its whole recipe, data and classes are compared). The schedule needs no state of its own:
the lr is a function of the step (`schedule`)."""
from __future__ import annotations

import json
import os
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..errors import ZooError
from ..files.atomic import atomic_path
from .config import TrainConfig
from .identity import describe_differences, differences, recipe_of

__all__ = ["CheckpointError", "save_atomic", "load_checkpoint", "save_checkpoint", "resume", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "convtwist-zoo/train-checkpoint/v1"
# what a checkpoint must hold (older ones also hold a "scheduler" state, which the explicit schedule does not need)
CHECKPOINT_KEYS = ("config", "model", "optimizer", "epoch", "rng")


class CheckpointError(ZooError, RuntimeError):
    """A checkpoint that is corrupt, foreign, or from a different run configuration."""


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename: a crash leaves the old file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def load_checkpoint(path: Path) -> dict:
    """Load a ``last.pt`` safely (``weights_only``), with a clear error for a corrupt or foreign file."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle refused by weights_only, ...
        raise CheckpointError(f"{path} is not a readable convtwist-zoo checkpoint ({type(e).__name__}: {e}); "
                              "delete it to start over, or point --out at the right run folder") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was not written by `convtwist-zoo train` (format "
                              f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r}, "
                              f"expected {CHECKPOINT_FORMAT!r}); use another --out folder")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: it is damaged or incomplete; delete it to start "
                              "the run over, or use another --out folder")
    return ckpt


def _check_resumable(saved: dict, cfg: TrainConfig, class_ids, data_sha256: str | None) -> None:
    """Refuse to resume a run whose recipe (`run_identity`), data or classes differ from the one on disk: a resumed
    run must end with the weights an uninterrupted one would have, and its config.json must record the recipe that
    trained it."""
    recorded = {**recipe_of(saved), "data_sha256": (saved.get("provenance") or {}).get("data_sha256")}
    now = {**recipe_of(asdict(cfg)), "data_sha256": data_sha256}
    diffs = differences(recorded, now)
    problems = [describe_differences(diffs, "the checkpoint", "this command")] if diffs else []
    if list(saved.get("class_ids", [])) != list(class_ids):
        problems.append(f"classes: {saved.get('class_ids')} in the checkpoint, {list(class_ids)} now")
    if problems:
        raise CheckpointError("cannot resume: the checkpoint belongs to another run (" + "; ".join(problems) +
                              "). Use a new --out folder, or the original settings")


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": torch.tensor(np.random.get_state()[1].astype(np.int64)),
            "python": torch.tensor(random.getstate()[1], dtype=torch.int64)}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), 624, 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))


def resume(ckpt_path: Path, cfg: TrainConfig, class_ids, data_sha256, model, optimizer,
           ema) -> tuple[int, list, list]:
    """Restore a run from its ``last.pt``: (epochs done, per-epoch history, provenance segments)."""
    ckpt = load_checkpoint(ckpt_path)
    _check_resumable(ckpt["config"], cfg, class_ids, data_sha256)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt_path}: weights do not fit {cfg.model}: {e}") from e
    optimizer.load_state_dict(ckpt["optimizer"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.load_state_dict(ckpt["ema"])
    _set_rng_state(ckpt["rng"])
    segments = (ckpt["config"].get("provenance") or {}).get("segments", [])
    return ckpt["epoch"], json.loads(ckpt.get("history", "[]")), segments


def save_checkpoint(path: Path, cfg: TrainConfig, class_ids, provenance: dict, model, optimizer, ema,
                    epoch: int, history: list) -> None:
    """Everything a resumed run needs to end with the weights an uninterrupted one would: weights, optimizer (and
    Lookahead) state, EMA, epoch, RNG states, the per-epoch history."""
    save_atomic({"format": CHECKPOINT_FORMAT,
                 "config": {**asdict(cfg), "class_ids": list(class_ids), "provenance": provenance},
                 "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "ema": ema.state_dict() if ema is not None else None,
                 "epoch": epoch, "rng": _rng_state(), "history": json.dumps(history)}, path)
