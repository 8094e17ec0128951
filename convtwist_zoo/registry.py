"""The model registry: builders (``register_model``, ``list_models``, ``create_model``), ``name.tag`` parsing, and
the pretrained specs (``PretrainedSpec``, ``list_pretrained``, ``get_pretrained``).

A spec carries everything a user needs beside the tensor file (torchvision's weight enums, timm's pretrained_cfg):
where the file lives on the Hub, its sha256, the classes, the eval transform's parameters and measured metrics. The
zoo's specs are stored in ``pretrained.json`` beside this file, written by ``convtwist-zoo cards`` from ``hub/``.
``create_model`` asks `hub` to resolve and verify the file, then loads it.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch.nn as nn

from . import models, xresnet
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform

__all__ = ["register_model", "list_models", "create_model", "split_model_name", "UnknownModelError",
           "PretrainedSpec", "register_pretrained", "list_pretrained", "get_pretrained", "get_transform",
           "DEFAULT_HF_ORG", "SPECS_FILE"]

DEFAULT_HF_ORG = "convtwist"
SPECS_FILE = Path(__file__).with_name("pretrained.json")


@dataclass(frozen=True)
class PretrainedSpec:
    """One checkpoint: ``architecture.tag``, its Hub location and hash, and what it expects and measured."""
    architecture: str
    tag: str
    sha256: str
    size: int = 0                          # bytes of the weights file
    num_classes: int = 10
    class_ids: tuple = ()
    class_names: tuple = ()
    input_size: tuple = (3, 128, 128)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    filename: str = "model.safetensors"
    revision: str = "main"                 # a branch, tag or pinned commit on the Hub
    default: bool = False                  # the tag that pretrained=True picks
    metrics: dict = field(default_factory=dict, compare=False, hash=False)
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # params, MACs, epochs, recipe, dataset

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    @property
    def repo_name(self) -> str:
        """Hub repo name = folder name under ``hub/``."""
        return self.name

    def repo_id(self, org: str | None = None) -> str:
        """``<org>/<arch>.<tag>``; the org comes from ``$CONVTWIST_ZOO_HF_ORG`` unless given."""
        return f"{org or os.environ.get('CONVTWIST_ZOO_HF_ORG', DEFAULT_HF_ORG)}/{self.repo_name}"

    def transforms(self):
        """The eval transform the checkpoint was measured with (resize, centre crop, normalise)."""
        return eval_transform(tuple(self.input_size[1:]), self.mean, self.std, self.crop_pct, self.interpolation)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainedSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**d)

_MODELS: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "") -> list[str]:
    """Registered architecture names containing ``pattern``."""
    return sorted(n for n in _MODELS if pattern in n)


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"convtwist_resnet50.imagewoof"`` -> ``("convtwist_resnet50", "imagewoof")``."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def _check_arch(arch: str) -> None:
    if arch not in _MODELS:
        close = difflib.get_close_matches(arch, _MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(f"unknown model {arch!r}.{hint} Known models: {', '.join(list_models())}")


def get_builder(arch: str) -> Callable[..., nn.Module]:
    _check_arch(arch)
    return _MODELS[arch]


def create_model(name: str, pretrained=False, num_classes: int | None = None, features_only: bool = False,
                 out_indices=(1, 2, 3, 4), **kwargs) -> nn.Module:
    """Build a registered model, optionally with pretrained weights.

    ``name`` may carry a tag (``convtwist_resnet50.imagewoof``). ``pretrained`` is False, True (the default tag),
    a tag, or a local file/folder holding ``model.safetensors``. ``num_classes`` different from the checkpoint's drops
    its classifier (for fine-tuning). ``features_only`` returns the stage feature maps instead of logits.
    """
    arch, tag = split_model_name(name)
    _check_arch(arch)
    if tag is not None and pretrained is False:
        pretrained = tag
    elif tag is not None and pretrained not in (True, tag):
        raise ValueError(f"model name {name!r} asks for tag {tag!r} but pretrained={pretrained!r}")
    if pretrained is False or pretrained is None:
        model = _MODELS[arch](num_classes=10 if num_classes is None else num_classes, **kwargs)
    else:
        from .hub import load_pretrained  # hub imports registry; import here keeps the direction one-way at load
        model = load_pretrained(arch, pretrained, num_classes=num_classes, **kwargs)
    if features_only:
        model = models.FeatureResNet(model, out_indices)
    return model


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
                     ". kwargs: ``maxblur``, ``sa``, timm ResNet arguments.")
    return register_model(build)


for _depth in (18, 34, 50):
    for _twist in (False, True):
        _xresnet_builder(_depth, _twist)


# ---------------------------------------------------------------------------------------------------- pretrained
_PRETRAINED: dict[str, PretrainedSpec] = {}


def register_pretrained(spec: PretrainedSpec) -> PretrainedSpec:
    """Add (or replace) a pretrained spec; tests and users with their own Hub repos can add entries."""
    _PRETRAINED[spec.name] = spec
    return spec


def _load_specs_file() -> None:
    """The packaged specs, then any extra checkpoint folders in ``$CONVTWIST_ZOO_HUB_DIR`` (a user's own Hub-style
    folder; the packaged entries win, so a folder cannot override a zoo checkpoint's hash)."""
    if SPECS_FILE.exists():
        for entry in json.loads(SPECS_FILE.read_text()):
            register_pretrained(PretrainedSpec.from_dict(entry))
    extra = os.environ.get("CONVTWIST_ZOO_HUB_DIR")
    if extra and Path(extra).is_dir():
        for config in sorted(Path(extra).glob("*/config.json")):
            entry = json.loads(config.read_text()).get("pretrained_spec")
            if entry and f"{entry['architecture']}.{entry['tag']}" not in _PRETRAINED:
                register_pretrained(PretrainedSpec.from_dict(entry))


def list_pretrained(pattern: str = "") -> list[str]:
    """Names (``arch.tag``) of the known checkpoints containing ``pattern``."""
    return sorted(n for n in _PRETRAINED if pattern in n)


def get_pretrained(arch: str, tag: str | bool | None = True) -> PretrainedSpec:
    """Spec of ``arch.tag``; ``tag=True`` picks the architecture's default checkpoint."""
    _check_arch(arch)
    tags = [s for s in _PRETRAINED.values() if s.architecture == arch]
    if tag is True or tag is None:
        defaults = [s for s in tags if s.default] or sorted(tags, key=lambda s: s.tag)
        if not defaults:
            raise UnknownModelError(f"no pretrained weights for {arch!r} yet; known checkpoints: "
                                    f"{', '.join(list_pretrained()) or 'none'}")
        return defaults[0]
    spec = _PRETRAINED.get(f"{arch}.{tag}")
    if spec is None:
        raise UnknownModelError(f"no pretrained weights {arch}.{tag}; available for {arch}: "
                                f"{', '.join(s.tag for s in tags) or 'none'} (all: {', '.join(list_pretrained())})")
    return spec


def get_transform(name: str):
    """Eval transform for a checkpoint name (``convtwist_resnet50.imagenette``; no tag = default checkpoint)."""
    arch, tag = split_model_name(name)
    return get_pretrained(arch, tag or True).transforms()


_load_specs_file()
