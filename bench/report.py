"""The README's benchmark table, generated from bench/results/*.json (never typed by hand).

    python bench/report.py            # print the table
    python bench/report.py --readme   # also rewrite it in README.md between the bench markers

Each row names the benchmark that measured it and the date in its JSON; a file that is missing leaves its rows out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _load(name: str) -> dict | None:
    path = HERE / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _met(value: float, target: float) -> str:
    return "yes" if value <= target else "**no**"


def rows() -> list[tuple[str, str, str, str]]:
    """(measurement, value, target, met) rows from whichever results exist."""
    out = []
    layer = _load("layer")
    if layer:
        when = layer["machine"]["date"]
        t = layer["targets"]
        for dtype in ("fp32", "bf16"):
            s = layer["summary"][dtype]
            taps = s.get("convtwist_taps_fwdbwd_geomean_x")  # files from before the tap path became the default
            taps = f"; 4-tap path only {taps:.2f}x" if taps else ""
            if "convtwist_stacked_fwdbwd_geomean_x" in s:
                taps = f"; stacked path at 64 channels {s['convtwist_stacked_fwdbwd_geomean_x']:.2f}x"
            out.append((f"ConvTwist fwd+bwd / Conv2d, geomean of 5 shapes, {dtype} (bench/layer.py, {when})",
                        f"{s['convtwist_fwdbwd_geomean_x']:.2f}x (max {s['convtwist_fwdbwd_max_x']:.2f}x{taps}; "
                        f"plain-PyTorch path {s['convtwist_plain_fwdbwd_geomean_x']:.2f}x; seed module "
                        f"{s['seed_fwdbwd_geomean_x']:.2f}x)",
                        f"<= {t['fwdbwd_geomean_x']}x, max <= {t['fwdbwd_max_x']}x",
                        "yes" if s["convtwist_fwdbwd_geomean_x"] <= t["fwdbwd_geomean_x"]
                        and s["convtwist_fwdbwd_max_x"] <= t["fwdbwd_max_x"] else "**no**"))
        for m in layer["models"]:
            target = t["resnet18_ratio"] if "18" in m["model"] else t["resnet50_ratio"]
            out.append((f"train step {m['model']}, bf16, batch {m['batch']}, {m['image']}px (bench/layer.py)",
                        f"{m['ratio']:.2f}x ({m['convtwist_img_s']:.0f} vs {m['plain_img_s']:.0f} img/s"
                        + (f"; 4-tap path only {m['taps_only_ratio']:.2f}x" if "taps_only_ratio" in m else "")
                        + (f"; stacked path at 64 channels {m['stacked_ratio']:.2f}x" if "stacked_ratio" in m
                           else "")
                        + (f"; kernels built by tensor ops {m['plain_prep_ratio']:.2f}x" if "plain_prep_ratio" in m
                           else "") + ")",
                        f"<= {target}x", _met(m["ratio"], target)))
    train = _load("train")
    if train:
        when = train["machine"]["date"]
        for m in train["models"]:
            out.append((f"{m['model']} training loop, batch {train['batch']}, {train['image_size']}px "
                        f"(bench/train.py, {when})",
                        f"{m['train_img_s']:.0f} img/s, input {m['input_share_pct']:.0f}% of step time",
                        f"input < {train['target_input_share_pct']}%",
                        _met(m["input_share_pct"], train["target_input_share_pct"])))
    onnx = _load("onnx")
    if onnx:
        when = onnx["machine"]["date"]
        for r in onnx["ratios"]:
            if r["size"] != 128:
                continue
            threads = {None: "", 0: ", all cores", 1: ", 1 thread"}.get(r.get("threads"),
                                                                        f", {r.get('threads')} threads")
            out.append((f"ONNX Runtime {r['pair']}, 128px batch {r['batch']}{threads} (bench/onnx.py, {when})",
                        f"{r['ort_ratio']:.2f}x ({_turns(r)}MACs {r['mac_ratio']:.2f}x)", f"<= {r['target']}x",
                        _met(r["ort_ratio"], r["target"])))
    return out


def _turns(ratio: dict) -> str:
    """The ratio's interquartile range over the timing turns, where the file records it."""
    if "ort_ratio_q1" not in ratio:
        return ""
    return f"middle half of turns {ratio['ort_ratio_q1']:.2f}-{ratio['ort_ratio_q3']:.2f}x; "


def hosts() -> list[str]:
    """Which host measured each results file (the machine is not always the same host, and the ratios move with
    it); files from before the host was recorded say so."""
    out = []
    for name in ("layer", "train", "onnx"):
        result = _load(name)
        if result:
            m = result["machine"]
            host = (f"{m['cpu_model']}, fp32 GEMM {m['gemm_fp32_gflops']} GFLOP/s" if "cpu_model" in m
                    else "host not recorded")
            out.append(f"bench/{name}.py ({m['date']}): {host}")
    return out


def table() -> str:
    lines = ["| measurement | value | target | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows()]
    lines += ["", "Hosts: " + "; ".join(hosts()) + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args()
    text = table()
    print(text)
    if args.readme:
        readme = README.read_text()
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n{text}\n{END}{tail}")
        print(f"updated {README}")


if __name__ == "__main__":
    main()
