"""Where a leaderboard run's wall time goes, beside the synthetic train step, and the time-matched control's epochs.

    python bench/run_time.py [--results results/leaderboard/*.jsonl] [--repeats 36] [--skip-steps]

1. The synthetic step: one training step (bf16 autocast, channels_last, batch 64, 128px) on a fixed batch, each
   ConvTwist model timed in turns with its control in one process, so their ratio survives the machine's drift.
2. The runs: for every results row trained on this machine that records it, its wall time split into the train steps
   (less the time they waited for batches), waiting for batches (decode and augmentation), the per-epoch evaluations
   and the final fp32 evaluation, against the bound epochs x train images / synthetic img/s, and against its own
   steps (wall_over_steps: what the input pipeline and evaluations add, free of the shared machine's drift between
   the run and this benchmark).
3. The runs that timed their own reference step after each epoch (the leaderboard's): wall time against that
   in-run bound, free of any drift between processes; the target is at most 1.15.
4. The time-matched control: the epochs of xresnet50 whose step time equals convtwist_xresnet50's 5 epochs
   (5 x the step-time ratio, rounded to a whole epoch), what `tools/leaderboard_queue.sh` stage t trains.

Prints the tables and writes bench/results/run_time.json. Run it on an idle machine (pause any training).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_times, print_table, ratio_spread, train_step, write_json, zoo_model  # noqa: E402

from convtwist_zoo import research as leaderboard  # noqa: E402
from convtwist_zoo.data import DATASETS  # noqa: E402
from convtwist_zoo.training.outputs import hardware_name  # noqa: E402

PAIRS = [("convtwist_xresnet18", "xresnet18"), ("convtwist_xresnet50", "xresnet50")]
BATCH, SIZE = 64, 128
# the time-matched control: the plain model given the ConvTwist model's training time at the reference epochs
TIME_MATCHED = {"twist": "convtwist_xresnet50", "control": "xresnet50", "epochs": 5}
ROOT = Path(__file__).resolve().parents[1]


def step_rows(repeats: int) -> list[dict]:
    x = torch.randn(BATCH, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))
    rows = []
    for twist, plain in PAIRS:
        steps = [train_step(zoo_model(name).to(memory_format=torch.channels_last).train(), x, y)
                 for name in (twist, plain)]
        a, b = interleaved_times(steps, repeats, warmup=2)
        t_twist, t_plain = statistics.median(a), statistics.median(b)
        low, high = ratio_spread(a, b)
        # the median of the turn-by-turn ratios: each turn's pair ran back to back, so a drift of the shared
        # machine's speed between turns cancels in it
        ratio = statistics.median(x / y for x, y in zip(a, b))
        rows.append({"twist": twist, "control": plain, "twist_ms": t_twist * 1e3, "control_ms": t_plain * 1e3,
                     "twist_img_s": BATCH / t_twist, "control_img_s": BATCH / t_plain, "ratio": ratio,
                     "ratio_q1": low, "ratio_q3": high})
        print_table([rows[-1]], list(rows[-1]))
    return rows


def run_rows(results: list[Path], synthetic: dict[str, float], machine: str) -> list[dict]:
    """The split of every timed run of ``machine`` in ``results`` whose model has a synthetic step."""
    rows = []
    for path in results:
        for r in leaderboard.read_rows(path):
            if r.get("trained_on") != machine or r["model"] not in synthetic or r.get("eval_seconds") is None:
                continue
            steps = r["train_seconds"] - r["data_wait_seconds"]
            wall = r["train_seconds"] + r["eval_seconds"] + r["final_eval_seconds"]
            images = r["epochs"] * DATASETS[r["dataset"]].split_sizes["train"] // BATCH * BATCH
            bound = images / synthetic[r["model"]]
            rows.append({"run": f"{path.stem}/{r['run']}", "wall_min": wall / 60, "steps_min": steps / 60,
                         "data_wait_min": r["data_wait_seconds"] / 60, "eval_min": r["eval_seconds"] / 60,
                         "final_eval_min": r["final_eval_seconds"] / 60, "bound_min": bound / 60,
                         "wall_over_bound": wall / bound, "steps_over_bound": steps / bound,
                         # the run's time beyond its own steps (input, evaluations): no drift of the machine in it
                         "wall_over_steps": wall / steps})
    return rows


def in_run_rows(results: list[Path]) -> list[dict]:
    """Every run that timed its own reference steps after each epoch (``--reference-steps``; the leaderboard's runs
    do): its wall time against that bound, both measured in the run's own process on its own machine. The target is
    at most 1.15."""
    rows = []
    for path in results:
        for r in leaderboard.read_rows(path):
            if r.get("wall_over_reference") is None:
                continue
            rows.append({"run": f"{path.stem}/{r['run']}", "machine": r.get("trained_on"),
                         "reference_img_s": r["reference_images_per_s"],
                         "bound_min": r["reference_bound_seconds"] / 60,
                         "wall_min": r["reference_bound_seconds"] * r["wall_over_reference"] / 60,
                         "wall_over_reference": r["wall_over_reference"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", type=Path,
                        default=sorted((ROOT / "results" / "leaderboard").glob("*.jsonl")),
                        help="results files whose runs to split (default: every one in results/leaderboard)")
    parser.add_argument("--repeats", type=int, default=36,
                        help="timed turns per pair (default 36: fewer leave the 50-layer ratio too noisy to round)")
    parser.add_argument("--skip-steps", action="store_true",
                        help="reuse the synthetic steps of bench/results/run_time.json (same machine only)")
    args = parser.parse_args()
    machine = hardware_name(torch.device("cpu"))
    if args.skip_steps:
        import json
        saved = json.loads((ROOT / "bench" / "results" / "run_time.json").read_text())
        if saved["trained_on_name"] != machine:
            raise SystemExit(f"bench/results/run_time.json was measured on {saved['trained_on_name']}, not this "
                             f"machine ({machine}); run without --skip-steps")
        steps = saved["steps"]
    else:
        steps = step_rows(args.repeats)
    synthetic = {}
    for s in steps:
        synthetic[s["twist"]], synthetic[s["control"]] = s["twist_img_s"], s["control_img_s"]
    pair = next(s for s in steps if (s["twist"], s["control"]) == (TIME_MATCHED["twist"], TIME_MATCHED["control"]))
    matched = {**TIME_MATCHED, "ratio": pair["ratio"],
               "control_epochs": max(1, round(TIME_MATCHED["epochs"] * pair["ratio"]))}
    print(f"time-matched: {matched['control']} for {matched['control_epochs']} epochs takes the step time of "
          f"{matched['twist']}'s {matched['epochs']} (step-time ratio {pair['ratio']:.3f}, turn-by-turn quartiles "
          f"{pair['ratio_q1']:.3f}-{pair['ratio_q3']:.3f})")
    if matched["control_epochs"] == matched["epochs"]:
        print("the time-matched control would be the same-recipe control itself: tools/leaderboard_queue.sh stage t "
              "runs nothing")
    runs = run_rows(args.results, synthetic, machine)
    if runs:
        print_table(runs, list(runs[0]))
    in_run = in_run_rows(args.results)
    if in_run:
        print("wall time against the reference steps timed inside each run (target: at most 1.15):")
        print_table(in_run, list(in_run[0]))
    write_json("run_time", {"trained_on_name": machine, "batch": BATCH, "image": SIZE, "steps": steps,
                            "time_matched": matched, "runs": runs, "in_run": in_run})


if __name__ == "__main__":
    main()
