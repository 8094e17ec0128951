"""The architecture registry: model builders by name (``register_model``, ``list_models``, ``get_builder``), the
options each builder declares in its signature, and ``name.tag`` parsing. It neither builds nor loads: the model
files (`resnet`, `xresnet`) register themselves, checkpoints live in `_pretrained`, weights in `_hub`, and
``create_model`` is `_builder`'s.
"""
from __future__ import annotations

import difflib
import inspect
import json
from typing import Callable

import torch.nn as nn

from ..errors import InputError, ZooError

__all__ = ["register_model", "list_models", "get_builder", "is_model", "split_model_name", "parse_model_args",
           "UnknownModelError", "UnknownOptionError", "model_options", "check_options"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(ZooError, ValueError):
    """A model name that is not in the registry."""


class UnknownOptionError(ZooError, ValueError):
    """A builder option that the architecture does not declare."""


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name; a name that is taken is refused, never overwritten.

    Args:
        fn: a function ``fn(num_classes=10, *, option=default, ...) -> nn.Module``; its keyword parameters are the
            architecture's options (`model_options`), checked before it is called.

    Returns:
        ``fn`` unchanged (use it as a decorator).

    Example:
        >>> @register_model
        ... def my_convtwist_net(num_classes=10, **kwargs): ...
    """
    if fn.__name__ in _MODELS:
        raise InputError(f"a model named {fn.__name__!r} is already registered ({_MODELS[fn.__name__].__module__}); "
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
            raise InputError(f"--model-args {text!r}: expected key=value[,key=value], got {item!r}")
        if key in kwargs:
            raise InputError(f"--model-args {text!r}: {key} is given twice; give each option once")
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


def get_builder(arch: str) -> Callable[..., nn.Module]:
    """The builder of ``arch``; an unknown name raises `UnknownModelError` with the closest match."""
    _check_arch(arch)
    return _MODELS[arch]


def model_options(arch: str) -> dict:
    """The options ``arch``'s builder declares (name -> default), read from its signature.

    Example:
        >>> sorted(model_options("xresnet18"))[:3]
        ['act_layer', 'drop_path_rate', 'drop_rate']
    """
    params = inspect.signature(get_builder(arch)).parameters.values()
    return {p.name: p.default for p in params if p.name != "num_classes"
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_options(arch: str, options: dict) -> None:
    """Refuse an option ``arch`` does not declare, listing the ones it has."""
    known = model_options(arch)
    unknown = [k for k in options if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownOptionError(f"{arch} has no option {unknown[0]!r}{hint}; its options: "
                                 f"{', '.join(sorted(known)) or 'none'}")
