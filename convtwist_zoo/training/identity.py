"""A training run's identity: its whole recipe (model and options, data and the archive's hash, epochs, size,
precision, seed, lr, pretrained source and every other knob), one definition for every place that asks whether two
runs are the same: resuming a run, "already done" in the leaderboard runner, duplicate rows and the arms of a table.

A recipe is the ``recipe`` dictionary a run's ``config.json`` and its leaderboard row carry (`recipe_of`). Two
recipes are compared on the fields both hold: a knob a record predates cannot be compared (except where its absence
has one meaning, `ABSENT_MEANS`). What only says where or how a run executed (`EXECUTION_ONLY`) is no part of it.
"""
from __future__ import annotations

__all__ = ["NOT_RECIPE", "EXECUTION_ONLY", "ARM_FIELDS", "recipe_of", "row_identity", "differences",
           "protocol_differences", "describe_differences"]

# TrainConfig fields that say where a run's files are and how it reports, never what it learns
NOT_RECIPE = ("out", "data_dir", "resume", "overwrite", "progress", "workers")
# knobs that change how fast a run executes or how densely it is measured, not the weights it learns (beyond float
# rounding)
EXECUTION_ONLY = ("compile", "channels_last", "val_subset", "reference_steps")
# what sets one arm of a protocol apart from another; the seed sets the runs of an arm apart
ARM_FIELDS = ("model", "model_args", "lr", "amp")
# a knob whose absence from an older record has one meaning; any other absent knob cannot be compared
ABSENT_MEANS = {"max_steps_per_epoch": 0, "data_sha256": None, "checkpoint": None}


def recipe_of(config: dict) -> dict:
    """The recipe of a run from its `TrainConfig` fields (``dataclasses.asdict``): everything but `NOT_RECIPE`;
    ``max_steps_per_epoch`` only where it truncated the epochs, so whole-epoch recipes read as they always have.

    Example:
        >>> recipe_of({"model": "xresnet18", "lr": 0.008, "out": "runs/a", "max_steps_per_epoch": 0})
        {'model': 'xresnet18', 'lr': 0.008}
    """
    recipe = {k: v for k, v in config.items() if k not in NOT_RECIPE}
    if not recipe.get("max_steps_per_epoch"):
        recipe.pop("max_steps_per_epoch", None)
    return recipe


def row_identity(row: dict) -> dict:
    """A leaderboard row's identity: its recipe plus the data archive's sha256 where the row records it."""
    identity = dict(row["recipe"])
    data_sha256 = (row.get("provenance") or {}).get("data_sha256")
    if data_sha256:
        identity["data_sha256"] = data_sha256
    return identity


def differences(a: dict, b: dict, skip: tuple = ()) -> list[tuple[str, object, object]]:
    """``[(field, value in a, value in b)]`` where two identities differ, sorted by field, leaving out `skip`,
    `EXECUTION_ONLY` and the fields one side predates (unless `ABSENT_MEANS` gives their meaning).

    Example:
        >>> differences({"model": "xresnet18", "epochs": 5}, {"model": "xresnet18", "epochs": 20})
        [('epochs', 5, 20)]
    """
    out = []
    for key in sorted(set(a) | set(b)):
        if key in skip or key in EXECUTION_ONLY:
            continue
        if key not in a or key not in b:
            if key not in ABSENT_MEANS:
                continue
        va, vb = a.get(key, ABSENT_MEANS.get(key)), b.get(key, ABSENT_MEANS.get(key))
        if key == "data_sha256" and (va is None or vb is None):  # a record without the hash: not comparable
            continue
        if _normal(va) != _normal(vb):
            out.append((key, va, vb))
    return out


def protocol_differences(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """Where two identities differ in their protocol: anything but the arm (`ARM_FIELDS`) and the seed."""
    return differences(a, b, skip=ARM_FIELDS + ("seed",))


def describe_differences(diffs, a_name: str, b_name: str) -> str:
    """``"epochs: 5 in the row, 20 in this run; lr: ..."``: differing fields, for an error message."""
    return "; ".join(f"{k}: {va!r} in {a_name}, {vb!r} in {b_name}" for k, va, vb in diffs)


def _normal(value):
    """Numbers compared as numbers (``4e-3`` in one record, ``0.004`` in another), lists as tuples."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return tuple(_normal(v) for v in value)
    return value
