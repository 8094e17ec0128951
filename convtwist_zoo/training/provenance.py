"""Where a run's numbers came from: the code (git commit, and whether its tree was dirty), the torch version and the
machine, recorded in a run's ``config.json`` and its leaderboard row beside the data archive's sha256.

A run resumed under other code or on another machine gains one more segment (``from_epoch`` says where it starts),
so a row never claims one commit or CPU for epochs another one trained.
"""
from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["code_version", "segment", "add_segment"]

_PACKAGE_ROOT = Path(__file__).resolve().parent


def code_version() -> dict:
    """``{"commit": sha or None, "dirty": bool or None, "version": package version}``: the git commit of the source
    the package runs from (None for an installed wheel), and whether its code had uncommitted changes (files under
    the package and ``pyproject.toml``; result files written beside it do not count)."""
    try:
        version = metadata.version("convtwist-zoo")
    except metadata.PackageNotFoundError:
        version = None

    def git(*args):
        return subprocess.run(["git", *args], cwd=_PACKAGE_ROOT, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None, "version": version}
        top = Path(git("rev-parse", "--show-toplevel").stdout.strip())
        status = git("status", "--porcelain", "--untracked-files=no", "--",
                     str(_PACKAGE_ROOT.relative_to(top)), "pyproject.toml")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if not status.returncode else None,
                "version": version}
    except (OSError, ValueError, subprocess.TimeoutExpired):  # no git, or the package outside the checkout
        return {"commit": None, "dirty": None, "version": version}


def segment(from_epoch: int, hardware: str) -> dict:
    """The provenance of the epochs a process trains from ``from_epoch`` (1-based) on."""
    import torch
    code = code_version()
    return {"from_epoch": from_epoch, "code_commit": code["commit"], "code_dirty": code["dirty"],
            "package_version": code["version"], "torch": str(torch.__version__), "hardware": hardware}


def add_segment(segments: list[dict], new: dict) -> list[dict]:
    """``segments`` plus ``new`` where it differs from the last one in anything but where it starts."""
    def what(s):
        return {k: v for k, v in s.items() if k != "from_epoch"}
    return segments if segments and what(segments[-1]) == what(new) else [*segments, new]
