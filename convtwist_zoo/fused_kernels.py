"""The C++ CPU kernels behind ConvTwist's fast path (``csrc/twist_cpu.cpp``) and MaxBlurPool's
(``csrc/maxblur_cpu.cpp``), compiled on first use.

Plain PyTorch needs about ten passes over memory for the 4-tap twist (padding, four strided differences, grid
products, an eight-way scatter in the backward); these kernels do each step in one pass, which roughly halves the
layer's cost on a CPU. They are built with ``torch.utils.cpp_extension`` (a C++ compiler and ninja are needed; the
build is cached per machine). Without a compiler, or with ``CONVTWIST_ZOO_FUSED=0``, `load` returns ``None`` and
the layer uses its plain PyTorch path, which computes the same function (MaxBlurPool likewise).
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import time
import warnings
from pathlib import Path

from .cache import cache_dir

import torch

from .host import cpuinfo_fields

__all__ = ["load", "describe", "SOURCE", "SOURCES"]

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
