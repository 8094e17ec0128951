"""The README's generated blocks: the zoo table (accuracy, size, cost) and the leaderboard tables."""
from __future__ import annotations

from pathlib import Path

from .. import research as leaderboard
from ..errors import InputError

from .card_sections import arm_cells, difference_to_baseline, leaderboard_arms, leaderboard_sections
from .card_sources import OnnxBench, PLANNED, baseline_of, entry_top1, fmt, model_args_of, recipe_of_entry, saved_knob, seeds_phrase

__all__ = ["render_zoo_table", "render_readme"]


def render_zoo_table(info: dict, results_dir: Path, latency: dict | None = None) -> str:
    """The README's table: every published checkpoint beside its same-recipe baseline. A checkpoint picked from a
    leaderboard arm shows its seed and the arm's mean, and the difference over both arms' seeds.

    Args:
        info: `collect`'s record of the hub folders.
        results_dir: the leaderboard's results files.
        latency: ONNX Runtime ms per image (`OnnxBench.latency_ms`); None reads ``bench/results/onnx.json``.

    Returns:
        The table in Markdown.

    Example:
        >>> print(render_zoo_table(collect(Path("hub")), RESULTS_DIR))  # doctest: +SKIP
    """
    latency = {} if latency is None else latency
    rows = ["| checkpoint | top-1 % | same-recipe baseline | its top-1 % | difference | params | MACs @128 | "
            "ORT ms/image | recipe |", "|---|---|---|---|---|---|---|---|---|"]
    for name in PLANNED + sorted(set(info) - set(PLANNED)):
        entry = info.get(name)
        if entry is None:
            continue
        ev = entry["eval"] or {}
        s128 = (ev.get("sizes") or {}).get("128", {})
        base = baseline_of(name)
        arch = name.split(".")[0]
        recipe = entry["config"]["recipe"]
        if arms := leaderboard_arms(name, info, results_dir):
            pick, own, base_top1, _ = arms
            top1 = f"{fmt(s128.get('top1'))} (seed {pick['seed']}; {seeds_phrase(len(own))}: {leaderboard.mean_std(own)})"
            base_cell, diff = arm_cells(own, base_top1)
            how = (f"leaderboard, {len(entry['metrics'])} epochs, lr {float(recipe['lr']):g}"
                   + ("" if saved_knob(recipe, "amp") else ", fp32 training"))
        else:
            d, gap = difference_to_baseline(name, info)
            top1 = f"{fmt(s128.get('top1'))} (1 seed)"
            base_cell = fmt(entry_top1(info.get(base))) if base else "–"
            diff = "–" if not base else "recipes differ" if gap else fmt(d, "{:+.2f}")
            how = f"{len(entry['metrics'])} epochs, {'Ranger' if recipe_of_entry(entry)['lookahead'] else 'RAdam'} flat-cos"
        ort_ms = latency.get((arch, model_args_of(entry)))
        rows.append(f"| {name} | {top1} | {base or '–'} | {base_cell} | {diff} | {fmt(ev.get('params'), '{:,}')} | "
                    f"{fmt((s128.get('macs') or 0) / 1e9, '{:.2f} G')} | {fmt(ort_ms, '{:.1f}')} | {how} |")
    return "\n".join(rows)


def _replace_block(text: str, name: str, block: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise InputError(f"README.md lacks the {start} ... {end} markers")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}"


def render_readme(readme: str, info: dict, results_dir: Path, bench: OnnxBench | None = None) -> str:
    """README.md with its generated zoo and leaderboard tables brought up to date.

    Args:
        readme: the README's text, with its ``<!-- zoo:start -->`` and ``<!-- leaderboard:start -->`` blocks.
        info: `collect`'s record of the hub folders.
        results_dir: the leaderboard's results files.
        bench: the ONNX benchmark's figures (`read_onnx_bench`); None reads ``bench/results/onnx.json``.

    Returns:
        The new text; everything outside the two blocks is kept.

    Example:
        >>> text = render_readme(Path("README.md").read_text(), collect(Path("hub")), RESULTS_DIR)  # doctest: +SKIP
    """
    bench = OnnxBench({}, {}) if bench is None else bench
    readme = _replace_block(readme, "zoo", render_zoo_table(info, results_dir, bench.latency_ms))
    return _replace_block(readme, "leaderboard", "\n".join(leaderboard_sections(results_dir, bench.costs)).strip())
