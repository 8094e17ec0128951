"""Evaluation: loss, top-1/top-5, per-class accuracy and the confusion matrix of a classifier on a loader."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

__all__ = ["evaluate", "autocast_for", "accuracy_report"]


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
             progress: bool = False, desc: str = "eval") -> dict:
    """Run ``model`` in eval mode over ``loader``; returns loss, top1, top5 (in %), per_class (%), confusion
    (rows = true class, columns = predicted) and the number of images."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, top5_hits, n = 0.0, 0, 0
    for images, targets in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        targets = targets.to(device)
        with autocast_for(device, amp):
            logits = model(images)
        logits = logits.float()
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
