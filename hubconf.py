"""torch.hub entrypoints, one per architecture of the zoo's registry, generated from it (a newly registered model
has its entrypoint with nothing added here):
``torch.hub.load("convtwist/convtwist-zoo", "convtwist_resnet50", pretrained="imagenette")``.

``pretrained``: False, True (the architecture's default checkpoint, its Imagenette weights), a tag (``"imagenette"``, ``"imagewoof"``), or a
``pathlib.Path`` to a local run folder or weights file. Other keyword arguments (``num_classes``, ``in_chans``,
``features_only``, ``pretrained_file``...) go to ``convtwist_zoo.create_model``. Weights come from this repository's
``hub/`` folder when it is present (a clone works offline), else the Hugging Face Hub.
"""
dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]

from convtwist_zoo import create_model as _create_model, list_models as _list_models  # noqa: E402
from convtwist_zoo.models import default_tag as _default_tag, model_options as _model_options  # noqa: E402
from convtwist_zoo.models._registry import get_builder as _get_builder  # noqa: E402


def _entrypoint(name: str):
    def entrypoint(pretrained=False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)
    entrypoint.__name__ = entrypoint.__qualname__ = name
    summary = (_get_builder(name).__doc__ or name).strip().splitlines()[0]
    default = _default_tag(name)
    entrypoint.__doc__ = (f"{summary}\n\n``pretrained``: False, True (the {default!r} checkpoint)" if default else
                          f"{summary}\n\n``pretrained``: False") + (
        ", a tag or a pathlib.Path. Options: " + ", ".join(f"{k}={v!r}" for k, v in _model_options(name).items())
        + "; other keyword arguments (num_classes, features_only...) go to ``convtwist_zoo.create_model``.")
    return entrypoint


for _name in _list_models():
    globals()[_name] = _entrypoint(_name)
