"""The training loop: `train(TrainConfig)`, readable top to bottom, built from a few parts: `_data` (loaders),
`_optimizer` (optimizer, schedule, EMA), `_resume` (from ``last.pt``), `train_one_epoch` and `_save_checkpoint`.

Checkpoints are plain dictionaries written atomically after every epoch (``last.pt``); ``resume=True`` continues a
killed run and ends with the same weights as an uninterrupted one (sampler order and augmentation are seeded by
(seed, epoch, index), not by process state). Under ``torchrun`` it trains with DistributedDataParallel (gloo on CPU,
nccl on CUDA); the global batch is ``batch_size`` whatever the number of processes.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from . import data as data_lib
from .atomic import atomic_path, write_text_atomic
from .locks import hold_lock
from .evaluate import autocast_for, evaluate
from .host import ActiveClock, cpu_name, cpuinfo_fields, has_native_bf16
from .hub import sha256_file
from .factory import create_model
from .provenance import add_segment, segment
from .run_identity import describe_differences, differences, recipe_of
from .registry import get_builder, parse_model_args, split_model_name
from .transforms import normalize_batch
from .sync_batchnorm import convert_to_global_batchnorm

__all__ = ["TrainConfig", "train", "CheckpointError", "save_atomic", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "convtwist-zoo/train-checkpoint/v1"
CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "epoch", "rng")


def _knob(default, help: str):
    """A `TrainConfig` field with the help line its ``convtwist-zoo train`` flag shows."""
    return field(default=default, metadata={"help": help})


def _whole(low: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


# Each numeric or choice knob's allowed values: checked by `TrainConfig.validate`, shown by the flags' help.
KNOB_RANGES = {
    "epochs": (_whole(1), ">= 1"), "image_size": (_whole(32), ">= 32"),
    "train_image_size": (lambda v: v == 0 or v >= 32, "0 or >= 32"), "batch_size": (_whole(1), ">= 1"),
    "lookahead": (_whole(0), ">= 0 (0 = off)"), "lookahead_alpha": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "lr": (lambda v: v > 0 and math.isfinite(v), "> 0"), "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"), "warmup_epochs": (lambda v: v >= 0, ">= 0"),
    "flat_fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"), "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "min_scale": (lambda v: 0 < v <= 1, "in (0, 1]"), "ema": (lambda v: 0 <= v < 1, "in [0, 1) (0 = off)"),
    "noise": (lambda v: v in (0, 1, 5, 25, 50), "one of 0, 1, 5, 25, 50"), "workers": (_whole(0), ">= 0"),
    "freeze_epochs": (_whole(0), ">= 0"), "backbone_lr_mult": (lambda v: v >= 0, ">= 0"),
    "crop_pct": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "max_steps_per_epoch": (_whole(0), ">= 0 (0 = whole epochs)"),
    "val_subset": (_whole(0), ">= 0 (0 = the whole validation split)"),
    "seed": (lambda v: _whole(0)(v) and v < 2 ** 32, "a whole number in [0, 2**32)"),
    "optimizer": (lambda v: v in ("radam", "sgd", "adamw"), "radam, sgd or adamw"),
    "schedule": (lambda v: v in ("flatcos", "onecycle"), "flatcos or onecycle"),
    "augment": (lambda v: v in ("crop", "trivial"), "crop or trivial"),
}


@dataclass
class TrainConfig:
    """Every knob of a run; the defaults are the zoo's recipe (README, "Training recipe"). Each field is also a
    ``convtwist-zoo train`` flag (``lr`` -> ``--lr``).

    Args:
        model: registry name (``convtwist_xresnet50``...).
        data: ``imagenette``, ``imagewoof`` or a folder with ``train/<class>/`` and ``val/<class>/``.
        out: the run folder.
        epochs, lr, batch_size, ...: each field's help (``convtwist-zoo train --help``); `KNOB_RANGES` gives the
            allowed values.

    Example:
        >>> cfg = TrainConfig(model="convtwist_resnet18", data="imagewoof", epochs=5, out="runs/woof5")
        >>> cfg.validate()
    """
    model: str = _knob("convtwist_resnet18", "registry name (convtwist-zoo list), or ARCH.TAG to start from that "
                       "checkpoint")
    model_args: str = _knob("", "builder options as key=value[,key=value], e.g. maxblur=true,sa=true")
    data: str = _knob("imagenette", "imagenette, imagewoof, or a folder with train/<class>/ and val/<class>/")
    data_dir: str | None = _knob(None, "where the dataset archives are; none: $CONVTWIST_DATA")
    out: str = _knob("runs/default", "the run folder: last.pt each epoch, then model.safetensors and config.json")
    epochs: int = _knob(40, "epochs to train")
    image_size: int = _knob(128, "the model's input size: evaluation and the published config")
    train_image_size: int = _knob(0, "RandomResizedCrop size (0: --image-size); smaller trains faster")
    batch_size: int = _knob(64, "global batch, split over torchrun processes")
    optimizer: str = _knob("radam", "radam (decoupled weight decay), sgd (Nesterov) or adamw")
    lookahead: int = _knob(6, "Lookahead every k steps (0: off); radam with lookahead 6 is fast.ai's Ranger")
    lookahead_alpha: float = _knob(0.5, "Lookahead's step of the slow weights toward the fast ones")
    lr: float = _knob(4e-3, "peak learning rate at batch 64, scaled linearly with --batch-size")
    momentum: float = _knob(0.9, "momentum (sgd only)")
    weight_decay: float = _knob(1e-2, "weight decay (decoupled for radam/adamw; never on BatchNorm, biases or "
                                      "ConvTwist centres)")
    schedule: str = _knob("flatcos", "flatcos (flat, then cosine) or onecycle (warm-up, then cosine)")
    warmup_epochs: float = _knob(2.0, "onecycle: epochs of warm-up")
    flat_fraction: float = _knob(0.72, "flatcos: share of training at the peak lr")
    label_smoothing: float = _knob(0.1, "label smoothing of the cross-entropy")
    min_scale: float = _knob(0.35, "RandomResizedCrop's smallest crop, as a share of the image")
    augment: str = _knob("crop", "crop (RandomResizedCrop and flip) or trivial (and TrivialAugmentWide)")
    ema: float = _knob(0.0, "EMA decay per step (0: off); evaluation then uses the EMA weights")
    noise: int = _knob(0, "fast.ai noisy-label column: the percentage of training labels changed")
    seed: int = _knob(0, "seed of the initialisation, the sampler and the augmentation")
    workers: int = _knob(1, "DataLoader workers")
    amp: bool = _knob(True, "bf16 autocast (CPU), bf16/fp16 (CUDA); --no-amp trains in fp32")
    channels_last: bool = _knob(True, "channels-last memory format (faster on CPUs)")
    compile: bool = _knob(False, "torch.compile the training step")
    pretrained: str | None = _knob(None, "fine-tuning: a tag of --model's checkpoints to start from "
                                         "(e.g. imagenette)")
    checkpoint: str | None = _knob(None, "fine-tuning: a run folder of yours to start from")
    freeze_epochs: int = _knob(0, "fine-tuning: epochs that train only the head")
    backbone_lr_mult: float = _knob(1.0, "fine-tuning: the lr of everything but the head, as a multiple of --lr")
    crop_pct: float = _knob(0.875, "evaluation's centre crop, as a share of the resized image")
    max_steps_per_epoch: int = _knob(0, "truncate each epoch to this many steps (0: whole epochs; smoke runs)")
    val_subset: int = _knob(0, "the per-epoch evaluation on a fixed, class-balanced subset of this many validation "
                               "images (0: all); a cheaper learning curve, the weights are unchanged")
    resume: bool = _knob(False, "continue the run in --out from its last.pt (the same recipe only)")
    overwrite: bool = _knob(False, "replace a finished run's outputs in --out (else refused)")
    progress: bool = _knob(True, "progress bars")

    def __post_init__(self):
        # a checkpoint's name (resnet18.imagewoof) means its weights: the recipe records them as --pretrained
        arch, tag = split_model_name(self.model)
        if tag is not None:
            if self.pretrained not in (None, tag) or self.checkpoint:
                other = f"--checkpoint {self.checkpoint}" if self.checkpoint else f"--pretrained {self.pretrained}"
                raise ValueError(f"--model {self.model} names the {tag} weights, but {other} asks for others; give "
                                 f"--model {arch} with the weights you want")
            self.model, self.pretrained = arch, tag

    def validate(self) -> None:
        """Refuse a knob outside its range, naming the flag and the range (before anything is built or written)."""
        rules = [(name, ok(getattr(self, name)), allowed) for name, (ok, allowed) in KNOB_RANGES.items()]
        for name, ok, allowed in rules:
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')} must be {allowed}, got {getattr(self, name)!r}")
        parse_model_args(self.model_args)
        if self.pretrained and self.checkpoint:
            raise ValueError("give --pretrained TAG (a zoo checkpoint) or --checkpoint RUN (a run folder of yours), "
                             "not both")
        if self.pretrained and (os.sep in self.pretrained or self.pretrained.endswith(".safetensors")):
            raise ValueError(f"--pretrained {self.pretrained!r} is a path: start from a run folder of yours with "
                             f"--checkpoint {self.pretrained}")
        if self.checkpoint and not Path(self.checkpoint).exists():
            raise FileNotFoundError(f"--checkpoint {self.checkpoint}: no such run folder or weights file")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class CheckpointError(RuntimeError):
    """A checkpoint that is corrupt, foreign, or from a different run configuration."""


# ---------------------------------------------------------------------------------------------------- files
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


# The knobs of a recipe that the cards compare between checkpoints (what trained them, not which model or data).
RECIPE_KNOBS = ("epochs", "image_size", "train_image_size", "batch_size", "optimizer", "lookahead", "lookahead_alpha",
                "lr", "momentum", "weight_decay", "schedule", "warmup_epochs", "flat_fraction", "label_smoothing",
                "min_scale", "augment", "ema", "noise", "amp", "crop_pct", "pretrained", "freeze_epochs",
                "backbone_lr_mult", "max_steps_per_epoch")


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


# ---------------------------------------------------------------------------------------------------- parts
def _param_groups(model: nn.Module, weight_decay: float, head_lr_mult: float, backbone_lr_mult: float):
    """Decay only weights with 2+ dims (not BatchNorm, biases, ConvTwist centres); the head may get its own lr."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    groups = {}
    for p in model.parameters():
        is_head = id(p) in head_ids
        decay = p.ndim > 1
        key = (is_head, decay)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_mult": head_lr_mult if is_head else backbone_lr_mult, "is_head": is_head}
        groups[key]["params"].append(p)
    return list(groups.values())


def add_lookahead(optimizer: torch.optim.Optimizer, k: int, alpha: float = 0.5) -> None:
    """Lookahead (Zhang et al., 2019) as a post-step hook: every ``k`` steps the slow weights move ``alpha`` of the
    way to the fast ones, and the fast weights restart there.

    The slow weights start at the first sync (timm does the same) and live in the optimizer's per-parameter state,
    and the step count in its param groups, so ``optimizer.state_dict()`` checkpoints and resumes them.
    """
    if k < 1 or not 0 < alpha <= 1:
        raise ValueError(f"Lookahead needs k >= 1 and 0 < alpha <= 1 (got k={k}, alpha={alpha})")
    @torch.no_grad()
    def sync(opt, args, kwargs):
        for g in opt.param_groups:
            # .get: a state_dict saved without Lookahead loads groups without the count
            g["lookahead_step"] = g.get("lookahead_step", 0) + 1
            if g["lookahead_step"] % k:
                continue
            for p in g["params"]:
                if p.grad is None:  # not trained this step (frozen): nothing to average
                    continue
                state = opt.state[p]
                if "lookahead_slow" not in state:
                    state["lookahead_slow"] = p.detach().clone()
                    continue
                slow = state["lookahead_slow"]
                slow.lerp_(p, alpha)
                p.copy_(slow)
    optimizer.register_step_post_hook(sync)


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch) if cfg.schedule == "onecycle" else 0
    flat = int(cfg.flat_fraction * total) if cfg.schedule == "flatcos" else warmup

    def factor(step: int) -> float:
        if step < warmup:
            return 0.04 + 0.96 * step / warmup
        if step < flat:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - flat) / max(1, total - flat))))
    return factor


def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; initialises the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    kwargs = parse_model_args(cfg.model_args)
    if cfg.checkpoint:
        return create_model(cfg.model, pretrained=Path(cfg.checkpoint), num_classes=num_classes, **kwargs)
    if cfg.pretrained:
        return create_model(cfg.model, pretrained=cfg.pretrained if cfg.pretrained != "True" else True,
                            num_classes=num_classes, **kwargs)
    return create_model(cfg.model, num_classes=num_classes, **kwargs)


def make_train_loader(dataset, sampler, batch_size: int, workers: int, pin_memory: bool = False) -> DataLoader:
    """The training DataLoader. Its workers are not persistent: each epoch's workers must copy the dataset *after*
    ``set_epoch``, or they would keep augmenting with epoch 0's seeds (the same crops every epoch). Starting a worker
    costs about a second per epoch."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                      persistent_workers=False, pin_memory=pin_memory)


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


def _data(cfg: TrainConfig, world: int, rank: int, pin: bool):
    """Training and validation loaders: the training split's crops seeded per (seed, epoch, index), uint8 out of the
    workers (normalised per batch in the loop); returns (train_set, sampler, train_loader, val_loader, class_ids,
    class_names, steps_per_epoch)."""
    train_base, val_base, class_ids, class_names = data_lib.build_datasets(cfg.data, cfg.data_dir, cfg.noise)
    train_tf = data_lib.train_transform(cfg.train_image_size or cfg.image_size, min_scale=cfg.min_scale,
                                        augment=cfg.augment, normalize=False)
    train_set = data_lib.SeededTransformDataset(train_base, train_tf, cfg.seed)
    val_base.transform = data_lib.eval_transform(cfg.image_size, crop_pct=cfg.crop_pct, normalize=False)
    if cfg.val_subset:
        val_base = data_lib.class_balanced_subset(val_base, cfg.val_subset)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    per_proc_batch = cfg.batch_size // world
    train_loader = make_train_loader(train_set, sampler, per_proc_batch, cfg.workers, pin)
    val_loader = DataLoader(val_base, batch_size=max(per_proc_batch, 64), shuffle=False, num_workers=cfg.workers,
                            persistent_workers=cfg.workers > 0, pin_memory=pin)
    steps_per_epoch = len(train_loader)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError(f"training set of {len(train_set)} images is smaller than one batch of {cfg.batch_size}")
    return train_set, sampler, train_loader, val_loader, class_ids, class_names, steps_per_epoch


def _optimizer(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int):
    """The optimizer (with Lookahead on top when asked), its schedule and the EMA of the weights (or None)."""
    peak_lr = cfg.lr * cfg.batch_size / 64
    groups = _param_groups(model, cfg.weight_decay, 1.0, cfg.backbone_lr_mult)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=peak_lr, momentum=cfg.momentum, nesterov=True)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=peak_lr, betas=(0.9, 0.99), eps=1e-6)
    else:  # radam: rectified Adam needs no warm-up; with --lookahead 6 it is fast.ai's Ranger
        optimizer = torch.optim.RAdam(groups, lr=peak_lr, betas=(0.95, 0.99), eps=1e-6, decoupled_weight_decay=True)
    if cfg.lookahead:
        add_lookahead(optimizer, cfg.lookahead, cfg.lookahead_alpha)
    for g in optimizer.param_groups:  # the schedule sets the base lr; lr_mult/lr_scale apply at each step
        g["initial_lr"] = peak_lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps_per_epoch))
    ema = None
    if cfg.ema:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    return optimizer, scheduler, ema


def _resume(ckpt_path: Path, cfg: TrainConfig, class_ids, data_sha256, model, optimizer, scheduler,
            ema) -> tuple[int, list, list]:
    """Restore a run from its ``last.pt``: (epochs done, per-epoch history, provenance segments)."""
    ckpt = load_checkpoint(ckpt_path)
    _check_resumable(ckpt["config"], cfg, class_ids, data_sha256)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt_path}: weights do not fit {cfg.model}: {e}") from e
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.load_state_dict(ckpt["ema"])
    _set_rng_state(ckpt["rng"])
    segments = (ckpt["config"].get("provenance") or {}).get("segments", [])
    return ckpt["epoch"], json.loads(ckpt.get("history", "[]")), segments


def train_one_epoch(step_model, model, loader, optimizer, scheduler, criterion, cfg: TrainConfig, device,
                    steps: int, world: int = 1, ema=None, desc: str = "", progress: bool = True) -> dict:
    """One pass over ``loader`` (at most ``steps`` batches): forward under autocast, backward, the per-group lr
    multipliers, optimizer and schedule steps, EMA. Returns the mean loss, images seen (all processes), and the
    seconds it ran and sat paused."""
    model.train()
    seen, loss_sum, data_wait = 0, 0.0, 0.0
    # the bar closes (ends its line) when a step fails, so an error message starts on a line of its own
    with tqdm(total=steps, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True) as bar, \
            ActiveClock() as clock:
        batches = iter(loader)
        for _ in range(steps):
            waited = time.perf_counter()  # time the step waits for its batch: the input pipeline's cost
            images, targets = next(batches)
            data_wait += time.perf_counter() - waited
            images = images.to(device, non_blocking=True)
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            images = normalize_batch(images)
            targets = targets.to(device, non_blocking=True)
            with autocast_for(device, cfg.amp):
                loss = criterion(step_model(images).float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for g in optimizer.param_groups:
                g["lr"] *= g["lr_mult"] * g["lr_scale"]
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += images.shape[0] * world
            loss_sum += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.4f}",
                            img_s=f"{seen / clock.seconds():.0f}")
            bar.update()
    return {"loss": loss_sum / steps, "seen": seen, "seconds": clock.seconds(), "paused_seconds": clock.paused,
            "data_wait_seconds": data_wait}


def _save_checkpoint(path: Path, cfg: TrainConfig, class_ids, provenance: dict, model, optimizer, scheduler, ema,
                     epoch: int, history: list) -> None:
    save_atomic({"format": CHECKPOINT_FORMAT,
                 "config": {**asdict(cfg), "class_ids": list(class_ids), "provenance": provenance},
                 "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                 "epoch": epoch, "rng": _rng_state(), "history": json.dumps(history)}, path)


# ---------------------------------------------------------------------------------------------------- loop
def train(cfg: TrainConfig) -> dict:
    """Train (or resume) one run into ``cfg.out``, checkpointing after every epoch.

    Args:
        cfg: every knob of the run (`TrainConfig`); ``cfg.out`` receives ``last.pt`` (each epoch),
            ``metrics.jsonl``, and at the end ``model.safetensors`` + ``config.json``.

    Returns:
        The last epoch's validation metrics (``top1``, ``top5``, ``val_loss``, ``train_loss``, ``seconds``...).

    Example:
        >>> from convtwist_zoo import TrainConfig, train
        >>> train(TrainConfig(model="convtwist_resnet18", data="MYFOLDER", epochs=10, out="runs/mine"))
        >>> # fine-tune a checkpoint on your classes: a new head, the backbone at a tenth of the lr
        >>> train(TrainConfig(model="convtwist_resnet50", pretrained="imagenette", data="MYFOLDER", epochs=10,
        ...                   freeze_epochs=2, backbone_lr_mult=0.1, lr=0.02, out="runs/tuned"))
    """
    cfg.validate()
    with torch.device("meta"):  # an unknown model or option fails before any data is read or file written
        get_builder(cfg.model)(num_classes=1, **parse_model_args(cfg.model_args))
    rank, world, local_rank = _distributed()
    if rank == 0:
        _check_output_folder(Path(cfg.out), cfg)
    with contextlib.ExitStack() as owner:  # holds the run folder's lock once the folder is made
        return _train(cfg, rank, world, local_rank, owner)


FINISHED_OUTPUTS = ("model.safetensors", "config.json", "metrics.jsonl")


def _check_output_folder(out: Path, cfg: TrainConfig) -> None:
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


def _own_output_folder(out: Path, cfg: TrainConfig, owner: contextlib.ExitStack) -> None:
    """Make the run folder and hold its lock for the run: one writer per folder, as a second `train --out` on it
    would interleave epochs and lose one run. Its outputs are checked again under the lock (another run may have
    finished there since)."""
    out.mkdir(parents=True, exist_ok=True)
    owner.enter_context(hold_lock(out / ".train.lock", wait=False,
                                  busy=f"another process (pid {{pid}}) is training into {out}; wait for it to finish, "
                                       "or use another --out"))
    _check_output_folder(out, cfg)


def _train(cfg: TrainConfig, rank: int, world: int, local_rank: int, owner: contextlib.ExitStack) -> dict:
    """`train` after its arguments are checked; rank 0 takes the run folder (`_own_output_folder`) once the data and
    model are built, so that bad input leaves no folder behind."""
    is_main = rank == 0
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # fixed input shapes: let cuDNN pick the fastest algorithms once
        torch.backends.cudnn.benchmark = True
    if cfg.batch_size % world:
        raise ValueError(f"--batch-size {cfg.batch_size} must divide evenly over {world} processes")
    if device.type == "cpu" and cfg.amp and is_main and not has_native_bf16(cpuinfo_fields()):
        warnings.warn("this CPU has no bf16 instructions (AMX, AVX512-BF16): bf16 autocast is emulated and trains "
                      "several times slower than fp32 here (bench/precision.py); pass --no-amp to train in fp32",
                      stacklevel=2)
    out = Path(cfg.out)
    ckpt_path = out / "last.pt"
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    train_set, sampler, train_loader, val_loader, class_ids, class_names, steps_per_epoch = _data(
        cfg, world, rank, pin=device.type == "cuda")
    data_sha256 = data_lib.dataset_sha256(cfg.data, cfg.data_dir)
    model = _build_model(cfg, len(class_ids)).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler, ema = _optimizer(cfg, model, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if is_main:
        _own_output_folder(out, cfg, owner)

    start_epoch, history, segments = 0, [], []
    if cfg.resume and ckpt_path.exists():
        start_epoch, history, segments = _resume(ckpt_path, cfg, class_ids, data_sha256, model, optimizer,
                                                 scheduler, ema)
        if start_epoch >= cfg.epochs and (out / "model.safetensors").exists():
            if is_main:
                print(f"{out} finished all {cfg.epochs} epochs already: nothing to resume, nothing rewritten",
                      flush=True)
            return history[-1] if history else {}
        if is_main:
            print(f"resumed {ckpt_path} after epoch {start_epoch}/{cfg.epochs}", flush=True)
    elif ckpt_path.exists() and is_main and not cfg.resume:
        raise CheckpointError(f"{ckpt_path} exists: pass --resume to continue that run, or use another --out")
    provenance = {"data_sha256": data_sha256,
                  "segments": add_segment(segments, segment(start_epoch + 1, hardware_name(device)))}

    train_model = model
    if world > 1:  # normalise over the global batch, so N processes train like one
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" \
            else convert_to_global_batchnorm(model)
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda"
                                                          else None)
    step_model = torch.compile(train_model) if cfg.compile else train_model

    final = {}
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        frozen = epoch < cfg.freeze_epochs
        for g in optimizer.param_groups:  # frozen backbone: lr 0 keeps the weights (and momentum) still
            g["lr_scale"] = 0.0 if frozen and not g["is_head"] else 1.0
        stats = train_one_epoch(step_model, model, train_loader, optimizer, scheduler, criterion, cfg, device,
                                steps_per_epoch, world, ema, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                progress=is_main and cfg.progress)
        if not math.isfinite(stats["loss"]):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {stats['loss']}); lower --lr")
        if is_main:
            with ActiveClock() as eval_clock:
                val = evaluate(ema.module if ema is not None else model, val_loader, len(class_ids), device, cfg.amp,
                               progress=cfg.progress)
            final = {"epoch": epoch + 1, "train_loss": stats["loss"], "val_loss": val["loss"], "top1": val["top1"],
                     "top5": val["top5"], "lr": scheduler.get_last_lr()[0], "seconds": stats["seconds"],
                     "paused_seconds": round(stats["paused_seconds"], 1),
                     "samples_per_s": stats["seen"] / stats["seconds"],
                     # where the epoch's time went: waiting for batches (inside seconds), then the evaluation
                     "data_wait_seconds": round(stats["data_wait_seconds"], 2),
                     "eval_seconds": round(eval_clock.seconds(), 2), "val_images": val["images"]}
            history.append(final)
            _save_checkpoint(ckpt_path, cfg, class_ids, provenance, model, optimizer, scheduler, ema, epoch + 1,
                             history)
            # the log is rewritten from the checkpoint's history: it never lists an epoch the checkpoint lacks
            write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
            print(json.dumps(final), flush=True)
        if world > 1:
            dist.barrier()

    if is_main:
        final = final or (history[-1] if history else {})  # resumed after the last epoch: finish from its log
        write_final(out, ema.module if ema is not None else model, cfg, class_ids, class_names, final,
                    hardware_name(device), provenance)
    if world > 1:
        dist.barrier()
    return final


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
