#!/usr/bin/env python3
"""Classify images with an exported convtwist-zoo ONNX model, using onnxruntime, numpy and Pillow only (no torch).

    python export/classify_onnx.py MODEL.onnx IMAGE... [--topk 5] [--json]

Preprocessing (input size, resize/crop ratio, mean/std) and class names come from the model's metadata, written by
``convtwist-zoo export``; it reproduces the PyTorch eval transform (resize the shortest side to size/crop_pct with
bilinear filtering, centre crop, scale to [0, 1], normalise).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def read_metadata(session: ort.InferenceSession) -> dict:
    meta = {}
    for key, value in session.get_modelmeta().custom_metadata_map.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta


def preprocess(path: str, meta: dict) -> np.ndarray:
    """(3, H, W) float32 array, as convtwist_zoo.transforms.eval_transform makes it."""
    _, h, w = meta.get("input_size", [3, 128, 128])
    image = Image.open(path).convert("RGB")
    short = int(round(min(h, w) / float(meta.get("crop_pct", 0.875))))
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
    mean = np.asarray(meta.get("mean", [0.485, 0.456, 0.406]), dtype=np.float32)
    std = np.asarray(meta.get("std", [0.229, 0.224, 0.225]), dtype=np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    meta = read_metadata(session)
    batch = np.stack([preprocess(p, meta) for p in args.images])
    probs = softmax(session.run(None, {session.get_inputs()[0].name: batch})[0])
    names = meta.get("class_names") or [str(i) for i in range(probs.shape[1])]
    results = {}
    for path, p in zip(args.images, probs):
        top = np.argsort(-p)[: args.topk]
        results[path] = [{"index": int(i), "class_name": names[i], "probability": float(p[i])} for i in top]
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
