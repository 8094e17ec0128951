"""The statistics of the tables: Welch's t interval and p-value of a difference of means, Holm's adjustment over a
table's comparisons, and how each is written in a cell."""
from __future__ import annotations

import statistics

from ..extras import require

__all__ = ["welch", "why_no_interval", "reading", "p_value", "difference_cells", "mean_std", "holm"]


# ---------------------------------------------------------------------------------------------------- statistics
def welch(a: list[float], b: list[float]) -> dict | None:
    """Mean of ``a`` minus mean of ``b`` with Welch's 95% confidence interval and two-sided p-value, or None where
    no interval exists (`why_no_interval` says why)."""
    if why_no_interval(a, b):
        return None
    stats = require("scipy.stats")
    test = stats.ttest_ind(a, b, equal_var=False)
    low, high = test.confidence_interval(0.95)
    return {"diff": statistics.fmean(a) - statistics.fmean(b), "low": float(low), "high": float(high),
            "p": float(test.pvalue)}


def why_no_interval(a: list[float], b: list[float]) -> str | None:
    """Why two arms' runs give no Welch interval (``"one run on a side"``, ``"no spread on a side (its runs all
    scored alike)"``), or None when they give one. A side whose runs all scored alike has a sample variance of 0,
    which no arm's noise really is: the interval would count the other side's spread only and come out too narrow
    (with both sides alike, 0 wide)."""
    if len(a) < 2 or len(b) < 2:
        return "one run on a side"
    if statistics.stdev(a) == 0 or statistics.stdev(b) == 0:
        return "no spread on a side (its runs all scored alike)"
    return None


def reading(w: dict) -> str:
    """What a `welch` result says of ConvTwist minus its control, in words."""
    return ("within noise (the interval holds 0)" if w["low"] <= 0 <= w["high"] else
            "ConvTwist ahead" if w["low"] > 0 else "ConvTwist behind")


def p_value(p: float) -> str:
    """A p-value to three places: ``"0.010"``, or ``"< 0.001"`` where those places would read 0."""
    return "< 0.001" if p < 0.0005 else f"{p:.3f}"


def difference_cells(a: list[float], b: list[float]) -> str:
    """The cells of one markdown difference row, mean of ``a`` minus mean of ``b``: points, 95% CI (Welch), p and
    reading, or the gap with why there is no interval.

    Args:
        a: the ConvTwist arm's values, one per seed.
        b: its control's values.

    Returns:
        ``"+1.50 | [+0.20, +2.80] | 0.031 | ConvTwist ahead"`` (no leading or trailing ``|``).

    Example:
        >>> difference_cells([75.0], [74.0])
        '+1.00 | – | – | one run on a side: no interval'
    """
    w = welch(a, b)
    if w is None:
        return f"{statistics.fmean(a) - statistics.fmean(b):+.2f} | – | – | {why_no_interval(a, b)}: no interval"
    return f"{w['diff']:+.2f} | [{w['low']:+.2f}, {w['high']:+.2f}] | {p_value(w['p'])} | {reading(w)}"


def mean_std(values: list[float]) -> str:
    """``"64.88"`` for one run, ``"64.88 ± 0.31"`` (sample std) for several."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (one family of comparisons), in their order.

    Example:
        >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
        [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
