"""The zoo's own exceptions share one base class, `ZooError`: bad input, a missing file or extra, a corrupt
checkpoint. The CLI turns a `ZooError` or an `OSError` into one line and exit status 2; any other exception is a bug
and shows its traceback."""
from __future__ import annotations

__all__ = ["ZooError", "InputError"]


class ZooError(Exception):
    """Base of every error the zoo raises on purpose: its message says what was wrong and what to do."""


class InputError(ZooError, ValueError):
    """Input the zoo cannot take (an option, a value, a file's contents), with what to give instead."""
