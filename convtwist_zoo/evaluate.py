"""Evaluation: loss, top-1/top-5, per-class accuracy and the confusion matrix of a classifier on a loader."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from .errors import InputError

__all__ = ["evaluate", "autocast_for", "accuracy_report", "evaluate_on_folder", "robustness_sweep",
           "ROTATIONS", "SCALES"]

ROTATIONS = (0, 15, 30, 45, 90)
SCALES = (0.75, 1.25)


def autocast_for(device: torch.device, amp: bool):
    """bf16 autocast on CPU, bf16 (or fp16 where bf16 is unsupported) on CUDA; a null context when off."""
    if not amp:
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device=torch.device("cpu"), amp: bool = True,
             progress: bool = False, desc: str = "eval", mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    """Run ``model`` in eval mode over ``loader``; returns loss, top1, top5 (in %), per_class (%), confusion
    (rows = true class, columns = predicted) and the number of images. uint8 batches are normalised with
    ``mean``/``std`` here (`normalize_batch`); float batches are used as they come."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, top5_hits, n = 0.0, 0, 0
    for images, targets in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        images = normalize_batch(images, mean, std)
        targets = targets.to(device)
        with autocast_for(device, amp):
            logits = model(images)
        logits = logits.float()
        if not bool(torch.isfinite(logits).all()):  # argmax of NaN would report a silent, meaningless accuracy
            model.train(was_training)
            raise FloatingPointError("the model produced NaN or infinite scores: its weights are damaged or "
                                     "training diverged; nothing was measured")
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        k = min(5, logits.shape[1])
        top5_hits += (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1).sum().item()
        pred = logits.argmax(dim=1)
        confusion += torch.bincount(targets.cpu() * num_classes + pred.cpu(),
                                    minlength=num_classes ** 2).view(num_classes, num_classes)
        n += targets.numel()
    model.train(was_training)
    return accuracy_report(confusion, loss_sum, top5_hits, n)


def accuracy_report(confusion: torch.Tensor, loss_sum: float, top5_hits: int, n: int) -> dict:
    per_class = (confusion.diag().double() / confusion.sum(1).clamp(min=1).double() * 100).tolist()
    return {"loss": loss_sum / max(n, 1), "top1": confusion.diag().sum().item() / max(n, 1) * 100,
            "top5": top5_hits / max(n, 1) * 100, "per_class": per_class, "confusion": confusion.tolist(),
            "images": n}


def _val_loader(val_dir, transform, batch_size: int, workers: int):
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from .data.transforms import load_rgb
    dataset = ImageFolder(str(val_dir), transform=transform, loader=load_rgb)
    return dataset, DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                               persistent_workers=False)


def evaluate_on_folder(model, val_dir, transform, class_ids, batch_size: int = 100, workers: int = 1,
                       amp: bool = True, progress: bool = True, desc: str = "eval") -> dict:
    """Evaluate on an ImageFolder-style ``val_dir`` whose sub-folders must be the model's ``class_ids``."""
    dataset, loader = _val_loader(val_dir, transform, batch_size, workers)
    if list(dataset.classes) != list(class_ids):
        raise InputError(f"{val_dir} has classes {dataset.classes[:5]}..., the model was trained on "
                         f"{list(class_ids)[:5]}...: evaluate on the dataset the model was trained for")
    return evaluate(model, loader, len(class_ids), amp=amp, progress=progress, desc=desc)


def robustness_sweep(model, val_dir, class_ids, image_size: int, mean, std, crop_pct: float,
                     rotations=ROTATIONS, scales=SCALES, **kw) -> list[dict]:
    """Top-1/top-5 on ``val_dir`` with every crop rotated by each angle and rescaled by each factor."""
    from .data.transforms import eval_transform
    conditions = [("rotation", a, dict(angle=a)) for a in rotations] + [("scale", s, dict(scale=s)) for s in scales]
    rows = []
    for kind, value, extra in conditions:
        tf = eval_transform(image_size, mean, std, crop_pct, **extra)
        r = evaluate_on_folder(model, val_dir, tf, class_ids, desc=f"{kind} {value}", **kw)
        rows.append({"kind": kind, "value": value, "top1": r["top1"], "top5": r["top5"]})
    return rows


def count_macs(model, image_size) -> int:
    """Multiply-accumulates of one forward pass at ``image_size`` (int or (H, W)), batch 1: convolutions (a ConvTwist
    counts its 9 main taps and 8 twist taps per input channel), and linear layers."""
    import torch.nn as nn

    from .layers import ConvTwist
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    total, hooks = [0], []

    def conv_hook(m, args, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def twist_hook(m, args, out):
        total[0] += out.numel() * m.in_channels * (9 + 2 * m.weight_x.shape[-1])

    def linear_hook(m, args, out):
        total[0] += out.numel() * m.in_features
    for m in model.modules():
        if isinstance(m, ConvTwist):
            hooks.append(m.register_forward_hook(twist_hook))
        elif isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    return total[0]
