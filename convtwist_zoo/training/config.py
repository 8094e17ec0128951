"""`TrainConfig`: every knob of a training run, each one a ``convtwist-zoo train`` flag with its help and allowed
values (`KNOB_RANGES`), checked by `TrainConfig.validate`; and `RECIPE_KNOBS`, the knobs the cards compare."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import InputError
from ..models._registry import parse_model_args, split_model_name

__all__ = ["TrainConfig", "KNOB_RANGES", "RECIPE_KNOBS"]


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
    "reference_steps": (_whole(0), ">= 0 (0 = off)"),
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
    reference_steps: int = _knob(0, "after each epoch, time this many train steps of a copy of the model on random "
                                    "images: the bound the run's wall time is set against (0: off; the weights are "
                                    "unchanged)")
    resume: bool = _knob(False, "continue the run in --out from its last.pt (the same recipe only)")
    overwrite: bool = _knob(False, "replace a finished run's outputs in --out (else refused)")
    progress: bool = _knob(True, "progress bars")

    def __post_init__(self):
        # a checkpoint's name (resnet18.imagewoof) means its weights: the recipe records them as --pretrained
        arch, tag = split_model_name(self.model)
        if tag is not None:
            if self.pretrained not in (None, tag) or self.checkpoint:
                other = f"--checkpoint {self.checkpoint}" if self.checkpoint else f"--pretrained {self.pretrained}"
                raise InputError(f"--model {self.model} names the {tag} weights, but {other} asks for others; give "
                                 f"--model {arch} with the weights you want")
            self.model, self.pretrained = arch, tag

    def validate(self) -> None:
        """Refuse a knob outside its range, naming the flag and the range (before anything is built or written)."""
        rules = [(name, ok(getattr(self, name)), allowed) for name, (ok, allowed) in KNOB_RANGES.items()]
        for name, ok, allowed in rules:
            if not ok:
                raise InputError(f"--{name.replace('_', '-')} must be {allowed}, got {getattr(self, name)!r}")
        parse_model_args(self.model_args)
        if self.pretrained and self.checkpoint:
            raise InputError("give --pretrained TAG (a zoo checkpoint) or --checkpoint RUN (a run folder of yours), "
                             "not both")
        if self.pretrained and (os.sep in self.pretrained or self.pretrained.endswith(".safetensors")):
            raise InputError(f"--pretrained {self.pretrained!r} is a path: start from a run folder of yours with "
                             f"--checkpoint {self.pretrained}")
        if self.checkpoint and not Path(self.checkpoint).exists():
            raise FileNotFoundError(f"--checkpoint {self.checkpoint}: no such run folder or weights file")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# The knobs of a recipe that the cards compare between checkpoints (what trained them, not which model or data).
RECIPE_KNOBS = ("epochs", "image_size", "train_image_size", "batch_size", "optimizer", "lookahead", "lookahead_alpha",
                "lr", "momentum", "weight_decay", "schedule", "warmup_epochs", "flat_fraction", "label_smoothing",
                "min_scale", "augment", "ema", "noise", "amp", "crop_pct", "pretrained", "freeze_epochs",
                "backbone_lr_mult", "max_steps_per_epoch")
