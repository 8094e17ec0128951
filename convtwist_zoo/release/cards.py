"""``python -m convtwist_zoo.release cards``: rewrite every generated document of a source checkout
(``MODEL_CARDS.md``, ``hub/*/README.md``, ``docs/recipe-history.md``, the README's tables, the robustness plots) from
the JSON beside the weights, the leaderboard rows and the benchmarks. Nothing in them is typed by hand."""
from __future__ import annotations

from pathlib import Path

from ..files.atomic import write_text_atomic

from .card_sources import collect, collect_extra_runs, read_onnx_bench
from .hub_cards import render_hub_readme
from .model_cards import render_model_cards, robustness_plots
from .readme_tables import render_readme, render_results
from .recipe_history import render_recipe_history

__all__ = ["write_cards"]


def write_cards(hub_root: str | Path, model_cards: str | Path) -> list[Path]:
    """Rewrite ``model_cards``, every ``hub_root/<name>/README.md``, ``docs/recipe-history.md``, the generated blocks
    of README.md and ``docs/results.md``, and the robustness plots (in ``docs/`` beside ``model_cards``), each file
    written atomically.

    Args:
        hub_root: the folder of checkpoint folders (``hub/``).
        model_cards: where ``MODEL_CARDS.md`` goes; its folder holds ``README.md``, ``docs/`` and ``results/``.

    Returns:
        The written paths.

    Example:
        >>> write_cards("hub", "MODEL_CARDS.md")  # doctest: +SKIP
    """
    root = Path(model_cards).parent
    info = collect(Path(hub_root))
    results_dir = root / "results" / "leaderboard"
    bench = read_onnx_bench(root / "bench" / "results" / "onnx.json")  # one reading for every card and table
    written = robustness_plots(info, root / "docs")
    for name, entry in info.items():
        path = Path(hub_root) / name / "README.md"
        write_text_atomic(path, render_hub_readme(name, entry, info, results_dir, bench.costs))
        written.append(path)
    extra = collect_extra_runs(root / "docs" / "runs")
    write_text_atomic(Path(model_cards), render_model_cards(info, extra, results_dir, bench.costs))
    (root / "docs").mkdir(exist_ok=True)
    write_text_atomic(root / "docs" / "recipe-history.md", render_recipe_history(info, extra))
    written += [Path(model_cards), root / "docs" / "recipe-history.md"]
    readme, results_page = root / "README.md", root / "docs" / "results.md"
    if readme.exists():  # the repository's README holds the checkpoint picks, the headline and the citation
        write_text_atomic(readme, render_readme(readme.read_text(), info, results_dir, bench))
        written.append(readme)
    if results_page.exists():  # the full checkpoint table and the leaderboard's tables
        write_text_atomic(results_page, render_results(results_page.read_text(), info, results_dir, bench))
        written.append(results_page)
    return written
