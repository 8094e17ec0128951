"""The ``convtwist-zoo`` command: parse arguments, call the library, print. No math lives here."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

__all__ = ["main"]


def _add_config_args(parser: argparse.ArgumentParser, config_cls, ranges: dict, defaults: dict | None = None,
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _cmd_list(args) -> int:
    from .fused_kernels import describe
    from .registry import list_models
    from .specs import list_pretrained
    names = (list_pretrained if args.pretrained else list_models)(args.filter or "")
    if not names:
        raise ValueError(f"no {'checkpoint' if args.pretrained else 'model'} name contains {args.filter!r}; "
                         f"`convtwist-zoo list{' --pretrained' if args.pretrained else ''}` names them all")
    for name in names:
        print(name)
    print(describe(), file=sys.stderr)  # stdout stays a plain list of names
    return 0


def _cmd_train(args) -> int:
    from .training import TrainConfig, train
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    metrics = train(cfg)
    print(json.dumps(metrics))
    return 0


def _cmd_finetune(args) -> int:
    from .training import TrainConfig, train
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**values)
    if not cfg.pretrained and not cfg.checkpoint:
        raise ValueError("finetune needs --pretrained TAG (e.g. imagenette), a tagged --model "
                         "(e.g. convtwist_resnet50.imagenette), or --checkpoint RUN (a run folder of yours)")
    print(json.dumps(train(cfg)))
    return 0


def _cmd_predict(args) -> int:
    from .inference import load_classifier
    from .registry import is_model, split_model_name
    if missing := [p for p in args.images if not os.path.exists(p)]:  # before a model is loaded for nothing
        named = [p for p in missing if is_model(split_model_name(p)[0])]
        raise FileNotFoundError(f"no image file {', '.join(missing)}"
                                + (f"; {named[0]} is a model: pick it with --model {named[0]}" if named else ""))
    model = args.model
    if model is None:  # the best checkpoint in hub/, else the zoo's flagship from the Hugging Face Hub
        try:
            model = _demo_default()
        except FileNotFoundError:
            model = DEMO_PREFERENCE[0]
    if args.checkpoint and args.pretrained:
        raise ValueError("give --pretrained TAG (a zoo checkpoint) or --checkpoint RUN (a run folder of yours), "
                         "not both")
    from pathlib import Path
    clf = load_classifier(model, Path(args.checkpoint) if args.checkpoint else args.pretrained)
    results = clf.predict(args.images, topk=args.topk)
    if args.json:
        print(json.dumps({str(p): [{"class_id": c, "class_name": n, "probability": round(pr, 6)}
                                   for c, n, pr in r] for p, r in zip(args.images, results)}, indent=1))
        return 0
    for path, result in zip(args.images, results):
        print(f"{path}  ({clf.name})")
        for class_id, name, prob in result:
            print(f"  {prob * 100:6.2f}%  {name} ({class_id})")
    return 0


def _cmd_export(args) -> int:
    from .onnx_export import FP16_TOLERANCE, check_output_path, export_onnx, run_onnx
    from .factory import create_model
    from .registry import split_model_name
    if args.image_size and (len(args.image_size) not in (1, 2) or min(args.image_size) < 32):
        raise ValueError(f"--image-size takes S or H W, each at least 32 (a multiple of 32), got "
                         f"{' '.join(map(str, args.image_size))}")
    check_output_path(args.output)
    arch, tag = split_model_name(args.model)
    if args.checkpoint and (args.pretrained or tag):
        raise ValueError("give a tag (--pretrained TAG or MODEL.TAG) or --checkpoint RUN, not both")
    if args.pretrained and tag and args.pretrained != tag:
        raise ValueError(f"{args.model} names the {tag} weights but --pretrained {args.pretrained} asks for others; "
                         "give one")
    from pathlib import Path
    pretrained = Path(args.checkpoint) if args.checkpoint else args.pretrained or tag or False
    model = create_model(arch, pretrained=pretrained).eval()
    if not args.image_size:  # the size the weights were trained at
        from .run_config import image_size
        args.image_size = [image_size(getattr(model, "pretrained_config", None) or {})]
    size = args.image_size if len(args.image_size) == 2 else args.image_size * 2
    report = export_onnx(model, args.output, tuple(size), dynamic_batch=args.dynamic_batch, opset=args.opset,
                         optimize=args.optimize, fp16=args.fp16)
    print(report)
    if args.check:
        import torch
        x = torch.randn(args.check, 3, *size)
        with torch.no_grad():
            ref = model(x).numpy()
        out = run_onnx(report.path, x)
        diff = float(abs(out - ref).max())
        # fp16 rounds every weight and activation: judge it relative to the logits' scale, and by its top-1
        tol = FP16_TOLERANCE * float(abs(ref).max()) if args.fp16 else 1e-4
        print(f"parity: ONNX Runtime vs PyTorch, {args.check} random images, max abs diff {diff:.2e} "
              f"(tolerance {tol:.1e})")
        if diff > tol or (args.fp16 and not (out.argmax(1) == ref.argmax(1)).all()):
            print(f"parity check FAILED (> {tol:.1e}{' or a different top-1' if args.fp16 else ''})")
            return 1
    return 0


def _cmd_plot(args) -> int:
    from .plots import plot_training
    out = args.out or f"{args.run_dirs[0].rstrip('/')}/curves.png"
    print(f"wrote {plot_training(args.run_dirs, out)}")
    return 0


def _load_for_eval(args):
    """(model, spec-like dict, name) from --model NAME.TAG or --checkpoint RUN_DIR."""
    from .factory import create_model
    from .registry import split_model_name
    if args.checkpoint:
        from pathlib import Path

        from .run_config import read_run_config
        config = read_run_config(args.checkpoint, required=("architecture", "class_ids", "mean", "std", "crop_pct",
                                                            "dataset"))
        if not config:
            raise FileNotFoundError(f"{args.checkpoint} is not a run folder (no config.json): give the --out folder of "
                                    "a finished `convtwist-zoo train`")
        model = create_model(config["architecture"], pretrained=Path(args.checkpoint))
        return model.eval(), config, f"{config['architecture']} ({args.checkpoint})"
    arch, tag = split_model_name(args.model)
    model = create_model(args.model if tag else arch, pretrained=True if not tag else False).eval()
    spec = model.pretrained_spec
    return model, spec.to_dict() | {"dataset": spec.meta.get("dataset", spec.tag)}, spec.name


def _val_dir(args, config: dict):
    """The validation folder: ``--data``, else the run's own data (the folder it recorded, or its named dataset)."""
    from .data import data_of_run, val_split
    return val_split(args.data or data_of_run(config, args.checkpoint or "the model"), args.data_dir)


def _image_sizes(args, config: dict) -> list[int]:
    """``--image-size``, else the size the run or checkpoint was trained at."""
    from .run_config import image_size
    return args.image_size or [image_size(config)]


def _check_json_output(path) -> None:
    """Refuse an output file that cannot be written, before the work that fills it."""
    from pathlib import Path
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--json {path} is a folder; give a file name, e.g. {path / 'eval.json'}")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise PermissionError(f"--json {path}: cannot write into {parent}")


def _cmd_eval(args) -> int:
    if args.crop_pct is not None and not 0 < args.crop_pct <= 1:
        raise ValueError(f"--crop-pct must be in (0, 1], got {args.crop_pct}")
    _check_json_output(args.json)
    from .evaluate import count_macs, evaluate_on_folder
    from .transforms import eval_transform
    model, config, name = _load_for_eval(args)
    val_dir = _val_dir(args, config)
    result = {"model": name, "dataset": config["dataset"], "params": sum(p.numel() for p in model.parameters()),
              "sizes": {}}
    for size in _image_sizes(args, config):
        tf = eval_transform(size, config["mean"], config["std"], args.crop_pct or config["crop_pct"])
        r = evaluate_on_folder(model, val_dir, tf, config["class_ids"], amp=args.amp, workers=args.workers,
                               progress=not args.no_progress, desc=f"eval {size}px")
        r["macs"] = count_macs(model, size)
        result["sizes"][str(size)] = r
        print(f"{name} on {config['dataset']} val at {size}px: top-1 {r['top1']:.2f}%, top-5 {r['top5']:.2f}% "
              f"({r['images']} images, {'bf16' if args.amp else 'fp32'})")
    if args.json:
        _write_json(args.json, result)
    return 0


def _cmd_robustness(args) -> int:
    from .evaluate import robustness_sweep
    rows_by_model = {}
    for model_name in args.models:
        args.model, args.checkpoint = model_name, None
        model, config, name = _load_for_eval(args)
        rows = robustness_sweep(model, _val_dir(args, config), config["class_ids"], _image_sizes(args, config)[0],
                                config["mean"], config["std"], config["crop_pct"], amp=args.amp,
                                workers=args.workers, progress=not args.no_progress)
        rows_by_model[name] = rows
        print(name + ": " + ", ".join(f"{r['kind']} {r['value']}: {r['top1']:.1f}%" for r in rows))
        if args.json_dir:
            from pathlib import Path
            _write_json(Path(args.json_dir) / name / "robustness.json",
                        {"model": name, "image_size": args.image_size, "amp": args.amp, "rows": rows})
    if args.plot:
        from .plots import plot_robustness
        print(f"wrote {plot_robustness(rows_by_model, args.plot)}")
    return 0


def _write_json(path, payload) -> None:
    from pathlib import Path
    from .atomic import write_text_atomic
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")


def _parse_lrs(values: list[str], models: list[str]):
    """``--lr 4e-3`` (every model) or ``--lr xresnet50=4e-3 convtwist_xresnet50=8e-3`` (one for each of ``models``)."""
    def rate(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"--lr {text!r} is not a number") from None
    if len(values) == 1 and "=" not in values[0]:
        return rate(values[0])
    lrs = {}
    for v in values:
        model, eq, lr = v.partition("=")
        if not eq:
            raise ValueError(f"--lr {v!r}: give one rate for all models, or MODEL=RATE for each")
        if model not in models:
            raise ValueError(f"--lr {v!r}: {model!r} is not one of --models ({', '.join(models)})")
        lrs[model] = rate(lr)
    return lrs  # a model left without a rate is check_protocol's to refuse


def _time_matched_to(spec: str | None) -> dict | None:
    """``--time-matched-to MODEL:EPOCHS`` as ``{"model": MODEL, "epochs": EPOCHS}`` (None: not given)."""
    if spec is None:
        return None
    model, sep, epochs = spec.partition(":")
    if not sep or not epochs.isdigit() or int(epochs) < 1:
        raise ValueError(f"--time-matched-to {spec!r}: give MODEL:EPOCHS, e.g. convtwist_xresnet50:5")
    from .registry import get_builder
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

    from . import leaderboard
    from .cache import cache_dir
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
        raise ValueError(f"leaderboard {args.action} needs --models (e.g. --models xresnet50 convtwist_xresnet50)")
    from .registry import get_builder
    for m in args.models:
        get_builder(m)  # an unknown name fails now, not after hours of training
    protocol = leaderboard.protocol_name(args.data, args.image_size, args.epochs)
    results = args.results or results_dir / f"{protocol}.jsonl"
    if Path(results).is_dir():
        raise ValueError(f"--results {results} is a folder; give a .jsonl file (or --results-dir for the folder)")
    if args.action == "robustness":
        from .seed_robustness import render_robustness, robustness_results, sweep_arms
        if not Path(results).is_file():
            raise FileNotFoundError(f"no results file {results}; `convtwist-zoo leaderboard run` writes it")
        sweep_arms(results, args.runs, args.models, leaderboard.options_of(args.model_args, args.amp),
                   data_dir=args.data_dir, workers=args.workers, progress=not args.no_progress)
        print(render_robustness(robustness_results(results)))
        return 0
    if sum(map(bool, (args.lr, args.lr_from, args.probe))) > 1:
        raise ValueError("give one of --lr, --lr-from and --probe")
    if args.probe and not args.amp:
        raise ValueError("the lr probes train the recipe, in bf16: drop --no-amp (an fp32 arm takes its bf16 arm's "
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


def _cmd_download(args) -> int:
    from .data import DATASETS, download_archive, prepare_dataset
    info = DATASETS[args.dataset]
    if args.archive and args.archive not in info.archives:
        raise ValueError(f"--archive {args.archive!r} is not a {args.dataset} archive; choose one of "
                         f"{', '.join(info.archives)}")
    path = download_archive(info, args.archive)
    print(f"downloaded {path}; extracted to {prepare_dataset(args.dataset, path.parent)}")
    return 0


def _cmd_flow(args) -> int:
    from pathlib import Path

    from torchvision.transforms.v2 import functional as TF

    from .inference import open_image
    from .plots import plot_flow
    from .visualize import apply_flow
    path = args.image or str(Path(__file__).parent / "assets" / "church.jpg")
    image = TF.to_dtype(TF.to_image(open_image(path)), scale=True)
    snaps = apply_flow(image, args.generator, args.steps, args.snapshots, args.strength,
                       -1.0 if args.reverse else 1.0)
    print(f"wrote {plot_flow(snaps, args.generator, args.out)}")
    return 0


def _cmd_inspect(args) -> int:
    from pathlib import Path

    from .plots import plot_inspect
    from .factory import create_model
    from .registry import split_model_name
    from .visualize import layer_statistics
    arch, tag = split_model_name(args.model)
    if args.checkpoint and (args.pretrained or tag):
        raise ValueError("give a tag (--pretrained TAG or MODEL.TAG) or --checkpoint RUN, not both")
    pretrained = Path(args.checkpoint) if args.checkpoint else args.pretrained or tag or True
    model = create_model(arch, pretrained=pretrained).eval()
    stats = layer_statistics(model)
    if not stats["layers"]:
        raise ValueError(f"{args.model} has no ConvTwist layer to inspect")
    out = Path(args.out)
    _write_json(out / "inspect.json", {"model": args.model, **stats})
    for png in plot_inspect(stats, args.model, out):
        print(f"wrote {png}")
    for s in stats["stages"]:
        print(f"{s['stage']}: {s['layers']} layers, twist/main {s['twist_ratio']:.3f}, "
              f"|center_x| {s['center_x_abs']:.2f}, |center_y| {s['center_y_abs']:.2f}")
    return 0


# the embedded default for `demo`: the first of these with weights in hub/ (or $CONVTWIST_ZOO_HUB_DIR)
DEMO_PREFERENCE = ("convtwist_resnet50.imagenette", "convtwist_resnet18.imagenette", "resnet50.imagenette",
                   "resnet18.imagenette")


def _demo_default() -> str:
    from .hub import hub_dir
    folder = hub_dir()
    for name in DEMO_PREFERENCE:
        if folder is not None and (folder / name / "model.safetensors").is_file():
            return name
    raise FileNotFoundError(f"no checkpoint of {', '.join(DEMO_PREFERENCE)} in {folder}; pass --model ARCH.TAG "
                            "(weights then come from the Hugging Face Hub)")


def _cmd_demo(args) -> int:
    """Load a pretrained model, classify the bundled images, export to ONNX and check ONNX Runtime's parity."""
    from pathlib import Path

    import torch

    from .inference import load_classifier, open_image
    from .onnx_export import export_onnx, run_onnx
    name = args.model or _demo_default()
    from .fused_kernels import describe
    from .layers import ConvTwist
    clf = load_classifier(name)
    images = args.images or sorted(str(p) for p in (Path(__file__).parent / "assets").glob("*.jpg"))
    twisted = any(isinstance(m, ConvTwist) for m in clf.model.modules())
    print(f"model {clf.name}: {sum(p.numel() for p in clf.model.parameters()):,} parameters; "
          + (describe() if twisted else "a plain baseline, no ConvTwist layers"))
    for path, result in zip(images, clf.predict(images, topk=3)):
        print(f"{Path(path).name:>16}: " + ", ".join(f"{n} {p * 100:.1f}%" for _, n, p in result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = tuple(clf.model.pretrained_config.get("input_size", (3, 128, 128))[1:])
    report = export_onnx(clf.model, out / f"{clf.name}.onnx", size, compare_unfolded=False)
    batch = torch.stack([clf.transform(open_image(p)) for p in images])
    with torch.no_grad():
        ref = clf.model(batch).numpy()
    got = run_onnx(report.path, batch)
    diff = float(abs(got - ref).max())
    agree = int((got.argmax(1) == ref.argmax(1)).sum())
    print(f"exported {report.path} ({sum(report.nodes_after.values())} nodes); ONNX Runtime vs PyTorch on "
          f"{len(images)} images: max abs diff {diff:.2e}, top-1 agrees on {agree}/{len(images)}")
    ok = diff <= 1e-4 and agree == len(images)
    print("parity OK" if ok else "parity FAILED")
    return 0 if ok else 1


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
    from .onnx_export import DEFAULT_OPSET, MIN_OPSET
    from .training import KNOB_RANGES, TrainConfig
    parser = argparse.ArgumentParser(prog="convtwist-zoo", description="ConvTwist model zoo")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _subcommand(sub, "list", help="list registered models, or with --pretrained the checkpoints (arch.tag)")
    p.add_argument("filter", nargs="?", help="substring to filter names")
    p.add_argument("--pretrained", action="store_true",
                   help="the checkpoints that load by name (arch.tag, e.g. for predict --model)")
    p.set_defaults(func=_cmd_list)

    p = _subcommand(sub, "train", help="train a model (single process, or under torchrun)")
    _add_config_args(p, TrainConfig, KNOB_RANGES)
    p.set_defaults(func=_cmd_train)

    p = _subcommand(sub, "finetune", help="fine-tune a pretrained model on a folder (new head for its classes)")
    _add_config_args(p, TrainConfig, KNOB_RANGES,
                     defaults=dict(epochs=10, freeze_epochs=2, backbone_lr_mult=0.1, lr=0.02, warmup_epochs=1.0))
    p.set_defaults(func=_cmd_finetune)

    p = _subcommand(sub, "predict", help="top-k classes of images")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, any bit depth; EXIF orientation applied)")
    p.add_argument("--model", help="arch.tag, or arch with --pretrained (default: first of "
                   f"{', '.join(DEMO_PREFERENCE)} in hub/, else {DEMO_PREFERENCE[0]} from the Hub)")
    p.add_argument("--pretrained", help="a tag of --model's checkpoints (e.g. imagewoof)")
    p.add_argument("--checkpoint", help="a run folder of yours (or its model.safetensors) instead of a zoo checkpoint")
    p.add_argument("--topk", type=_positive_int, default=5, help="classes to show per image (default: 5; >= 1)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_cmd_predict)

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
    p.set_defaults(func=_cmd_export)

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
    p.set_defaults(func=_cmd_eval)

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
    p.set_defaults(func=_cmd_robustness)

    p = _subcommand(sub, "leaderboard", help="the fast.ai leaderboard protocol over several seeds: run, table, or "
                                           "robustness")
    p.add_argument("action", choices=["run", "table", "robustness"],
                   help="run: train what the results file lacks; table: print; robustness: sweep the rotations and "
                        "scales of every run of the arms of --models (with --model-args and --amp/--no-amp) whose "
                        "weights are in --runs, into robustness/ beside the results file, and print the comparison")
    p.add_argument("files", nargs="*", help="table: results files (default: every one in --results-dir)")
    p.add_argument("--models", nargs="+", help="run: model names, trained in this order for each seed")
    p.add_argument("--data", default="imagewoof", help="imagewoof | imagenette | folder")
    p.add_argument("--data-dir", help="where the archives are (else $CONVTWIST_DATA)")
    p.add_argument("--epochs", type=_positive_int, default=5, help="epochs per run (default: 5; >= 1)")
    p.add_argument("--seeds", type=_positive_int, default=5, help="how many seeds")
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

    p = _subcommand(sub, "download", help="download a dataset archive from the official fast.ai URL into the cache")
    p.add_argument("dataset", choices=["imagenette", "imagewoof"], help="which dataset")
    p.add_argument("--archive", help="archive stem, e.g. imagenette2-320 (default: the 160px one)")
    p.set_defaults(func=_cmd_download)

    p = _subcommand(sub, "flow", help="the seed's experiment: apply a twist flow (rotation, scaling, shift) repeatedly")
    p.add_argument("image", nargs="?", help="default: the bundled church image")
    p.add_argument("--generator", choices=["rotation", "scaling", "shift-x", "shift-y"], default="rotation",
                   help="the flow to apply (default: rotation)")
    p.add_argument("--steps", type=_positive_int, default=500, help="steps of the flow (default: 500; >= 1)")
    p.add_argument("--snapshots", type=_positive_int, default=3, help="images shown along the way (default: 3)")
    p.add_argument("--strength", type=float, default=0.01, help="the seed's 0.01 times the Sobel kernels")
    p.add_argument("--reverse", action="store_true", help="flip the kernels' sign (the opposite flow)")
    p.add_argument("--out", default="flow.png", help="the PNG to write (default: flow.png)")
    p.set_defaults(func=_cmd_flow)

    p = _subcommand(sub, "inspect", help="what a trained ConvTwist model learned: centres and twist strength")
    p.add_argument("model", help="arch.tag, or arch with --pretrained or --checkpoint")
    p.add_argument("--pretrained", help="a tag of the model's checkpoints (default: the name's tag, else the "
                   "architecture's default checkpoint)")
    p.add_argument("--checkpoint", help="a run folder of yours (or its model.safetensors)")
    p.add_argument("--out", required=True, help="folder for inspect.json and PNGs")
    p.set_defaults(func=_cmd_inspect)

    p = _subcommand(sub, "demo", help="the main job: pretrained model from hub/, classify, export, check parity")
    p.add_argument("images", nargs="*", help="default: the bundled sample images")
    p.add_argument("--model", help=f"arch.tag (default: first of {', '.join(DEMO_PREFERENCE)} found in hub/)")
    p.add_argument("--out", default="demo-out", help="folder for the exported ONNX model")
    p.set_defaults(func=_cmd_demo)

    p = _subcommand(sub, "plot", help="loss and accuracy curves of run folders to PNG")
    p.add_argument("run_dirs", nargs="+", help="run folders (each with a metrics.jsonl)")
    p.add_argument("--out", help="the PNG to write, or a folder for curves.png (default: RUN/curves.png)")
    p.set_defaults(func=_cmd_plot)
    return parser


def main(argv=None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse, run the chosen command, and turn a user's bad input (or a missing extra) into one line on stderr and
    exit status 2."""
    from .extras import MissingExtraError
    args = parser.parse_args(argv)
    args.argv = [str(a) for a in (argv if argv is not None else sys.argv[1:])]
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, OSError, TypeError, ArithmeticError, MissingExtraError) as e:
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
