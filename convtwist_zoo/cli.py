"""The ``convtwist-zoo`` command line: its parser (one subcommand per user command, each with an example), and
`run_command`, which turns the zoo's errors (`ZooError`) and the system's (`OSError`) into one line and exit
status 2. Any other exception is a bug and shows its traceback. What each command does is `commands`'."""
from __future__ import annotations

import argparse
import os
import sys

from . import commands
from .arguments import add_config_args, positive_int
from .errors import ZooError

__all__ = ["main", "build_parser", "run_command"]


# One example per subcommand, the last lines of its --help.
EXAMPLES = {
    "list": "convtwist-zoo list --pretrained xresnet",
    "train": ("convtwist-zoo train --model convtwist_xresnet18 --model-args maxblur=true --data imagewoof --epochs"
              " 5 --lr 8e-3 --out runs/woof5"),
    "finetune": "convtwist-zoo finetune --model convtwist_resnet50.imagenette --data MYFOLDER --out runs/mine",
    "predict": "convtwist-zoo predict photo.jpg --model convtwist_resnet50.imagenette --topk 3",
    "export": "convtwist-zoo export convtwist_resnet50.imagenette -o model.onnx --check 4",
    "eval": "convtwist-zoo eval --model convtwist_resnet50.imagewoof --image-size 128 160 --json eval.json",
    "robustness": "convtwist-zoo robustness convtwist_resnet50.imagewoof resnet50.imagewoof --plot robustness.png",
    "leaderboard": ("convtwist-zoo leaderboard run --models xresnet18 convtwist_xresnet18 --model-args maxblur=true"
                    " --data imagewoof --epochs 5 --first-seed 1 --seeds 5"
                    " --lr-from results/leaderboard/imagewoof-128px-5ep.jsonl"),
    "download": "convtwist-zoo download imagewoof",
    "flow": "convtwist-zoo flow --generator scaling --steps 300 --out scaling.png",
    "inspect": "convtwist-zoo inspect convtwist_resnet50.imagewoof --out inspect/",
    "demo": "convtwist-zoo demo",
    "plot": "convtwist-zoo plot runs/a runs/b --out curves.png",
}


def _subcommand(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose help ends with its example (`EXAMPLES`)."""
    return sub.add_parser(name, epilog=f"example:\n  {EXAMPLES[name]}",
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .export.onnx import DEFAULT_OPSET, MIN_OPSET
    from .training import KNOB_RANGES, TrainConfig
    parser = argparse.ArgumentParser(prog="convtwist-zoo", description="ConvTwist model zoo")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _subcommand(sub, "list", help="list registered models, or with --pretrained the checkpoints (arch.tag)")
    p.add_argument("filter", nargs="?", help="substring to filter names")
    p.add_argument("--pretrained", action="store_true",
                   help="the checkpoints that load by name (arch.tag, e.g. for predict --model)")
    p.set_defaults(func=commands._cmd_list)

    p = _subcommand(sub, "train", help="train a model (single process, or under torchrun)")
    add_config_args(p, TrainConfig, KNOB_RANGES)
    p.set_defaults(func=commands._cmd_train)

    p = _subcommand(sub, "finetune", help="fine-tune a pretrained model on a folder (new head for its classes)")
    add_config_args(p, TrainConfig, KNOB_RANGES,
                     defaults=dict(epochs=10, freeze_epochs=2, backbone_lr_mult=0.1, lr=0.02, warmup_epochs=1.0))
    p.set_defaults(func=commands._cmd_finetune)

    p = _subcommand(sub, "predict", help="top-k classes of images")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, any bit depth; EXIF orientation applied)")
    p.add_argument("--model", help="arch.tag, or arch with --pretrained (default: first of "
                   f"{', '.join(commands.DEMO_PREFERENCE)} in hub/, else {commands.DEMO_PREFERENCE[0]} from the Hub)")
    p.add_argument("--pretrained", help="a tag of --model's checkpoints (e.g. imagewoof)")
    p.add_argument("--checkpoint", help="a run folder of yours (or its model.safetensors) instead of a zoo checkpoint")
    p.add_argument("--topk", type=positive_int, default=5, help="classes to show per image (default: 5; >= 1)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=commands._cmd_predict)

    p = _subcommand(sub, "export", help="export a model to ONNX with the twist folded in")
    p.add_argument("model", help="registry name, optionally arch.tag")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write (a .sha256 is written beside it)")
    p.add_argument("--image-size", type=int, nargs="+",
                   help="S or H W (multiples of 32; default: the size the weights were trained at, else 128)")
    p.add_argument("--pretrained", help="a tag of the model's checkpoints (default: the name's tag, else random "
                   "weights)")
    p.add_argument("--checkpoint", help="a run folder of yours (or its model.safetensors) to export")
    p.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="a batch dimension of any size (default: on; --no-dynamic-batch fixes it at 1)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, {MIN_OPSET} or newer")
    p.add_argument("--optimize", action="store_true", help="also write an ORT-optimised *.ort.onnx")
    p.add_argument("--fp16", action="store_true", help="float16 weights and arithmetic (float32 input and logits)")
    p.add_argument("--check", type=int, default=4, help="parity check on N random images (0 = skip)")
    p.set_defaults(func=commands._cmd_export)

    p = _subcommand(sub, "eval", help="top-1/top-5, per-class accuracy and confusion matrix on a validation set")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="arch.tag of a zoo checkpoint")
    g.add_argument("--checkpoint", help="a run folder from `train`/`finetune`")
    p.add_argument("--data", help="imagenette | imagewoof | folder with val/ (default: the checkpoint's dataset)")
    p.add_argument("--data-dir", help="where the archives are (else $CONVTWIST_DATA)")
    p.add_argument("--image-size", type=int, nargs="+",
                   help="one or more sizes (default: the size the checkpoint was trained at)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (default: fp32)")
    p.add_argument("--crop-pct", type=float, help="centre-crop share of the resized image (default: the checkpoint's, "
                   "0.875; 1.0 resizes straight to the image size)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (default: 1; >= 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", help="write the full result (per-class, confusion) here")
    p.set_defaults(func=commands._cmd_eval)

    p = _subcommand(sub, "robustness", help="top-1 under rotations (0/15/30/45/90) and rescalings (0.75x/1.25x)")
    p.add_argument("models", nargs="+", help="arch.tag names")
    p.add_argument("--data", help="imagenette | imagewoof | folder with val/ (default: each checkpoint's dataset)")
    p.add_argument("--data-dir", help="where the archives are (default: $CONVTWIST_DATA)")
    p.add_argument("--image-size", type=int, default=128, help="evaluation size (default: 128; >= 32)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast (default: on; --no-amp evaluates in fp32)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (default: 1; >= 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json-dir", help="write <dir>/<name>/robustness.json (e.g. hub)")
    p.add_argument("--plot", help="PNG of top-1 against angle/scale")
    p.set_defaults(func=commands._cmd_robustness)

    p = _subcommand(sub, "download", help="download a dataset archive from the official fast.ai URL into the cache")
    p.add_argument("dataset", choices=["imagenette", "imagewoof"], help="which dataset")
    p.add_argument("--archive", help="archive stem, e.g. imagenette2-320 (default: the 160px one)")
    p.set_defaults(func=commands._cmd_download)

    from .research.commands import add_flow_command, add_leaderboard_command
    add_leaderboard_command(_subcommand(sub, "leaderboard", help="the fast.ai leaderboard protocol over several seeds: "
                                                                  "run, table, or robustness"))
    add_flow_command(_subcommand(sub, "flow", help="the reference's experiment: apply a twist flow (rotation, scaling, "
                                                   "shift) repeatedly"))

    p = _subcommand(sub, "inspect", help="what a trained ConvTwist model learned: centres and twist strength")
    p.add_argument("model", help="arch.tag, or arch with --pretrained or --checkpoint")
    p.add_argument("--pretrained", help="a tag of the model's checkpoints (default: the name's tag, else the "
                   "architecture's default checkpoint)")
    p.add_argument("--checkpoint", help="a run folder of yours (or its model.safetensors)")
    p.add_argument("--out", required=True, help="folder for inspect.json and PNGs")
    p.set_defaults(func=commands._cmd_inspect)

    p = _subcommand(sub, "demo", help="the main job: pretrained model from hub/, classify, export, check parity")
    p.add_argument("images", nargs="*", help="default: the bundled sample images")
    p.add_argument("--model", help=f"arch.tag (default: first of {', '.join(commands.DEMO_PREFERENCE)} found in hub/)")
    p.add_argument("--out", default="demo-out", help="folder for the exported ONNX model")
    p.set_defaults(func=commands._cmd_demo)

    p = _subcommand(sub, "plot", help="loss and accuracy curves of run folders to PNG")
    p.add_argument("run_dirs", nargs="+", help="run folders (each with a metrics.jsonl)")
    p.add_argument("--out", help="the PNG to write, or a folder for curves.png (default: RUN/curves.png)")
    p.set_defaults(func=commands._cmd_plot)
    return parser


def main(argv=None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse, run the chosen command, and turn the zoo's own errors (bad input, a missing file or extra, a corrupt
    checkpoint: `ZooError`) and the system's (`OSError`) into one line on stderr and exit status 2; anything else
    is a bug and keeps its traceback."""
    args = parser.parse_args(argv)
    args.argv = [str(a) for a in (argv if argv is not None else sys.argv[1:])]
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ZooError, OSError) as e:
        if os.environ.get("CONVTWIST_ZOO_DEBUG"):
            raise
        print(f"{parser.prog} {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    """The message of ``e``; for an error re-raised from a DataLoader worker (whose message carries the worker's
    whole traceback), the original error's own message."""
    text = str(e)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    kind, sep, message = last.partition(": ")
    return message if sep and kind.replace(".", "").isidentifier() else last


if __name__ == "__main__":
    sys.exit(main())
