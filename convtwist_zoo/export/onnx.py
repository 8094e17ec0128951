"""ONNX export of any registry model (pretrained or fine-tuned) as a static graph with the twist folded in.

``export_onnx`` folds the model (`folding`), exports it with a fixed image size (batch optionally dynamic), embeds
metadata, checks the file with ``onnx.checker`` (full check), and writes it atomically with a ``.sha256`` sidecar
that `run_onnx` and ``export/classify_onnx.py`` check before running it. ONNX Runtime rejects inputs of another size
through the graph's static shapes.
"""
from __future__ import annotations

import collections
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..files.atomic import atomic_path, write_text_atomic
from .folding import fold_model, network_stride
from ..extras import require
from ..errors import InputError

__all__ = ["export_onnx", "ExportReport", "onnx_metadata", "run_onnx", "optimize_for_ort", "check_output_path",
           "checksum_path", "write_checksum", "verify_checksum", "DEFAULT_OPSET", "MIN_OPSET", "FP16_TOLERANCE"]

DEFAULT_OPSET = 17
MIN_OPSET = 13  # the ConvTwist graphs export Unflatten and Flip, which older opsets lack
# fp16 export parity: max |ONNX - PyTorch| relative to the largest |logit| (measured 0.01-0.04% on the zoo)
FP16_TOLERANCE = 0.01


@dataclass
class ExportReport:
    path: Path
    image_size: tuple
    nodes_before: dict = field(default_factory=dict)   # op type -> count, unfolded model
    nodes_after: dict = field(default_factory=dict)    # op type -> count, exported graph
    metadata: dict = field(default_factory=dict)
    optimized_path: Path | None = None

    def __str__(self) -> str:
        ops = sorted(set(self.nodes_before) | set(self.nodes_after))
        lines = [f"exported {self.path} ({self.image_size[0]}x{self.image_size[1]})",
                 f"{'op':<22}{'unfolded':>10}{'folded':>10}"]
        lines += [f"{op:<22}{self.nodes_before.get(op, 0):>10}{self.nodes_after.get(op, 0):>10}" for op in ops]
        lines.append(f"{'total':<22}{sum(self.nodes_before.values()):>10}{sum(self.nodes_after.values()):>10}")
        if self.optimized_path:
            lines.append(f"ORT-optimized model: {self.optimized_path}")
        return "\n".join(lines)


def _to_onnx_bytes(model: nn.Module, image_size, opset: int, dynamic_batch: bool, in_chans: int) -> bytes:
    buffer = io.BytesIO()
    dummy = torch.zeros(1, in_chans, *image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (dummy,), buffer, dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=["logits"], do_constant_folding=True,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None)
    return buffer.getvalue()


def _sort_nodes(graph) -> None:
    """Put ``graph``'s nodes in topological order (the ONNX checker requires it), keeping the order otherwise."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        remaining = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                remaining.append(n)
        if len(remaining) == len(pending):
            raise InputError("the ONNX graph has a cycle or an undefined input")
        pending = remaining
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def _op_counts(onnx_model) -> dict:
    return dict(collections.Counter(node.op_type for node in onnx_model.graph.node))


def onnx_metadata(path: str | os.PathLike) -> dict:
    """The convtwist-zoo metadata embedded in an exported model (JSON values decoded)."""
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    out = {}
    for prop in model.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            out[prop.key] = prop.value
    return out


def export_onnx(model: nn.Module, path: str | os.PathLike, image_size=128, dynamic_batch: bool = True,
                opset: int = DEFAULT_OPSET, metadata: dict | None = None, optimize: bool = False,
                compare_unfolded: bool = True, fp16: bool = False) -> ExportReport:
    """Fold ``model`` for ``image_size`` and write a static ONNX graph (and its ``.sha256`` sidecar) to ``path``.

    Args:
        model: any registry model, pretrained or fine-tuned (folded on a copy; the model is not changed).
        path: the ``.onnx`` file to write (atomically).
        image_size: int or (H, W), multiples of the network's stride (32).
        dynamic_batch: a free batch dimension (else batch 1).
        opset: ONNX opset, `MIN_OPSET` or newer.
        metadata: extra ``metadata_props``; model name, classes, mean/std and crop come from the model's
            ``pretrained_config`` by default (``export/classify_onnx.py`` reads them).
        optimize: also write ONNX Runtime's optimised graph beside it (``*.ort.onnx``).
        compare_unfolded: also export the unfolded model to count its ops (slower).
        fp16: float16 weights and arithmetic (half the file) with float32 input and logits.

    Returns:
        An `ExportReport`: path, op counts before and after folding, metadata.

    Example:
        >>> report = export_onnx(create_model("convtwist_resnet50.imagenette"), "model.onnx", 128)
        >>> logits = run_onnx(report.path, images)  # a float32 (N, 3, 128, 128) batch
    """
    onnx = require("onnx")

    if opset < MIN_OPSET:  # the exporter would fail deep in tracing and print its whole graph
        raise InputError(f"ONNX opset {opset} is too old for these models: use {MIN_OPSET} or newer "
                         f"(the default is {DEFAULT_OPSET})")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    stride = network_stride(model)
    if h % stride or w % stride:
        raise InputError(f"image size {h}x{w} is not a multiple of the network's stride {stride}; use e.g. "
                         f"{max(stride, h // stride * stride)}x{max(stride, w // stride * stride)}")
    path = check_output_path(path)
    in_chans = next(m for m in model.modules() if hasattr(m, "in_channels")).in_channels

    folded = fold_model(model, (h, w))
    graph = onnx.load_from_string(_to_onnx_bytes(folded, (h, w), opset, dynamic_batch, in_chans))
    nodes_before = {}
    if compare_unfolded:
        unfolded = onnx.load_from_string(_to_onnx_bytes(model.eval(), (h, w), opset, dynamic_batch, in_chans))
        nodes_before = _op_counts(unfolded)
    meta = dict(_default_metadata(model))
    meta.update(metadata or {})
    if fp16:  # weights and compute in float16, inputs and outputs stay float32 (same preprocessing and callers)
        from onnxruntime.transformers.float16 import convert_float_to_float16
        graph = convert_float_to_float16(graph, keep_io_types=True)
        _sort_nodes(graph.graph)  # the converter appends its input/output Casts at the end
    meta.update({"input_size": [in_chans, h, w], "producer": "convtwist-zoo", "folded": True,
                 "precision": "fp16" if fp16 else "fp32"})
    del graph.metadata_props[:]
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.checker.check_model(graph, full_check=True)

    with atomic_path(path) as tmp:
        onnx.save(graph, str(tmp))
    write_checksum(path)
    report = ExportReport(path, (h, w), nodes_before, _op_counts(graph), meta)
    if optimize:
        report.optimized_path = optimize_for_ort(path)
    return report


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail before any work when ``path`` cannot be written: a folder, a missing or read-only parent, a file
    system that takes no new files (``/proc``)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"-o {path} is a folder; give a file name, e.g. {path / 'model.onnx'}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write {path}: {path.parent} does not take new files ({e.strerror}); "
                              "choose another folder") from e
    return path


def checksum_path(path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.sha256``: the sidecar that makes an exported file verifiable."""
    return Path(f"{path}.sha256")


def write_checksum(path: str | os.PathLike) -> Path:
    """Write ``<sha256>  <file name>`` beside ``path`` (the format ``sha256sum -c`` reads)."""
    from ..files.hashing import sha256_file
    sidecar = checksum_path(path)
    write_text_atomic(sidecar, f"{sha256_file(path)}  {Path(path).name}\n")
    return sidecar


def verify_checksum(path: str | os.PathLike) -> bool:
    """Check ``path`` against its sidecar: raises on a mismatch, warns and returns False when there is none."""
    from ..files.hashing import sha256_file
    from ..models._hub import IntegrityError
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        warnings.warn(f"{path}: no {sidecar.name} beside it, so it was not verified (files exported by "
                      "convtwist-zoo carry one)")
        return False
    expected = sidecar.read_text().split()[0] if sidecar.read_text().split() else ""
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"{path} has sha256 {actual}, but {sidecar.name} records {expected or 'nothing'}: the "
                             "file is corrupt or was changed; export it again")
    return True


def _default_metadata(model: nn.Module) -> dict:
    config = getattr(model, "pretrained_config", None) or {}
    spec = getattr(model, "pretrained_spec", None)
    meta = {}
    if spec is not None:
        meta.update(model_name=spec.name, source_sha256=spec.sha256)
    elif config.get("architecture"):
        meta["model_name"] = config["architecture"]
    for key in ("class_ids", "class_names", "mean", "std", "crop_pct", "interpolation"):
        if config.get(key) is not None:
            meta[key] = list(config[key]) if isinstance(config[key], (list, tuple)) else config[key]
    meta.setdefault("mean", [0.485, 0.456, 0.406])
    meta.setdefault("std", [0.229, 0.224, 0.225])
    meta.setdefault("crop_pct", 0.875)
    meta.setdefault("interpolation", "bilinear")
    return meta


def optimize_for_ort(path: str | os.PathLike) -> Path:
    """Write ONNX Runtime's offline-optimised graph (extended level) beside ``path`` as ``*.ort.onnx``."""
    ort = require("onnxruntime")
    path = Path(path)
    out = path.with_suffix(".ort.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    write_checksum(out)
    return out


def run_onnx(path: str | os.PathLike, images: np.ndarray | torch.Tensor, threads: int = 0) -> np.ndarray:
    """Logits from ONNX Runtime (CPU) for a float32 batch (N, C, H, W); the file is first checked against its
    ``.sha256`` sidecar."""
    ort = require("onnxruntime")
    verify_checksum(path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = images.numpy() if isinstance(images, torch.Tensor) else images
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
