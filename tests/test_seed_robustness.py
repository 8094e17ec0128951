"""Robustness over seeds: each leaderboard run's sweep, one row per run, and the arms compared with Welch intervals."""
from __future__ import annotations

import json

import pytest
from scipy import stats

from conftest import make_image_folder
from convtwist_zoo import research as leaderboard
from convtwist_zoo.cli import main
from convtwist_zoo.research.robustness import render_robustness, retained, retention, robustness_results


def _sweep(clean, rotated, scaled):
    return ([{"kind": "rotation", "value": 0, "top1": clean}]
            + [{"kind": "rotation", "value": a, "top1": t} for a, t in zip((15, 30, 45, 90), rotated)]
            + [{"kind": "scale", "value": s, "top1": t} for s, t in zip((0.75, 1.25), scaled)])


def _row(model, seed, sweep, options="maxblur=true, fp32 training"):
    return {"model": model, "model_args": "maxblur=true", "options": options, "seed": seed, "lr": 8e-3,
            "dataset": "imagewoof", "image_size": 128, "epochs": 5, "weights_sha256": f"{model}{seed}", "amp": False,
            "sweep": sweep}


def test_retained_is_each_settings_top1_as_a_share_of_the_clean_top1():
    kept = retained(_sweep(80.0, (72.0, 60.0, 48.0, 40.0), (64.0, 76.0)))
    assert kept == {("rotation", 15): 90.0, ("rotation", 30): 75.0, ("rotation", 45): 60.0, ("rotation", 90): 50.0,
                    ("scale", 0.75): 80.0, ("scale", 1.25): 95.0}
    with pytest.raises(ValueError, match="clean row"):
        retained(_sweep(0.0, (0.0,), ()))


def test_retention_is_each_kinds_mean_top1_as_a_share_of_the_clean_top1():
    kept = retention(_sweep(80.0, (72.0, 60.0, 48.0, 40.0), (64.0, 76.0)))
    assert kept == {"rotation": pytest.approx((90 + 75 + 60 + 50) / 4), "scale": pytest.approx((80 + 95) / 2)}
    with pytest.raises(ValueError, match="clean row"):
        retention([{"kind": "scale", "value": 0.75, "top1": 50.0}])


def test_the_table_compares_arms_by_retention_with_welchs_interval(tmp_path):
    path = tmp_path / "robustness" / "imagewoof-128px-5ep.jsonl"
    twist = [(75.0, (72.0, 64.0, 56.0, 46.0), (67.0, 68.0)), (76.0, (72.0, 66.0, 58.0, 47.0), (66.0, 68.0)),
             (74.0, (70.0, 63.0, 55.0, 45.0), (65.0, 66.0))]
    plain = [(72.0, (66.0, 58.0, 50.0, 45.0), (65.0, 63.0)), (71.0, (67.0, 59.0, 51.0, 43.0), (64.0, 62.0)),
             (72.5, (67.0, 60.0, 52.0, 44.0), (64.0, 64.0))]
    for seed, (a, b) in enumerate(zip(twist, plain)):
        leaderboard.append_row(path, _row("convtwist_xresnet18", seed, _sweep(*a)))
        leaderboard.append_row(path, _row("xresnet18", seed, _sweep(*b)))
    leaderboard.append_row(path, _row("xresnet34", 0, _sweep(*plain[0])))
    table = render_robustness(path)
    kept_twist = [retention(_sweep(*a)) for a in twist]
    kept_plain = [retention(_sweep(*b)) for b in plain]
    rot_a, rot_b = [k["rotation"] for k in kept_twist], [k["rotation"] for k in kept_plain]
    test = stats.ttest_ind(rot_a, rot_b, equal_var=False)
    low, high = test.confidence_interval(0.95)
    diff = sum(rot_a) / 3 - sum(rot_b) / 3
    assert (f"| convtwist_xresnet18 − xresnet18 | maxblur=true, fp32 training | rotation | {diff:+.2f} | "
            f"[{low:+.2f}, {high:+.2f}] | {leaderboard.p_value(test.pvalue)} |") in table
    assert "| xresnet18 | maxblur=true, fp32 training | 3 | 0, 1, 2 | 71.83 ± 0.76 |" in table
    assert "| convtwist_xresnet18 − xresnet34 | maxblur=true, fp32 training | scale |" in table
    assert "one run on a side: no interval" in table
    assert "rotation 15, 30, 45, 90; scale 0.75, 1.25" in table
    # per setting, each arm's mean over its seeds: xresnet18 at rotation 90 keeps 45/72, 43/71 and 44/72.5
    assert "| model | options | rotation 15 | rotation 30 | rotation 45 | rotation 90 | scale 0.75 | scale 1.25 |" in table
    at_90 = 100 * (45 / 72 + 43 / 71 + 44 / 72.5) / 3
    assert f"| xresnet18 | maxblur=true, fp32 training | {100 * (66 / 72 + 67 / 71 + 67 / 72.5) / 3:.1f} |" in table
    assert f"| {at_90:.1f} | {100 * (65 / 72 + 64 / 71 + 64 / 72.5) / 3:.1f} |" in table
    assert "| xresnet34 | maxblur=true, fp32 training | 91.7 | 80.6 | 69.4 | 62.5 | 90.3 | 87.5 |" in table
    assert render_robustness(tmp_path / "none.jsonl").startswith("No robustness sweep")


def test_cli_sweeps_each_run_whose_weights_are_at_hand_once(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs", per_class=(4, 3), size=(40, 40))
    results = tmp_path / "results" / "imgs-32px-1ep.jsonl"
    common = ["--data", str(data), "--epochs", "1", "--image-size", "32", "--runs", str(tmp_path / "runs"),
              "--results", str(results), "--workers", "0", "--no-progress"]
    assert main(["leaderboard", "run", "--models", "xresnet18", "convtwist_xresnet18", "--seeds", "2",
                 "--batch-size", "4", "--lr", "8e-3", "--no-amp", *common]) == 0
    rows = leaderboard.read_rows(results)
    # an arm not asked for (other options) is left alone
    assert main(["leaderboard", "robustness", "--models", "xresnet18", *common]) == 2
    assert "has no arm of xresnet18 with options ''" in capsys.readouterr().err
    (tmp_path / "runs" / "imgs-32px-1ep" / rows[2]["run"] / "model.safetensors").unlink()  # xresnet18 seed 1
    assert main(["leaderboard", "robustness", "--models", "xresnet18", "convtwist_xresnet18", "--no-amp",
                 *common]) == 0
    out = capsys.readouterr().out
    assert f"{rows[2]['run']}: the weights of this row are not in" in out
    swept = leaderboard.read_rows(robustness_results(results))
    assert robustness_results(results) == tmp_path / "results" / "robustness" / "imgs-32px-1ep.jsonl"
    assert [(r["model"], r["seed"]) for r in swept] == [("xresnet18", 0), ("convtwist_xresnet18", 0),
                                                        ("convtwist_xresnet18", 1)]
    by_sha = {r["weights_sha256"]: r for r in rows}
    for r in swept:
        assert r["options"] == "fp32 training" and r["amp"] is False
        assert [(s["kind"], s["value"]) for s in r["sweep"]] == [("rotation", a) for a in (0, 15, 30, 45, 90)] + [
            ("scale", 0.75), ("scale", 1.25)]
        # the unturned sweep is the leaderboard's own evaluation of the same weights
        assert r["sweep"][0]["top1"] == pytest.approx(by_sha[r["weights_sha256"]]["top1"], abs=1e-3)
    assert "| convtwist_xresnet18 − xresnet18 | fp32 training | rotation |" in out
    assert "one run on a side: no interval" in out
    # a second call sweeps nothing again
    assert main(["leaderboard", "robustness", "--models", "xresnet18", "convtwist_xresnet18", "--no-amp",
                 *common]) == 0
    assert len(leaderboard.read_rows(robustness_results(results))) == 3
    assert json.loads(robustness_results(results).read_text().splitlines()[0])["seed"] == 0


def test_cli_refuses_a_missing_results_file_in_one_line(tmp_path, capsys):
    assert main(["leaderboard", "robustness", "--models", "xresnet18", "--results",
                 str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no results file" in err and "leaderboard run" in err and len(err.splitlines()) == 1
