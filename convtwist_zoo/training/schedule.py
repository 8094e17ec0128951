"""The optimizer and its learning rate, set explicitly at every step as nanoGPT does: ``lr = peak x schedule(step) x
group multiplier`` (`set_lr`), with nothing carried between steps but the step count. The groups: decay only weights
of 2+ dims; the head may get its own multiplier, and a frozen backbone a multiplier of 0. Lookahead on top."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..errors import InputError
from .config import TrainConfig

__all__ = ["param_groups", "add_lookahead", "lr_schedule", "peak_lr_of", "set_lr", "make_optimizer"]


def peak_lr_of(cfg: TrainConfig) -> float:
    """The peak lr: ``--lr`` is per 64 images, scaled linearly with the batch."""
    return cfg.lr * cfg.batch_size / 64


def param_groups(model: nn.Module, weight_decay: float, head_lr_mult: float, backbone_lr_mult: float):
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
        raise InputError(f"Lookahead needs k >= 1 and 0 < alpha <= 1 (got k={k}, alpha={alpha})")
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


def lr_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """The schedule's factor of the peak lr at each optimizer step (0-based, counted over the whole run): a linear
    warm-up from 4% (``onecycle``), flat, then a cosine to 0 over the rest (``flatcos``: flat for ``flat_fraction``
    of the run)."""
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


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's lr for the next step: ``lr`` (peak x schedule) times the group's multipliers (``lr_mult``:
    head or backbone; ``lr_scale``: 0 while the backbone is frozen)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * (g["lr_mult"] * g["lr_scale"])


def make_optimizer(cfg: TrainConfig, model: nn.Module):
    """The optimizer over `param_groups` (with Lookahead on top when asked) and the EMA of the weights (or None)."""
    peak_lr = peak_lr_of(cfg)
    groups = param_groups(model, cfg.weight_decay, 1.0, cfg.backbone_lr_mult)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=peak_lr, momentum=cfg.momentum, nesterov=True)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=peak_lr, betas=(0.9, 0.99), eps=1e-6)
    else:  # radam: rectified Adam needs no warm-up; with --lookahead 6 it is fast.ai's Ranger
        optimizer = torch.optim.RAdam(groups, lr=peak_lr, betas=(0.95, 0.99), eps=1e-6, decoupled_weight_decay=True)
    if cfg.lookahead:
        add_lookahead(optimizer, cfg.lookahead, cfg.lookahead_alpha)
    ema = None
    if cfg.ema:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    return optimizer, ema
