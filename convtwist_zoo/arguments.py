"""Argument types and flag builders the command lines share (``convtwist-zoo``, its research commands)."""
from __future__ import annotations

import argparse
import dataclasses

__all__ = ["add_config_args", "positive_int"]


def add_config_args(parser: argparse.ArgumentParser, config_cls, ranges: dict, defaults: dict | None = None,
                     skip=()) -> None:
    """One ``--flag`` per field of a config dataclass, typed from its default (or ``defaults``' override), its help
    from the field's, with the default and the allowed values from ``ranges`` (``{field: (check, allowed)}``)."""
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = (defaults or {}).get(f.name, f.default)
        allowed = f"; {ranges[f.name][1]}" if f.name in ranges else ""
        shown = (f"default: {'on' if default else 'off'}" if isinstance(default, bool)
                 else f"default: {'none' if default in (None, '') else default}")
        extra = "; ".join(part for part in (shown, allowed.lstrip("; ")) if part)
        help_text = (f.metadata.get("help", "") + (f" ({extra})" if extra else "")).replace("%", "%%")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            kind = type(f.default) if f.default is not None else str
            parser.add_argument(flag, type=kind, default=default, help=help_text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
