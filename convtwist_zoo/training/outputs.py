"""A run folder: owned by one process at a time, never written over without ``--overwrite``, and its final files
(``model.safetensors`` and the ``config.json`` that travels with it)."""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from .. import data as data_lib
from ..files.atomic import atomic_path, write_text_atomic
from ..files.hashing import sha256_file
from ..files.locks import hold_lock
from ..host import cpu_name, cpuinfo_fields
from ..models._registry import parse_model_args, split_model_name
from .checkpoint import CheckpointError
from .config import TrainConfig
from .identity import recipe_of

__all__ = ["check_output_folder", "own_output_folder", "hardware_name", "run_config_json", "write_final",
           "FINISHED_OUTPUTS"]


FINISHED_OUTPUTS = ("model.safetensors", "config.json", "metrics.jsonl")


def check_output_folder(out: Path, cfg: TrainConfig) -> None:
    """Refuse to write over a run folder's finished outputs (or a Hub folder's) unless ``--overwrite`` says so; with
    it, clear them (and a checkpoint) first, so nothing of the old run survives beside the new one."""
    found = [name for name in FINISHED_OUTPUTS if (out / name).exists()]
    if cfg.resume and (out / "last.pt").exists():
        return  # _train compares the checkpoint's recipe with this one
    if found and cfg.resume:
        raise CheckpointError(f"{out} holds finished outputs ({', '.join(found)}) but no last.pt to resume from: "
                              "there is nothing to continue. Use another --out, or --overwrite (without --resume) "
                              "to train it again from scratch")
    if (found or (out / "last.pt").exists()) and cfg.overwrite:
        for name in (*FINISHED_OUTPUTS, "last.pt"):
            (out / name).unlink(missing_ok=True)
    elif found:
        raise FileExistsError(f"{out} already holds a finished run ({', '.join(found)}); use another --out, or pass "
                              "--overwrite to replace it")


def own_output_folder(out: Path, cfg: TrainConfig, owner: contextlib.ExitStack) -> None:
    """Make the run folder and hold its lock for the run: one writer per folder, as a second `train --out` on it
    would interleave epochs and lose one run. Its outputs are checked again under the lock (another run may have
    finished there since)."""
    out.mkdir(parents=True, exist_ok=True)
    owner.enter_context(hold_lock(out / ".train.lock", wait=False,
                                  busy=f"another process (pid {{pid}}) is training into {out}; wait for it to finish, "
                                       "or use another --out"))
    check_output_folder(out, cfg)


def hardware_name(device: torch.device) -> str:
    """What trained the run, for the model card: the GPU's name, or the CPU's model and its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = cpu_name(cpuinfo_fields())
    return f"CPU ({name + ', ' if name else ''}{os.cpu_count()} cores)"


def run_config_json(cfg: TrainConfig, class_ids, class_names, metrics: dict | None = None,
                    trained_on: str | None = None, provenance: dict | None = None) -> dict:
    """The ``config.json`` that travels with final weights (run folder and Hub repo alike); ``provenance``: the data
    archive's sha256 and the code/torch/machine segments that trained it (`convtwist_zoo.provenance`)."""
    arch, _ = split_model_name(cfg.model)
    return {
        "architecture": arch, "num_classes": len(class_ids), "class_ids": list(class_ids),
        "class_names": list(class_names), "input_size": [3, cfg.image_size, cfg.image_size],
        "mean": list(data_lib.IMAGENET_MEAN), "std": list(data_lib.IMAGENET_STD), "crop_pct": cfg.crop_pct,
        "interpolation": "bilinear",
        "dataset": cfg.data if cfg.data in data_lib.DATASETS else Path(cfg.data).resolve().name,
        # a folder's location, so later commands evaluate this folder and not another of the same name
        **({} if cfg.data in data_lib.DATASETS else {"data_path": str(Path(cfg.data).resolve())}),
        "recipe": recipe_of(asdict(cfg)),
        "metrics": metrics or {}, **({"trained_on": trained_on} if trained_on else {}),
        **({"provenance": provenance} if provenance else {}),
        # the builder options the weights need (also what timm's hf-hub: loader passes to the entrypoint)
        **({"model_args": parse_model_args(cfg.model_args)} if cfg.model_args else {}),
    }


def write_final(out: Path, model: nn.Module, cfg: TrainConfig, class_ids, class_names, metrics: dict,
                trained_on: str | None = None, provenance: dict | None = None) -> None:
    """``model.safetensors`` (fp32) and ``config.json`` (with the weights' sha256, checked when they are loaded) in
    ``out``: the form `hub` publishes."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "architecture": split_model_name(cfg.model)[0]})
        digest = sha256_file(tmp)
    config = run_config_json(cfg, class_ids, class_names, metrics, trained_on, provenance)
    write_text_atomic(out / "config.json", json.dumps({**config, "weights_sha256": digest}, indent=2) + "\n")
