#!/usr/bin/env python3
"""Classify images with an exported convtwist-zoo ONNX model, using onnxruntime, numpy and Pillow only (no torch).

    python export/classify_onnx.py MODEL.onnx IMAGE... [--topk 5] [--json]

Preprocessing (input size, resize/crop ratio, mean/std) and class names come from the model's metadata, written by
``convtwist-zoo export`` (a model without it is refused unless --input-size, --crop-pct, --mean and --std are given);
it reproduces the PyTorch eval transform (decode any bit depth to 8-bit RGB, resize the
shortest side to size/crop_pct with bilinear filtering, centre crop, scale to [0, 1], normalise; a JPEG's EXIF
orientation applied). The model file is
checked against the ``MODEL.onnx.sha256`` written beside it at export. Bad input ends with one line on stderr and
exit status 2.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

MIN_IMAGE_SIDE = 32  # the rule of `convtwist-zoo predict` (convtwist_zoo.inference.MIN_IMAGE_SIDE)
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class InputError(Exception):
    """Input this script cannot use; the message says which and what to do."""


def verify_model(path: str) -> bool:
    """Compare the model's sha256 with its ``.sha256`` sidecar: raises on a mismatch, False when there is none."""
    sidecar = Path(f"{path}.sha256")
    if not sidecar.is_file():
        return False
    fields = sidecar.read_text().split()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    if not fields or h.hexdigest() != fields[0]:
        raise InputError(f"{path} has sha256 {h.hexdigest()}, but {sidecar.name} records "
                         f"{fields[0] if fields else 'nothing'}: the model file is corrupt or was changed; export "
                         "it again")
    return True


def open_session(path: str) -> ort.InferenceSession:
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such model file (give the .onnx written by `convtwist-zoo export`)")
    if not verify_model(path):
        print(f"warning: {path}: no {Path(path).name}.sha256 beside it, so it was not verified", file=sys.stderr)
    try:
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for empty, truncated and foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} is not a loadable ONNX model ({reason}); export it again with "
                         "`convtwist-zoo export`") from e


def read_metadata(session: ort.InferenceSession) -> dict:
    meta = {}
    for key, value in session.get_modelmeta().custom_metadata_map.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, as convtwist_zoo.data.transforms.to_rgb: 16-bit samples scaled by 255/65535, floats read on [0, 1]."""
    if image.mode not in _WIDE_MODES:
        return image.convert("RGB")
    a = np.asarray(image, dtype=np.float64)
    scale = 1.0 if image.mode == "F" else 65535.0
    return Image.fromarray(np.clip(np.rint(a * (255.0 / scale)), 0, 255).astype(np.uint8), mode="L").convert("RGB")


def load_image(path: str) -> Image.Image:
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder; give image files")
    if not os.path.exists(path):
        raise InputError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image.load()
            image = to_rgb(ImageOps.exif_transpose(image))  # upright, as every path of the zoo decodes it
    except Image.DecompressionBombError as e:
        raise InputError(f"{path} is too large to decode safely ({e}); downscale it first") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path} is not a readable image ({e}); use a JPEG or PNG file") from e
    if min(image.size) < MIN_IMAGE_SIDE:
        raise InputError(f"{path} is {image.size[0]}x{image.size[1]}: too small, the models need at least "
                         f"{MIN_IMAGE_SIDE}px on each side (they were trained at 128px)")
    return image


PREPROCESSING = ("input_size", "crop_pct", "mean", "std")  # what the zoo's export writes, and this script needs


def preprocessing(meta: dict, model: str, given: dict) -> dict:
    """The preprocessing to use: the model's metadata, with the values given on the command line over it; a model
    without the zoo's metadata (any other ONNX export) is refused unless every value is given."""
    chosen = {**{k: meta[k] for k in PREPROCESSING if k in meta}, **{k: v for k, v in given.items() if v is not None}}
    if missing := [k for k in PREPROCESSING if k not in chosen]:
        raise InputError(f"{model} does not record its preprocessing ({', '.join(missing)} missing): it was not "
                         "exported by `convtwist-zoo export`. Export it with that, or give --input-size H W, "
                         "--crop-pct, --mean R G B and --std R G B yourself")
    return chosen


def preprocess(path: str, meta: dict) -> np.ndarray:
    """(3, H, W) float32 array, as convtwist_zoo.data.transforms.eval_transform makes it (``meta``: `preprocessing`)."""
    _, h, w = meta["input_size"]
    image = load_image(path)
    short = int(round(min(h, w) / float(meta["crop_pct"])))
    iw, ih = image.size
    if iw <= ih:
        size = (short, int(short * ih / iw))
    else:
        size = (int(short * iw / ih), short)
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[meta.get("interpolation", "bilinear")]
    image = image.resize(size, resample)
    left, top = int(round((size[0] - w) / 2.0)), int(round((size[1] - h) / 2.0))
    image = image.crop((left, top, left + w, top + h))
    x = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(meta["mean"], dtype=np.float32)
    std = np.asarray(meta["std"], dtype=np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


BATCH = 32  # images per ONNX Runtime call: a large folder is classified in pieces, not in one batch


def classify(model: str, images: list[str], topk: int, given: dict | None = None) -> tuple[dict, dict]:
    """(metadata, {image: [{index, class_name, probability}, ...]}) for the top-k classes of each image; ``given``
    overrides (or, for a model without the zoo's metadata, supplies) the preprocessing."""
    session = open_session(model)
    meta = read_metadata(session)
    prep = preprocessing(meta, model, given or {})
    for path in images:  # every file checked before any work
        load_image(path)
    results = {}
    for start in range(0, len(images), BATCH):
        chunk = images[start:start + BATCH]
        logits = session.run(None, {session.get_inputs()[0].name: np.stack([preprocess(p, prep) for p in chunk])})[0]
        if not np.isfinite(logits).all():
            raise InputError(f"{model} produced NaN or infinite scores: its weights are damaged; export it again")
        probs = softmax(logits)
        names = meta.get("class_names") or [f"class {i}" for i in range(probs.shape[1])]
        for path, p in zip(chunk, probs):
            top = np.argsort(-p)[:topk]
            results[path] = [{"index": int(i), "class_name": names[i], "probability": float(p[i])} for i in top]
    return meta, results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--topk", type=_positive_int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--input-size", type=_positive_int, nargs=2, metavar=("H", "W"),
                        help="the model's input size (default: its metadata; needed for a model without it)")
    parser.add_argument("--crop-pct", type=float, help="centre-crop share (default: the model's metadata)")
    parser.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="normalisation mean (default: the model's metadata)")
    parser.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="normalisation std (default: the model's metadata)")
    args = parser.parse_args(argv)
    given = {"input_size": [3, *args.input_size] if args.input_size else None, "crop_pct": args.crop_pct,
             "mean": args.mean, "std": args.std}
    try:
        if args.crop_pct is not None and not 0 < args.crop_pct <= 1:
            raise InputError(f"--crop-pct must be in (0, 1], got {args.crop_pct}")
        meta, results = classify(args.model, args.images, args.topk, given)
    except InputError as e:
        print(f"classify_onnx: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"model {meta.get('model_name', args.model)}")
        for path, rows in results.items():
            print(path)
            for r in rows:
                print(f"  {r['probability'] * 100:6.2f}%  {r['class_name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
