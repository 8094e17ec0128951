"""The generated blocks of README.md (the checkpoint picks, the headline evidence, the citation) and of\n``docs/results.md`` (the full checkpoint table, the leaderboard's tables)."""
from __future__ import annotations

import statistics
from pathlib import Path

from .. import research as leaderboard
from ..errors import InputError

from .card_sections import arm_cells, difference_to_baseline, leaderboard_arms, leaderboard_sections
from .card_sources import CITATION_BIBTEX, PROBED_PROTOCOL, OnnxBench, PLANNED, baseline_of, entry_top1, fmt, model_args_of, recipe_of_entry, saved_knob, seeds_phrase

__all__ = ["render_zoo_table", "render_picks", "render_headline", "render_readme", "render_results"]


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


def render_picks(info: dict, results_dir: Path, latency: dict | None = None) -> str:
    """The README's compact table: the best ConvTwist checkpoint of each family on each dataset, its top-1 over
    seeds beside its same-recipe baseline's, its size and ONNX Runtime time, and when to pick it."""
    latency = {} if latency is None else latency
    best: dict[tuple, tuple] = {}
    for name, entry in info.items():
        arch, dataset = name.split(".")[0], entry["config"]["dataset"]
        if not arch.startswith("convtwist_"):
            continue
        family = "xresnet" if "xresnet" in arch else "resnet"
        arms = leaderboard_arms(name, info, results_dir)
        own = arms[1] if arms and arms[1] else [entry_top1(entry)]
        if None in own:
            continue
        score = statistics.fmean(own)
        if (family, dataset) not in best or score > best[(family, dataset)][0]:
            best[(family, dataset)] = (score, name, arms, own)
    rows = ["| checkpoint | top-1 % | same-recipe baseline, top-1 % | params | ONNX Runtime ms | pick this when |",
            "|---|---|---|---|---|---|"]
    for (family, dataset), (_, name, arms, own) in sorted(best.items()):
        entry, base = info[name], baseline_of(name)
        epochs = len(entry["metrics"])
        if arms and arms[2]:
            top1 = f"{leaderboard.mean_std(own)} ({seeds_phrase(len(own))})"
            base_cell = f"{base.split('.')[0]}: {leaderboard.mean_std(arms[2])} ({seeds_phrase(len(arms[2]))})"
        else:
            top1 = f"{fmt(own[0])} (1 seed)"
            base_cell = f"{base.split('.')[0]}: {fmt(entry_top1(info.get(base)))} (1 seed)" if base else "–"
        when = (f"you fine-tune on your own images: the longest recipe here ({epochs} epochs), torchvision's ResNet "
                "layout" if family == "resnet" else
                f"you compare methods: a {epochs}-epoch run of the fast.ai leaderboard protocol, known over seeds")
        params = (entry["eval"] or {}).get("params")
        ort_ms = latency.get((name.split(".")[0], model_args_of(entry)))
        rows.append(f"| {name} | {top1} | {base_cell} | {fmt((params or 0) / 1e6, '{:.1f} M')} | "
                    f"{fmt(ort_ms, '{:.1f}')} | {when} |")
    return "\n".join(rows)


def render_headline(results_dir: Path) -> str:
    """The README's evidence in a few lines, whatever its sign: each ConvTwist arm minus its same-recipe twin and its
    compute-matched control, per protocol, with Welch's 95% interval over the seeds."""
    lines = []
    files = sorted(Path(results_dir).glob("*.jsonl"), key=lambda f: (f.stem != PROBED_PROTOCOL, f.name))
    for path in files:
        by_model: dict[str, dict[str, list[float]]] = {}
        for (model, options), group in leaderboard.arms(leaderboard.read_rows(path)).items():
            by_model.setdefault(options, {})[model] = [r["top1"] for r in group]
        dataset, size, epochs = path.stem.split("-")
        # by ConvTwist model, then options; each model's controls in their CONTROLS order
        for options, model, control, kind in sorted(leaderboard.same_options_comparisons(by_model),
                                                    key=lambda c: (c[1], c[0])):
            ours, theirs = by_model[options][model], by_model[options][control]
            if (w := leaderboard.welch(ours, theirs)) is None:
                continue
            lines.append(f"- {dataset}, {epochs.removesuffix('ep')} epochs, {size}{', ' + options if options else ''}: "
                         f"{model} − {control} ({kind}) = {w['diff']:+.2f} points, 95% interval "
                         f"[{w['low']:+.2f}, {w['high']:+.2f}] over {len(ours)} and {len(theirs)} seeds: "
                         f"{leaderboard.reading(w)}.")
    return "\n".join(lines) or "No leaderboard arm has two finished runs yet."


def _replace_block(text: str, name: str, block: str) -> str:
    """``text`` with what lies between its ``<!-- name:start -->`` and ``<!-- name:end -->`` markers replaced."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise InputError(f"the page lacks the {start} ... {end} markers; add them where the block goes")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}"


def render_readme(readme: str, info: dict, results_dir: Path, bench: OnnxBench | None = None) -> str:
    """README.md with its generated blocks brought up to date: the checkpoint picks, the headline evidence and the
    citation.

    Args:
        readme: the README's text, with its ``<!-- picks:start -->``, ``<!-- headline:start -->`` and
            ``<!-- citation:start -->`` blocks.
        info: `collect`'s record of the hub folders.
        results_dir: the leaderboard's results files.
        bench: the ONNX benchmark's figures (`read_onnx_bench`); None: no latency column figures.

    Returns:
        The new text; everything outside the blocks is kept.

    Example:
        >>> text = render_readme(Path("README.md").read_text(), collect(Path("hub")), Path("results/leaderboard"))  # doctest: +SKIP
    """
    bench = OnnxBench({}, {}) if bench is None else bench
    readme = _replace_block(readme, "picks", render_picks(info, results_dir, bench.latency_ms))
    readme = _replace_block(readme, "headline", render_headline(results_dir))
    return _replace_block(readme, "citation", f"```bibtex\n{CITATION_BIBTEX}\n```")


def render_results(page: str, info: dict, results_dir: Path, bench: OnnxBench | None = None) -> str:
    """``docs/results.md`` with its generated blocks brought up to date: every checkpoint beside its baseline (the
    full table) and the leaderboard's tables with robustness over seeds.

    Args:
        page: the page's text, with its ``<!-- zoo:start -->`` and ``<!-- leaderboard:start -->`` blocks.
        info: `collect`'s record of the hub folders.
        results_dir: the leaderboard's results files.
        bench: the ONNX benchmark's figures (`read_onnx_bench`); None: no latency or cost figures.

    Returns:
        The new text.
    """
    bench = OnnxBench({}, {}) if bench is None else bench
    page = _replace_block(page, "zoo", render_zoo_table(info, results_dir, bench.latency_ms))
    return _replace_block(page, "leaderboard", "\n".join(leaderboard_sections(results_dir, bench.costs)).strip())
