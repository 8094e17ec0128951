"""The optional parts of the install: which extra brings which package, and one clear error where one is missing.

The core install loads, classifies and fine-tunes; ``[export]`` adds ONNX export and ONNX Runtime, ``[research]`` the
leaderboard's statistics and the figures, ``[decoders]`` TorchCodec's faster image decoding in training (PIL decodes
without it). ``[test]`` brings them all.
"""
from __future__ import annotations

import importlib
from .errors import ZooError

__all__ = ["EXTRAS", "MissingExtraError", "require"]

EXTRAS = {"onnx": "export", "onnxruntime": "export", "scipy": "research", "matplotlib": "research",
          "torchcodec": "decoders"}


class MissingExtraError(ZooError, ImportError):
    """An optional package that the command needs is not installed; the message names the extra to install."""


def require(module: str):
    """``importlib.import_module(module)``, or `MissingExtraError` naming the extra that installs it.

    Example:
        >>> onnx = require("onnx")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = EXTRAS.get(module.split(".")[0], "test")
        raise MissingExtraError(f"{module.split('.')[0]} is not installed; this needs the [{extra}] extra: "
                                f"pip install 'convtwist-zoo[{extra}]'") from e
