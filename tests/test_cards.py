"""Model cards are generated from the JSON in hub/: numbers, baseline differences, Hub front matter."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, make_run_dir, result_row
from convtwist_zoo.release.card_sources import collect, collect_extra_runs, read_onnx_bench
from convtwist_zoo.release.card_sources import train_hours as _train_hours
from convtwist_zoo.release.cards import write_cards
from convtwist_zoo.release.hub_cards import render_hub_readme
from convtwist_zoo.release.model_cards import render_model_cards
from convtwist_zoo.release.readme_tables import render_readme, render_results
from convtwist_zoo.release.recipe_history import render_recipe_history
from convtwist_zoo.release.run_records import record_run, retire_checkpoint
from convtwist_zoo.release.staging import stage_run
from convtwist_zoo.research.robustness import robustness_results


def fake_eval(top1, top5=99.0):
    return {"params": 123, "sizes": {"128": {"top1": top1, "top5": top5, "macs": 1_000_000},
                                     "160": {"top1": top1 + 1, "top5": top5, "macs": 2_000_000}}}


def test_cards_from_hub_json(tmp_path):
    hub = tmp_path / "hub"
    for arch, top1 in (("convtwist_resnet18", 80.5), ("resnet18", 79.25)):
        run = make_run_dir(tmp_path / arch, arch=arch, num_classes=10, data="imagewoof")
        (run / "metrics.jsonl").write_text("\n".join(json.dumps({"epoch": e, "seconds": 1800, "top1": top1 - 2 + e})
                                                     for e in (1, 2)))
        stage_run(run, hub)
        (hub / f"{arch}.imagewoof" / "eval.json").write_text(json.dumps(fake_eval(top1)))
        rows = [{"kind": "rotation", "value": a, "top1": top1 - a / 10, "top5": 90} for a in (0, 15)]
        (hub / f"{arch}.imagewoof" / "robustness.json").write_text(json.dumps({"rows": rows}))
    runs = tmp_path / "docs" / "runs"
    runs.mkdir(parents=True)
    extra = (("seed1", "replicate", "--seed 1", 80.0, 79.5), ("e30", "recipe", "--epochs 30", 82.0, 79.0),
             ("e10", "former checkpoint", "--epochs 10", 70.0, 69.0), ("e10-s2", "recipe", "--epochs 10 --seed 2", 71.0, 68.0))
    for suffix, _, _, ct_top1, base_top1 in extra:
        for arch, top1 in (("convtwist_resnet18", ct_top1), ("resnet18", base_top1)):
            (runs / f"{arch}.imagewoof-{suffix}.metrics.jsonl").write_text(json.dumps({"epoch": 1, "top1": top1}))
    index = [{"run": f"{arch}.imagewoof-{suffix}", "checkpoint": f"{arch}.imagewoof", "kind": kind, "flags": flags,
              "trained_on": "a GPU", **({"compared_with": f"{arch}.imagewoof-e10"} if suffix == "e10-s2" else {})}
             for suffix, kind, flags, _, _ in extra for arch in ("convtwist_resnet18", "resnet18")]
    (runs / "index.json").write_text(json.dumps({"runs": index}))
    cards = tmp_path / "MODEL_CARDS.md"
    written = write_cards(hub, cards)
    text = cards.read_text()
    history = (tmp_path / "docs" / "recipe-history.md").read_text()
    assert "| convtwist_resnet18.imagewoof | 80.50 | 99.00 | 81.50 | 79.25 (resnet18) | +1.25 | higher, 1 seed | " \
           "0.0 M | 0.00 | 2 | 1.00 h, test machine |" in text
    assert "trained (bf16 autocast everywhere; the recipe does not depend on the machine): test machine: " \
           "convtwist_resnet18.imagewoof, resnet18.imagewoof." in text
    assert "| resnet50.imagenette | not published yet |" in text
    assert "| convtwist_xresnet50.imagewoof | not published yet |" in text
    assert "Targets" not in text and "target" not in text.lower()
    assert "| convtwist_resnet18.imagewoof | 80.5 | 79.0 |" in text  # robustness row
    # replicate rows against the checkpoint's own training log (80.5 and 79.25 after epoch 2)
    assert "| convtwist_resnet18.imagewoof-seed1 | replicate | `--seed 1` | a GPU | 1 | 80.00 | the checkpoint | " \
           "80.50 | -0.50 |" in history
    # a run made against a checkpoint since replaced is compared with the former checkpoint's log
    assert "| resnet18.imagewoof-e10-s2 | recipe | `--epochs 10 --seed 2` | a GPU | 1 | 68.00 | resnet18.imagewoof-e10 | " \
           "69.00 | -1.00 |" in history
    assert "- convtwist_resnet18.imagewoof − resnet18.imagewoof (training-log top-1): the published seed +1.25, " \
           "`--seed 1` +0.50, `--epochs 30` +3.00, `--epochs 10` +1.00, `--epochs 10 --seed 2` +3.00." in history
    # retention at 15 degrees: 79.0/80.5 = 98.1% vs 77.75/79.25 = 98.1%: no difference worth a word
    assert "- convtwist_resnet18.imagewoof: under rotation it is about as robust as resnet18.imagewoof" in text
    assert "In short: under rotation, ConvTwist is more robust in 0 of 1 pairs, about as robust in 1, less robust " \
           "in 0." in text
    assert (tmp_path / "docs" / "robustness-imagewoof.png").exists()
    readme = (hub / "convtwist_resnet18.imagewoof" / "README.md").read_text()
    assert readme.startswith("---\nlibrary_name: pytorch\nlicense: mit\n")
    assert "value: 80.50" in readme and "baseline resnet18.imagewoof top-1 @128px | 79.25" in readme
    assert "bf16 autocast, on test machine" in readme
    assert "Against its plain baseline: ConvTwist wins by 1.25 points against resnet18.imagewoof; one seed each (the " \
           "replicates in the repository's docs/recipe-history.md show how far another seed moves a run)." in readme
    assert "Against its plain baseline" not in (hub / "resnet18.imagewoof" / "README.md").read_text()
    assert len(written) == 5  # the plot, two hub READMEs, MODEL_CARDS.md, docs/recipe-history.md
    # a baseline trained another way (here: a config from before Lookahead existed, 1 epoch, vs 3 epochs with it)
    # gets no difference and no verdict, and each recipe is listed with its checkpoints
    config_path = hub / "resnet18.imagewoof" / "config.json"
    config = json.loads(config_path.read_text())
    config["recipe"].pop("lookahead")
    config_path.write_text(json.dumps(config))
    ct_path = hub / "convtwist_resnet18.imagewoof" / "config.json"
    ct = json.loads(ct_path.read_text())
    ct["recipe"].update(epochs=3, lookahead=6)
    ct_path.write_text(json.dumps(ct))
    write_cards(hub, cards)
    text = cards.read_text()
    assert "| 79.25 (resnet18) | – | recipes differ |" in text
    # the published seeds drop out of the gaps
    assert "(training-log top-1): `--seed 1` +0.50," in (tmp_path / "docs" / "recipe-history.md").read_text()
    # one recipe table, a row per recipe, only the knobs that differ; the shared ones folded below it
    assert ("| recipe | checkpoints | epochs | lookahead |\n|---|---|---|---|\n"
            "| A | convtwist_resnet18.imagewoof | 3 | 6 |\n| B | resnet18.imagewoof | 1 | 0 |") in text
    assert "<details><summary>The " in text and "| amp | True |" in text
    assert "under rotation it is" not in text
    assert "Against its plain baseline: no verdict, it and resnet18.imagewoof were trained with different recipes" \
        in (hub / "convtwist_resnet18.imagewoof" / "README.md").read_text()
    index[-1]["compared_with"] = "resnet18.imagewoof-e5"  # not a listed run: an error that names it
    (runs / "index.json").write_text(json.dumps({"runs": index}))
    with pytest.raises(ValueError, match="resnet18.imagewoof-e5"):
        write_cards(hub, cards)


def test_retire_keeps_the_former_checkpoints_log_and_repoints_its_probes(tmp_path):
    hub, runs = tmp_path / "hub", tmp_path / "docs" / "runs"
    run = make_run_dir(tmp_path / "r18", arch="resnet18", num_classes=10, data="imagewoof")
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "seconds": 60, "top1": 70.0}) + "\n")
    config = json.loads((run / "config.json").read_text())
    config["recipe"].pop("lookahead")  # trained before Lookahead existed: it was off
    config["recipe"]["amp"] = False
    (run / "config.json").write_text(json.dumps(config))
    stage_run(run, hub)
    runs.mkdir(parents=True)
    (runs / "resnet18.imagewoof-la6.metrics.jsonl").write_text(json.dumps({"epoch": 1, "top1": 72.0}) + "\n")
    (runs / "index.json").write_text(json.dumps({"about": "x", "runs": [
        {"run": "resnet18.imagewoof-la6", "checkpoint": "resnet18.imagewoof", "kind": "recipe", "flags": "--epochs 1",
         "trained_on": "CPU"}]}))
    entry = retire_checkpoint(hub, runs, "resnet18.imagewoof", "e1")
    assert entry == {"run": "resnet18.imagewoof-e1", "checkpoint": "resnet18.imagewoof", "kind": "former checkpoint",
                     "flags": "--epochs 1 --lookahead 0 --no-amp", "trained_on": "test machine"}
    index = json.loads((runs / "index.json").read_text())
    assert [r["run"] for r in index["runs"]] == ["resnet18.imagewoof-e1", "resnet18.imagewoof-la6"]
    assert index["runs"][1]["compared_with"] == "resnet18.imagewoof-e1" and index["about"] == "x"
    assert (runs / "resnet18.imagewoof-e1.metrics.jsonl").read_text() == (hub / "resnet18.imagewoof" /
                                                                          "metrics.jsonl").read_text()
    # the retrained checkpoint replaces the old one; the probe stays compared with the weights it was made against
    (hub / "resnet18.imagewoof" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "seconds": 60, "top1": 78.0}))
    write_cards(hub, tmp_path / "MODEL_CARDS.md")
    text = (tmp_path / "docs" / "recipe-history.md").read_text()
    assert "| resnet18.imagewoof-la6 | recipe | `--epochs 1` | CPU | 1 | 72.00 | resnet18.imagewoof-e1 | 70.00 | " \
           "+2.00 |" in text
    assert "| resnet18.imagewoof-e1 | former checkpoint | `--epochs 1 --lookahead 0 --no-amp` | test machine | 1 | " \
           "70.00 | the checkpoint | 78.00 | -8.00 |" in text
    with pytest.raises(ValueError, match="already listed"):
        retire_checkpoint(hub, runs, "resnet18.imagewoof", "e1")
    with pytest.raises(FileNotFoundError, match="nothing to retire"):
        retire_checkpoint(hub, runs, "resnet50.imagewoof", "e1")


def test_record_lists_a_finished_run_with_its_flags_against_the_defaults(tmp_path):
    hub, runs = tmp_path / "hub", tmp_path / "docs" / "runs"
    stage_run(make_run_dir(tmp_path / "ckpt", arch="resnet18", num_classes=10, data="imagewoof"), hub)
    (hub / "resnet18.imagewoof" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "seconds": 60, "top1": 70.0}))
    probe = make_run_dir(tmp_path / "probe", arch="resnet18", num_classes=10, data="imagewoof")
    config = json.loads((probe / "config.json").read_text())
    config["recipe"].update(train_image_size=112, ema=0.999)
    (probe / "config.json").write_text(json.dumps(config))
    log = json.dumps({"epoch": 1, "seconds": 30, "top1": 71.5}) + "\n"
    with pytest.raises(FileNotFoundError, match="is the run finished"):
        record_run(probe, runs, "recipe", "t112-ema")
    (probe / "metrics.jsonl").write_text(log)
    entry = record_run(probe, runs, "recipe", "t112-ema")
    assert entry == {"run": "resnet18.imagewoof-t112-ema", "checkpoint": "resnet18.imagewoof", "kind": "recipe",
                     "flags": "--epochs 1 --train-image-size 112 --ema 0.999", "trained_on": "test machine"}
    assert (runs / "resnet18.imagewoof-t112-ema.metrics.jsonl").read_text() == log
    assert json.loads((runs / "index.json").read_text())["runs"] == [entry]
    write_cards(hub, tmp_path / "MODEL_CARDS.md")
    assert ("| resnet18.imagewoof-t112-ema | recipe | `--epochs 1 --train-image-size 112 --ema 0.999` | test machine | "
            "1 | 71.50 | the checkpoint | 70.00 | +1.50 |") in (tmp_path / "docs" / "recipe-history.md").read_text()
    with pytest.raises(ValueError, match="already listed"):
        record_run(probe, runs, "recipe", "t112-ema")
    with pytest.raises(ValueError, match="kind must be one of"):
        record_run(probe, runs, "probe", "x")
    folder_run = make_run_dir(tmp_path / "mine", arch="resnet18", data="myfolder")
    (folder_run / "metrics.jsonl").write_text(log)
    with pytest.raises(ValueError, match="none of the zoo's checkpoints"):
        record_run(folder_run, runs, "recipe", "x")


def test_train_time_leaves_out_the_pauses_of_a_resumed_run():
    # 39 epochs of 100 s and one that spanned a 5000 s pause (the run was stopped, then resumed)
    metrics = [{"epoch": e, "seconds": 100.0} for e in range(1, 40)] + [{"epoch": 40, "seconds": 5100.0}]
    assert _train_hours(metrics) == pytest.approx(40 * 100 / 3600)
    assert _train_hours([]) is None


def test_the_committed_cards_are_what_convtwist_zoo_cards_writes():
    # MODEL_CARDS.md and the hub READMEs are generated: a hand edit or a forgotten `convtwist-zoo cards` fails here
    root = Path(__file__).resolve().parents[1]
    if not (root / "hub").is_dir():
        pytest.skip("no hub/ folder (an sdist, not a checkout)")
    info = collect(root / "hub")
    extra = collect_extra_runs(root / "docs" / "runs")
    results = root / "results" / "leaderboard"
    bench = read_onnx_bench(root / "bench" / "results" / "onnx.json")
    assert (root / "MODEL_CARDS.md").read_text() == render_model_cards(info, extra, results, bench.costs)
    assert (root / "docs" / "recipe-history.md").read_text() == render_recipe_history(info, extra)
    readme = (root / "README.md").read_text()
    assert readme == render_readme(readme, info, results, bench), "README's tables are stale: run the cards command"
    page = (root / "docs" / "results.md").read_text()
    assert page == render_results(page, info, results, bench), "docs/results.md is stale: run the cards command"
    for name, entry in info.items():
        card = render_hub_readme(name, entry, info, results, bench.costs)
        assert (root / "hub" / name / "README.md").read_text() == card, name


def _run_counts(card: str) -> set[int]:
    """Every count of runs a card states ("of 5 runs", "has 3 finished runs"): one card, one count."""
    import re
    return {int(n) for n in re.findall(r"(\d+) (?:finished )?runs\b", card)}


def test_every_published_hub_card_states_one_run_count():
    from convtwist_zoo.release.cards import collect
    info = collect(ROOT / "hub")
    for name, entry in info.items():
        card = (ROOT / "hub" / name / "README.md").read_text()
        assert len(_run_counts(card.split("## Robustness")[0])) <= 1, name


def test_a_checkpoint_picked_from_leaderboard_arms_shows_its_seed_the_means_and_welch(tmp_path):
    from convtwist_zoo import research as leaderboard
    from convtwist_zoo.release.readme_tables import render_zoo_table
    hub, results = tmp_path / "hub", tmp_path / "results"
    seeds = {"convtwist_xresnet18": [75.4, 75.0, 74.6], "xresnet18": [72.6, 72.0, 72.3]}
    for arch, top1s in seeds.items():
        for seed, top1 in enumerate(top1s, start=1):  # seed 0 would be an lr probe, never a reported run
            leaderboard.append_row(results / "imagewoof-128px-5ep.jsonl", result_row(arch, seed, top1, 8e-3))
        run = make_run_dir(tmp_path / arch, arch=arch, num_classes=10, data="imagewoof", seed=2)
        (run / "metrics.jsonl").write_text("\n".join(json.dumps({"epoch": e, "seconds": 60}) for e in range(1, 6)))
        pick = {"seed": 2, "mean": round(sum(top1s) / 3, 2), "n": 3, "std": 0.4, "results": "imagewoof-128px-5ep.jsonl"}
        stage_run(run, hub, extra={"leaderboard": pick})
        (hub / f"{arch}.imagewoof" / "eval.json").write_text(json.dumps(fake_eval(top1s[1])))
    control = [72.9, 72.5]  # xresnet34, the compute-matched control: rows only, no published weights
    for seed, top1 in enumerate(control, start=1):
        leaderboard.append_row(results / "imagewoof-128px-5ep.jsonl", result_row("xresnet34", seed, top1, 8e-3))
    info = collect(hub)
    table = render_zoo_table(info, results)
    # a model's own arm and its baseline's arm, over seeds: 75.00 ± 0.40 vs 72.30 ± 0.30, Welch's interval
    w = leaderboard.welch(seeds["convtwist_xresnet18"], seeds["xresnet18"])
    assert (f"| convtwist_xresnet18.imagewoof | 75.00 (seed 2; 3 seeds: 75.00 ± 0.40) | xresnet18.imagewoof | "
            f"72.30 ± 0.30 (3 seeds) | +2.70 [{w['low']:+.2f}, {w['high']:+.2f}] | 123 |") in table
    assert "| xresnet18.imagewoof | 72.00 (seed 2; 3 seeds: 72.30 ± 0.30) | – | – | – |" in table
    assert table.count("\n") == 3  # checkpoints only: a leaderboard arm without weights is not a row
    card = render_hub_readme("convtwist_xresnet18.imagewoof", info["convtwist_xresnet18.imagewoof"], info, results)
    assert ("These weights are seed 2 of the fast.ai leaderboard protocol (`results/leaderboard/imagewoof-128px-5ep"
            ".jsonl`), picked as the finished run closest to its arm's mean top-1. Its arm has 3 finished runs: "
            "75.00 ± 0.40, min 74.60, max 75.40. Seed 2 scored 75.00, 2 of 3 from the top.") in card
    assert _run_counts(card) == {3}
    assert "| baseline xresnet18 top-1 @128px, same protocol | 72.30 ± 0.30 (3 seeds) |" in card
    assert "convtwist_xresnet18 trained from scratch on imagewoof at 128px with convtwist-zoo (every 3x3 " \
           "convolution of its residual blocks a ConvTwist, the stem plain)." in card
    assert (f"Against its plain baseline: +2.70 points against xresnet18 (3 seeds against 3 seeds; 95% interval "
            f"[{w['low']:+.2f}, {w['high']:+.2f}], Welch, p {w['p']:.3f}): ConvTwist ahead.") in card
    wc = leaderboard.welch(seeds["convtwist_xresnet18"], control)
    assert (f"Against its compute-matched control, xresnet34: +2.30 points against xresnet34 (3 seeds against 2 "
            f"seeds; 95% interval [{wc['low']:+.2f}, {wc['high']:+.2f}], Welch, p {wc['p']:.3f}): ConvTwist ahead."
            ) in card
    assert "compute-matched" not in render_hub_readme("xresnet18.imagewoof", info["xresnet18.imagewoof"], info, results)
    # the robustness over seeds goes beside its results file's table once a run has been swept
    cards = render_model_cards(info, [], results)
    assert "Robustness over seeds" not in cards and "compares whole arms" not in cards
    sweep = [{"kind": "rotation", "value": 0, "top1": 75.0}, {"kind": "rotation", "value": 30, "top1": 60.0},
             {"kind": "scale", "value": 0.75, "top1": 67.5}]
    leaderboard.append_row(robustness_results(results / "imagewoof-128px-5ep.jsonl"), {
        "model": "xresnet18", "options": "", "seed": 2, "dataset": "imagewoof", "image_size": 128, "epochs": 5,
        "sweep": sweep})
    from convtwist_zoo.release.card_sections import leaderboard_sections
    cards = render_model_cards(info, [], results)
    assert "compares whole arms" in cards and "[docs/results.md](docs/results.md)" in cards
    page = "\n".join(leaderboard_sections(results, {}))  # docs/results.md's block
    assert "| xresnet18 | – | 1 | 2 | 75.00 | 80.00 | 90.00 |" in page
    assert page.index("**imagewoof, 128px, 5 epochs**") < page.index("**Robustness over seeds, imagewoof")


def test_a_checkpoint_picked_from_a_single_run_says_there_is_no_spread_yet(tmp_path):
    from convtwist_zoo import research as leaderboard
    from convtwist_zoo.release.readme_tables import render_zoo_table
    hub, results = tmp_path / "hub", tmp_path / "results"
    for arch, top1 in (("convtwist_xresnet18", 74.7), ("xresnet18", 73.5)):
        leaderboard.append_row(results / "imagewoof-128px-5ep.jsonl",
                               result_row(arch, 1, top1, 4e-3, model_args="maxblur=true"))
    run = make_run_dir(tmp_path / "run", arch="convtwist_xresnet18", num_classes=10, data="imagewoof", seed=1)
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"epoch": e, "seconds": 60}) for e in range(1, 6)))
    config = json.loads((run / "config.json").read_text())
    config["model_args"], config["recipe"]["model_args"] = {"maxblur": True}, "maxblur=true"
    (run / "config.json").write_text(json.dumps(config))
    pick = {"seed": 1, "mean": 74.7, "n": 1, "std": None, "results": "imagewoof-128px-5ep.jsonl"}
    stage_run(run, hub, extra={"leaderboard": pick})
    (hub / "convtwist_xresnet18.imagewoof" / "eval.json").write_text(json.dumps(fake_eval(74.73)))
    info = collect(hub)
    assert ("| convtwist_xresnet18.imagewoof | 74.73 (seed 1; 1 seed: 74.70) | xresnet18.imagewoof | 73.50 (1 seed) "
            "| +1.20 (means) |") in render_zoo_table(info, results)
    card = render_hub_readme("convtwist_xresnet18.imagewoof", info["convtwist_xresnet18.imagewoof"], info, results)
    assert card.count("convtwist_xresnet18 (maxblur=true) trained from scratch") == 1
    assert "| baseline xresnet18 top-1 @128px, same protocol | 73.50 (1 seed) |" in card
    assert ("These weights are seed 1 of the fast.ai leaderboard protocol (`results/leaderboard/imagewoof-128px-5ep"
            ".jsonl`), picked as the finished run closest to its arm's mean top-1. It is its arm's only finished run "
            "so far: no spread over seeds yet.") in card
    assert "+1.20 points against xresnet18 (1 seed against 1 seed): no interval yet, one run on a side." in card
    # MODEL_CARDS' checkpoint table compares arm with arm too, though xresnet18 has no published weights
    from convtwist_zoo.release.card_sections import summary_rows as _summary_rows
    row = next(r for r in _summary_rows(info, results) if r.startswith("| convtwist_xresnet18.imagewoof |"))
    assert "| 73.50 (1 seed) | +1.20 (means) | too few seeds |" in row
    # a seed finished after the pick: the card keeps the pick and gives the arm as it stands now
    leaderboard.append_row(results / "imagewoof-128px-5ep.jsonl",
                           result_row("convtwist_xresnet18", 2, 75.3, 4e-3, model_args="maxblur=true"))
    card = render_hub_readme("convtwist_xresnet18.imagewoof", info["convtwist_xresnet18.imagewoof"], info, results)
    assert ("picked as the finished run closest to its arm's mean top-1. Its arm has 2 finished runs: 75.00 ± 0.42, "
            "min 74.70, max 75.30. Seed 1 scored 74.70, the arm's lowest.") in card
    leaderboard.append_row(results / "imagewoof-128px-5ep.jsonl",
                           result_row("convtwist_xresnet18", 3, 74.1, 4e-3, model_args="maxblur=true"))
    card = render_hub_readme("convtwist_xresnet18.imagewoof", info["convtwist_xresnet18.imagewoof"], info, results)
    assert "Its arm has 3 finished runs: 74.70 ± 0.60, min 74.10, max 75.30. Seed 1 scored 74.70, 2 of 3 from " \
           "the top." in card


def test_a_checkpoint_picked_from_an_fp32_arm_is_compared_with_the_fp32_arms(tmp_path):
    # the bf16 arms hold one probe each; the fp32 pick must be set beside the fp32 baseline arm, and say it is fp32
    from convtwist_zoo import research as leaderboard
    from convtwist_zoo.release.card_sections import summary_rows as _summary_rows
    from convtwist_zoo.release.readme_tables import render_zoo_table
    hub, results = tmp_path / "hub", tmp_path / "results"
    arms = {("convtwist_xresnet18", True): [75.4], ("xresnet18", True): [72.6],
            ("convtwist_xresnet18", False): [74.3, 75.6, 75.1], ("xresnet18", False): [71.8, 72.5]}
    for (arch, amp), top1s in arms.items():
        for seed, top1 in enumerate(top1s):
            leaderboard.append_row(results / "imagewoof-128px-5ep.jsonl",
                                   result_row(arch, seed, top1, 8e-3, model_args="maxblur=true", amp=amp))
    run = make_run_dir(tmp_path / "run", arch="convtwist_xresnet18", num_classes=10, data="imagewoof", seed=2)
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"epoch": e, "seconds": 60}) for e in range(1, 6)))
    config = json.loads((run / "config.json").read_text())
    config["model_args"] = {"maxblur": True}
    config["recipe"].update(model_args="maxblur=true", amp=False, lr=8e-3, seed=2)
    (run / "config.json").write_text(json.dumps(config))
    pick = {"seed": 2, "mean": 75.0, "n": 3, "std": 0.66, "results": "imagewoof-128px-5ep.jsonl",
            "closer_without_weights": 1}
    stage_run(run, hub, extra={"leaderboard": pick})
    (hub / "convtwist_xresnet18.imagewoof" / "eval.json").write_text(json.dumps(fake_eval(75.08)))
    info = collect(hub)
    w = leaderboard.welch([74.3, 75.6, 75.1], [71.8, 72.5])
    table_row = next(r for r in render_zoo_table(info, results).splitlines() if r.startswith("| convtwist_x"))
    assert table_row.startswith(
        f"| convtwist_xresnet18.imagewoof | 75.08 (seed 2; 3 seeds: 75.00 ± 0.66) | xresnet18.imagewoof | "
        f"72.15 ± 0.49 (2 seeds) | +2.85 [{w['low']:+.2f}, {w['high']:+.2f}] | 123 | 0.00 G | ")
    assert table_row.endswith("| leaderboard, 5 epochs, lr 0.008, fp32 training |")
    row = next(r for r in _summary_rows(info, results) if r.startswith("| convtwist_xresnet18.imagewoof |"))
    assert "| 72.15 ± 0.49 (2 seeds) | +2.85 [" in row and "| ahead |" in row
    card = render_hub_readme("convtwist_xresnet18.imagewoof", info["convtwist_xresnet18.imagewoof"], info, results)
    assert card.count("convtwist_xresnet18 (maxblur=true, fp32 training) trained from scratch") == 1
    assert "| baseline xresnet18 top-1 @128px, same protocol | 72.15 ± 0.49 (2 seeds) |" in card
    assert ("These weights are seed 2 of the fast.ai leaderboard protocol (`results/leaderboard/imagewoof-128px-5ep"
            ".jsonl`), picked as the finished run closest to its arm's mean top-1 among those whose weights were at "
            "hand (1 run nearer the mean had lost theirs). Its arm has 3 finished runs: 75.00 ± 0.66, min 74.30, max "
            "75.60. Seed 2 scored 75.10, 2 of 3 from the top. That arm ran the recipe in fp32, "
            "without its bf16 autocast, and is compared only with fp32 arms: its baseline is xresnet18's fp32 arm.") \
        in card
    assert f"+2.85 points against xresnet18 (3 seeds against 2 seeds; 95% interval [{w['low']:+.2f}," in card
    # MODEL_CARDS says which checkpoint trained and which sweep ran in fp32
    rows = [{"kind": "rotation", "value": a, "top1": 75.0 - a / 5, "top5": 90} for a in (0, 15)]
    (hub / "convtwist_xresnet18.imagewoof" / "robustness.json").write_text(json.dumps({"amp": False, "rows": rows}))
    text = render_model_cards(collect(hub), [], results)
    assert "## Robustness: rotated and rescaled validation images (top-1 %, 128px, bf16, or fp32 where marked)" in text
    assert "| convtwist_xresnet18.imagewoof (fp32) | 75.0 | 72.0 |" in text
    assert ("Where each run trained (bf16 autocast; fp32 for convtwist_xresnet18.imagewoof, `amp` below; the "
            "recipe does not depend on the machine): test machine: convtwist_xresnet18.imagewoof.") in text


def test_onnx_latency_is_read_by_architecture_and_builder_options(tmp_path):
    # an xresnet benchmarked without MaxBlurPool must not lend its latency to a checkpoint trained with it
    from convtwist_zoo.release.card_sources import read_onnx_bench
    rows = [{"model": "xresnet18", "model_args": "", "size": 128, "batch": 1, "threads": 0, "ort_ms": 10.0},
            {"model": "xresnet18", "model_args": "maxblur=true", "size": 128, "batch": 1, "threads": 0, "ort_ms": 12.5},
            {"model": "xresnet18", "model_args": "maxblur=true", "size": 128, "batch": 1, "threads": 1, "ort_ms": 20.0},
            {"model": "xresnet18", "model_args": "maxblur=true", "size": 224, "batch": 1, "threads": 0, "ort_ms": 30.0},
            {"model": "resnet18", "size": 128, "batch": 1, "threads": 0, "ort_ms": 4.0}]  # a file from before options
    path = tmp_path / "onnx.json"
    path.write_text(json.dumps({"rows": rows}))
    assert read_onnx_bench(path).latency_ms == {("xresnet18", ""): 10.0, ("xresnet18", "maxblur=true"): 12.5,
                                      ("resnet18", ""): 4.0}
    assert read_onnx_bench(tmp_path / "missing.json") == ({}, {})


def test_onnx_costs_are_read_by_pair_and_builder_options_at_batch_1_128px_all_cores(tmp_path):
    from convtwist_zoo.release.card_sources import read_onnx_bench
    pair = {"pair": "convtwist_xresnet18/xresnet34", "size": 128, "batch": 1, "threads": 0}
    ratios = [{**pair, "model_args": "maxblur=true", "mac_ratio": 0.91, "ort_ratio": 0.98},
              {**pair, "model_args": "maxblur=true", "threads": 1, "mac_ratio": 0.91, "ort_ratio": 1.2},
              {**pair, "model_args": "maxblur=true", "size": 224, "mac_ratio": 0.91, "ort_ratio": 1.1},
              {**pair, "pair": "convtwist_resnet18/resnet18", "mac_ratio": 1.82, "ort_ratio": 2.05}]  # no options
    path = tmp_path / "onnx.json"
    path.write_text(json.dumps({"rows": [], "ratios": ratios}))
    assert read_onnx_bench(path).costs == {("convtwist_xresnet18", "xresnet34", "maxblur=true"): {"macs": 0.91, "ort": 0.98},
                                 ("convtwist_resnet18", "resnet18", ""): {"macs": 1.82, "ort": 2.05}}
    assert read_onnx_bench(tmp_path / "missing.json").costs == {}


def test_the_probed_protocol_leads_the_leaderboard_sections_and_the_others_follow_by_name(tmp_path):
    # every arm's lr comes from the Imagewoof 5-epoch probes, so that table comes first whatever the file names
    from convtwist_zoo import research as leaderboard
    from convtwist_zoo.release.card_sections import leaderboard_sections as _leaderboard_sections
    for dataset, epochs in (("imagewoof", 20), ("imagenette", 5), ("imagewoof", 5)):
        leaderboard.append_row(tmp_path / f"{leaderboard.protocol_name(dataset, 128, epochs)}.jsonl",
                               result_row("xresnet18", 1, 70.0, 8e-3, dataset=dataset, epochs=epochs))
    heads = [line.split(" (")[0] for line in _leaderboard_sections(tmp_path, costs={}) if line.startswith("**")]
    assert heads == ["**imagewoof, 128px, 5 epochs**", "**imagenette, 128px, 5 epochs**",
                     "**imagewoof, 128px, 20 epochs**"]


def test_the_readme_is_one_screen_with_quick_start_license_and_citation():
    from convtwist_zoo.release.card_sources import CITATION_BIBTEX
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 160, len(lines)
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[0] == "## Quick start" and lines.index("## Quick start") < 60
    assert {"## License", "## Citation", "## Checkpoints", "## Fine-tuning", "## Export and deployment",
            "## Requirements"} <= set(headings)
    text = "\n".join(lines)
    assert f"```bibtex\n{CITATION_BIBTEX}\n```" in text and "arXiv:2308.01621" in CITATION_BIBTEX
    assert "<!-- leaderboard:start -->" not in text and "<!-- bench:start -->" not in text  # in docs/ now
    assert "<!-- leaderboard:start -->" in (ROOT / "docs" / "results.md").read_text()
    assert "<!-- bench:start -->" in (ROOT / "docs" / "benchmarks.md").read_text()


def test_model_cards_open_with_intended_use_and_link_the_leaderboard_instead_of_repeating_it():
    text = (ROOT / "MODEL_CARDS.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")][0] == "## Intended use and limitations"
    assert "[docs/results.md](docs/results.md)" in text
    assert "| model | options | peak lr |" not in text  # the leaderboard tables live in docs/results.md only


def test_every_hub_card_shows_timm_style_usage_and_the_citation():
    from convtwist_zoo.models._pretrained import GITHUB_REPO
    from convtwist_zoo.release.card_sources import CITATION_BIBTEX
    for card in sorted((ROOT / "hub").glob("*/README.md")):
        text, name = card.read_text(), card.parent.name
        for part in ("## Model details", "### Image classification", "### Feature map extraction",
                     "### Image embeddings", "### Fine-tuning", "## Model comparison", "## Citation"):
            assert part in text, (name, part)
        assert f'create_model("{name}", features_only=True)' in text and "num_classes=0" in text, name
        assert f'torch.hub.load("{GITHUB_REPO}", "{name.split(".")[0]}"' in text and CITATION_BIBTEX in text, name


def test_one_repository_name_and_no_placeholder_anywhere():
    from convtwist_zoo.models._pretrained import GITHUB_REPO
    files = [ROOT / "README.md", ROOT / "MODEL_CARDS.md", ROOT / "hubconf.py", *(ROOT / "docs").glob("*.md"),
             *(ROOT / "hub").glob("*/README.md"), *(ROOT / "export").glob("*"), *(ROOT / "convtwist_zoo").rglob("*.py")]
    for path in files:
        text = path.read_text()
        assert "<owner>" not in text and "<org>" not in text, path
    hub_lines = [line for path in files if path.suffix == ".md" or path.name == "hubconf.py"
                 for line in path.read_text().splitlines() if "torch.hub.load(" in line]
    assert hub_lines and all(f'torch.hub.load("{GITHUB_REPO}"' in line for line in hub_lines), hub_lines
