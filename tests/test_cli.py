"""The command line end to end: list, predict, demo (the README's main job) on a tiny Hub-style folder."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT, make_run_dir, register_spec, run_cli, run_cli_process


@pytest.fixture(scope="module")
def demo_hub(tmp_path_factory):
    """A hub folder holding a (random-weight) resnet18.testset with Imagenette's classes, staged as the zoo does."""
    from convtwist_zoo.data import DATASETS
    from convtwist_zoo.release.staging import stage_run
    root = tmp_path_factory.mktemp("demo")
    info = DATASETS["imagenette"]
    run = make_run_dir(root / "run", arch="resnet18", num_classes=10, data="imagenette",
                       class_ids=list(info.class_ids), class_names=list(info.class_names))
    stage_run(run, root / "hub", tag="testset")  # a tag of its own: a zoo checkpoint's spec always wins
    return root / "hub"


@pytest.fixture
def demo_hub_here(demo_hub, monkeypatch):
    """`demo_hub` as this process sees it: its folder in CONVTWIST_ZOO_HUB_DIR and its specs registered, as a new
    process would find them at import."""
    from convtwist_zoo.models._pretrained import specs_in_folder
    monkeypatch.setenv("CONVTWIST_ZOO_HUB_DIR", str(demo_hub))
    for spec in specs_in_folder(demo_hub):
        register_spec(spec, monkeypatch)
    return demo_hub


def test_list():
    result = run_cli_process("list")
    assert result.returncode == 0
    assert result.stdout.split() == ["convtwist_resnet18", "convtwist_resnet50", "convtwist_xresnet18",
                                     "convtwist_xresnet34", "convtwist_xresnet50", "resnet18", "resnet50", "xresnet18",
                                     "xresnet34", "xresnet50"]
    assert result.stderr.strip().startswith("ConvTwist runs on its fused C++ CPU kernels")


def test_list_pretrained_names_the_packaged_checkpoints_and_a_filter_that_matches_nothing_says_so(capsys):
    from convtwist_zoo.cli import main
    from convtwist_zoo.models import resnet, xresnet
    names = [*resnet.default_cfgs, *xresnet.default_cfgs]  # what the model files declare
    assert main(["list", "--pretrained", "xresnet18"]) == 0
    assert capsys.readouterr().out.split() == sorted(n for n in names if "xresnet18" in n)
    assert "convtwist_xresnet18.imagewoof" in names
    assert main(["list", "nosuch"]) == 2
    assert ("error: no model name contains 'nosuch'; `convtwist-zoo list` names them all"
            in capsys.readouterr().err)
    assert main(["list", "--pretrained", "imagewoof18"]) == 2
    assert ("error: no checkpoint name contains 'imagewoof18'; `convtwist-zoo list --pretrained` names them all"
            in capsys.readouterr().err)


def test_predict_prints_top5_with_names(demo_hub_here, capsys):
    img = ROOT / "convtwist_zoo" / "assets" / "church.jpg"
    code, out, err = run_cli(capsys, "predict", img, "--model", "resnet18.testset")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 6 and "church.jpg" in lines[0]
    names = ("tench", "English springer", "cassette player", "chain saw", "church", "French horn", "garbage truck",
             "gas pump", "golf ball", "parachute")
    probs = []
    for line in lines[1:]:
        assert any(n in line for n in names) and "(n0" in line
        probs.append(float(line.split("%")[0]))
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01
    code, out, _ = run_cli(capsys, "predict", img, "--model", "resnet18.testset", "--json")
    entry = json.loads(out)[str(img)]
    assert len(entry) == 5 and entry[0]["class_name"] in names


def test_predict_bad_inputs(demo_hub_here, tmp_path, capsys):
    from PIL import Image

    from convtwist_zoo.cli import main
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (20, 20)).save(tiny)
    assert main(["predict", str(tiny), "--model", "resnet18.testset"]) == 2
    assert "too small" in capsys.readouterr().err
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    assert main(["predict", str(junk), "--model", "resnet18.testset"]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert main(["predict", str(tiny), "--model", "resnet34.imagenette"]) == 2
    assert "unknown model 'resnet34'" in capsys.readouterr().err
    # a model name where the images go (`predict MODEL IMAGE`): said before any model is loaded
    assert main(["predict", "resnet18.testset", str(tiny)]) == 2
    assert capsys.readouterr().err == ("convtwist-zoo predict: error: no image file resnet18.testset; "
                                       "resnet18.testset is a model: pick it with --model resnet18.testset\n")
    assert main(["predict", str(tmp_path / "gone.jpg"), "--model", "resnet18.testset"]) == 2
    assert capsys.readouterr().err == f"convtwist-zoo predict: error: no image file {tmp_path / 'gone.jpg'}\n"


def test_demo_main_job(demo_hub_here, tmp_path, capsys):
    code, out, err = run_cli(capsys, "demo", "--model", "resnet18.testset", "--out", tmp_path / "out")
    assert code == 0, err
    assert "model resnet18.testset" in out and "parity OK" in out
    assert "top-1 agrees on 3/3" in out
    assert "parameters; a plain baseline, no ConvTwist layers" in out  # not the twist's kernel path
    assert (tmp_path / "out" / "resnet18.testset.onnx").exists()


@pytest.mark.skipif(not list((ROOT / "hub").glob("*/model.safetensors")), reason="no checkpoint in hub/ yet")
def test_demo_on_the_embedded_default(tmp_path):
    """The README's main job exactly: no arguments, the repository's own hub/ checkpoint."""
    result = run_cli_process("demo", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "parity OK" in result.stdout and "church.jpg: church" in result.stdout
    assert "parameters; ConvTwist runs on its" in result.stdout  # the default is a ConvTwist checkpoint


@pytest.mark.skipif(not list((ROOT / "hub").glob("*/model.safetensors")), reason="no checkpoint in hub/ yet")
def test_predict_without_model_uses_the_best_embedded_checkpoint(capsys):
    from convtwist_zoo.commands import _demo_default
    code, out, err = run_cli(capsys, "predict", ROOT / "convtwist_zoo" / "assets" / "church.jpg")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert f"({_demo_default()})" in lines[0] and "church (n03028079)" in lines[1]


def test_a_user_folder_cannot_override_a_zoo_checkpoints_hash(tmp_path):
    from convtwist_zoo import list_pretrained
    if "resnet18.imagenette" not in list_pretrained():
        pytest.skip("no packaged resnet18.imagenette spec")
    from convtwist_zoo.data import DATASETS
    from convtwist_zoo.release.staging import stage_run
    info = DATASETS["imagenette"]
    run = make_run_dir(tmp_path / "run", arch="resnet18", num_classes=10, data="imagenette",
                       class_ids=list(info.class_ids), class_names=list(info.class_names))
    stage_run(run, tmp_path / "hub")  # same name as the zoo's checkpoint, other weights
    img = ROOT / "convtwist_zoo" / "assets" / "church.jpg"
    result = run_cli_process("predict", str(img), "--model", "resnet18.imagenette",
                 env={"CONVTWIST_ZOO_HUB_DIR": str(tmp_path / "hub")})
    assert result.returncode == 2 and "expected" in result.stderr and "corrupt, truncated" in result.stderr


def test_every_flag_of_every_subcommand_explains_itself_and_each_help_ends_with_an_example():
    import argparse
    from convtwist_zoo.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        silent = [a.option_strings or [a.dest] for a in parser._actions
                  if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not silent, (name, silent)
        assert parser.format_help().rstrip().splitlines()[-1].strip().startswith(f"convtwist-zoo {name}"), name
    train = sub.choices["train"].format_help()
    assert "peak learning rate at batch 64" in train and "(default: 0.004; > 0)" in train
    assert "(default: 10; >= 1)" in sub.choices["finetune"].format_help()  # finetune's own defaults are shown
