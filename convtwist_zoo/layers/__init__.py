"""The zoo's layers, one concept a file: `ConvTwist` (with its parametrisation, autograd Functions and fused CPU
operators), `twistify`, MaxBlurPool, simple self-attention, the reference module and twist statistics."""
from .attention import SimpleSelfAttention
from .blur_pool import MaxBlurPool, PoolFirst
from .conv_twist import ConvTwist, to_seed_state_dict
from .twistify import TwistifyReport, twistify

__all__ = ["ConvTwist", "to_seed_state_dict", "twistify", "TwistifyReport", "MaxBlurPool", "PoolFirst",
           "SimpleSelfAttention"]
