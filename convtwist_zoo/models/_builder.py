"""Build a model from its name, as timm's ``_builder.build_model_with_cfg``: the architecture (`_registry`), its
checkpoint's spec (`_pretrained`) and verified weights (`_hub`) put together; the first convolution adapted to other
input channels, the classifier to another class count, ``features_only`` wrapped."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch.nn as nn
from safetensors import SafetensorError, safe_open

from ..errors import InputError
from ..run_config import read_run_config
from ._features import FeatureResNet
from ._hub import WeightsError, load_weights, resolve_weights, verify_local
from ._pretrained import architecture_cfg, get_pretrained, list_pretrained
from ._registry import check_options, get_builder, parse_model_args, split_model_name

__all__ = ["create_model", "get_transform", "load_pretrained", "adapt_input_convs"]


def create_model(name: str, pretrained=False, num_classes: int | None = None, features_only: bool = False,
                 out_indices=(1, 2, 3, 4), checkpoint_path=None, **kwargs) -> nn.Module:
    """Build a registered model, optionally with pretrained weights (sha256-checked).

    Args:
        name: an architecture (``convtwist_resnet50``), or ``arch.tag`` for a checkpoint
            (``convtwist_resnet50.imagewoof``, which implies ``pretrained=True``).
        pretrained: False, True (the architecture's declared default checkpoint, see `default_tag`), a tag (a
            string is always a tag, even where a folder of that name exists), or a path object (``pathlib.Path``)
            to a run folder of `train` or its ``model.safetensors``.
        num_classes: a classifier size other than the checkpoint's replaces its head (for fine-tuning).
        features_only: return the stage feature maps (strides 4-32) instead of logits.
        out_indices: with ``features_only``: 0 = the stem, 1-4 = the stages.
        checkpoint_path: a run folder or ``model.safetensors`` of your own (timm's name; the same as
            ``pretrained=pathlib.Path(...)``).
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
        raise InputError(f"model name {name!r} asks for tag {tag!r} but pretrained={pretrained!r}")
    if checkpoint_path is not None:
        if pretrained not in (False, None):
            raise InputError(f"give either pretrained={pretrained!r} or checkpoint_path={checkpoint_path!r}, not both")
        pretrained = Path(checkpoint_path)
    if pretrained is False or pretrained is None:
        check_options(arch, {k: v for k, v in kwargs.items() if k != "pretrained_file"})
        kwargs.pop("pretrained_file", None)
        model = builder(num_classes=10 if num_classes is None else num_classes, **kwargs)
    else:
        model = load_pretrained(arch, pretrained, num_classes=num_classes, **kwargs)
    spec = getattr(model, "pretrained_spec", None)
    classes = model.num_classes if hasattr(model, "num_classes") else None
    model.pretrained_cfg = model.default_cfg = (spec.timm_cfg(classes) if spec is not None
                                                else architecture_cfg(arch, classes if classes is not None else 10))
    if features_only:
        model = FeatureResNet(model, out_indices)
    return model


def adapt_input_convs(model: nn.Module, state: dict) -> dict:
    """The RGB input convolution's weights adapted to a model built with other input channels (``in_chans``), as
    timm does (`timm.models.adapt_input_conv`: summed for one channel, repeated and rescaled for more)."""
    from timm.models import adapt_input_conv
    own = model.state_dict()
    for key, weight in state.items():
        target = own.get(key)
        if (target is not None and weight.ndim == 4 and weight.shape[1] == 3 and target.shape[1] != 3
                and weight.shape[0] == target.shape[0] and weight.shape[2:] == target.shape[2:]):
            state = {**state, key: adapt_input_conv(target.shape[1], weight)}
    return state


def load_pretrained(arch: str, pretrained, num_classes: int | None = None, pretrained_file=None,
                    **kwargs) -> nn.Module:
    """Build ``arch`` with weights, as timm's ``build_model_with_cfg``: ``pretrained`` is True (the declared default
    tag), a tag, or a path object to a local file/folder of a user's own run (``model.safetensors`` + ``config.json``;
    checked against the hash the config records). The checkpoint's builder options apply unless ``kwargs`` override
    them; other input channels adapt the first convolution; a ``num_classes`` other than the checkpoint's replaces
    the classifier (fine-tuning) and says so."""
    builder = get_builder(arch)
    spec = None
    local = pretrained if isinstance(pretrained, os.PathLike) else None
    if isinstance(pretrained, str):
        _check_tag_spelling(arch, pretrained)
    if local is not None:
        path = Path(local)
        path = path / "model.safetensors" if path.is_dir() else path
        if not path.is_file():
            raise WeightsError(f"pretrained path {path} does not exist (expected a model.safetensors file or a run "
                               "folder holding one)")
        config = read_run_config(path, required=())
        verify_local(path, config)
        # the architecture options the run was trained with (maxblur, sa...), unless the caller overrides them
        kwargs = {**(config.get("model_args") or
                     parse_model_args(((config.get("recipe") or {}).get("model_args")) or "")), **kwargs}
        if config.get("architecture") not in (None, arch):
            raise WeightsError(f"{path} holds a {config['architecture']}, not a {arch}; use "
                               f"create_model({config['architecture']!r}, pretrained=pathlib.Path({str(local)!r}))")
        ckpt_classes = config.get("num_classes") or _classes_in_file(path)
    else:
        spec = get_pretrained(arch, pretrained)
        path = resolve_weights(spec, pretrained_file)
        ckpt_classes = spec.num_classes
        kwargs = {**parse_model_args(spec.model_args), **kwargs}
    check_options(arch, kwargs)
    model = builder(num_classes=ckpt_classes, **kwargs)
    load_weights(model, path, f"{arch} with {ckpt_classes} classes", adapt=adapt_input_convs)
    if num_classes is not None and num_classes != ckpt_classes:
        if num_classes:  # 0 asks for pooled features: nothing to fine-tune, nothing to warn about
            warnings.warn(f"{spec.name if spec else path}: classifier for {ckpt_classes} classes dropped, new head for "
                          f"{num_classes} classes (randomly initialised; fine-tune it)")
        model.reset_classifier(num_classes)
    model.pretrained_spec = spec
    model.pretrained_config = spec.to_dict() if spec else config
    return model


def _check_tag_spelling(arch: str, tag: str) -> None:
    """A string is a tag, never a path: refuse one that is no tag of ``arch`` but names a file or folder, saying how
    to pass a local checkpoint (a folder that happens to carry a tag's name never shadows the tag)."""
    if f"{arch}.{tag}" in list_pretrained():
        return
    if os.sep in tag or tag.endswith(".safetensors") or Path(tag).exists():
        raise WeightsError(f"pretrained={tag!r} is not a tag of {arch} but a path: a local run folder or weights file "
                           f"is passed as a path object, pretrained=pathlib.Path({tag!r}) (on the command line: "
                           f"--checkpoint {tag})")


def _classes_in_file(path: Path) -> int:
    try:
        with safe_open(str(path), "pt") as f:
            return f.get_slice("fc.weight").get_shape()[0]
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file with a classifier fc.weight ({e}); replace "
                           "it with an intact copy") from e


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
