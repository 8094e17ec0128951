"""What each ``convtwist-zoo`` user command does: call the library, print. `cli` parses the arguments and
turns the zoo's errors into one line."""
from __future__ import annotations

import dataclasses
import json
import os
import sys

from .errors import InputError

__all__ = []


def _cmd_list(args) -> int:
    from .layers._kernels import describe
    from .models._registry import list_models
    from .models._pretrained import list_pretrained
    names = (list_pretrained if args.pretrained else list_models)(args.filter or "")
    if not names:
        raise InputError(f"no {'checkpoint' if args.pretrained else 'model'} name contains {args.filter!r}; "
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
        raise InputError("finetune needs --pretrained TAG (e.g. imagenette), a tagged --model "
                         "(e.g. convtwist_resnet50.imagenette), or --checkpoint RUN (a run folder of yours)")
    print(json.dumps(train(cfg)))
    return 0


def _cmd_predict(args) -> int:
    from .inference import load_classifier
    from .models._registry import is_model, split_model_name
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
        raise InputError("give --pretrained TAG (a zoo checkpoint) or --checkpoint RUN (a run folder of yours), "
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
    from .export.onnx import FP16_TOLERANCE, check_output_path, export_onnx, run_onnx
    from .models._builder import create_model
    from .models._registry import split_model_name
    if args.image_size and (len(args.image_size) not in (1, 2) or min(args.image_size) < 32):
        raise InputError(f"--image-size takes S or H W, each at least 32 (a multiple of 32), got "
                         f"{' '.join(map(str, args.image_size))}")
    check_output_path(args.output)
    arch, tag = split_model_name(args.model)
    if args.checkpoint and (args.pretrained or tag):
        raise InputError("give a tag (--pretrained TAG or MODEL.TAG) or --checkpoint RUN, not both")
    if args.pretrained and tag and args.pretrained != tag:
        raise InputError(f"{args.model} names the {tag} weights but --pretrained {args.pretrained} asks for others; "
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
    from .models._builder import create_model
    from .models._registry import split_model_name
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
    return model, spec.to_dict() | {"dataset": spec.dataset or spec.tag}, spec.name


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
        raise InputError(f"--crop-pct must be in (0, 1], got {args.crop_pct}")
    _check_json_output(args.json)
    from .evaluate import count_macs, evaluate_on_folder
    from .data.transforms import eval_transform
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
    from .files.atomic import write_text_atomic
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")


def _cmd_download(args) -> int:
    from .data import DATASETS, download_archive, prepare_dataset
    info = DATASETS[args.dataset]
    if args.archive and args.archive not in info.archives:
        raise InputError(f"--archive {args.archive!r} is not a {args.dataset} archive; choose one of "
                         f"{', '.join(info.archives)}")
    path = download_archive(info, args.archive)
    print(f"downloaded {path}; extracted to {prepare_dataset(args.dataset, path.parent)}")
    return 0


def _cmd_inspect(args) -> int:
    from pathlib import Path

    from .plots import plot_inspect
    from .models._builder import create_model
    from .models._registry import split_model_name
    from .layers.twist_statistics import layer_statistics
    arch, tag = split_model_name(args.model)
    if args.checkpoint and (args.pretrained or tag):
        raise InputError("give a tag (--pretrained TAG or MODEL.TAG) or --checkpoint RUN, not both")
    pretrained = Path(args.checkpoint) if args.checkpoint else args.pretrained or tag or True
    model = create_model(arch, pretrained=pretrained).eval()
    stats = layer_statistics(model)
    if not stats["layers"]:
        raise InputError(f"{args.model} has no ConvTwist layer to inspect")
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
    from .models._hub import hub_dir
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
    from .export.onnx import export_onnx, run_onnx
    name = args.model or _demo_default()
    from .layers._kernels import describe
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
