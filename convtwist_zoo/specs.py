"""Pretrained specs: what a checkpoint is beside its tensor file (torchvision's weight enums, timm's pretrained_cfg):
where it lives on the Hub, its sha256 and size, its classes, the eval transform's parameters and measured metrics.

The zoo's specs ship in ``pretrained.json`` beside this file; ``$CONVTWIST_ZOO_HUB_DIR`` may add a user's own
Hub-style folders (the packaged entries win, so a folder cannot override a zoo checkpoint's hash).
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .registry import UnknownModelError, first_conv, get_builder
from .run_config import RunConfigError, check_classes, read_run_config
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform

__all__ = ["PretrainedSpec", "register_pretrained", "list_pretrained", "get_pretrained", "DEFAULT_HF_ORG",
           "SPECS_FILE", "architecture_cfg"]

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

    def __post_init__(self):
        check_classes(self.class_ids, self.class_names, self.num_classes, f"checkpoint spec {self.name}")

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
            try:  # one bad folder must not break `import convtwist_zoo` (or `convtwist-zoo list`) for the rest
                entry = read_run_config(config, required=()).get("pretrained_spec")
                if entry and f"{entry['architecture']}.{entry['tag']}" not in _PRETRAINED:
                    register_pretrained(PretrainedSpec.from_dict(entry))
            except (RunConfigError, KeyError, TypeError, ValueError) as e:
                warnings.warn(f"skipped {config} (CONVTWIST_ZOO_HUB_DIR): {e}", stacklevel=2)


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


def get_pretrained(arch: str, tag: str | bool | None = True) -> PretrainedSpec:
    """Spec of ``arch.tag``; ``tag=True`` picks the architecture's default checkpoint."""
    get_builder(arch)  # an unknown architecture: the registry's error, with the closest name
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


_load_specs_file()


def architecture_cfg(arch: str, num_classes: int = 10) -> dict:
    """timm's ``pretrained_cfg`` of an architecture with no weights loaded: its default checkpoint's (as
    ``timm.create_model(name)`` gives its default tag's), else the zoo's input conventions."""
    if any(s.architecture == arch for s in _PRETRAINED.values()):
        return get_pretrained(arch).timm_cfg(num_classes)
    return {"num_classes": num_classes, "input_size": (3, 128, 128), "pool_size": (4, 4), "crop_pct": 0.875,
            "crop_mode": "center", "interpolation": "bilinear", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
            "first_conv": first_conv(arch), "classifier": "fc"}
