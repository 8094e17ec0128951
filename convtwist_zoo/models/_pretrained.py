"""Pretrained specs: what a checkpoint is beside its tensor file (torchvision's weight enums, timm's pretrained_cfg).

The model files declare their checkpoints beside their builders (`checkpoint`, then `register_checkpoints`), and
this module is their one store: where each lives on the Hub and at which pinned revision, its sha256 and size, its
dataset (hence its classes), its builder options and the eval transform's parameters. Everything else (timm's
``pretrained_cfg``, a Hub folder's ``config.json``, the cards) is derived from a spec. ``$CONVTWIST_ZOO_HUB_DIR`` may
add a user's own Hub-style folders; a zoo checkpoint always wins, so a folder cannot override its hash.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..data.datasets import DATASETS
from ..errors import InputError
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from ..run_config import RunConfigError, check_classes, read_run_config
from ._registry import UnknownModelError, get_builder

__all__ = ["PretrainedSpec", "checkpoint", "register_checkpoints", "register_pretrained", "list_pretrained",
           "get_pretrained", "default_tag", "pinned_revision", "specs_in_folder", "register_hub_dir_specs", "first_conv", "DEFAULT_HF_ORG", "GITHUB_REPO", "architecture_cfg"]

DEFAULT_HF_ORG = "convtwist"
# the zoo's source repository on GitHub: what torch.hub.load names, in every snippet of the docs and cards
GITHUB_REPO = "convtwist/convtwist-zoo"


def pinned_revision(sha256: str) -> str:
    """The Hub tag a checkpoint's weights are published under (``release publish`` creates it): named after the
    weights' hash, so a later upload to the same repo never changes what an installed spec downloads."""
    return f"weights-{sha256[:16]}"


@dataclass(frozen=True)
class PretrainedSpec:
    """One checkpoint: ``architecture.tag``, its Hub location and hash, and what it expects."""
    architecture: str
    tag: str
    sha256: str
    size: int = 0                          # bytes of the weights file
    dataset: str = ""                      # what it was trained on (a key of DATASETS, or a user's own)
    model_args: str = ""                   # the builder options it was trained with ("maxblur=true")
    num_classes: int = 10
    class_ids: tuple = ()
    class_names: tuple = ()
    input_size: tuple = (3, 128, 128)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    filename: str = "model.safetensors"
    revision: str = ""                     # a pinned Hub tag or commit ("" pins `pinned_revision(sha256)`)
    default: bool = False                  # the tag that pretrained=True picks

    def __post_init__(self):
        check_classes(self.class_ids, self.class_names, self.num_classes, f"checkpoint spec {self.name}")
        if not self.revision:
            object.__setattr__(self, "revision", pinned_revision(self.sha256))

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    @property
    def repo_name(self) -> str:
        """Hub repo name = folder name under ``hub/``."""
        return self.name

    def repo_id(self, org: str | None = None) -> str:
        """``ORG/<arch>.<tag>``: ORG is ``org``, else ``$CONVTWIST_ZOO_HF_ORG``, else the zoo's (``convtwist``)."""
        return f"{org or os.environ.get('CONVTWIST_ZOO_HF_ORG', DEFAULT_HF_ORG)}/{self.repo_name}"

    def transforms(self):
        """The eval transform the checkpoint was measured with (resize, centre crop, normalise)."""
        return eval_transform(tuple(self.input_size[1:]), self.mean, self.std, self.crop_pct, self.interpolation)

    def timm_cfg(self, num_classes: int | None = None) -> dict:
        """This checkpoint as timm's ``pretrained_cfg`` (the keys timm's ``PretrainedCfg`` takes); with another
        ``num_classes`` (a new head) the class names are dropped."""
        n = self.num_classes if num_classes is None else num_classes
        return {"hf_hub_id": self.repo_id(), "hf_hub_filename": self.filename, "num_classes": n,
                "input_size": tuple(self.input_size), "crop_pct": self.crop_pct, "crop_mode": "center",
                "interpolation": self.interpolation, "mean": tuple(self.mean), "std": tuple(self.std),
                "pool_size": tuple(s // 32 for s in self.input_size[1:]), "first_conv": first_conv(self.architecture),
                "classifier": "fc", "label_names": tuple(self.class_names) if n == self.num_classes else None,
                "license": "mit", "notes": (f"convtwist-zoo checkpoint; sha256 {self.sha256}",)}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainedSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**d)


def checkpoint(dataset: str, sha256: str, size: int, *, default: bool = False, model_args: str = "",
               image_size: int = 128, crop_pct: float = 0.875, interpolation: str = "bilinear",
               revision: str = "", classes: tuple | None = None) -> dict:
    """One checkpoint's declaration in a model file's ``default_cfgs``: Imagenette's or Imagewoof's classes come
    from its dataset; another dataset names its own, ``classes=(class_ids, class_names)``.

    Example:
        >>> checkpoint("imagewoof", "7cc3...", 94371452, default=True)  # doctest: +SKIP
    """
    if classes is None:
        if dataset not in DATASETS:
            raise InputError(f"checkpoint of {dataset!r}: give classes=(class_ids, class_names), or one of "
                             f"{', '.join(DATASETS)}")
        classes = (DATASETS[dataset].class_ids, DATASETS[dataset].class_names)
    ids, names = (tuple(c) for c in classes)
    return {"dataset": dataset, "sha256": sha256, "size": size, "default": default, "model_args": model_args,
            "num_classes": len(ids), "class_ids": ids, "class_names": names,
            "input_size": (3, image_size, image_size), "crop_pct": crop_pct, "interpolation": interpolation,
            "revision": revision}


_PRETRAINED: dict[str, PretrainedSpec] = {}


def register_pretrained(spec: PretrainedSpec) -> PretrainedSpec:
    """Add (or replace) a pretrained spec; tests and users with their own Hub repos can add entries."""
    _PRETRAINED[spec.name] = spec
    return spec


def register_checkpoints(cfgs: dict) -> dict[str, PretrainedSpec]:
    """Register a model file's checkpoints (``"arch.tag": checkpoint(...)``); each architecture that has any names
    exactly one default.

    Returns:
        The specs by name.
    """
    specs = {}
    for name, cfg in cfgs.items():
        arch, _, tag = name.partition(".")
        specs[name] = register_pretrained(PretrainedSpec(arch, tag, **cfg))
    for arch in {s.architecture for s in specs.values()}:
        defaults = [s.tag for s in specs.values() if s.architecture == arch and s.default]
        if len(defaults) != 1:
            raise AssertionError(f"{arch} declares {len(defaults)} default checkpoints ({defaults}); declare one")
    return specs


def specs_in_folder(folder: str | os.PathLike) -> list[PretrainedSpec]:
    """The specs a Hub-style folder's ``*/config.json`` files carry (``pretrained_spec``), sorted by name; a folder
    that cannot be read is skipped with a warning, so one bad folder does not hide the rest."""
    specs = []
    for config in sorted(Path(folder).glob("*/config.json")):
        try:
            entry = read_run_config(config, required=()).get("pretrained_spec")
            if entry:
                specs.append(PretrainedSpec.from_dict(entry))
        except (RunConfigError, KeyError, TypeError, ValueError) as e:
            warnings.warn(f"skipped {config}: {e}", stacklevel=2)
    return specs


def register_hub_dir_specs() -> None:
    """Extra checkpoint folders in ``$CONVTWIST_ZOO_HUB_DIR`` (a user's own Hub-style folder); a zoo checkpoint of
    the same name wins, so a folder cannot override its hash."""
    extra = os.environ.get("CONVTWIST_ZOO_HUB_DIR")
    if extra and Path(extra).is_dir():
        for spec in specs_in_folder(extra):
            if spec.name not in _PRETRAINED:
                register_pretrained(spec)


@functools.lru_cache(maxsize=None)
def first_conv(arch: str) -> str:
    """The name of ``arch``'s first convolution (``conv1``, or ``conv1.0`` for a deep stem): what timm's cfg calls
    ``first_conv``, read from the model itself (built on the meta device, no memory)."""
    with torch.device("meta"):
        model = get_builder(arch)(num_classes=1)
    return next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


def list_pretrained(pattern: str = "") -> list[str]:
    """Names (``arch.tag``) of the known checkpoints containing ``pattern``.

    Args:
        pattern: a substring to filter by ("" lists all).

    Returns:
        Sorted ``arch.tag`` names.

    Example:
        >>> list_pretrained("imagewoof")[:2]
        ['convtwist_resnet18.imagewoof', 'convtwist_resnet50.imagewoof']
    """
    return sorted(n for n in _PRETRAINED if pattern in n)


def default_tag(arch: str) -> str | None:
    """The tag ``pretrained=True`` gives for ``arch`` (its declared default), or None when it has no checkpoint."""
    tags = [s for s in _PRETRAINED.values() if s.architecture == arch]
    defaults = [s.tag for s in tags if s.default]
    if defaults:
        return defaults[0]
    if len(tags) == 1:  # a user's single registered checkpoint is its architecture's default
        return tags[0].tag
    if tags:
        raise UnknownModelError(f"{arch} has several checkpoints and none is its default; name one: "
                                f"{', '.join(sorted(s.tag for s in tags))}")
    return None


def get_pretrained(arch: str, tag: str | bool | None = True) -> PretrainedSpec:
    """Spec of ``arch.tag``; ``tag=True`` gives the architecture's declared default checkpoint.

    Example:
        >>> get_pretrained("convtwist_resnet50").name
        'convtwist_resnet50.imagewoof'
    """
    get_builder(arch)  # an unknown architecture: the registry's error, with the closest name
    if tag is True or tag is None:
        tag = default_tag(arch)
        if tag is None:
            raise UnknownModelError(f"no pretrained weights for {arch!r} yet; known checkpoints: "
                                    f"{', '.join(list_pretrained()) or 'none'}")
    spec = _PRETRAINED.get(f"{arch}.{tag}")
    if spec is None:
        tags = sorted(s.tag for s in _PRETRAINED.values() if s.architecture == arch)
        raise UnknownModelError(f"no pretrained weights {arch}.{tag}; available for {arch}: "
                                f"{', '.join(tags) or 'none'} (all: {', '.join(list_pretrained())})")
    return spec


def architecture_cfg(arch: str, num_classes: int = 10) -> dict:
    """timm's ``pretrained_cfg`` of an architecture with no weights loaded: its default checkpoint's (as
    ``timm.create_model(name)`` gives its default tag's), else the zoo's input conventions."""
    if default_tag(arch) is not None:
        return get_pretrained(arch).timm_cfg(num_classes)
    return {"num_classes": num_classes, "input_size": (3, 128, 128), "pool_size": (4, 4), "crop_pct": 0.875,
            "crop_mode": "center", "interpolation": "bilinear", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
            "first_conv": first_conv(arch), "classifier": "fc"}
