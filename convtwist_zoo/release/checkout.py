"""The source checkout release bookkeeping writes into (``hub/``, ``results/``, ``docs/``, ``MODEL_CARDS.md``,
``README.md``, the model files): the folder given, or the current one, checked to be the zoo's own. The installed
package never assumes where a checkout is."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

__all__ = ["source_checkout"]


def source_checkout(root: str | os.PathLike | None = None) -> Path:
    """``root`` (default: the current folder), once it is seen to hold the zoo's ``pyproject.toml`` and ``hub/``.

    Example:
        >>> source_checkout(".")  # doctest: +SKIP
        PosixPath('/src/convtwist-zoo')
    """
    path = Path(root or os.getcwd()).resolve()
    pyproject = path / "pyproject.toml"
    if not (pyproject.is_file() and 'name = "convtwist-zoo"' in pyproject.read_text() and (path / "hub").is_dir()):
        raise InputError(f"{path} is not a convtwist-zoo source checkout (a pyproject.toml naming convtwist-zoo beside "
                         "hub/): run from the checkout's root, or pass --root CHECKOUT")
    return path
