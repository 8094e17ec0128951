"""The registry: model files register themselves, each builder declares its options in its signature, and an
option it does not declare is refused (with the declared ones) before anything is built."""
from __future__ import annotations

import pytest
import torch.nn as nn

from convtwist_zoo import create_model, list_models, register_model
from convtwist_zoo.errors import ZooError
from convtwist_zoo.models import model_options
from convtwist_zoo.models._registry import UnknownOptionError, check_options

XRESNET_OPTIONS = {"in_chans": 3, "act_layer": "mish", "maxblur": False, "sa": False, "wide_stem": False,
                   "drop_rate": 0.0, "drop_path_rate": 0.0}


def test_every_model_file_registers_its_architectures():
    assert list_models() == ["convtwist_resnet18", "convtwist_resnet50", "convtwist_xresnet18", "convtwist_xresnet34",
                             "convtwist_xresnet50", "resnet18", "resnet50", "xresnet18", "xresnet34", "xresnet50"]
    from convtwist_zoo.models import resnet, xresnet
    assert {name: getattr(resnet, name).__module__ for name in ("resnet18", "convtwist_resnet50")} == \
        {"resnet18": "convtwist_zoo.models.resnet", "convtwist_resnet50": "convtwist_zoo.models.resnet"}
    assert xresnet.convtwist_xresnet34.__module__ == "convtwist_zoo.models.xresnet"


def test_options_are_the_builders_keyword_parameters():
    assert model_options("xresnet18") == XRESNET_OPTIONS
    assert model_options("convtwist_xresnet50") == {**XRESNET_OPTIONS, "init_max": 1.5}
    assert model_options("resnet50") == {"in_chans": 3, "zero_init_residual": True}
    assert model_options("convtwist_resnet18") == {"in_chans": 3, "zero_init_residual": True, "init_max": 1.5}


def test_an_undeclared_option_is_refused_with_the_declared_ones_and_a_guess():
    with pytest.raises(UnknownOptionError, match=r"xresnet18 has no option 'maxblurr' \(did you mean 'maxblur'\?\); "
                                                 r"its options: act_layer, drop_path_rate, drop_rate, in_chans, "
                                                 r"maxblur, sa, wide_stem"):
        create_model("xresnet18", maxblurr=True)
    with pytest.raises(UnknownOptionError, match="resnet18 has no option 'sa'"):
        create_model("resnet18.imagenette", sa=True)  # checked before the weights are read too
    assert isinstance(UnknownOptionError("x"), ZooError) and isinstance(UnknownOptionError("x"), ValueError)
    check_options("xresnet50", {"maxblur": True, "drop_path_rate": 0.1})  # declared: no error


def test_a_registered_model_needs_a_new_name_and_its_options_come_from_its_signature():
    from convtwist_zoo.models import _registry

    def tiny_net(num_classes: int = 10, *, width: int = 8) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, width, 3), nn.Flatten(), nn.LazyLinear(num_classes))
    try:
        register_model(tiny_net)
        assert model_options("tiny_net") == {"width": 8}
        assert create_model("tiny_net", num_classes=4, width=2)[0].out_channels == 2
        with pytest.raises(ValueError, match="already registered"):
            register_model(tiny_net)
    finally:
        _registry._MODELS.pop("tiny_net", None)
