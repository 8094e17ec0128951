"""torch.hub entrypoints: ``torch.hub.load("<owner>/convtwist-zoo", "convtwist_resnet50", pretrained="imagenette")``.

One thin function per registry name; everything else happens in ``convtwist_zoo.create_model``. Weights come from
the Hugging Face Hub (or this repo's ``hub/`` folder when it is present, e.g. a local clone).
"""
dependencies = ["torch", "torchvision", "safetensors", "huggingface_hub"]

from convtwist_zoo.registry import create_model as _create_model  # noqa: E402


def convtwist_resnet18(pretrained=False, **kwargs):
    """ConvTwist ResNet-18. ``pretrained``: False, True (default checkpoint), "imagenette" or "imagewoof", or a
    local folder/file. Other kwargs (``num_classes``, ``features_only``, ``pretrained_file``...) go to
    ``convtwist_zoo.create_model``."""
    return _create_model("convtwist_resnet18", pretrained=pretrained, **kwargs)


def convtwist_resnet50(pretrained=False, **kwargs):
    """ConvTwist ResNet-50. ``pretrained``: False, True (default checkpoint), "imagenette" or "imagewoof", or a
    local folder/file. Other kwargs go to ``convtwist_zoo.create_model``."""
    return _create_model("convtwist_resnet50", pretrained=pretrained, **kwargs)


def resnet18(pretrained=False, **kwargs):
    """Plain ResNet-18 trained with the same recipe (the baseline). Same arguments as ``convtwist_resnet18``."""
    return _create_model("resnet18", pretrained=pretrained, **kwargs)


def resnet50(pretrained=False, **kwargs):
    """Plain ResNet-50 trained with the same recipe (the baseline). Same arguments as ``convtwist_resnet50``."""
    return _create_model("resnet50", pretrained=pretrained, **kwargs)
