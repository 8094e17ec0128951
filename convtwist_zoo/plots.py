"""Figures (matplotlib, headless): training curves from ``metrics.jsonl``."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_training", "read_metrics"]


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
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


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
    for ax in (ax_rot, ax_scale):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
