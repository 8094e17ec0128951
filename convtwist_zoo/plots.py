"""Figures (matplotlib, headless): training curves from ``metrics.jsonl``."""
from __future__ import annotations

import json
from pathlib import Path

from .extras import require

require("matplotlib").use("Agg")
plt = require("matplotlib.pyplot")

__all__ = ["plot_training", "read_metrics", "plot_robustness", "plot_flow", "plot_inspect"]


def _save(fig, out: str | Path, axes=(), dpi: int = 120) -> Path:
    """Grid and legend on ``axes``, tight layout, write ``out`` (folders created), close the figure."""
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    if out.is_dir():  # a folder: the figure goes inside it
        out = out / "curves.png"
    elif not out.suffix:  # matplotlib would add .png itself; name the file it writes
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a `convtwist-zoo train` output folder?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_training(run_dirs, out: str | Path) -> Path:
    """Loss and top-1 curves of one or more runs side by side, written to ``out`` (PNG)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for run in [run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs:
        rows = read_metrics(run)
        epochs = [r["epoch"] for r in rows]
        label = Path(run).name
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], label=f"{label} train")
        ax_loss.plot(epochs, [r["val_loss"] for r in rows], "--", label=f"{label} val")
        ax_acc.plot(epochs, [r["top1"] for r in rows], label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="validation top-1")
    return _save(fig, out, (ax_loss, ax_acc))


def plot_robustness(rows_by_model: dict, out: str | Path) -> Path:
    """Top-1 against rotation angle and against rescaling, one line per model."""
    fig, (ax_rot, ax_scale) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in rows_by_model.items():
        rot = [(r["value"], r["top1"]) for r in rows if r["kind"] == "rotation"]
        base = next((t for v, t in rot if v == 0), None)
        scl = sorted([(r["value"], r["top1"]) for r in rows if r["kind"] == "scale"] +
                     ([(1.0, base)] if base is not None else []))
        style = "-" if "convtwist" in name else "--"
        ax_rot.plot(*zip(*rot), style, marker="o", label=name)
        ax_scale.plot(*zip(*scl), style, marker="o", label=name)
    ax_rot.set(xlabel="rotation (degrees)", ylabel="top-1 (%)", title="rotated validation images")
    ax_scale.set(xlabel="scale factor", ylabel="top-1 (%)", title="rescaled validation images")
    return _save(fig, out, (ax_rot, ax_scale))


def plot_flow(snapshots, generator: str, out: str | Path) -> Path:
    """The original image and its snapshots under the flow, side by side."""
    fig, axes = plt.subplots(1, len(snapshots), figsize=(3.2 * len(snapshots), 3.4))
    for ax, (step, img) in zip(axes, snapshots):
        arr = img.permute(1, 2, 0).clamp(0, 1).numpy() if img.dim() == 3 else img.numpy()
        ax.imshow(arr, cmap=None if img.dim() == 3 else "gray")
        ax.set_title("original" if step == 0 else f"{generator}, {step} steps", fontsize=9)
        ax.axis("off")
    return _save(fig, out, dpi=110)


def plot_inspect(stats: dict, name: str, out_dir: str | Path) -> list[Path]:
    """Twist/main kernel norm ratio per layer, and the learned centres of every channel per stage."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = stats["layers"]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(layers)), 3.6))
    ax.bar(range(len(layers)), [r["twist_ratio"] for r in layers])
    ax.set_xticks(range(len(layers)), [r["layer"] for r in layers], rotation=90, fontsize=6)
    ax.set(ylabel="||twist|| / ||main||", title=f"{name}: how much each ConvTwist uses its twist")
    ratio_png = _save(fig, out_dir / "twist_ratio.png", dpi=110)
    stages = sorted({r["stage"] for r in layers})
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3.2), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        rows = [r for r in layers if r["stage"] == stage]
        ax.scatter(sum((r["center_x"] for r in rows), []), sum((r["center_y"] for r in rows), []), s=2, alpha=0.4)
        ax.add_patch(plt.Rectangle((-1.5, -1.5), 3, 3, fill=False, ls="--", lw=0.8))  # init range
        ax.add_patch(plt.Rectangle((-1, -1), 2, 2, fill=False, lw=0.8, color="k"))  # the image
        ax.set(title=stage, xlabel="center_x", ylabel="center_y", aspect="equal")
    fig.suptitle(f"{name}: learned centres (dashed: init range, solid: image extent)", fontsize=9)
    return [ratio_png, _save(fig, out_dir / "centres.png", dpi=110)]
