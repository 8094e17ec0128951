"""The multi-seed leaderboard runner and its table: rows, skipping, resuming, the lock, Welch's interval."""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from dataclasses import asdict

import pytest
from scipy import stats

from conftest import ROOT, make_image_folder, result_row
from convtwist_zoo import research as leaderboard
from convtwist_zoo.cli import main
from convtwist_zoo.models._hub import sha256_file
from convtwist_zoo.training.identity import recipe_of
from convtwist_zoo.training import TrainConfig


def _row(model, seed, top1, lr=4e-3, **extra):
    if "recipe" in extra and "amp" in extra["recipe"]:
        extra["amp"] = extra["recipe"]["amp"]
    return result_row(model, seed, top1, lr, **extra)


def test_run_appends_one_row_per_finished_run_skips_done_and_resumes(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs", per_class=(4, 2), size=(40, 40))
    results = tmp_path / "results" / "tiny.jsonl"
    args = ["leaderboard", "run", "--models", "xresnet18", "convtwist_xresnet18", "--data", str(data), "--epochs", "1",
            "--seeds", "2", "--image-size", "32", "--runs", str(tmp_path / "runs"), "--results", str(results),
            "--workers", "0", "--batch-size", "4", "--no-progress", "--lr", "xresnet18=4e-3", "convtwist_xresnet18=8e-3"]
    assert main(args) == 0
    rows = leaderboard.read_rows(results)
    assert [(r["model"], r["seed"], r["lr"]) for r in rows] == [
        ("xresnet18", 0, 4e-3), ("convtwist_xresnet18", 0, 8e-3), ("xresnet18", 1, 4e-3),
        ("convtwist_xresnet18", 1, 8e-3)]
    run = tmp_path / "runs" / "imgs-32px-1ep" / "convtwist_xresnet18-lr0.008-seed1"
    assert rows[-1]["weights_sha256"] == sha256_file(run / "model.safetensors")
    # each epoch timed the run's own reference steps: the row sets its wall time against that bound
    assert rows[-1]["recipe"]["reference_steps"] == 8 and rows[-1]["reference_images_per_s"] > 0
    assert rows[-1]["wall_over_reference"] > 0 and rows[-1]["reference_bound_seconds"] > 0
    assert rows[-1]["recipe"]["lr"] == 8e-3 and rows[-1]["recipe"]["seed"] == 1 and rows[-1]["trained_on"]
    assert rows[-1]["train_seconds"] > 0 and rows[-1]["paused_seconds"] == 0.0 and rows[-1]["train_images_per_s"] > 0 and 0 <= rows[-1]["top1"] <= 100
    # a second call finds every row and trains nothing; a run folder whose row was lost is evaluated, not retrained
    results.write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]))
    mtime = (run / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    again = leaderboard.read_rows(results)
    assert len(again) == 4 and again[-1]["weights_sha256"] == rows[-1]["weights_sha256"]
    assert (run / "model.safetensors").stat().st_mtime_ns == mtime
    assert main(["leaderboard", "table", str(results)]) == 0
    out = capsys.readouterr().out
    assert "| xresnet18 | – | 0.004 | 2 |" in out and "convtwist_xresnet18 − xresnet18 | – | same recipe" in out
    # the file `run --results` wrote reads back with the same option, not the default folder's files
    assert main(["leaderboard", "table", "--results", str(results), "--results-dir", str(tmp_path / "none")]) == 0
    table = capsys.readouterr().out
    assert table.startswith("**") and out.endswith(table)
    # the probes: seed 0 at each rate; the one already run (4e-3) is skipped, 8e-3 trains, then the grid steps past
    # the better one's edge (a tie goes to the lower rate, 4e-3, so 2e-3), and --lr-from can read them
    probe = ["leaderboard", "run", "--models", "xresnet18", "--probe", "--data", str(data), "--epochs", "1",
             "--image-size", "32", "--runs", str(tmp_path / "runs"), "--results", str(results), "--workers", "0",
             "--batch-size", "4", "--no-progress"]
    assert main(probe) == 0
    rows = leaderboard.read_rows(results)
    found = {r["lr"]: r["top1"] for r in rows if r["seed"] == 0 and r["model"] == "xresnet18"}
    extension = 2e-3 if found[4e-3] >= found[8e-3] else 1.6e-2
    assert [(r["model"], r["seed"], r["lr"]) for r in rows[4:]] == [("xresnet18", 0, 8e-3), ("xresnet18", 0, extension)]
    assert leaderboard.probe_plan(results, "xresnet18") == []
    assert main(probe) == 0 and len(leaderboard.read_rows(results)) == 6  # the grid is complete: nothing runs
    assert leaderboard.probe_lrs(results, ["xresnet18"]) == {"xresnet18": max(found, key=lambda lr: (found[lr], -lr))}


def test_unknown_model_fails_before_any_training(tmp_path, capsys):
    assert main(["leaderboard", "run", "--models", "xresnet181", "--runs", str(tmp_path / "r")]) == 2
    assert "unknown model 'xresnet181'" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_the_cli_checks_each_model_once_and_skips_what_the_results_hold(tmp_path, capsys, monkeypatch):
    import convtwist_zoo.models._builder as factory
    built, create = [], factory.create_model
    monkeypatch.setattr(factory, "create_model", lambda name, **kw: built.append(name) or create(name, **kw))
    results = tmp_path / "rows.jsonl"
    data = make_image_folder(tmp_path / "imgs", per_class=(2, 1), size=(40, 40))

    def done(model, top1, lr):  # a row whose recipe is the one the command below would train
        recipe = recipe_of(asdict(TrainConfig(model=model, data=str(data), epochs=5, lr=lr, batch_size=4, seed=0)))
        return _row(model, 0, top1, lr=lr, recipe=recipe)
    for r in [done("xresnet18", 70.0, 4e-3), done("convtwist_xresnet18", 74.0, 8e-3), done("xresnet18", 71.0, 8e-3),
              done("xresnet18", 70.5, 1.6e-2)]:
        leaderboard.append_row(results, r)
    base = ["leaderboard", "run", "--models", "xresnet18", "convtwist_xresnet18", "--runs", str(tmp_path / "runs"),
            "--results", str(results), "--data", str(data), "--batch-size", "4", "--seeds", "1", "--no-progress"]
    assert main(base + ["--lr", "xresnet18=4e-3", "convtwist_xresnet18=8e-3"]) == 0
    assert built == ["xresnet18", "convtwist_xresnet18"] and "training" not in capsys.readouterr().out
    built.clear()
    assert main(base[:4] + base[5:] + ["--probe"]) == 0  # xresnet18's grid (4e-3, 8e-3, 1.6e-2) is in the file
    assert built == ["xresnet18"] and len(leaderboard.read_rows(results)) == 4


def test_a_second_runner_on_the_same_runs_folder_is_refused(tmp_path):
    from convtwist_zoo.research.runner import _exclusive
    with _exclusive(tmp_path):
        with pytest.raises(leaderboard.LeaderboardBusyError, match="another leaderboard runner"):
            with _exclusive(tmp_path):
                pass


def test_welch_interval_and_p_value_match_the_formula():
    a, b = [75.1, 75.4, 74.9, 75.6, 75.0], [73.2, 74.1, 73.0, 74.5, 72.9]
    w = leaderboard.welch(a, b)
    va, vb = stats.tvar(a) / 5, stats.tvar(b) / 5
    dof = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    diff = sum(a) / 5 - sum(b) / 5
    assert w["diff"] == pytest.approx(diff) and w["low"] == pytest.approx(diff - half)
    assert w["high"] == pytest.approx(diff + half)
    assert w["p"] == pytest.approx(2 * stats.t.sf(diff / math.sqrt(va + vb), dof))
    assert leaderboard.p_value(w["p"]) == "0.004" and leaderboard.p_value(0.0104) == "0.010"
    assert leaderboard.p_value(0.0006) == "0.001" and leaderboard.p_value(0.0004) == "< 0.001"
    assert leaderboard.welch([75.0], b) is None
    assert leaderboard.why_no_interval([75.0], b) == "one run on a side" and leaderboard.why_no_interval(a, b) is None
    # with every run of both arms tied, the standard error is 0 and scipy's interval would be [diff, diff], p 0; with
    # one side tied, the interval would count only the other side's spread
    alike = "no spread on a side (its runs all scored alike)"
    assert leaderboard.welch([75.0, 75.0], [74.0, 74.0]) is None
    assert leaderboard.why_no_interval([75.0, 75.0], [74.0, 74.0]) == alike
    assert leaderboard.welch(a, [72.54, 72.54]) is None and leaderboard.why_no_interval([72.54, 72.54], a) == alike
    assert leaderboard.welch([75.0, 75.0], [74.0, 74.5]) is None
    assert leaderboard.welch([75.0, 75.1], [74.0, 74.5]) is not None


def test_difference_cells_write_the_interval_or_say_why_there_is_none():
    a, b = [75.1, 75.4, 74.9, 75.6, 75.0], [73.2, 74.1, 73.0, 74.5, 72.9]
    w = leaderboard.welch(a, b)
    assert leaderboard.difference_cells(a, b) == (f"+{w['diff']:.2f} | [+{w['low']:.2f}, +{w['high']:.2f}] | 0.004 | "
                                                  "ConvTwist ahead")
    assert leaderboard.difference_cells(b, a).endswith("| 0.004 | ConvTwist behind")
    assert leaderboard.difference_cells([75.0, 74.0], [74.0, 75.0]).endswith("within noise (the interval holds 0)")
    tied = leaderboard.difference_cells([75.0, 75.0], [74.0, 74.0])
    assert tied == "+1.00 | – | – | no spread on a side (its runs all scored alike): no interval"


def test_table_reads_within_noise_and_counts_only_reported_runs(tmp_path):
    path = tmp_path / "imagenette-128px-5ep.jsonl"  # no probes on this protocol: seed 0 is a reported run
    nette = {"dataset": "imagenette"}
    for r in ([_row("xresnet18", s, t, **nette) for s, t in enumerate([70.0, 71.0, 72.0])] +
              [_row("convtwist_xresnet18", s, t, **nette) for s, t in enumerate([70.5, 71.5, 71.0])] +
              [_row("xresnet34", s, t, **nette) for s, t in enumerate([60.0, 61.0, 60.5])]):
        leaderboard.append_row(path, r)
    table = leaderboard.render_table(path)
    assert "| convtwist_xresnet18 | – | 0.004 | 3 | 0, 1, 2 | 71.00 ± 0.50 | 70.50 | 71.50 | – |" in table
    same = leaderboard.welch([70.5, 71.5, 71.0], [70.0, 71.0, 72.0])
    matched = leaderboard.welch([70.5, 71.5, 71.0], [60.0, 61.0, 60.5])
    holm = leaderboard.holm([same["p"], matched["p"]])
    assert (f"convtwist_xresnet18 − xresnet18 | – | same recipe | +0.00 | [{same['low']:+.2f}, {same['high']:+.2f}] "
            f"| {leaderboard.p_value(same['p'])} | within noise (the interval holds 0) | "
            f"{leaderboard.p_value(holm[0])} | no |") in table
    assert (f"convtwist_xresnet18 − xresnet34 | – | compute-matched | +10.50 | [{matched['low']:+.2f}, "
            f"{matched['high']:+.2f}] | {leaderboard.p_value(matched['p'])} | ConvTwist ahead | "
            f"{leaderboard.p_value(holm[1])} | yes |") in table
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"imagenette-128px-5ep.jsonl:10 is not a JSON row"):
        leaderboard.read_rows(path)


def test_holm_adjusts_a_family_of_p_values_step_down():
    assert leaderboard.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert leaderboard.holm([0.001, 0.5]) == pytest.approx([0.002, 0.5])
    assert leaderboard.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1, never below a smaller p's
    assert leaderboard.holm([]) == []


def test_a_duplicated_row_is_refused_and_counted_once_if_it_slips_in(tmp_path):
    path = tmp_path / "imagewoof-128px-5ep.jsonl"
    runs = [_row("xresnet18", s, 72.0 + s / 10) for s in range(1, 4)]
    for r in runs:
        leaderboard.append_row(path, r)
    with pytest.raises(leaderboard.ResultsFileError, match="already holds this run .xresnet18 seed 2"):
        leaderboard.append_row(path, dict(runs[1], top1=99.0))
    assert len(leaderboard.read_rows(path)) == 3
    # a row appended by hand (or by an older runner) is counted once, and the table says so
    path.write_text(path.read_text() + json.dumps(runs[1]) + "\n")
    table = leaderboard.render_table(path)
    assert "| xresnet18 | – | 0.004 | 3 | 1, 2, 3 | 72.20 ± 0.10 |" in table
    assert "1 duplicated row(s) of the same run counted once." in table


def test_a_row_of_another_protocol_never_joins_an_arm(tmp_path):
    path = tmp_path / "imagewoof-128px-5ep.jsonl"
    for s in range(1, 3):
        leaderboard.append_row(path, _row("xresnet18", s, 72.0))
    for knob, value in [("epochs", 20), ("label_smoothing", 0.0), ("image_size", 160)]:
        other = _row("xresnet18", 3, 80.0, recipe={knob: value})
        with pytest.raises(leaderboard.ResultsFileError, match=rf"holds runs of another protocol .*{knob}"):
            leaderboard.append_row(path, other)
    # one that slipped in is refused by the table, named by its line
    path.write_text(path.read_text() + json.dumps(_row("xresnet18", 3, 80.0, recipe={"epochs": 20})) + "\n")
    with pytest.raises(leaderboard.ResultsFileError, match=r"imagewoof-128px-5ep.jsonl:3 is a run of another "
                                                           r"protocol .*epochs: 5 in line 1, 20 in line 3"):
        leaderboard.render_table(path)


@pytest.mark.parametrize("line, message", [
    ('{"model": "xresnet18", "seed": 1, "lr": 0.004, "top1": 72.0}', "lacks recipe"),
    ('{"model": "xresnet18", "seed": 1, "lr": 0.004, "top1": NaN, "recipe": {}}', "top1 nan is not a finite number"),
    ('{"model": "xresnet18", "seed": 1, "lr": 0.004, "top1": "72", "recipe": {}}', "top1 '72' is not a finite"),
    ('[1, 2]', "is not a JSON object"),
])
def test_a_bad_row_is_named_by_file_and_line(tmp_path, line, message, capsys):
    path = tmp_path / "imagewoof-128px-5ep.jsonl"
    leaderboard.append_row(path, _row("xresnet18", 1, 72.0))
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(leaderboard.ResultsFileError, match=rf"imagewoof-128px-5ep.jsonl:2.*{message}"):
        leaderboard.read_rows(path)
    assert main(["leaderboard", "table", str(path)]) == 2  # the CLI: one line, no traceback
    err = capsys.readouterr().err
    assert "imagewoof-128px-5ep.jsonl:2" in err and "Traceback" not in err


def _append_rows(path, k):
    for i in range(40):
        leaderboard.append_row(path, {"model": "m", "seed": k * 100 + i, "top1": 1.0, "lr": 0.004,
                                      "recipe": {"model": "m", "seed": k * 100 + i, "lr": 0.004}})


def test_concurrent_writers_keep_every_row(tmp_path):
    import multiprocessing
    path = tmp_path / "imagewoof-128px-5ep.jsonl"
    procs = [multiprocessing.get_context("fork").Process(target=_append_rows, args=(path, k)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sorted(r["seed"] for r in leaderboard.read_rows(path)) == sorted(k * 100 + i for k in range(3)
                                                                           for i in range(40))


def test_imagenette_table_says_it_is_the_squashed_variant_beside_the_leaderboards_figure(tmp_path):
    nette, woof = tmp_path / "imagenette-128px-5ep.jsonl", tmp_path / "imagewoof-128px-5ep.jsonl"
    leaderboard.append_row(nette, _row("xresnet18", 0, 84.0, dataset="imagenette"))
    leaderboard.append_row(woof, _row("xresnet18", 0, 70.0))
    head, *_ = leaderboard.render_table(nette).splitlines()
    assert head.startswith("**imagenette, 128px, 5 epochs**") and "squashed variant" in head
    assert "best entry (mean of 5; aspect-kept images): 85.77%" in leaderboard.render_table(nette)
    assert "squashed" not in leaderboard.render_table(woof)


def test_probes_pick_each_arms_lr_and_the_table_follows_them(tmp_path, capsys):
    path = tmp_path / "imagewoof-128px-5ep.jsonl"
    mb = {"model_args": "maxblur=true"}
    here, there = {"trained_on": "CPU (A, 2 cores)"}, {"trained_on": "CPU (B, 2 cores)"}
    for r in [_row("xresnet18", 0, 70.73, **mb), _row("xresnet18", 0, 72.61, lr=8e-3, **mb),
              _row("xresnet18", 1, 72.0, lr=8e-3, **mb, **here, train_images_per_s=48.5),
              _row("xresnet18", 2, 72.2, lr=8e-3, **mb, **there, train_images_per_s=90.0),
              _row("xresnet18", 3, 72.27, lr=8e-3, **mb, **here, train_images_per_s=20.0),
              _row("convtwist_xresnet18", 0, 74.85, **mb), _row("convtwist_xresnet18", 0, 74.85, lr=8e-3, **mb),
              _row("convtwist_xresnet18", 1, 74.5, **mb, **here, train_images_per_s=30.0),
              _row("xresnet34", 0, 71.0, **mb), _row("xresnet18", 0, 64.88),
              # each grid's step past its edge: 8e-3 stays xresnet18's best, 4e-3 convtwist_xresnet18's (interior)
              _row("xresnet18", 0, 72.0, lr=1.6e-2, **mb), _row("convtwist_xresnet18", 0, 74.0, lr=2e-3, **mb)]:
        leaderboard.append_row(path, r)
    fp32 = {"recipe": {"amp": False}, **mb}  # trained without bf16 autocast: an arm of its own, never mixed in
    for r in [_row("xresnet18", 0, 71.9, lr=8e-3, **fp32, **there, train_images_per_s=12.0),
              _row("xresnet18", 1, 71.5, lr=8e-3, **fp32),
              _row("convtwist_xresnet18", 0, 75.5, lr=8e-3, **fp32), _row("convtwist_xresnet18", 1, 75.1, lr=8e-3,
                                                                          **fp32)]:
        leaderboard.append_row(path, r)
    # the better seed-0 run wins; a tie goes to the lower rate; options must match
    assert leaderboard.probe_lrs(path, ["xresnet18", "convtwist_xresnet18"], "maxblur=true") == {
        "xresnet18": 8e-3, "convtwist_xresnet18": 4e-3}
    with pytest.raises(ValueError, match=r"no probe of xresnet34 maxblur=true at lr 0.008; run the probes first: "
                                         r"convtwist-zoo leaderboard run --models xresnet34 --probe "
                                         r"--model-args maxblur=true --results "):
        leaderboard.probe_lrs(path, ["xresnet34"], "maxblur=true")
    with pytest.raises(ValueError, match="no probe of xresnet18 at lr 0.008"):
        leaderboard.probe_lrs(path, ["xresnet18"])
    with pytest.raises(FileNotFoundError, match="--lr-from .*nofile.jsonl: no such results file"):
        leaderboard.probe_lrs(tmp_path / "nofile.jsonl", ["xresnet18"])
    table = leaderboard.render_table(path)
    # reported runs only: the probes (seed 0, bf16) choose the rate and are listed apart; the fp32 arm's seed 0 is
    # one of its runs; speeds from one named machine only, with their n
    assert "| convtwist_xresnet18 | maxblur=true | 0.004 | 1 | 1 | 74.50 | 74.50 | 74.50 | 30.0 (1) |" in table
    assert "| xresnet18 | maxblur=true | 0.008 | 3 | 1, 2, 3 | 72.16 ± 0.14 | 72.00 | 72.27 | 34.2 (2) |" in table
    assert "median over the arm's runs on CPU (A, 2 cores) (n in brackets" in table
    assert "| xresnet18 | maxblur=true, fp32 training | 0.008 | 2 | 0, 1 | 71.70 ± 0.28 | 71.50 | 71.90 | – |" in table
    assert "| convtwist_xresnet18 | maxblur=true, fp32 training | 0.008 | 2 | 0, 1 | 75.30 ± 0.28 |" in table
    assert ("xresnet18 (maxblur=true) ran on more than one machine: seeds 1, 3 on CPU (A, 2 cores); seeds 2 on CPU "
            "(B, 2 cores).") in table
    assert "| convtwist_xresnet18 − xresnet18 | maxblur=true | same recipe | +2.34 | – | – | one run" in table
    assert "| convtwist_xresnet18 − xresnet18 | maxblur=true, fp32 training | same recipe | +3.60 | [" in table
    assert ("| convtwist_xresnet18 | maxblur=true | 0.002: 74.00, 0.004: 74.85, 0.008: 74.85 | 0.004 | interior |"
            in table)
    assert "| xresnet18 | maxblur=true | 0.004: 70.73, 0.008: 72.61, 0.016: 72.00 | 0.008 | interior |" in table
    assert "| xresnet34 | maxblur=true | 0.004: 71.00 | – | grid incomplete: 0.008 to run |" not in table  # no arm
    assert ("Probes of no reported arm (seed 0; architecture options tried once, or an arm not run yet): xresnet34 "
            "maxblur=true at lr 0.004: 71.00; xresnet18 without options at lr 0.004: 64.88.") in table
    assert "MACs ratio" not in table
    # with the benchmark's costs: two more columns, by the arm's architecture options (both precisions share them)
    costs = {("convtwist_xresnet18", "xresnet18", "maxblur=true"): {"macs": 1.7257, "ort": 1.7634}}
    costed = leaderboard.render_table(path, costs)
    assert "| Holm p | survives | MACs ratio | ORT time ratio |\n|---|---|---|---|---|---|---|---|---|---|---|\n" in costed
    assert "| maxblur=true | same recipe | +2.34 | – | – | one run on a side: no interval | – | – | 1.73x | 1.76x |" \
        in costed
    assert costed.count("| 1.73x | 1.76x |") == 2 and "from `python bench/onnx.py`" in costed
    costs = {("convtwist_xresnet18", "xresnet18", ""): {"macs": 1.7, "ort": 1.8}}  # other options: no figure
    assert "1.70x" not in leaderboard.render_table(path, costs)
    # through the CLI: a missing probe stops the runner before any training
    args = ["leaderboard", "run", "--models", "xresnet34", "--model-args", "maxblur=true", "--lr-from", str(path),
            "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "out.jsonl")]
    assert main(args) == 2
    assert "no probe of xresnet34 maxblur=true at lr 0.008" in capsys.readouterr().err
    assert main(args + ["--lr", "4e-3"]) == 2
    assert "give one of --lr, --lr-from and --probe" in capsys.readouterr().err
    assert main(args + ["--probe"]) == 2
    assert "give one of --lr, --lr-from and --probe" in capsys.readouterr().err
    assert main(["leaderboard", "run", "--models", "xresnet18", "--probe", "--no-amp", "--runs",
                 str(tmp_path / "runs")]) == 2
    assert "the lr probes train the recipe, in bf16: drop --no-amp" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_pick_stages_the_run_closest_to_the_mean_whose_weights_are_at_hand(tmp_path, capsys):
    from convtwist_zoo.release.__main__ import main as release_main
    from convtwist_zoo.release.staging import representative_run
    data = make_image_folder(tmp_path / "imgs", per_class=(4, 2), size=(40, 40))
    results = tmp_path / "r.jsonl"
    assert main(["leaderboard", "run", "--models", "xresnet18", "--data", str(data), "--epochs", "1", "--seeds", "3",
                 "--image-size", "32", "--runs", str(tmp_path / "runs"), "--results", str(results), "--workers", "0",
                 "--batch-size", "4", "--no-progress"]) == 0
    rows = leaderboard.read_rows(results)
    for row, top1 in zip(rows, (60.0, 70.0, 90.0)):  # mean 73.33: seed 1 is closest
        row["top1"] = top1
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder, row, summary = representative_run(results, "xresnet18", tmp_path / "runs")
    assert row["seed"] == 1 and folder.name == "xresnet18-lr0.004-seed1"
    assert summary == {"seed": 1, "mean": 73.33, "n": 3, "std": 15.28, "results": "r.jsonl",
                       "closer_without_weights": 0}
    (folder / "model.safetensors").unlink()  # weights lost: the next closest with weights, and the card will say so
    folder, row, summary = representative_run(results, "xresnet18", tmp_path / "runs")
    assert row["seed"] == 0 and summary["closer_without_weights"] == 1
    from convtwist_zoo.models import xresnet
    packaged = Path(xresnet.__file__).read_bytes()
    assert release_main(["pick", str(results), "xresnet18", "--runs", str(tmp_path / "runs"), "--stage",
                         "--hub", str(tmp_path / "hub")]) == 0
    assert Path(xresnet.__file__).read_bytes() == packaged  # another hub folder: not declared in a model file
    config = json.loads((tmp_path / "hub" / "xresnet18.imgs" / "config.json").read_text())
    assert config["leaderboard"]["seed"] == 0
    # an fp32 arm is an arm of its own: --fp32 picks from it alone, and without the flag it is not counted
    leaderboard.append_row(results, {**rows[2], "top1": 80.0, "recipe": {**rows[2]["recipe"], "amp": False}})
    assert release_main(["pick", str(results), "xresnet18", "--fp32", "--runs", str(tmp_path / "runs")]) == 0
    assert "xresnet18: seed 2 (80.00%) is closest to the mean 80.00 of 1 runs" in capsys.readouterr().out
    assert release_main(["pick", str(results), "xresnet18", "--runs", str(tmp_path / "runs")]) == 0
    assert ("xresnet18: seed 0 (60.00%) is closest to the mean 73.33 of 3 runs among those with weights (1 nearer "
            "lost theirs)") in capsys.readouterr().out
    assert release_main(["pick", str(results), "xresnet50", "--runs", str(tmp_path / "runs")]) == 2
    assert "has no finished run of xresnet50" in capsys.readouterr().err
    assert release_main(["pick", str(tmp_path / "missing.jsonl"), "xresnet18", "--runs", str(tmp_path / "runs")]) == 2
    assert f"error: no results file {tmp_path / 'missing.jsonl'}: `convtwist-zoo leaderboard run` writes it" in \
        capsys.readouterr().err


def test_background_run_detaches_and_finishes_into_the_results_file(tmp_path, capsys):
    import time
    data = make_image_folder(tmp_path / "imgs", per_class=(4, 2), size=(40, 40))
    results = tmp_path / "r.jsonl"
    assert main(["leaderboard", "run", "--models", "xresnet18", "--data", str(data), "--epochs", "1", "--seeds", "1",
                 "--image-size", "32", "--runs", str(tmp_path / "runs"), "--results", str(results), "--workers", "0",
                 "--batch-size", "4", "--background"]) == 0
    assert "running in the background" in capsys.readouterr().out
    deadline = time.time() + 240
    while not results.exists() and time.time() < deadline:
        time.sleep(1)
    assert [r["model"] for r in leaderboard.read_rows(results)] == ["xresnet18"]
    assert "top-1" in (tmp_path / "runs" / "leaderboard.log").read_text()


def test_a_run_with_architecture_options_is_evaluated_and_reloads_with_them(tmp_path):
    from convtwist_zoo import create_model
    from convtwist_zoo.models.xresnet import PoolFirst
    data = make_image_folder(tmp_path / "imgs", per_class=(4, 2), size=(64, 64))
    results = tmp_path / "r.jsonl"
    assert main(["leaderboard", "run", "--models", "xresnet18", "--data", str(data), "--epochs", "1", "--seeds", "1",
                 "--image-size", "64", "--runs", str(tmp_path / "runs"), "--results", str(results), "--workers", "0",
                 "--batch-size", "4", "--no-progress", "--model-args", "maxblur=true"]) == 0
    (row,) = leaderboard.read_rows(results)
    assert row["model_args"] == "maxblur=true" and row["run"] == "xresnet18+maxblur-true-lr0.004-seed0"
    run = tmp_path / "runs" / "imgs-64px-1ep" / row["run"]
    assert json.loads((run / "config.json").read_text())["model_args"] == {"maxblur": True}
    assert isinstance(create_model("xresnet18", pretrained=run).layer2[0], PoolFirst)


def _queue(tmp_path, stages, has_bf16):
    """tools/leaderboard_queue.sh with a stand-in python that prints each runner line and answers the bf16 check."""
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/sh\n[ "$1" = -c ] && exit {0 if has_bf16 else 1}\necho "$@"\n')
    stub.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(stub), "STAGES": stages}
    return subprocess.run(["bash", str(ROOT / "tools" / "leaderboard_queue.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True)


def test_queue_fp32_stages_run_without_bf16_and_name_their_arms(tmp_path):
    done = _queue(tmp_path, "fp32 fp32c fp32d", has_bf16=False)
    assert done.returncode == 0, done.stderr
    runs = [line.split("--no-amp ")[1] for line in done.stdout.splitlines() if "leaderboard run" in line]
    probes = "--lr-from results/leaderboard/imagewoof-128px-5ep.jsonl"
    assert runs == [f"--data imagewoof --epochs 5 --seeds 5 --models convtwist_xresnet18 xresnet18 {probes}",
                    f"--data imagewoof --epochs 5 --seeds 5 --models xresnet34 {probes}",
                    f"--data imagenette --epochs 5 --seeds 3 --models convtwist_xresnet18 xresnet18 {probes}",
                    f"--data imagenette --epochs 5 --seeds 3 --models xresnet34 {probes}",
                    f"--data imagenette --epochs 5 --seeds 3 --models convtwist_xresnet50 xresnet50 {probes}",
                    f"--data imagewoof --epochs 20 --seeds 3 --models convtwist_xresnet18 xresnet18 {probes}",
                    f"--data imagewoof --epochs 20 --seeds 3 --models xresnet34 {probes}"]


def test_queue_refuses_a_bf16_stage_on_a_cpu_without_bf16_and_says_what_to_do(tmp_path):
    done = _queue(tmp_path, "fp32 c", has_bf16=False)
    assert done.returncode == 2 and "leaderboard run" not in done.stdout
    assert "no bf16 instructions" in done.stderr and 'STAGES="fp32 fp32c fp32d"' in done.stderr
    assert _queue(tmp_path, "c", has_bf16=True).stdout.count("--data imagenette --epochs 5 --seeds 3") == 1


def test_a_time_matched_control_joins_its_models_table_from_a_file_of_its_own(tmp_path):
    five, six = tmp_path / "imagewoof-128px-5ep.jsonl", tmp_path / "imagewoof-128px-6ep.jsonl"
    twist, plain, matched = [76.0, 76.4, 75.8], [74.0, 74.5, 74.2], [74.9, 75.3, 75.0]
    for s in range(3):
        leaderboard.append_row(five, _row("convtwist_xresnet50", s + 1, twist[s]))
        leaderboard.append_row(five, _row("xresnet50", s + 1, plain[s]))
        leaderboard.append_row(six, _row("xresnet50", s + 1, matched[s], epochs=6,
                                         time_matched_to={"model": "convtwist_xresnet50", "epochs": 5}))
    table = leaderboard.render_table(five)
    w = leaderboard.welch(twist, matched)
    same = leaderboard.welch(twist, plain)
    holm = leaderboard.holm([same["p"], w["p"]])
    assert (f"| convtwist_xresnet50 − xresnet50 (6 epochs) | – | time-matched | {w['diff']:+.2f} | [{w['low']:+.2f}, "
            f"{w['high']:+.2f}] | {leaderboard.p_value(w['p'])} | ConvTwist ahead | {leaderboard.p_value(holm[1])} |"
            ) in table
    assert "| convtwist_xresnet50 − xresnet50 | – | same recipe |" in table
    # its own file's table is a plain table of its runs
    assert "| xresnet50 | – | 0.004 | 3 | 1, 2, 3 | 75.07 ± 0.21 |" in leaderboard.render_table(six)
    # the CLI refuses a malformed spec before any training
    assert main(["leaderboard", "run", "--models", "xresnet50", "--time-matched-to", "convtwist_xresnet50",
                 "--runs", str(tmp_path / "r"), "--results", str(tmp_path / "x.jsonl")]) == 2


def test_a_run_of_another_protocol_is_never_called_done_by_a_row_of_this_one(tmp_path, capsys):
    # a row for the same model, seed and lr at 5 epochs: asking for 20 epochs into that file trains nothing and says
    # why, before any run (it used to exit 0 having trained nothing)
    data = make_image_folder(tmp_path / "imgs", per_class=(2, 1), size=(40, 40))
    results = tmp_path / "rows.jsonl"
    recipe = recipe_of(asdict(TrainConfig(model="xresnet18", data=str(data), epochs=5, lr=4e-3, batch_size=4,
                                          seed=0)))
    leaderboard.append_row(results, _row("xresnet18", 0, 70.0, recipe=recipe))
    args = ["leaderboard", "run", "--models", "xresnet18", "--runs", str(tmp_path / "runs"), "--results",
            str(results), "--data", str(data), "--batch-size", "4", "--seeds", "1", "--lr", "4e-3", "--no-progress"]
    assert main(args + ["--epochs", "20"]) == 2
    err = capsys.readouterr().err
    assert "holds runs of another protocol" in err and "epochs: 5 in its row 1, 20 in this run" in err
    assert not (tmp_path / "runs").exists() and len(leaderboard.read_rows(results)) == 1
    assert main(args + ["--epochs", "5"]) == 0 and "training" not in capsys.readouterr().out  # the same: done


def test_queue_default_plan_is_probes_then_seeds_1_to_5_then_20_epochs_then_the_time_matched_control(tmp_path):
    done = _queue(tmp_path, "probes b a d t d50", has_bf16=True)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "leaderboard run" in line]
    assert "--probe --models xresnet18 convtwist_xresnet18 xresnet34 xresnet50 convtwist_xresnet50" in lines[0]
    assert "--epochs 5 --first-seed 1 --seeds 5 --models convtwist_xresnet18 xresnet18 xresnet34" in lines[1]
    assert "--epochs 5 --first-seed 1 --seeds 5 --models convtwist_xresnet50 xresnet50" in lines[2]
    assert "--epochs 20 --first-seed 1 --seeds 3 --models convtwist_xresnet18 xresnet18 xresnet34" in lines[3]
    epochs = json.loads((ROOT / "bench" / "results" / "run_time.json").read_text())["time_matched"]["control_epochs"]
    assert (f"--epochs {epochs} --first-seed 1 --seeds 5 --models xresnet50" in lines[4]
            and "--time-matched-to convtwist_xresnet50:5" in lines[4])
    assert "--epochs 20 --first-seed 1 --seeds 3 --models convtwist_xresnet50 xresnet50" in lines[5]
