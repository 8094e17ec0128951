"""convtwist-zoo: ConvTwist layers, ResNet models, pretrained weights, training and export."""
from .layers import ConvTwist, TwistifyReport, to_seed_state_dict, twistify
from .registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["ConvTwist", "twistify", "TwistifyReport", "to_seed_state_dict", "create_model", "list_models",
           "register_model", "__version__"]
