"""The architecture registry: model builders by name (``register_model``, ``list_models``, ``get_builder``) and
``name.tag`` parsing. No I/O: pretrained specs live in `specs`, weights in `hub`, ``create_model`` in `factory`.
"""
from __future__ import annotations

import difflib
import functools
import json
from typing import Callable

import torch.nn as nn

from . import models, xresnet

__all__ = ["register_model", "list_models", "get_builder", "is_model", "split_model_name", "parse_model_args",
           "UnknownModelError"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name; a name that is taken is refused, never overwritten.

    Args:
        fn: a function ``fn(num_classes=10, **kwargs) -> nn.Module``.

    Returns:
        ``fn`` unchanged (use it as a decorator).

    Example:
        >>> @register_model
        ... def my_convtwist_net(num_classes=10, **kwargs): ...
    """
    if fn.__name__ in _MODELS:
        raise ValueError(f"a model named {fn.__name__!r} is already registered ({_MODELS[fn.__name__].__module__}); "
                         "choose another name")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "") -> list[str]:
    """Registered architecture names containing ``pattern``.

    Args:
        pattern: a substring to filter by ("" lists all).

    Returns:
        Sorted names.

    Example:
        >>> list_models("xresnet")
        ['convtwist_xresnet18', 'convtwist_xresnet34', 'convtwist_xresnet50', 'xresnet18', 'xresnet34', 'xresnet50']
    """
    return sorted(n for n in _MODELS if pattern in n)


def is_model(arch: str) -> bool:
    """Whether ``arch`` (no tag) is a registered architecture."""
    return arch in _MODELS


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"convtwist_resnet50.imagewoof"`` -> ``("convtwist_resnet50", "imagewoof")``."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def parse_model_args(text: str) -> dict:
    """``"maxblur=true,sa=false,act_layer=relu"`` -> ``{"maxblur": True, "sa": False, "act_layer": "relu"}``: numbers
    and ``true``/``false`` (any case) as typed values, anything else as a string; the builder checks each option's
    type. A key given twice is refused (which one did the user mean?).

    Example:
        >>> parse_model_args("maxblur=True,init_max=1.5")
        {'maxblur': True, 'init_max': 1.5}
    """
    kwargs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key.isidentifier():
            raise ValueError(f"--model-args {text!r}: expected key=value[,key=value], got {item!r}")
        if key in kwargs:
            raise ValueError(f"--model-args {text!r}: {key} is given twice; give each option once")
        if value.lower() in ("true", "false"):
            kwargs[key] = value.lower() == "true"
            continue
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        kwargs[key] = parsed if isinstance(parsed, (int, float, str)) else value
    return kwargs


def _check_arch(arch: str) -> None:
    if arch not in _MODELS:
        close = difflib.get_close_matches(arch, _MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(f"unknown model {arch!r}.{hint} Known models: {', '.join(list_models())}")


@functools.lru_cache(maxsize=None)
def first_conv(arch: str) -> str:
    """The name of ``arch``'s first convolution (``conv1``, or ``conv1.0`` for a deep stem): what timm's cfg calls
    ``first_conv``, read from the model itself (built on the meta device, no memory)."""
    import torch
    with torch.device("meta"):
        model = get_builder(arch)(num_classes=1)
    return next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


def get_builder(arch: str) -> Callable[..., nn.Module]:
    """The builder of ``arch``; an unknown name raises `UnknownModelError` with the closest match."""
    _check_arch(arch)
    return _MODELS[arch]


@register_model
def resnet18(num_classes: int = 10, **kwargs) -> nn.Module:
    """Plain torchvision ResNet-18 (the baseline for convtwist_resnet18)."""
    return models.resnet(18, twist=False, num_classes=num_classes, **kwargs)


@register_model
def resnet50(num_classes: int = 10, **kwargs) -> nn.Module:
    """Plain torchvision ResNet-50 (the baseline for convtwist_resnet50)."""
    return models.resnet(50, twist=False, num_classes=num_classes, **kwargs)


@register_model
def convtwist_resnet18(num_classes: int = 10, **kwargs) -> nn.Module:
    """ResNet-18 with every 3x3 conv a ConvTwist (7x7 stem and 1x1 shortcuts stay plain)."""
    return models.resnet(18, twist=True, num_classes=num_classes, **kwargs)


@register_model
def convtwist_resnet50(num_classes: int = 10, **kwargs) -> nn.Module:
    """ResNet-50 with every 3x3 conv a ConvTwist (7x7 stem and 1x1 convs stay plain)."""
    return models.resnet(50, twist=True, num_classes=num_classes, **kwargs)


def _xresnet_builder(depth: int, twist: bool):
    name = f"{'convtwist_' if twist else ''}xresnet{depth}"

    def build(num_classes: int = 10, **kwargs) -> nn.Module:
        return xresnet.xresnet(depth, twist=twist, num_classes=num_classes, **kwargs)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"fast.ai leaderboard xresnet{depth} (deep stem, pooled shortcuts, Mish, zero-init last BN; "
                     "timm's ResNet)" + (", every 3x3 conv of its blocks a ConvTwist" if twist else "") +
                     ". kwargs: ``maxblur``, ``sa``, ``wide_stem``, timm ResNet arguments.")
    return register_model(build)


for _depth in (18, 34, 50):
    for _twist in (False, True):
        _xresnet_builder(_depth, _twist)
