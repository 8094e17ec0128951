"""The zoo's models, laid out as timm's: each model file (`resnet`, `xresnet`) holds its classes, its builder, the
checkpoints trained here and its registered entry points; `_registry` names them, `_pretrained` is the one store of
checkpoint specs, `_hub` finds and verifies weights, `_builder` puts them together, `_timm` registers the zoo with
timm."""
from . import resnet, xresnet  # noqa: F401  (each model file registers its architectures and checkpoints)
from ._builder import create_model, get_transform
from ._pretrained import PretrainedSpec, default_tag, get_pretrained, list_pretrained, register_hub_dir_specs
from ._registry import list_models, model_options, register_model

register_hub_dir_specs()  # after the model files: a folder in $CONVTWIST_ZOO_HUB_DIR never overrides a zoo checkpoint
from . import _timm  # noqa: E402,F401  (registers the zoo's architectures and checkpoints with timm)

__all__ = ["create_model", "get_transform", "list_models", "list_pretrained", "get_pretrained", "default_tag",
           "model_options", "register_model", "PretrainedSpec"]
