"""The seed's experiment in numbers (image moments of a synthetic bar), the flow/inspect commands."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import run_cli
from convtwist_zoo import create_model
from convtwist_zoo.layers.twist_statistics import layer_statistics
from convtwist_zoo.research.flow import apply_flow, image_moments


def bar(h=64, w=64, cx=38.0, cy=26.0, angle=20.0, length=16.0, width=3.0):
    """A smooth bar off the image centre, at ``angle`` degrees counter-clockwise (y pointing down)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    t = math.radians(angle)
    u = (xs - cx) * math.cos(t) - (ys - cy) * math.sin(t)
    v = (xs - cx) * math.sin(t) + (ys - cy) * math.cos(t)
    return torch.exp(-2 * (u / length) ** 2 - 2 * (v / width) ** 2)


def moments_along(generator, steps=200, sign=1.0):
    return [image_moments(img) for _, img in apply_flow(bar(), generator, steps, 2, sign=sign)]


def test_moments_of_the_bar():
    m = image_moments(bar(angle=20.0))
    assert m["cx"] == pytest.approx(38, abs=0.05) and m["cy"] == pytest.approx(26, abs=0.05)
    assert m["angle"] == pytest.approx(20, abs=0.1)


def test_rotation_turns_the_bar_more_with_more_steps_and_flips_with_the_kernels():
    m = moments_along("rotation")
    turn1, turn2 = m[1]["angle"] - m[0]["angle"], m[2]["angle"] - m[0]["angle"]
    assert turn1 < -8 and turn2 < turn1 - 8  # clockwise on screen, growing with the steps
    assert abs(m[2]["spread"] - m[0]["spread"]) < 0.5  # a rotation keeps the size
    r0 = math.dist((m[0]["cx"], m[0]["cy"]), (32, 32))
    assert math.dist((m[2]["cx"], m[2]["cy"]), (32, 32)) == pytest.approx(r0, rel=0.15)  # turns about the centre
    back = moments_along("rotation", sign=-1)
    assert back[1]["angle"] - back[0]["angle"] > 8 and back[2]["angle"] > back[1]["angle"]


def test_scaling_grows_or_shrinks_the_spread():
    up, down = moments_along("scaling"), moments_along("scaling", sign=-1)
    assert up[0]["spread"] < up[1]["spread"] < up[2]["spread"] and up[2]["spread"] > 1.3 * up[0]["spread"]
    assert down[0]["spread"] > down[1]["spread"] > down[2]["spread"]
    assert abs(up[2]["angle"] - up[0]["angle"]) < 1  # scaling keeps the orientation


def test_shifts_move_the_centroid():
    sx, sy = moments_along("shift-x"), moments_along("shift-y")
    assert sx[2]["cx"] < sx[1]["cx"] - 5 < sx[0]["cx"] - 10 and abs(sx[2]["cy"] - sx[0]["cy"]) < 1
    assert sy[2]["cy"] > sy[1]["cy"] + 5 > sy[0]["cy"] + 10 and abs(sy[2]["cx"] - sy[0]["cx"]) < 1


def test_flow_command_writes_png(tmp_path, capsys):
    out = tmp_path / "flow.png"
    code, _, err = run_cli(capsys, "flow", "--generator", "rotation", "--steps", "40", "--out", out)
    assert code == 0, err
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_layer_statistics_reflect_the_weights():
    model = create_model("convtwist_resnet18")
    stats = layer_statistics(model)
    assert len(stats["layers"]) == 16 and [s["stage"] for s in stats["stages"]] == [f"layer{i}" for i in range(1, 5)]
    first = model.layer1[0].conv1
    with torch.no_grad():
        first.weight_x.zero_()
        first.weight_y.zero_()
        first.center_x.fill_(0.25)
    again = layer_statistics(model)["layers"][0]
    assert again["layer"] == "layer1.0.conv1" and again["twist_ratio"] == 0 and again["center_x_abs"] == 0.25


def test_inspect_command(tmp_path, capsys):
    from conftest import make_run_dir
    run = make_run_dir(tmp_path / "run")
    out = tmp_path / "inspect"
    code, _, err = run_cli(capsys, "inspect", "convtwist_resnet18", "--checkpoint", run, "--out", out)
    assert code == 0, err
    data = json.loads((out / "inspect.json").read_text())
    assert len(data["layers"]) == 16 and (out / "twist_ratio.png").exists() and (out / "centres.png").exists()
