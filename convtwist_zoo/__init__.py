"""convtwist-zoo: ConvTwist layers, ResNet models, pretrained weights, training and export."""
from .layers import ConvTwist, TwistifyReport, to_seed_state_dict, twistify
from .registry import create_model, get_transform, list_models, list_pretrained, register_model


def export_onnx(*args, **kwargs):
    """Fold a model and export it to a static ONNX graph (see `convtwist_zoo.onnx_export.export_onnx`)."""
    from .onnx_export import export_onnx as _export  # onnx is imported only when exporting
    return _export(*args, **kwargs)

__version__ = "0.1.0"
__all__ = ["ConvTwist", "twistify", "TwistifyReport", "to_seed_state_dict", "create_model", "list_models",
           "list_pretrained", "get_transform", "register_model", "export_onnx", "__version__"]
