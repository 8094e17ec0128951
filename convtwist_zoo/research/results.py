"""A protocol's results file, ``results/leaderboard/<dataset>-<size>px-<E>ep.jsonl``: one JSON row per finished run
(model, seed, lr, top-1/top-5 in fp32, the whole recipe, provenance, the final weights' sha256). Rows are appended
under the file's lock, atomically; a duplicate run or a row of another protocol is refused."""
from __future__ import annotations

import json
import os
from pathlib import Path

import math

from ..errors import ZooError
from ..files.locks import hold_lock
from ..training.identity import describe_differences, differences, protocol_differences, row_identity

__all__ = ["options_of", "arm_options", "protocol_name", "ResultsFileError", "read_rows", "append_row", "duplicate_of", "protocol_mismatch", "unique_rows"]


def protocol_name(dataset: str, image_size: int, epochs: int) -> str:
    """``imagewoof-128px-5ep``: the results file's stem and the runs' parent folder (a folder dataset: its name)."""
    from ..data import DATASETS
    name = dataset if dataset in DATASETS else Path(dataset).resolve().name  # "." is a folder too
    return f"{name}-{image_size}px-{epochs}ep"


class ResultsFileError(ZooError, ValueError):
    """A results file (or a row for it) that the tables cannot count: unreadable, a duplicate, another protocol."""


def _check_row(row, where: str) -> None:
    """Refuse a row the tables cannot read, naming it (``where``: ``file:line``)."""
    if not isinstance(row, dict):
        raise ResultsFileError(f"{where} is not a JSON object; fix or remove that line")
    if "recipe" in row or "top1" in row:  # a leaderboard run's row (robustness rows have their own fields)
        missing = [k for k in ("model", "seed", "lr", "top1", "recipe") if k not in row]
        if missing:
            raise ResultsFileError(f"{where} lacks {', '.join(missing)}; fix or remove that line")
        top1 = row["top1"]
        if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not math.isfinite(top1):
            raise ResultsFileError(f"{where}: top1 {top1!r} is not a finite number; fix or remove that line")
        if not isinstance(row["recipe"], dict):
            raise ResultsFileError(f"{where}: recipe is not a JSON object; fix or remove that line")


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a results file (none when it does not exist yet); a row that is not valid JSON, or a run's row
    without its model, seed, lr, finite top-1 or recipe, is refused with its file and line."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ResultsFileError(f"{path}:{n} is not a JSON row ({e}); fix or remove that line") from e
            _check_row(row, f"{path}:{n}")
            rows.append(row)
    return rows


def _results_lock(path: Path):
    """One writer at a time per results file: read, check and rewrite happen under it, so no row is lost."""
    return hold_lock(path.parent / f".{path.name}.lock", wait=True)


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Add one row to a results file atomically (the file is rewritten beside itself, then renamed) under the file's
    lock, so that concurrent writers never drop each other's rows. A run's row (one with a recipe) is refused where
    the file already holds the same run (`duplicate_of`) or runs of another protocol (`protocol_mismatch`)."""
    from ..files.atomic import write_text_atomic
    path = Path(path)
    with _results_lock(path):
        rows = read_rows(path)
        if "recipe" in row:
            if (same := duplicate_of(rows, row)) is not None:
                raise ResultsFileError(f"{path} already holds this run ({same['model']} seed {same['seed']}, lr "
                                       f"{same['lr']:g}, top-1 {same['top1']}): a run is counted once; nothing added")
            if why := protocol_mismatch(rows, row, path):
                raise ResultsFileError(why + "; nothing added")
        old = path.read_text() if path.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        write_text_atomic(path, old + json.dumps(row, sort_keys=True) + "\n")


def duplicate_of(rows: list[dict], row: dict) -> dict | None:
    """The first of ``rows`` that is the same run as ``row`` (the same whole identity, `run_identity`), or None."""
    identity = row_identity(row)
    return next((r for r in rows if "recipe" in r and not differences(row_identity(r), identity)), None)


def protocol_mismatch(rows: list[dict], row: dict, path) -> str | None:
    """Why ``row`` cannot join the runs in ``rows`` (another protocol: epochs, size, data, label smoothing...), or
    None. A results file holds one protocol, so that no table averages runs of two."""
    for n, other in enumerate(rows, start=1):
        if "recipe" in other and (diffs := protocol_differences(row_identity(other), row_identity(row))):
            return (f"{path} holds runs of another protocol than this one (" +
                    describe_differences(diffs, f"its row {n}", "this run") +
                    "); give this protocol a results file of its own (--results)")
    return None


def unique_rows(rows: list[dict]) -> list[dict]:
    """``rows`` with each run once: a later row of the same identity (`duplicate_of`) is left out."""
    kept: list[dict] = []
    for r in rows:
        if duplicate_of(kept, r) is None:
            kept.append(r)
    return kept


def _check_one_protocol(path: Path, rows: list[dict]) -> None:
    """Refuse a results file whose runs are of more than one protocol: no arm averages two."""
    for n, r in enumerate(rows[1:], start=2):
        if diffs := protocol_differences(row_identity(rows[0]), row_identity(r)):
            raise ResultsFileError(f"{path}:{n} is a run of another protocol than {path}:1 (" +
                                   describe_differences(diffs, "line 1", f"line {n}") +
                                   "); move it to a results file of its own")


def options_of(model_args: str, amp: bool) -> str:
    """An arm's options from its architecture options and precision: ``model_args``, plus ``fp32 training`` for a run
    trained without the recipe's bf16 autocast (``"maxblur=true"``, ``"maxblur=true, fp32 training"``)."""
    if amp:
        return model_args
    return f"{model_args}, fp32 training" if model_args else "fp32 training"


def arm_options(row: dict) -> str:
    """What sets a row's arm apart besides its model and lr (`options_of` its options and precision)."""
    return options_of(row.get("model_args", ""), row["recipe"].get("amp", True))
