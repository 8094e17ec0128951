"""The run's reference step: its own model, optimizer and precision on a fixed batch of random images, timed inside
the run after each epoch. Set against it, the run's wall time says what the input pipeline and the evaluations add
to the train steps, measured on the same machine in the same process (a shared machine's speed drifts between
processes). It trains a copy, so the run's weights, optimizer state and random streams are untouched."""
from __future__ import annotations

import copy
import dataclasses
import time

import torch
import torch.nn as nn

from ..data.transforms import normalize_batch
from ..evaluate import autocast_for
from .config import TrainConfig
from .schedule import make_optimizer, peak_lr_of, set_lr

__all__ = ["reference_images_per_s", "WARMUP_STEPS"]

WARMUP_STEPS = 2  # untimed: the first steps allocate and pick kernels


def reference_images_per_s(model: nn.Module, cfg: TrainConfig, device: torch.device, batch: int,
                           steps: int) -> tuple[float, float]:
    """Time ``steps`` training steps of a copy of ``model`` on one fixed random batch.

    Args:
        model: the run's model (not changed: a copy trains).
        cfg: the run's config (optimizer, precision, memory format, train image size, label smoothing).
        device: where the run trains.
        batch: images per step (the run's per-process batch).
        steps: timed steps, after `WARMUP_STEPS` untimed ones.

    Returns:
        (images per second of the timed steps, seconds the whole measurement took).

    Example:
        >>> img_s, seconds = reference_images_per_s(model, cfg, torch.device("cpu"), 64, 8)  # doctest: +SKIP
    """
    started = time.perf_counter()
    rng = torch.get_rng_state()
    try:
        clone = copy.deepcopy(model).train()
        optimizer, _ = make_optimizer(dataclasses.replace(cfg, ema=0.0), clone)
        for g in optimizer.param_groups:
            g["lr_scale"] = 1.0
        set_lr(optimizer, peak_lr_of(cfg))
        size = cfg.train_image_size or cfg.image_size
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator).to(device)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = torch.randint(0, clone.num_classes, (batch,), generator=generator).to(device)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        def step():
            with autocast_for(device, cfg.amp):
                loss = criterion(clone(normalize_batch(images)).float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        for _ in range(WARMUP_STEPS):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timed = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        images_per_s = batch * steps / (time.perf_counter() - timed)
    finally:
        torch.set_rng_state(rng)
    return images_per_s, time.perf_counter() - started
