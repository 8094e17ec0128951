"""The research commands the ``convtwist-zoo`` CLI mounts (`add_leaderboard_command`, `add_flow_command`): the
leaderboard protocol (run, table, robustness over seeds) and the reference's flow experiment."""
from __future__ import annotations

import argparse
import os
import sys

from ..arguments import positive_int
from ..errors import InputError

__all__ = ["add_leaderboard_command", "add_flow_command"]


def _parse_lrs(values: list[str], models: list[str]):
    """``--lr 4e-3`` (every model) or ``--lr xresnet50=4e-3 convtwist_xresnet50=8e-3`` (one for each of ``models``)."""
    def rate(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise InputError(f"--lr {text!r} is not a number") from None
    if len(values) == 1 and "=" not in values[0]:
        return rate(values[0])
    lrs = {}
    for v in values:
        model, eq, lr = v.partition("=")
        if not eq:
            raise InputError(f"--lr {v!r}: give one rate for all models, or MODEL=RATE for each")
        if model not in models:
            raise InputError(f"--lr {v!r}: {model!r} is not one of --models ({', '.join(models)})")
        lrs[model] = rate(lr)
    return lrs  # a model left without a rate is check_protocol's to refuse


def _time_matched_to(spec: str | None) -> dict | None:
    """``--time-matched-to MODEL:EPOCHS`` as ``{"model": MODEL, "epochs": EPOCHS}`` (None: not given)."""
    if spec is None:
        return None
    model, sep, epochs = spec.partition(":")
    if not sep or not epochs.isdigit() or int(epochs) < 1:
        raise InputError(f"--time-matched-to {spec!r}: give MODEL:EPOCHS, e.g. convtwist_xresnet50:5")
    from ..models._registry import get_builder
    get_builder(model)
    return {"model": model, "epochs": int(epochs)}


def _run_in_background(args) -> int:
    """Start this same `leaderboard run` as a detached process (it survives the terminal) logging to
    RUNS/leaderboard.log; the runner's lock keeps a second one from sharing the machine."""
    import subprocess
    from pathlib import Path
    runs = Path(args.runs).expanduser()
    runs.mkdir(parents=True, exist_ok=True)
    log = runs / "leaderboard.log"
    argv = [a for a in args.argv if a != "--background"]
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "convtwist_zoo", *argv, "--no-progress"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    print(f"leaderboard running in the background (pid {proc.pid}); log: {log}. Run the same command again to "
          "resume after a stop: finished runs are skipped, a killed one resumes from its last epoch")
    return 0


def _cmd_leaderboard(args) -> int:
    from pathlib import Path

    from .. import research as leaderboard
    from ..files.cache import cache_dir
    args.runs = args.runs or str(cache_dir() / "runs" / "leaderboard")
    results_dir = Path(args.results_dir)
    if args.action == "table":
        named = [*args.files, *([args.results] if args.results else [])]  # `run --results FILE` reads back here
        missing = [f for f in named if not Path(f).is_file()]
        if missing:
            raise FileNotFoundError(f"no results file {missing[0]}; `convtwist-zoo leaderboard run` writes them")
        files = [Path(f) for f in named] or sorted(results_dir.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"no results files in {results_dir}; run `convtwist-zoo leaderboard run` first")
        print("\n\n".join(leaderboard.render_table(f) for f in files))
        return 0
    if not args.models:
        raise InputError(f"leaderboard {args.action} needs --models (e.g. --models xresnet50 convtwist_xresnet50)")
    from ..models._registry import get_builder
    for m in args.models:
        get_builder(m)  # an unknown name fails now, not after hours of training
    protocol = leaderboard.protocol_name(args.data, args.image_size, args.epochs)
    results = args.results or results_dir / f"{protocol}.jsonl"
    if Path(results).is_dir():
        raise InputError(f"--results {results} is a folder; give a .jsonl file (or --results-dir for the folder)")
    if args.action == "robustness":
        from .robustness import render_robustness, robustness_results, sweep_arms
        if not Path(results).is_file():
            raise FileNotFoundError(f"no results file {results}; `convtwist-zoo leaderboard run` writes it")
        sweep_arms(results, args.runs, args.models, leaderboard.options_of(args.model_args, args.amp),
                   data_dir=args.data_dir, workers=args.workers, progress=not args.no_progress)
        print(render_robustness(robustness_results(results)))
        return 0
    if sum(map(bool, (args.lr, args.lr_from, args.probe))) > 1:
        raise InputError("give one of --lr, --lr-from and --probe")
    if args.probe and not args.amp:
        raise InputError("the lr probes train the recipe, in bf16: drop --no-amp (an fp32 arm takes its bf16 arm's "
                         "rate through --lr-from)")
    common = dict(model_args=args.model_args, image_size=args.image_size, data_dir=args.data_dir,
                  workers=args.workers, progress=not args.no_progress, amp=args.amp, batch_size=args.batch_size)
    lr = (leaderboard.PROBE_LRS[0] if args.probe
          else leaderboard.probe_lrs(args.lr_from, args.models, args.model_args) if args.lr_from
          else _parse_lrs(args.lr or ["4e-3"], args.models))
    leaderboard.check_protocol(args.models, args.data, args.epochs, lr, **common)  # before any run, or detaching
    if args.background:
        return _run_in_background(args)
    if args.probe:  # the probe seed of each model at every rate of its grid, a model's runs together
        for model in args.models:
            while plan := leaderboard.probe_plan(results, model, args.model_args):
                leaderboard.run_protocol([model], args.data, args.epochs, [leaderboard.PROBE_SEED], args.runs,
                                         results, lr=plan[0], checked=True, **common)
        return 0
    if isinstance(lr, dict):
        print("peak lr: " + ", ".join(f"{m} {v:g}" for m, v in lr.items()))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    leaderboard.run_protocol(args.models, args.data, args.epochs, seeds, args.runs, results, lr=lr, checked=True,
                             time_matched_to=_time_matched_to(args.time_matched_to), **common)
    return 0


def _cmd_flow(args) -> int:
    from pathlib import Path

    from torchvision.transforms.v2 import functional as TF

    from ..inference import open_image
    from ..plots import plot_flow
    from .flow import apply_flow
    path = args.image or str(Path(__file__).parents[1] / "assets" / "church.jpg")
    image = TF.to_dtype(TF.to_image(open_image(path)), scale=True)
    snaps = apply_flow(image, args.generator, args.steps, args.snapshots, args.strength,
                       -1.0 if args.reverse else 1.0)
    print(f"wrote {plot_flow(snaps, args.generator, args.out)}")
    return 0


def add_leaderboard_command(p: argparse.ArgumentParser) -> None:
    """The ``leaderboard`` subcommand's arguments, on the parser the CLI made for it."""
    p.add_argument("action", choices=["run", "table", "robustness"],
                   help="run: train what the results file lacks; table: print; robustness: sweep the rotations and "
                        "scales of every run of the arms of --models (with --model-args and --amp/--no-amp) whose "
                        "weights are in --runs, into robustness/ beside the results file, and print the comparison")
    p.add_argument("files", nargs="*", help="table: results files (default: every one in --results-dir)")
    p.add_argument("--models", nargs="+", help="run: model names, trained in this order for each seed")
    p.add_argument("--data", default="imagewoof", help="imagewoof | imagenette | folder")
    p.add_argument("--data-dir", help="where the archives are (else $CONVTWIST_DATA)")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs per run (default: 5; >= 1)")
    p.add_argument("--seeds", type=positive_int, default=5, help="how many seeds")
    p.add_argument("--first-seed", type=int, default=0,
                   help="run: the first seed; --seeds counts from it (default: 0, the probes' seed)")
    p.add_argument("--image-size", type=int, default=128, help="training and evaluation size (default: 128; >= 32)")
    p.add_argument("--lr", nargs="+", help="peak lr for all models, or MODEL=LR per model (default 4e-3)")
    p.add_argument("--lr-from", metavar="RESULTS",
                   help="each model's peak lr from its probes in this results file: the best of its probe grid "
                        "(4e-3 and 8e-3, then one step past the better one's edge) at seed 0 (bf16), with the same "
                        "--model-args; an fp32 arm (--no-amp) takes its bf16 arm's rate")
    p.add_argument("--probe", action="store_true",
                   help="run the lr probes: seed 0 of each model at 4e-3 and 8e-3 in bf16, then one step (x2 or /2) "
                        "past the edge the better one sits at; what --lr-from reads (--seeds and --first-seed do not "
                        "apply)")
    p.add_argument("--model-args", default="", help="builder options for every model, key=value[,key=value]")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast in training (the recipe; fast on CPUs with bf16 instructions, AMX or "
                        "AVX512-BF16). --no-amp trains in fp32, as an arm of its own")
    p.add_argument("--time-matched-to", metavar="MODEL:EPOCHS",
                   help="run: these runs are the time-matched control of MODEL at EPOCHS epochs (their --epochs take "
                        "its step time; python bench/run_time.py gives them); MODEL's table shows them")
    p.add_argument("--batch-size", type=int, default=64, help="global batch (default: 64; >= 1)")
    p.add_argument("--runs", default=None,
                   help="where run folders go, outside the work tree (default: CACHE/runs/leaderboard, CACHE being "
                        "$CONVTWIST_ZOO_CACHE, else $XDG_CACHE_HOME/convtwist-zoo, else ~/.cache/convtwist-zoo)")
    p.add_argument("--results-dir", default=os.path.join("results", "leaderboard"),
                   help="where results files go, one per protocol (default: results/leaderboard)")
    p.add_argument("--results", help="results file (run: default RESULTS_DIR/<data>-<size>px-<epochs>ep.jsonl; table: "
                                     "this file instead of every file in RESULTS_DIR)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (default: 1; >= 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--background", action="store_true", help="run: detach and log to RUNS/leaderboard.log")
    p.set_defaults(func=_cmd_leaderboard)



def add_flow_command(p: argparse.ArgumentParser) -> None:
    """The ``flow`` subcommand's arguments, on the parser the CLI made for it."""
    p.add_argument("image", nargs="?", help="default: the bundled church image")
    p.add_argument("--generator", choices=["rotation", "scaling", "shift-x", "shift-y"], default="rotation",
                   help="the flow to apply (default: rotation)")
    p.add_argument("--steps", type=positive_int, default=500, help="steps of the flow (default: 500; >= 1)")
    p.add_argument("--snapshots", type=positive_int, default=3, help="images shown along the way (default: 3)")
    p.add_argument("--strength", type=float, default=0.01, help="the seed's 0.01 times the Sobel kernels")
    p.add_argument("--reverse", action="store_true", help="flip the kernels' sign (the opposite flow)")
    p.add_argument("--out", default="flow.png", help="the PNG to write (default: flow.png)")
    p.set_defaults(func=_cmd_flow)

