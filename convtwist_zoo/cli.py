"""The ``convtwist-zoo`` command: parse arguments, call the library, print. No math lives here."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

__all__ = ["main"]


def _add_config_args(parser: argparse.ArgumentParser, config_cls, skip=()) -> None:
    """One ``--flag`` per field of a config dataclass, typed from its default."""
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = type(f.default) if f.default is not None else str
            parser.add_argument(flag, type=kind, default=f.default)


def _cmd_list(args) -> int:
    from .registry import list_models
    for name in list_models(args.filter or ""):
        print(name)
    return 0


def _cmd_train(args) -> int:
    from .train import TrainConfig, train
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    metrics = train(cfg)
    print(json.dumps(metrics))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig
    parser = argparse.ArgumentParser(prog="convtwist-zoo", description="ConvTwist model zoo")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("filter", nargs="?", help="substring to filter names")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("train", help="train a model (single process, or under torchrun)")
    _add_config_args(p, TrainConfig)
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
