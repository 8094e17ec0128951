"""The training loop: `train(TrainConfig)`, readable top to bottom: the loaders (`_data`), the model, the optimizer
and its lr schedule (`schedule`), resume (`checkpoint`), then per epoch `train_one_epoch`, evaluation and
`checkpoint.save_checkpoint`; the run folder's final files are `outputs`'.

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
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .. import data as data_lib
from ..errors import InputError
from ..evaluate import autocast_for, evaluate
from ..data.transforms import normalize_batch
from ..files.atomic import write_text_atomic
from ..host import ActiveClock, cpuinfo_fields, has_native_bf16
from ..models import create_model
from ..models._registry import parse_model_args
from .checkpoint import CheckpointError, resume, save_checkpoint
from .config import TrainConfig
from .outputs import check_output_folder, hardware_name, own_output_folder, write_final
from .provenance import add_segment, segment
from .schedule import lr_schedule, make_optimizer, peak_lr_of, set_lr
from .step_timing import reference_images_per_s
from .sync_batchnorm import convert_to_global_batchnorm

__all__ = ["train", "train_one_epoch", "make_train_loader", "TrainConfig"]


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
        raise InputError(f"training set of {len(train_set)} images is smaller than one batch of {cfg.batch_size}")
    return train_set, sampler, train_loader, val_loader, class_ids, class_names, steps_per_epoch


def train_one_epoch(step_model, model, loader, optimizer, lr_at, first_step: int, criterion, cfg: TrainConfig,
                    device, steps: int, world: int = 1, ema=None, desc: str = "", progress: bool = True) -> dict:
    """One pass over ``loader`` (at most ``steps`` batches): forward under autocast, backward, the lr of the step
    (``lr_at(step)``, counted from ``first_step``) set on every group, optimizer step, EMA. Returns the mean loss, images seen (all processes), and the
    seconds it ran and sat paused."""
    model.train()
    seen, loss_sum, data_wait = 0, 0.0, 0.0
    # the bar closes (ends its line) when a step fails, so an error message starts on a line of its own
    with tqdm(total=steps, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True) as bar, \
            ActiveClock() as clock:
        batches = iter(loader)
        for i in range(steps):
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
            set_lr(optimizer, lr_at(first_step + i))
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += images.shape[0] * world
            loss_sum += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.4f}",
                            img_s=f"{seen / clock.seconds():.0f}")
            bar.update()
    return {"loss": loss_sum / steps, "seen": seen, "seconds": clock.seconds(), "paused_seconds": clock.paused,
            "data_wait_seconds": data_wait}


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
        create_model(cfg.model, num_classes=1, **parse_model_args(cfg.model_args))
    rank, world, local_rank = _distributed()
    if rank == 0:
        check_output_folder(Path(cfg.out), cfg)
    with contextlib.ExitStack() as owner:  # holds the run folder's lock once the folder is made
        return _train(cfg, rank, world, local_rank, owner)


def _train(cfg: TrainConfig, rank: int, world: int, local_rank: int, owner: contextlib.ExitStack) -> dict:
    """`train` after its arguments are checked; rank 0 takes the run folder (`_own_output_folder`) once the data and
    model are built, so that bad input leaves no folder behind."""
    is_main = rank == 0
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # fixed input shapes: let cuDNN pick the fastest algorithms once
        torch.backends.cudnn.benchmark = True
    if cfg.batch_size % world:
        raise InputError(f"--batch-size {cfg.batch_size} must divide evenly over {world} processes")
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
    optimizer, ema = make_optimizer(cfg, model)
    peak_lr, schedule = peak_lr_of(cfg), lr_schedule(cfg, steps_per_epoch)

    def lr_at(step: int) -> float:
        return peak_lr * schedule(step)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if is_main:
        own_output_folder(out, cfg, owner)

    start_epoch, history, segments = 0, [], []
    if cfg.resume and ckpt_path.exists():
        start_epoch, history, segments = resume(ckpt_path, cfg, class_ids, data_sha256, model, optimizer, ema)
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
        stats = train_one_epoch(step_model, model, train_loader, optimizer, lr_at, epoch * steps_per_epoch, criterion,
                                cfg, device, steps_per_epoch, world, ema, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                progress=is_main and cfg.progress)
        if not math.isfinite(stats["loss"]):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {stats['loss']}); lower --lr")
        if is_main:
            with ActiveClock() as eval_clock:
                val = evaluate(ema.module if ema is not None else model, val_loader, len(class_ids), device, cfg.amp,
                               progress=cfg.progress)
            final = {"epoch": epoch + 1, "train_loss": stats["loss"], "val_loss": val["loss"], "top1": val["top1"],
                     "top5": val["top5"], "lr": lr_at((epoch + 1) * steps_per_epoch), "seconds": stats["seconds"],
                     "paused_seconds": round(stats["paused_seconds"], 1),
                     "samples_per_s": stats["seen"] / stats["seconds"],
                     # where the epoch's time went: waiting for batches (inside seconds), then the evaluation
                     "data_wait_seconds": round(stats["data_wait_seconds"], 2),
                     "eval_seconds": round(eval_clock.seconds(), 2), "val_images": val["images"]}
            if cfg.reference_steps:  # the bound of this epoch's steps, on this machine now
                img_s, spent = reference_images_per_s(model, cfg, device, cfg.batch_size // world,
                                                      min(cfg.reference_steps, steps_per_epoch))  # never past an epoch
                final |= {"reference_images_per_s": round(img_s, 2), "reference_seconds": round(spent, 2)}
            history.append(final)
            save_checkpoint(ckpt_path, cfg, class_ids, provenance, model, optimizer, ema, epoch + 1, history)
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
