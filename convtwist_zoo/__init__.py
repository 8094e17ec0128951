"""convtwist-zoo: ConvTwist layers, ResNet and xresnet models with pretrained Imagenette/Imagewoof weights,
training, evaluation and ONNX export."""
from .factory import create_model, get_transform
from .layers import ConvTwist, TwistifyReport, to_seed_state_dict, twistify
from .registry import list_models, register_model
from .specs import list_pretrained
from . import timm_models  # noqa: E402,F401  (registers the zoo's architectures and checkpoints with timm)

# imported on first use: export pulls in onnx, training its data pipeline
_LAZY = {"export_onnx": "onnx_export", "load_classifier": "inference", "train": "training",
         "TrainConfig": "training"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["ConvTwist", "twistify", "TwistifyReport", "to_seed_state_dict", "create_model", "list_models",
           "list_pretrained", "get_transform", "register_model", "export_onnx", "load_classifier", "train",
           "TrainConfig", "__version__"]
