"""Where the zoo keeps what it makes once and reuses: extracted datasets, compiled kernels, leaderboard runs."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Root of the project's caches: ``$CONVTWIST_ZOO_CACHE``, else ``$XDG_CACHE_HOME/convtwist-zoo``, else
    ``~/.cache/convtwist-zoo``.

    Example:
        >>> cache_dir() / "data"  # doctest: +SKIP
        PosixPath('/home/me/.cache/convtwist-zoo/data')
    """
    if os.environ.get("CONVTWIST_ZOO_CACHE"):
        return Path(os.environ["CONVTWIST_ZOO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convtwist-zoo"
