"""The C++ CPU kernels behind ConvTwist's fast path (``csrc/twist_cpu.cpp``) and MaxBlurPool's
(``csrc/maxblur_cpu.cpp``), compiled on first use.

Plain PyTorch needs about ten passes over memory for the 4-tap twist (padding, four strided differences, grid
products, an eight-way scatter in the backward); these kernels do each step in one pass, which roughly halves the
layer's cost on a CPU. They are built with ``torch.utils.cpp_extension`` (a C++ compiler and ninja are needed; the
build is cached per machine). Without a compiler, or with ``CONVTWIST_ZOO_FUSED=0``, `load` returns ``None`` and
the layer uses its plain PyTorch path, which computes the same function (MaxBlurPool likewise).

This module is also the one place that decides which path a call takes (`twist_path`, `maxblur_fused`): the device,
tracing (torch.fx, TorchScript, ONNX), torch.compile and the autocast dtype all enter there.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from ..files.cache import cache_dir
from ..host import cpuinfo_fields

__all__ = ["load", "describe", "SOURCE", "SOURCES", "fx_tracing", "cpu_ops", "compute_dtype", "twist_path",
           "stacked_is_faster", "maxblur_fused"]

SOURCE = Path(__file__).resolve().parent / "csrc" / "twist_cpu.cpp"
SOURCES = (SOURCE, SOURCE.parent / "maxblur_cpu.cpp")
HEADERS = (SOURCE.parent / "nhwc.h",)
_STATE: dict = {}


def _build_dir() -> Path:
    """One build folder per CPU (the build uses -march=native), per torch install and per kernel source, under the
    package's cache.

    ninja rebuilds whenever a compile command changes: the source is compiled from a copy inside that folder, so two
    checkouts of the same code (a work tree and a training snapshot) share a module, and the torch install (its
    include paths) is in the key, so two environments do not rebuild each other's module at every load.
    """
    flags = cpuinfo_fields().get("flags", "")
    sources = {src.name: src.read_bytes() for src in SOURCES + HEADERS}
    torch_install = f"{torch.__version__} {Path(torch.__file__).resolve().parent}"
    key = hashlib.sha256(platform.machine().encode() + flags.encode() + torch_install.encode()
                         + b"".join(sources.values())).hexdigest()[:12]
    base = cache_dir()
    path = base / "ext" / key
    path.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        copy = path / name
        if not copy.exists() or copy.read_bytes() != source:
            tmp = path / f".{name}.{os.getpid()}.tmp"
            tmp.write_bytes(source)
            os.replace(tmp, copy)
    # torch's build lock is a plain file: a build killed mid-way leaves it and every later load would wait forever.
    # A build takes under a minute, so a lock older than 10 minutes is stale.
    lock = path / "lock"
    try:
        if time.time() - lock.stat().st_mtime > 600:
            lock.unlink()
    except FileNotFoundError:
        pass
    return path


def load():
    """The compiled kernels (``torch.ops.convtwist_zoo``), or ``None`` when they are disabled or cannot be built (warns
    once). torch.compile's tracing never builds: it gets the kernels only if an eager call built them before."""
    if "module" in _STATE or torch.compiler.is_compiling():
        return _STATE.get("module")
    module = None
    if os.environ.get("CONVTWIST_ZOO_FUSED", "1") != "0":
        # importing cpp_extension logs a warning about CUDA_HOME on CPU-only machines; it builds CPU code only
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        try:
            from torch.utils.cpp_extension import load as load_extension
            build = _build_dir()
            if not (build / "convtwist_zoo_twist_cpu.so").exists():  # the first use on this machine and torch
                print(f"convtwist-zoo: compiling ConvTwist's fused CPU kernels into {build} (once per machine "
                      "and torch install)...", file=sys.stderr, flush=True)
            load_extension(name="convtwist_zoo_twist_cpu", sources=[str(build / src.name) for src in SOURCES],
                           extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
                           build_directory=str(build), verbose=False, is_python_module=False)
            _register_fakes()
            module = torch.ops.convtwist_zoo
        except Exception as e:  # no compiler, no ninja, read-only cache...
            _STATE["why"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            warnings.warn(f"ConvTwist: could not build the fused CPU kernels ({_STATE['why']}); using the plain "
                          "PyTorch path instead: the same results, with a slower layer on the CPU (its training "
                          "step costs about 1.5x in bf16). Install a C++ compiler (g++) and ninja (pip install "
                          "ninja) to enable them, or set CONVTWIST_ZOO_FUSED=0 to silence this.", stacklevel=2)
    else:
        _STATE["why"] = "CONVTWIST_ZOO_FUSED=0"
    _STATE["module"] = module
    return module


def describe() -> str:
    """One line saying which path ConvTwist runs on here (building the kernels if that has not happened yet)."""
    if load() is not None:
        return f"ConvTwist runs on its fused C++ CPU kernels (built in {_build_dir()})"
    return f"ConvTwist runs on its plain PyTorch path ({_STATE.get('why', 'kernels unavailable')})"


def _out_hw(h, w, stride):
    return (h - 1) // stride + 1, (w - 1) // stride + 1


def _register_fakes() -> None:
    """Output shapes of the operators for torch.compile's tracing (the C++ side holds the arithmetic)."""
    lib = "convtwist_zoo::"

    @torch.library.register_fake(lib + "twist_diffs")
    def _(x, stride):
        ho, wo = _out_hw(x.shape[2], x.shape[3], stride)
        return x.new_empty((x.shape[0] * ho * wo, 4 * x.shape[1]))

    @torch.library.register_fake(lib + "twist_scatter_add_")
    def _(grad_x, g, stride):
        return None

    @torch.library.register_fake(lib + "twist_combine_")
    def _(out, tw):
        return None

    @torch.library.register_fake(lib + "twist_grid_grad")
    def _(grad):
        return grad.new_empty((grad.shape[0] * grad.shape[2] * grad.shape[3], 2 * grad.shape[1]))

    @torch.library.register_fake(lib + "twist_combine3")
    def _(y):
        n, f3, ho, wo = y.shape
        return torch.empty((n, f3 // 3, ho, wo), dtype=y.dtype, device=y.device, memory_format=torch.channels_last)

    @torch.library.register_fake(lib + "twist_grid_grad3")
    def _(grad):
        n, f, ho, wo = grad.shape
        return torch.empty((n, 3 * f, ho, wo), dtype=grad.dtype, device=grad.device,
                           memory_format=torch.channels_last)

    @torch.library.register_fake(lib + "twist_prepare_taps")
    def _(w, wx, wy, cx, cy, dtype):
        f, c = w.shape[:2]
        return (torch.empty(w.shape, dtype=dtype, device=w.device, memory_format=torch.channels_last),
                w.new_empty((2 * f, 4, c), dtype=dtype).transpose(1, 2))

    @torch.library.register_fake(lib + "twist_prepare_stacked")
    def _(w, wx, wy, cx, cy, dtype):
        return w.new_empty((3 * w.shape[0], *w.shape[1:]), dtype=dtype)

    @torch.library.register_fake(lib + "maxblur_forward")
    def _(x, with_positions):
        n, c, h, w = x.shape
        cl = torch.channels_last
        return (torch.empty((n, c, (h - 1) // 2 + 1, (w - 1) // 2 + 1), dtype=x.dtype, device=x.device,
                            memory_format=cl),
                torch.empty((n, c, h, w) if with_positions else (0,), dtype=torch.uint8, device=x.device,
                            memory_format=cl if with_positions else torch.contiguous_format))

    @torch.library.register_fake(lib + "maxblur_backward")
    def _(gy, pos):
        return torch.empty(pos.shape, dtype=gy.dtype, device=gy.device, memory_format=torch.channels_last)

    @torch.library.register_fake(lib + "twist_prepare_backward")
    def _(g, g_taps, wx, wy, cx, cy, channels_last):
        f, c = wx.shape[:2]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return (torch.empty((f, c, 3, 3), dtype=wx.dtype, device=wx.device, memory_format=fmt), torch.empty_like(wx),
                torch.empty_like(wy), cx.new_empty(f), cy.new_empty(f))


def fx_tracing() -> bool:
    """Whether torch.fx's symbolic tracer is running (its proxies have no shapes or devices to branch on)."""
    return torch.fx._symbolic_trace.is_fx_symbolic_tracing()


def cpu_ops(x: torch.Tensor):
    """The fused operators for ``x``: built on first use for a CPU tensor (while compiling, only if built before),
    None on other devices or without a compiler."""
    return load() if x.device.type == "cpu" else None


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution would compute ``x`` in: autocast's where autocast is on (an autograd.Function does not
    see autocast, so the fused paths cast to it themselves), else the input's."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def twist_path(x: torch.Tensor) -> str:
    """Which computation ConvTwist's eager forward runs for ``x``:

    - ``"fused"``: the C++ CPU operators (eager, and torch.compile once an eager call has built them);
    - ``"function"``: the same hand-written backward in tensor ops (other devices, or no compiler);
    - ``"plain"``: tensor ops under autograd, for tracers (ONNX export of an unfolded model) and for torch.compile
      without the operators (its tracer cannot follow the function's writes into views; it fuses plain ops itself).
    """
    if torch.jit.is_tracing():
        return "plain"
    if cpu_ops(x) is not None:
        return "fused"
    return "plain" if torch.compiler.is_compiling() else "function"


# Largest input-channel count, per dtype, at which one convolution with 3*nf outputs (main, x and y kernels stacked)
# replaces the 4-tap path on a CPU (stride 1). It can pay where oneDNN's bf16 convolution is far from compute-bound
# at few channels; where the convolution runs at the bf16 peak the taps win (bench/layer.py measures both), so it is
# off unless CONVTWIST_ZOO_STACKED_MAX_CHANNELS (e.g. 64) asks for it. A bf16 run resumes on the path it started with
# only if this setting stays the same.
STACKED_MAX_IN_CHANNELS = ({torch.bfloat16: int(os.environ["CONVTWIST_ZOO_STACKED_MAX_CHANNELS"])}
                           if os.environ.get("CONVTWIST_ZOO_STACKED_MAX_CHANNELS") else {})


def stacked_is_faster(x: torch.Tensor, dtype: torch.dtype, in_channels: int, stride: int) -> bool:
    """Whether the fused path runs as one stacked convolution (see ``STACKED_MAX_IN_CHANNELS``)."""
    return stride == 1 and in_channels <= STACKED_MAX_IN_CHANNELS.get(dtype, 0) and cpu_ops(x) is not None


def maxblur_fused(x: torch.Tensor) -> bool:
    """Whether MaxBlurPool's fused CPU operators compute this call exactly as its two modules would. Tracers,
    torch.compile and other devices get the modules."""
    if (x.device.type != "cpu" or x.dim() != 4 or min(x.shape[2:]) < 2 or torch.jit.is_tracing()
            or torch.compiler.is_compiling() or load() is None):
        return False
    # the operators compute in the input's dtype; under autocast the blur's conv2d would compute in autocast's:
    # where the two differ (an fp32 input under bf16 autocast) the modules run, so that the maxima are the same
    dtype = compute_dtype(x)
    return x.dtype == dtype and dtype in (torch.float32, torch.bfloat16, torch.float16)
