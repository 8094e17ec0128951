"""convtwist-zoo: ConvTwist layers, ResNet and xresnet models with pretrained Imagenette/Imagewoof weights,
training, evaluation and ONNX export."""
from .layers import ConvTwist, TwistifyReport, to_seed_state_dict, twistify
from .models import create_model, default_tag, get_transform, list_models, list_pretrained, register_model

# imported on first use: export pulls in onnx, training its data pipeline
_LAZY = {"export_onnx": "export.onnx", "load_classifier": "inference", "train": "training.loop",
         "TrainConfig": "training.config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["ConvTwist", "twistify", "TwistifyReport", "to_seed_state_dict", "create_model", "list_models",
           "list_pretrained", "default_tag", "get_transform", "register_model", "export_onnx", "load_classifier",
           "train", "TrainConfig", "__version__"]
