"""Input pipeline alone vs a training step, per model, at 128px bf16 batch 64 on the real Imagenette archive.

    CONVTWIST_DATA=../shared/data python bench/train.py [--steps 40] [--models resnet18 convtwist_resnet18 ...]

Measures (1) the DataLoader alone (decode + RandomResizedCrop + flip to uint8, the training configuration: 1 worker;
batches are normalised in the step), (2) the model's train step on a fixed batch, (3) the full loop (loader + step),
(2) and (3) in turns, and reports the share of step time the input costs. Prints a table and writes
bench/results/train.json. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json  # noqa: E402

from convtwist_zoo import create_model  # noqa: E402
from convtwist_zoo.data import SeededTransformDataset, build_datasets, train_transform  # noqa: E402
from convtwist_zoo.data.transforms import normalize_batch  # noqa: E402


def loader_for(dataset: str, batch: int, workers: int, size: int) -> DataLoader:
    train, _, _, _ = build_datasets(dataset)
    ds = SeededTransformDataset(train, train_transform(size, normalize=False), seed=0)  # as in training
    return DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                      persistent_workers=workers > 0)


def images_per_s_loader(loader: DataLoader, steps: int) -> float:
    it = iter(loader)
    next(it)  # start-up
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * loader.batch_size / (time.perf_counter() - t0)


def endless(loader: DataLoader):
    """Batches from ``loader``, epoch after epoch."""
    while True:
        yield from loader


def loop_and_compute_times(compute_step, loop_step, rounds: int, steps: int) -> tuple[float, float]:
    """Seconds per step of the model alone (a fixed batch) and of the loader + model, timed in turns (rounds of
    ``steps`` each), median over rounds. The steps where the worker's prefetch queue is refilled (first compute step)
    or drained (first two loop steps: batches made during the compute round) are run untimed, so that neither
    number absorbs the other's input work."""
    compute, loop = [], []
    for _ in range(rounds):
        compute_step()
        t0 = time.perf_counter()
        for _ in range(steps):
            compute_step()
        compute.append((time.perf_counter() - t0) / steps)
        loop_step(), loop_step()
        t0 = time.perf_counter()
        for _ in range(steps):
            loop_step()
        loop.append((time.perf_counter() - t0) / steps)
    return statistics.median(compute), statistics.median(loop)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="imagenette")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per model and kind (ResNet-50s: half)")
    parser.add_argument("--rounds", type=int, default=4, help="turns of model-alone and loader+model timing")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--models", nargs="+",
                        default=["resnet18", "convtwist_resnet18", "resnet50", "convtwist_resnet50"])
    args = parser.parse_args()

    loader = loader_for(args.data, args.batch_size, args.workers, args.image_size)
    pipeline = images_per_s_loader(loader, args.steps)
    loader0 = loader_for(args.data, args.batch_size, 0, args.image_size)
    pipeline_one_core = images_per_s_loader(loader0, max(3, args.steps // 4))
    print(f"input pipeline: {pipeline:.0f} img/s with {args.workers} worker(s), {pipeline_one_core:.0f} img/s in the "
          "main process")
    rows = []
    for name in args.models:
        model = create_model(name).to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        fixed_x, fixed_y = next(iter(loader0))

        def step(x, y):
            x = normalize_batch(x.contiguous(memory_format=torch.channels_last))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x).float(), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        batches = endless(loader)
        compute, full = loop_and_compute_times(lambda: step(fixed_x, fixed_y), lambda: step(*next(batches)),
                                               args.rounds, max(2, args.steps // args.rounds // (2 if "50" in name else 1)))
        rows.append({"model": name, "step_ms": compute * 1e3, "loop_ms": full * 1e3,
                     "train_img_s": args.batch_size / full, "input_share_pct": max(0.0, (full - compute) / full * 100),
                     "epoch_min": 9469 / (args.batch_size / full) / 60})
        print_table([rows[-1]], list(rows[-1]))
    print()
    print_table(rows, list(rows[0]))
    write_json("train", {"dataset": args.data, "batch": args.batch_size, "image_size": args.image_size,
                         "workers": args.workers, "pipeline_img_s": pipeline, "pipeline_main_process_img_s":
                         pipeline_one_core, "models": rows})


if __name__ == "__main__":
    main()
