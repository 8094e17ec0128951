"""A run folder's ``config.json`` (what `train` writes beside its weights, and a Hub folder's config too), read in one
place and checked when it is read: classes, input size, normalisation and where its data lives are what every later
command uses unless the user overrides them.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from .errors import ZooError

__all__ = ["RunConfigError", "read_run_config", "check_classes", "image_size"]


class RunConfigError(ZooError, ValueError):
    """A run's or a checkpoint's metadata that is unreadable or contradicts itself."""


def read_run_config(path: str | os.PathLike, required: tuple = ("architecture",)) -> dict:
    """The checked ``config.json`` of a run folder (or of the folder holding the weights file ``path``).

    Args:
        path: a run folder, its ``config.json`` or its ``model.safetensors``.
        required: fields the caller needs.

    Returns:
        The config; ``{}`` where the folder has no ``config.json``.

    Raises:
        RunConfigError: not JSON, a required field missing, or classes, input size or normalisation that contradict
            each other; the message names the file.

    Example:
        >>> read_run_config("runs/mine")["class_names"]  # doctest: +SKIP
        ['cat', 'dog']
    """
    path = Path(path)
    file = path if path.name == "config.json" else (path.parent if path.is_file() else path) / "config.json"
    if not file.is_file():
        return {}
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunConfigError(f"{file} is not valid JSON ({e}); restore it from the run or the Hub") from e
    if not isinstance(config, dict):
        raise RunConfigError(f"{file} is not a JSON object; restore it from the run or the Hub")
    if missing := [k for k in required if k not in config]:
        raise RunConfigError(f"{file} lacks {', '.join(missing)}: it was not written by `convtwist-zoo train`")
    _check(config, str(file))
    return config


def check_classes(class_ids, class_names, num_classes, where: str) -> None:
    """Refuse class ids with repeats, or ids, names and a class count of different lengths (``where`` names the
    source)."""
    ids = list(class_ids or [])
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise RunConfigError(f"{where}: class id(s) {', '.join(map(str, repeated))} appear more than once")
    if class_names and len(class_names) != len(ids):
        raise RunConfigError(f"{where}: {len(ids)} class ids but {len(class_names)} class names")
    if num_classes is not None and ids and num_classes != len(ids):
        raise RunConfigError(f"{where}: num_classes {num_classes} but {len(ids)} class ids")


def _check(config: dict, where: str) -> None:
    check_classes(config.get("class_ids"), config.get("class_names"), config.get("num_classes"), where)
    size = config.get("input_size")
    if size is not None and not (isinstance(size, list) and len(size) == 3 and all(
            isinstance(v, int) and v >= 1 for v in size)):
        raise RunConfigError(f"{where}: input_size {size!r} is not [channels, height, width]")
    for key in ("mean", "std"):
        v = config.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == (size[0] if size else 3) and all(
                isinstance(x, (int, float)) and math.isfinite(x) for x in v)) or (key == "std" and v and min(v) <= 0):
            raise RunConfigError(f"{where}: {key} {v!r} is not one finite number per channel"
                                 + (" (all above 0)" if key == "std" else ""))
    crop = config.get("crop_pct")
    if crop is not None and not (isinstance(crop, (int, float)) and 0 < crop <= 1):
        raise RunConfigError(f"{where}: crop_pct {crop!r} is not in (0, 1]")


def image_size(config: dict, default: int = 128) -> int:
    """The input size a run was trained and evaluated at (its ``input_size``), for the commands that take one."""
    size = config.get("input_size")
    return int(size[-1]) if size else default
