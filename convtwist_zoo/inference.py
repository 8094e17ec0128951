"""Classify images with a pretrained or fine-tuned model: the model, its eval transform and class names together."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from PIL import Image, ImageOps

from .models._builder import create_model

from .models._registry import split_model_name
from .data.transforms import ImageError, eval_transform, load_rgb, to_rgb
from .errors import InputError

__all__ = ["Classifier", "load_classifier", "open_image", "ImageError", "MIN_IMAGE_SIDE"]

MIN_IMAGE_SIDE = 32  # export/classify_onnx.py applies the same rule


@dataclass
class Classifier:
    model: nn.Module
    transform: object
    class_ids: tuple
    class_names: tuple
    name: str

    @torch.no_grad()
    def predict(self, images, topk: int = 5, batch_size: int = 32) -> list[list[tuple[str, str, float]]]:
        """Top-k (class id, class name, probability) for each PIL image or path, ``batch_size`` images at a time.

        A path and the PIL image opened from it give the same answer: both go through the one decoder (upright,
        any bit depth to 8-bit RGB: `transforms.to_rgb`)."""
        if topk < 1:
            raise InputError(f"topk must be >= 1, got {topk}")
        for im in images:  # every file checked before any work
            if isinstance(im, (str, os.PathLike)):
                open_image(im)
        out = []
        for start in range(0, len(images), batch_size):
            batch = torch.stack([self.transform(open_image(im) if isinstance(im, (str, os.PathLike))
                                                else to_rgb(ImageOps.exif_transpose(im)))
                                 for im in images[start:start + batch_size]])
            with torch.no_grad():
                logits = self.model(batch).float()
            if not bool(torch.isfinite(logits).all()):
                raise FloatingPointError(f"{self.name} produced NaN or infinite scores; its weights are damaged or "
                                         "the input is not an image it can read")
            probs = logits.softmax(dim=1)
            top = probs.topk(min(topk, probs.shape[1]), dim=1)
            out += [[(self.class_ids[i], self.class_names[i], p) for p, i in zip(ps.tolist(), idx.tolist())]
                    for ps, idx in zip(top.values, top.indices)]
        return out


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as 8-bit RGB (any bit depth), with an error that says what is wrong with it."""
    if os.path.isdir(path):
        raise ImageError(f"{path} is a folder; give image files")
    image = load_rgb(path)
    if min(image.size) < MIN_IMAGE_SIDE:
        raise ImageError(f"{path} is {image.size[0]}x{image.size[1]}: too small, the models need at least "
                         f"{MIN_IMAGE_SIDE}px on each side (they were trained at 128px)")
    return image


def load_classifier(model: str, pretrained: str | os.PathLike | None = None) -> Classifier:
    """A model with its eval transform and class names, ready to classify image files.

    Args:
        model: ``arch.tag`` (a zoo checkpoint), or ``arch`` with ``pretrained``.
        pretrained: a tag, or a path (``pathlib.Path``) to a run folder / ``model.safetensors`` of your own.

    Returns:
        A `Classifier`; ``.predict(paths_or_images, topk=5)`` gives (class id, class name, probability) lists.

    Example:
        >>> clf = load_classifier("convtwist_resnet50.imagenette")
        >>> clf.predict(["church.jpg"], topk=3)[0][0]
        ('n03028079', 'church', 0.97...)
    """
    arch, tag = split_model_name(model)
    if tag is not None and pretrained is not None and pretrained != tag:
        raise InputError(f"{model} names the {tag} weights but pretrained={pretrained!r} asks for others; give "
                         f"{arch} with pretrained=..., or {model} alone")
    net = create_model(arch, pretrained=pretrained if pretrained else (tag or True))
    net.eval()
    spec = getattr(net, "pretrained_spec", None)
    if spec is not None:
        return Classifier(net, spec.transforms(), spec.class_ids, spec.class_names, spec.name)
    config = net.pretrained_config
    size = config.get("input_size", [3, 128, 128])
    n = net.get_classifier().out_features
    ids = tuple(config.get("class_ids") or [str(i) for i in range(n)])
    return Classifier(net, eval_transform(tuple(size[1:]), config.get("mean", (0.485, 0.456, 0.406)),
                                          config.get("std", (0.229, 0.224, 0.225)), config.get("crop_pct", 0.875)),
                      ids, tuple(config.get("class_names") or ids), f"{arch} ({Path(str(pretrained)).name})")
