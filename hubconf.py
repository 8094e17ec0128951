"""torch.hub entrypoints: ``torch.hub.load("<owner>/convtwist-zoo", "convtwist_resnet50", pretrained="imagenette")``.

One thin function per registry name; everything else happens in ``convtwist_zoo.create_model``. Weights come from
the Hugging Face Hub (or this repo's ``hub/`` folder when it is present, e.g. a local clone).
"""
dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]

from convtwist_zoo.factory import create_model as _create_model  # noqa: E402


def convtwist_resnet18(pretrained=False, **kwargs):
    """ConvTwist ResNet-18. ``pretrained``: False, True (default checkpoint), "imagenette" or "imagewoof", or a path
    object (pathlib.Path) to a local folder/file. Other kwargs (``num_classes``, ``features_only``,
    ``pretrained_file``...) go to ``convtwist_zoo.create_model``."""
    return _create_model("convtwist_resnet18", pretrained=pretrained, **kwargs)


def convtwist_resnet50(pretrained=False, **kwargs):
    """ConvTwist ResNet-50. ``pretrained``: False, True (default checkpoint), "imagenette" or "imagewoof", or a path
    object (pathlib.Path) to a local folder/file. Other kwargs go to ``convtwist_zoo.create_model``."""
    return _create_model("convtwist_resnet50", pretrained=pretrained, **kwargs)


def resnet18(pretrained=False, **kwargs):
    """Plain ResNet-18 trained with the same recipe (the baseline). Same arguments as ``convtwist_resnet18``."""
    return _create_model("resnet18", pretrained=pretrained, **kwargs)


def resnet50(pretrained=False, **kwargs):
    """Plain ResNet-50 trained with the same recipe (the baseline). Same arguments as ``convtwist_resnet50``."""
    return _create_model("resnet50", pretrained=pretrained, **kwargs)


def xresnet18(pretrained=False, **kwargs):
    """fast.ai leaderboard xresnet18 (deep stem, pooled shortcuts, Mish; timm's ResNet). ``pretrained``: False, True,
    "imagenette", "imagewoof", or a pathlib.Path to a local folder/file. Other kwargs go to
    ``convtwist_zoo.create_model``."""
    return _create_model("xresnet18", pretrained=pretrained, **kwargs)


def xresnet34(pretrained=False, **kwargs):
    """xresnet34: the compute-matched control for convtwist_xresnet18. Same arguments as ``xresnet18``."""
    return _create_model("xresnet34", pretrained=pretrained, **kwargs)


def xresnet50(pretrained=False, **kwargs):
    """fast.ai leaderboard xresnet50. Same arguments as ``xresnet18``."""
    return _create_model("xresnet50", pretrained=pretrained, **kwargs)


def convtwist_xresnet18(pretrained=False, **kwargs):
    """xresnet18 with every 3x3 conv of its blocks a ConvTwist (the stem stays plain). Same arguments as
    ``xresnet18``."""
    return _create_model("convtwist_xresnet18", pretrained=pretrained, **kwargs)


def convtwist_xresnet34(pretrained=False, **kwargs):
    """xresnet34 with ConvTwist blocks. Same arguments as ``xresnet18``."""
    return _create_model("convtwist_xresnet34", pretrained=pretrained, **kwargs)


def convtwist_xresnet50(pretrained=False, **kwargs):
    """xresnet50 with every 3x3 conv of its blocks a ConvTwist. Same arguments as ``xresnet18``."""
    return _create_model("convtwist_xresnet50", pretrained=pretrained, **kwargs)
