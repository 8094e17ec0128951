"""MaxBlurPool on its fused CPU kernels against its two plain modules (max pool 3x3 stride 1, then timm's BlurPool2d),
alone at the four pools of an xresnet50 and inside xresnet18/xresnet50 training steps (maxblur=true), bf16 autocast,
channels_last, batch 64, 128px; the plain xresnet (no MaxBlurPool) beside them.

    python bench/maxblur.py [--repeats 8]

Prints a table and writes bench/results/maxblur.json. The two paths are timed in turns, so their ratio survives a
shared machine's drift. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_median_times, print_table, train_step, write_json  # noqa: E402

from convtwist_zoo import create_model  # noqa: E402
from convtwist_zoo.layers import _kernels as fused_kernels  # noqa: E402
from convtwist_zoo.models.xresnet import MaxBlurPool  # noqa: E402

BATCH, SIZE = 64, 128
# (channels, side) at the MaxBlurPools of an xresnet50 at 128px: the stem's, then before stages 2-4
POOLS = [(64, 64), (256, 32), (512, 16), (1024, 8)]


@contextlib.contextmanager
def _modules_path():
    """Run MaxBlurPool on its plain modules, as on a machine without the kernels."""
    saved = fused_kernels._STATE.get("module")
    fused_kernels._STATE["module"] = None
    try:
        yield
    finally:
        fused_kernels._STATE["module"] = saved


def _pool_step(pool, x, path):
    def step():
        leaf = x.detach().requires_grad_()
        with path(), torch.autocast("cpu", dtype=torch.bfloat16):
            y = pool(leaf)
        y.backward(torch.ones_like(y))
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    if fused_kernels.load() is None:
        sys.exit("the fused kernels could not be built here; nothing to compare")
    torch.manual_seed(0)
    pools = []
    for channels, side in POOLS:
        x = torch.randn(BATCH, channels, side, side).bfloat16().contiguous(memory_format=torch.channels_last)
        pool = MaxBlurPool(channels)
        fused, modules = interleaved_median_times(
            [_pool_step(pool, x, contextlib.nullcontext), _pool_step(pool, x, _modules_path)], args.repeats)
        pools.append({"channels": channels, "side": side, "fused_ms": fused * 1e3, "modules_ms": modules * 1e3,
                      "ratio": fused / modules})
    print_table(pools, list(pools[0]))
    x = torch.randn(BATCH, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))
    models = []
    for name in ("xresnet18", "xresnet50"):
        blur = create_model(name, maxblur=True).to(memory_format=torch.channels_last).train()
        plain = create_model(name).to(memory_format=torch.channels_last).train()
        fused, modules, no_pool = interleaved_median_times(
            [train_step(blur, x, y), train_step(blur, x, y, path=_modules_path), train_step(plain, x, y)],
            args.repeats, warmup=2)
        models.append({"model": f"{name} maxblur=true", "fused_ms": fused * 1e3, "modules_ms": modules * 1e3,
                       "ratio": fused / modules, "plain_model_ms": no_pool * 1e3,
                       "fused_img_s": BATCH / fused, "modules_img_s": BATCH / modules})
    print_table(models, list(models[0]))
    write_json("maxblur", {"batch": BATCH, "image": SIZE, "dtype": "bf16", "format": "channels_last",
                           "pools": pools, "models": models})


if __name__ == "__main__":
    main()
