"""The benchmark table of docs/benchmarks.md, generated from bench/results/*.json (never typed by hand).

    python bench/report.py            # print the table
    python bench/report.py --write    # also rewrite it in docs/benchmarks.md between the bench markers

Each row names the benchmark that measured it and the date in its JSON; a file that is missing leaves its rows out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE.parent / "docs" / "benchmarks.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _load(name: str) -> dict | None:
    path = HERE / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


MAC_FLOOR = 17 / 9  # a ConvTwist layer's multiply-adds over a 3x3 Conv2d's


def rows() -> list[tuple[str, str, str, str]]:
    """(measurement, ratio, absolute times, MAC floor) rows from whichever results exist."""
    out = []
    layer = _load("layer")
    if layer and isinstance(layer["summary"], list):
        when = layer["machine"]["date"]
        by_key = {(r["dtype"], r["format"], r["shape"]): r for r in layer["layers"]}
        for s in layer["summary"]:
            shapes = [r for (d, f, _), r in by_key.items() if d == s["dtype"] and f == s["format"]]
            conv_ms = sum(r["conv2d_fwdbwd_ms"] for r in shapes)
            twist_ms = sum(r["convtwist_fwdbwd_ms"] for r in shapes)
            extra = [f"max {s['convtwist_fwdbwd_max_x']:.2f}x"]
            if "nchw_over_cl_max" in s:
                extra.append(f"at most {s['nchw_over_cl_max']:.2f}x its channels_last ratio")
            if "convtwist_plain_fwdbwd_geomean_x" in s:
                extra.append(f"plain-PyTorch path {s['convtwist_plain_fwdbwd_geomean_x']:.2f}x")
            extra.append(f"seed module {s['seed_fwdbwd_geomean_x']:.2f}x")
            out.append((f"ConvTwist layer fwd+bwd / Conv2d, {s['dtype']}, {s['format']}, batch {layer['batch']}, "
                        f"geomean of 5 ResNet shapes (bench/layer.py, {when})",
                        f"{s['convtwist_fwdbwd_geomean_x']:.2f}x ({'; '.join(extra)})",
                        f"{twist_ms:.0f} vs {conv_ms:.0f} ms (5 shapes summed)", f"{MAC_FLOOR:.2f}x"))
        for m in layer["models"]:
            out.append((f"train step {m['model']}, bf16, {m['format']}, batch {m['batch']}, {m['image']}px "
                        "(bench/layer.py)",
                        f"{m['ratio']:.2f}x" + (f" (kernels built by tensor ops {m['plain_prep_ratio']:.2f}x)"
                                                if "plain_prep_ratio" in m else ""),
                        f"{m['convtwist_ms']:.0f} vs {m['plain_ms']:.0f} ms ({m['convtwist_img_s']:.0f} vs "
                        f"{m['plain_img_s']:.0f} img/s)", f"{m['mac_ratio']:.2f}x" if "mac_ratio" in m else "–"))
    train = _load("train")
    if train:
        when = train["machine"]["date"]
        for m in train["models"]:
            out.append((f"{m['model']} training loop, batch {train['batch']}, {train['image_size']}px "
                        f"(bench/train.py, {when})",
                        f"input {m['input_share_pct']:.0f}% of step time",
                        f"{m['loop_ms']:.0f} ms per step, {m['train_img_s']:.0f} img/s", "–"))
    maxblur = _load("maxblur")
    if maxblur:
        when = maxblur["machine"]["date"]
        fused = sum(p["fused_ms"] for p in maxblur["pools"])
        modules = sum(p["modules_ms"] for p in maxblur["pools"])
        out.append((f"MaxBlurPool fwd+bwd, fused kernels / the two modules, bf16, channels_last, batch "
                    f"{maxblur['batch']}, an xresnet50's {len(maxblur['pools'])} pools (bench/maxblur.py, {when})",
                    f"{fused / modules:.2f}x", f"{fused:.0f} vs {modules:.0f} ms (pools summed)", "–"))
        for m in maxblur["models"]:
            out.append((f"train step {m['model']}, fused MaxBlurPool / modules, bf16, channels_last, batch "
                        f"{maxblur['batch']}, {maxblur['image']}px (bench/maxblur.py)", f"{m['ratio']:.2f}x",
                        f"{m['fused_ms']:.0f} vs {m['modules_ms']:.0f} ms ({m['fused_img_s']:.0f} vs "
                        f"{m['modules_img_s']:.0f} img/s; without MaxBlurPool {m['plain_model_ms']:.0f} ms)", "–"))
    precision = _load("precision")
    for host in (precision or {}).get("hosts", []):
        cpu = f"{host['machine']['cpu_model']}, {'native' if host['native_bf16'] else 'no'} bf16 instructions"
        for m in host["rows"]:
            out.append((f"train step {m['model']}, bf16 autocast / fp32, channels_last, batch {host['batch']}, "
                        f"{host['image_size']}px, {cpu} (bench/precision.py, {host['machine']['date']})",
                        f"{1 / m['bf16_over_fp32']:.2f}x the time",
                        f"{m['bf16_img_s']:.1f} vs {m['fp32_img_s']:.1f} img/s", "–"))
    out += gpu_rows(_load("gpu"))
    onnx = _load("onnx")
    if onnx:
        when = onnx["machine"]["date"]
        times = {(r.get("pair", ""), r["model"], r["size"], r["batch"], r.get("threads")): r for r in onnx["rows"]}
        for r in onnx["ratios"]:
            if r["size"] != 128:
                continue
            threads = {None: "", 0: ", all cores", 1: ", 1 thread"}.get(r.get("threads"),
                                                                        f", {r.get('threads')} threads")
            twist, plain = r["pair"].split("/")
            key = r["pair"] if any(k[0] for k in times) else ""  # files from before rows named their pair
            a = times.get((key, twist, 128, r["batch"], r.get("threads")))
            b = times.get((key, plain, 128, r["batch"], r.get("threads")))
            absolute = f"{a['ort_ms']:.1f} vs {b['ort_ms']:.1f} ms per batch" if a and b and "ort_ms" in a else "–"
            options = f" ({r['model_args']})" if r.get("model_args") else ""
            out.append((f"ONNX Runtime {r['pair']}{options}, 128px batch {r['batch']}{threads} (bench/onnx.py, {when})",
                        f"{r['ort_ratio']:.2f}x ({_turns(r)}PyTorch eager {r['eager_ratio']:.2f}x)", absolute,
                        f"{r['mac_ratio']:.2f}x (model MACs)"))
    run_time = _load("run_time")
    if run_time and run_time.get("in_run"):
        ratios = sorted(r["wall_over_reference"] for r in run_time["in_run"])
        out.append((f"leaderboard run wall time over its train steps' bound, timed in the run (bench/run_time.py, "
                    f"{len(ratios)} runs; target at most 1.15)",
                    f"{ratios[len(ratios) // 2]:.2f}x median, {ratios[-1]:.2f}x max", "–", "–"))
    return out


def gpu_rows(gpu: dict | None) -> list[tuple[str, str, str, str]]:
    """bench/gpu.py's rows, each naming the GPU that measured it (none without its results file)."""
    if not gpu:
        return []
    out, where = [], f"{gpu['gpu']} (bench/gpu.py, {gpu['machine']['date']})"
    by_dtype = {}
    for r in gpu["layers"]:
        by_dtype.setdefault(r["dtype"], []).append(r)
    for s in gpu["summary"]:
        shapes = by_dtype[s["dtype"]]
        twist_ms = sum(r["convtwist_fwdbwd_ms"] for r in shapes)
        conv_ms = sum(r["conv2d_fwdbwd_ms"] for r in shapes)
        out.append((f"ConvTwist layer fwd+bwd / Conv2d, {s['dtype']}, channels_last, batch {shapes[0]['batch']}, "
                    f"geomean of {len(shapes)} ResNet shapes, {where}",
                    f"{s['convtwist_fwdbwd_geomean_x']:.2f}x (max {s['convtwist_fwdbwd_max_x']:.2f}x; seed module "
                    f"{s['seed_fwdbwd_geomean_x']:.2f}x)",
                    f"{twist_ms:.1f} vs {conv_ms:.1f} ms ({len(shapes)} shapes summed)", f"{MAC_FLOOR:.2f}x"))
    for m in gpu["models"]:
        compiled = (f" (torch.compile {m['compiled_ratio']:.2f}x: {m['convtwist_compiled_img_s']:.0f} vs "
                    f"{m['plain_compiled_img_s']:.0f} img/s)" if "compiled_ratio" in m else "")
        out.append((f"train step {m['model']}, bf16, channels_last, batch {m['batch']}, {m['image']}px, {where}",
                    f"{m['ratio']:.2f}x{compiled}",
                    f"{m['convtwist_ms']:.1f} vs {m['plain_ms']:.1f} ms ({m['convtwist_img_s']:.0f} vs "
                    f"{m['plain_img_s']:.0f} img/s)", f"{m['mac_ratio']:.2f}x"))
    return out


def _turns(ratio: dict) -> str:
    """The ratio's interquartile range over the timing turns, where the file records it."""
    if "ort_ratio_q1" not in ratio:
        return ""
    return f"middle half of turns {ratio['ort_ratio_q1']:.2f}-{ratio['ort_ratio_q3']:.2f}x; "


def hosts() -> list[str]:
    """The CPU (or GPU) that measured each results file (ratios and times depend on it)."""
    out = []
    for name in ("layer", "train", "maxblur", "onnx"):  # precision.json names its CPUs in its rows
        result = _load(name)
        if result:
            m = result["machine"]
            host = (f"{m['cpu_model']}, fp32 GEMM {m['gemm_fp32_gflops']} GFLOP/s" if "cpu_model" in m
                    else "host not recorded")
            out.append(f"bench/{name}.py ({m['date']}): {host}")
    if gpu := _load("gpu"):  # measured on the GPU, not on its host's CPU
        out.append(f"bench/gpu.py ({gpu['machine']['date']}): {gpu['gpu']}, CUDA {gpu['cuda']}")
    return out


def table() -> str:
    lines = ["| measurement | ratio | ConvTwist vs baseline | MAC floor |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows()]
    lines += ["", "Hosts: " + "; ".join(hosts()) + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the table in docs/benchmarks.md")
    args = parser.parse_args()
    text = table()
    print(text)
    if args.write:
        page = PAGE.read_text()
        head, rest = page.split(START, 1)
        _, tail = rest.split(END, 1)
        tmp = PAGE.with_name(f".{PAGE.name}.tmp")
        tmp.write_text(f"{head}{START}\n{text}\n{END}{tail}")
        tmp.replace(PAGE)  # a crash leaves the old page whole
        print(f"updated {PAGE}")


if __name__ == "__main__":
    main()
