"""``create_model`` and ``get_transform``: the one entry point from a name to a ready model (timm's
``create_model``), above the architecture registry, the pretrained specs and the weights loader."""
from __future__ import annotations

import re

import torch.nn as nn

from . import models
from .hub import load_pretrained
from .registry import get_builder, split_model_name
from .specs import architecture_cfg, get_pretrained

__all__ = ["create_model", "get_transform"]


def create_model(name: str, pretrained=False, num_classes: int | None = None, features_only: bool = False,
                 out_indices=(1, 2, 3, 4), **kwargs) -> nn.Module:
    """Build a registered model, optionally with pretrained weights (sha256-checked).

    Args:
        name: an architecture (``convtwist_resnet50``), or ``arch.tag`` for a checkpoint
            (``convtwist_resnet50.imagewoof``, which implies ``pretrained=True``).
        pretrained: False, True (the architecture's default checkpoint), a tag (a string is always a tag, even where
            a folder of that name exists), or a path object (``pathlib.Path``) to a run folder of `train` or its
            ``model.safetensors``.
        num_classes: a classifier size other than the checkpoint's replaces its head (for fine-tuning).
        features_only: return the stage feature maps (strides 4-32) instead of logits.
        out_indices: with ``features_only``: 0 = the stem, 1-4 = the stages.
        **kwargs: builder options (``maxblur``, ``sa`` for the xresnets; ``pretrained_file`` for a local copy of a
            zoo checkpoint).

    Returns:
        The model (in train mode; call ``.eval()`` to classify). A pretrained one carries ``pretrained_spec``.

    Example:
        >>> net = create_model("convtwist_resnet50.imagewoof").eval()
        >>> tuned = create_model("convtwist_resnet50.imagewoof", num_classes=37)
        >>> backbone = create_model("convtwist_resnet50", pretrained="imagenette", features_only=True)
    """
    arch, tag = split_model_name(name)
    builder = get_builder(arch)
    if tag is not None and pretrained is False:
        pretrained = tag
    elif tag is not None and pretrained not in (True, tag):
        raise ValueError(f"model name {name!r} asks for tag {tag!r} but pretrained={pretrained!r}")
    try:
        if pretrained is False or pretrained is None:
            model = builder(num_classes=10 if num_classes is None else num_classes, **kwargs)
        else:
            model = load_pretrained(arch, pretrained, num_classes=num_classes, **kwargs)
    except TypeError as e:  # a misspelt option would otherwise surface as a constructor's signature error
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if unknown is None:
            raise
        options = re.search(r"kwargs: (.*?)\.?$", (builder.__doc__ or "").strip())
        raise ValueError(f"{arch} has no option {unknown[1]!r}"
                         + (f"; its options: {options[1].replace('``', '')}" if options else "")) from None
    spec = getattr(model, "pretrained_spec", None)
    classes = model.num_classes if hasattr(model, "num_classes") else None
    model.pretrained_cfg = model.default_cfg = (spec.timm_cfg(classes) if spec is not None
                                                else architecture_cfg(arch, classes if classes is not None else 10))
    if features_only:
        model = models.FeatureResNet(model, out_indices)
    return model


def get_transform(name: str):
    """The eval transform a checkpoint was measured with (resize, centre crop, normalise).

    Args:
        name: ``arch.tag`` (``convtwist_resnet50.imagenette``); an architecture alone means its default checkpoint.

    Returns:
        A torchvision transform from a PIL image (or uint8 tensor) to a normalised float tensor.

    Example:
        >>> preprocess = get_transform("convtwist_resnet50.imagewoof")
        >>> batch = preprocess(PIL.Image.open("dog.jpg").convert("RGB")).unsqueeze(0)
    """
    arch, tag = split_model_name(name)
    return get_pretrained(arch, tag or True).transforms()
