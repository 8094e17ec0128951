"""The zoo in timm's registry: ``import convtwist_zoo`` registers its architectures and checkpoints with timm, so
``timm.create_model("convtwist_resnet50.imagewoof", pretrained=True)``, ``timm.list_models("*convtwist*")``,
``timm.list_pretrained("*convtwist*")`` and ``timm.create_model("hf-hub:<org>/<arch>.<tag>")`` work.

- A name timm already has (``resnet18``, ``resnet50``) is never registered: timm keeps building its own. Their zoo
  weights load through ``convtwist_zoo.create_model`` (timm's public API has no way to add a tag to a model it owns).
- Each checkpoint gets a timm ``pretrained_cfg`` (``hf_hub_id``, input size, crop, mean/std, interpolation,
  classifier, label names), so ``timm.data.resolve_data_config({}, model=m)`` gives the transform its card was
  measured with.
- Weights are fetched by the zoo's loader (`hub`): the embedded ``hub/`` folder, the Hugging Face cache, then the Hub
  through ``huggingface_hub`` (the same download timm uses), with the file's size and sha256 checked before it loads.
  timm's own loader reads a state dict without a hash, so the entrypoints here call the zoo's instead; an
  ``hf-hub:`` repo is checked against the ``weights_sha256`` its ``config.json`` records.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import timm
from timm.models import generate_default_cfgs, register_model

from .factory import create_model
from .hub import load_pretrained
from .registry import list_models
from .specs import PretrainedSpec, get_pretrained, list_pretrained

__all__ = ["timm_pretrained_cfg", "REGISTERED"]


def timm_pretrained_cfg(spec: PretrainedSpec, first_conv: str = "conv1") -> dict:
    """A checkpoint's spec as timm's ``pretrained_cfg`` (the keys timm's ``PretrainedCfg`` takes)."""
    return {"hf_hub_id": spec.repo_id(), "hf_hub_filename": spec.filename, "num_classes": spec.num_classes,
            "input_size": tuple(spec.input_size), "crop_pct": spec.crop_pct, "crop_mode": "center",
            "interpolation": spec.interpolation, "mean": tuple(spec.mean), "std": tuple(spec.std),
            "first_conv": first_conv, "classifier": "fc", "label_names": tuple(spec.class_names),
            "license": "mit", "notes": (f"convtwist-zoo checkpoint; sha256 {spec.sha256}",)}


def _first_conv(arch: str) -> str:
    return "conv1.0" if "xresnet" in arch else "conv1"  # the xresnets' deep stem starts with a Sequential


def _entrypoint(arch: str):
    def build(pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None,
              **kwargs):
        from timm.models._builder import resolve_pretrained_cfg  # what timm's own builders call

        cfg = resolve_pretrained_cfg(arch, pretrained_cfg, pretrained_cfg_overlay)
        kwargs.pop("pretrained_model_args", None)
        num_classes = kwargs.pop("num_classes", None)
        if not pretrained:
            model = create_model(arch, num_classes=num_classes if num_classes is not None else cfg.num_classes or 10,
                                 **kwargs)
        elif cfg.source == "hf-hub":  # timm.create_model("hf-hub:org/name"): that repo's weights, hash-checked
            from huggingface_hub import hf_hub_download
            hf_hub_download(cfg.hf_hub_id, "config.json", cache_dir=cache_dir)  # read by the loader for the hash
            path = hf_hub_download(cfg.hf_hub_id, cfg.hf_hub_filename or "model.safetensors", cache_dir=cache_dir)
            model = load_pretrained(arch, Path(path), num_classes=num_classes, **kwargs)
        else:
            model = create_model(arch, pretrained=cfg.tag or True, num_classes=num_classes, **kwargs)
        if num_classes is not None and num_classes != cfg.num_classes:
            cfg = dataclasses.replace(cfg, num_classes=num_classes, label_names=None)
        model.pretrained_cfg = model.default_cfg = cfg.to_dict()
        return model

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = f"timm entrypoint of convtwist_zoo's {arch} (see convtwist_zoo.create_model)."
    return build


def _register() -> list[str]:
    """Register every zoo architecture timm does not already have, with its checkpoints as tags (the architecture's
    default checkpoint first: timm's default tag)."""
    ours = [arch for arch in list_models() if not timm.is_model(arch)]
    cfgs = {}
    for arch in ours:
        names = [n for n in list_pretrained() if n.split(".", 1)[0] == arch]
        if not names:  # no checkpoint yet: the architecture alone
            cfgs[arch] = {"num_classes": 10, "input_size": (3, 128, 128), "crop_pct": 0.875,
                          "interpolation": "bilinear", "first_conv": _first_conv(arch), "classifier": "fc"}
            continue
        default = get_pretrained(arch).name
        for name in sorted(names, key=lambda n: n != default):
            cfgs[name] = timm_pretrained_cfg(get_pretrained(arch, name.split(".", 1)[1]), _first_conv(arch))
    sys.modules[__name__].default_cfgs = generate_default_cfgs(cfgs)  # where timm's register_model looks
    for arch in ours:
        register_model(_entrypoint(arch))
    return ours


REGISTERED = _register()
