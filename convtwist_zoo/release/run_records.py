"""``docs/runs/``: the runs kept beside the checkpoints as training logs (other seeds, recipe probes, pipeline
checks, former checkpoints). Recording one copies its log there and lists it in ``index.json``, with the flags that
turn today's defaults into its recipe; the cards (`cards.render_recipe_history`) read them back."""
from __future__ import annotations

import json
from pathlib import Path

from ..files.atomic import write_text_atomic
from ..training import RECIPE_KNOBS, TrainConfig
from .card_sources import PLANNED, read_json, saved_knob
from ..errors import InputError

__all__ = ["record_run", "retire_checkpoint", "EXTRA_RUN_KINDS"]

# What a run in docs/runs is besides a "former checkpoint" (`retire`); MODEL_CARDS.md's probe section says what each is.
EXTRA_RUN_KINDS = ("replicate", "recipe", "pipeline check")


def _flags_against_defaults(recipe: dict) -> str:
    """The train flags that turn today's defaults into ``recipe`` (its knobs only)."""
    flags = []
    for k in RECIPE_KNOBS:
        v, flag = saved_knob(recipe, k), k.replace("_", "-")
        if v != getattr(TrainConfig, k):
            flags.append((f"--{flag}" if v else f"--no-{flag}") if isinstance(v, bool) else f"--{flag} {v}")
    return " ".join(flags) or "(today's defaults)"


def _write_index(runs_dir: Path, index: dict) -> None:
    lines = ["{", f'  "about": {json.dumps(index.get("about", ""))},', '  "runs": [',
             ",\n".join("    " + json.dumps(r) for r in index["runs"]), "  ]", "}", ""]
    write_text_atomic(Path(runs_dir) / "index.json", "\n".join(lines))


def _read_finished(folder: Path, what: str) -> tuple[dict, str]:
    config, metrics = read_json(folder / "config.json"), folder / "metrics.jsonl"
    if config is None or not metrics.exists():
        raise FileNotFoundError(f"{folder} has no config.json and metrics.jsonl: {what}")
    return config, metrics.read_text()


def _add_extra_run(runs_dir: Path, entry: dict, metrics: str, first: bool = False) -> dict:
    """Write ``entry``'s log into ``runs_dir`` and list it in ``index.json`` (a name is listed once)."""
    index = read_json(runs_dir / "index.json") or {"about": "", "runs": []}
    if any(r["run"] == entry["run"] for r in index["runs"]):
        raise InputError(f"{entry['run']} is already listed in {runs_dir / 'index.json'}: choose another suffix")
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(runs_dir / f"{entry['run']}.metrics.jsonl", metrics)
    for r in index["runs"]:
        if entry["kind"] == "former checkpoint" and r["checkpoint"] == entry["checkpoint"] and "compared_with" not in r:
            r["compared_with"] = entry["run"]
    index["runs"].insert(0 if first else len(index["runs"]), entry)
    _write_index(runs_dir, index)
    return entry


def retire_checkpoint(hub_root: str | Path, runs_dir: str | Path, name: str, suffix: str) -> dict:
    """Before ``hub/<name>`` is replaced by a retrained checkpoint: keep its training log in ``runs_dir`` as the
    former checkpoint ``<name>-<suffix>``, and point every extra run that was compared with it at that log, so
    that the cards go on comparing each probe with the weights it was made against."""
    config, metrics = _read_finished(Path(hub_root) / name, f"nothing to retire (is {name!r} a published checkpoint?)")
    entry = {"run": f"{name}-{suffix}", "checkpoint": name, "kind": "former checkpoint",
             "flags": _flags_against_defaults(config.get("recipe") or {}),
             "trained_on": config.get("trained_on", "unknown")}
    return _add_extra_run(Path(runs_dir), entry, metrics, first=True)


def record_run(run_dir: str | Path, runs_dir: str | Path, kind: str, suffix: str, note: str = "") -> dict:
    """List a finished training run beside the checkpoint it belongs to (``<arch>.<dataset>-<suffix>`` in
    ``runs_dir``): its log, and flags worked out from its saved recipe against today's defaults, so that the cards'
    probe table says exactly what the run changed."""
    if kind not in EXTRA_RUN_KINDS:
        raise InputError(f"kind must be one of {', '.join(EXTRA_RUN_KINDS)}, not {kind!r}")
    config, metrics = _read_finished(Path(run_dir), "is the run finished?")
    checkpoint = f"{config.get('architecture')}.{config.get('dataset')}"
    if checkpoint not in PLANNED:
        raise InputError(f"{run_dir} trained {checkpoint}, which is none of the zoo's checkpoints ({', '.join(PLANNED)})")
    flags = _flags_against_defaults(config.get("recipe") or {})
    entry = {"run": f"{checkpoint}-{suffix}", "checkpoint": checkpoint, "kind": kind,
             "flags": f"{flags} ({note})" if note else flags, "trained_on": config.get("trained_on", "unknown")}
    return _add_extra_run(Path(runs_dir), entry, metrics)
