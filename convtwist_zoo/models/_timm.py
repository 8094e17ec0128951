"""The zoo in timm's registry: ``import convtwist_zoo`` registers its architectures and checkpoints with timm, so
``timm.create_model("convtwist_resnet50.imagewoof", pretrained=True)``, ``timm.list_models("*convtwist*")``,
``timm.list_pretrained("*convtwist*")`` and ``timm.create_model("hf-hub:convtwist/<arch>.<tag>")`` work.

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

from ._builder import create_model, load_pretrained
from ._registry import list_models
from ._pretrained import architecture_cfg, get_pretrained, list_pretrained

__all__ = ["REGISTERED"]


def _entrypoint(arch: str):
    def build(pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None,
              **kwargs):
        from timm.models._builder import resolve_pretrained_cfg  # what timm's own builders call

        cfg = resolve_pretrained_cfg(arch, pretrained_cfg, pretrained_cfg_overlay)
        kwargs.pop("pretrained_model_args", None)
        # timm's features_only: its own wrappers and index convention (0 = the stem's activation, stride 2)
        features_only = kwargs.pop("features_only", False)
        feature_cls = kwargs.pop("feature_cls", None)
        out_indices = kwargs.pop("out_indices", (0, 1, 2, 3, 4))
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
        if features_only:
            from timm.models import FeatureListNet
            from timm.models._features_fx import FeatureGraphNet
            wrapper = FeatureGraphNet if feature_cls == "fx" else FeatureListNet
            model = wrapper(model, out_indices=out_indices)
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
            cfgs[arch] = architecture_cfg(arch)
            continue
        default = get_pretrained(arch).name
        for name in sorted(names, key=lambda n: n != default):
            cfgs[name] = get_pretrained(arch, name.split(".", 1)[1]).timm_cfg()
    sys.modules[__name__].default_cfgs = generate_default_cfgs(cfgs)  # where timm's register_model looks
    for arch in ours:
        register_model(_entrypoint(arch))
    return ours


REGISTERED = _register()
