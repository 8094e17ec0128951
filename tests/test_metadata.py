"""What a run or a checkpoint records is what later commands use, inconsistent metadata is refused when read, names
and options are unambiguous, one decoder serves every entry point, and bad input fails early in one line."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, make_image_folder, make_run_dir, run_cli
from convtwist_zoo import create_model
from convtwist_zoo.inference import load_classifier
from convtwist_zoo.models._registry import parse_model_args
from convtwist_zoo.run_config import RunConfigError, read_run_config
from convtwist_zoo.models._pretrained import PretrainedSpec
from convtwist_zoo.training import TrainConfig, train

CHURCH = ROOT / "convtwist_zoo" / "assets" / "church.jpg"
TINY = dict(epochs=1, batch_size=4, workers=0, progress=False, lookahead=0)


# ---------------------------------------------------------------------------------- class 2: partial identity
def test_a_tagged_model_with_other_pretrained_weights_is_refused_everywhere(image_folder, tmp_path, capsys):
    with pytest.raises(ValueError, match="names the imagewoof weights, but --pretrained imagenette asks for others"):
        TrainConfig(model="resnet18.imagewoof", pretrained="imagenette")
    code, _, err = run_cli(capsys, "finetune", "--model", "resnet18.imagewoof", "--pretrained", "imagenette",
                           "--data", image_folder, "--out", tmp_path / "o")
    assert code == 2 and "names the imagewoof weights" in err and not (tmp_path / "o").exists()
    # a tagged name alone is recorded as what it is: the architecture, started from that tag
    cfg = TrainConfig(model="resnet18.imagewoof")
    assert (cfg.model, cfg.pretrained) == ("resnet18", "imagewoof")


# ---------------------------------------------------------------------------------- class 3: metadata applied
def test_eval_and_export_use_the_runs_own_size_and_data_folder(tmp_path, capsys, monkeypatch):
    data = make_image_folder(tmp_path / "d1" / "shapes", per_class=(4, 4), size=(40, 40))
    run = tmp_path / "r1"
    train(TrainConfig(model="resnet18", data=str(data), out=str(run), image_size=32, **TINY))
    config = json.loads((run / "config.json").read_text())
    assert config["input_size"] == [3, 32, 32] and config["data_path"] == str(data.resolve())
    # another folder of the same name in the working directory is not the run's data
    decoy = make_image_folder(tmp_path / "elsewhere" / "shapes", per_class=(4, 4), size=(40, 40), seed=5)
    monkeypatch.chdir(decoy.parent)
    code, out, _ = run_cli(capsys, "eval", "--checkpoint", run, "--json", tmp_path / "e.json")
    assert code == 0 and "at 32px" in out
    result = json.loads((tmp_path / "e.json").read_text())
    assert list(result["sizes"]) == ["32"] and result["sizes"]["32"]["images"] == 12
    code, out, _ = run_cli(capsys, "export", "resnet18", "--checkpoint", run, "-o", tmp_path / "m.onnx",
                           "--check", "1")
    assert code == 0 and "parity" in out
    import onnx
    assert [d.dim_value for d in onnx.load(tmp_path / "m.onnx").graph.input[0].type.tensor_type.shape.dim][2:] == \
        [32, 32]
    # the recorded folder is gone: said, with what to do
    (data.parent).rename(tmp_path / "moved")
    code, _, err = run_cli(capsys, "eval", "--checkpoint", run)
    assert code == 2 and f"was trained on {data.resolve()}, which is not there any more; pass --data" in err


@pytest.mark.parametrize("text, message", [
    ("c0\tcat\nc0\tdog\n", r"classes.txt:2: class id 'c0' is named twice"),
    ("c0\tcat\nc7\tbird\n", r"classes.txt:2: 'c7' is no class folder"),
    ("c0 cat\n", r"classes.txt:1: 'c0 cat' has no tab between the class id and its name"),
])
def test_a_bad_classes_file_is_refused_with_its_line(tmp_path, text, message, capsys):
    data = make_image_folder(tmp_path / "d", per_class=(4, 2), size=(40, 40))
    (data / "classes.txt").write_text(text)
    from convtwist_zoo.data import build_datasets
    with pytest.raises(ValueError, match=message):
        build_datasets(str(data))
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", tmp_path / "o")
    assert code == 2 and "classes.txt:" in err and not (tmp_path / "o").exists()


def test_a_good_classes_file_names_the_classes(tmp_path):
    data = make_image_folder(tmp_path / "d", per_class=(4, 2), size=(40, 40))
    (data / "classes.txt").write_text("# id<TAB>name\nc0\tcat\n\nc2\tbird\n")
    from convtwist_zoo.data import build_datasets
    assert build_datasets(str(data))[3] == ("cat", "c1", "bird")


@pytest.mark.parametrize("fields, message", [
    (dict(num_classes=3, class_ids=("a", "b"), class_names=("x", "y")), "num_classes 3 but 2 class ids"),
    (dict(num_classes=2, class_ids=("a", "b"), class_names=("x",)), "2 class ids but 1 class names"),
    (dict(num_classes=2, class_ids=("a", "a"), class_names=("x", "y")), "class id.s. a appear more than once"),
])
def test_a_spec_whose_classes_disagree_is_refused(fields, message):
    with pytest.raises(RunConfigError, match=f"checkpoint spec resnet18.mine: {message}"):
        PretrainedSpec("resnet18", "mine", "0" * 64, **fields)


def test_a_run_config_that_contradicts_itself_is_refused_naming_the_file(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run", arch="resnet18", num_classes=3)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "class_names": ["a"]}))
    with pytest.raises(RunConfigError, match=r"run/config.json: 3 class ids but 1 class names"):
        read_run_config(run)
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", "resnet18", "--checkpoint", run)
    assert code == 2 and "3 class ids but 1 class names" in err
    (run / "config.json").write_text("{not json")
    code, _, err = run_cli(capsys, "eval", "--checkpoint", run)
    assert code == 2 and "config.json is not valid JSON" in err


# ---------------------------------------------------------------------------------- class 4: names and options
def test_the_predict_cli_refuses_a_name_and_a_pretrained_tag_that_disagree(capsys):
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", "resnet18.imagenette", "--pretrained", "imagewoof")
    assert code == 2 and "names the imagenette weights but pretrained='imagewoof' asks for others" in err
    with pytest.raises(ValueError, match="names the imagenette weights"):
        load_classifier("resnet18.imagenette", "imagewoof")


def test_a_folder_named_like_a_tag_does_not_take_the_tag_on_the_command_line(tmp_path, capsys, monkeypatch):
    make_run_dir(tmp_path / "imagenette", arch="resnet18", num_classes=4)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "predict", CHURCH, "--model", "resnet18.imagenette", "--json")
    assert code == 0 and '"class_name": "church"' in out  # the zoo's weights, not the 4-class run in ./imagenette
    code, out, _ = run_cli(capsys, "predict", CHURCH, "--model", "resnet18", "--checkpoint", "imagenette", "--json")
    assert code == 0 and '"class_name": "church"' not in out and '"class_id": "c3"' in out  # asked for explicitly
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", "resnet18", "--pretrained", "./imagenette")
    assert code == 2 and "--checkpoint ./imagenette" in err


def test_model_options_are_typed_and_unknown_spellings_refused(capsys, tmp_path, image_folder):
    assert parse_model_args("maxblur=True,sa=FALSE,init_max=2") == {"maxblur": True, "sa": False, "init_max": 2}
    with pytest.raises(ValueError, match="maxblur is given twice"):
        parse_model_args("maxblur=true,maxblur=false")
    for spelling in ("no", "off", "0", "nope"):
        with pytest.raises(ValueError, match="option maxblur takes true or false, got"):
            create_model("xresnet18", **parse_model_args(f"maxblur={spelling}"))
    code, _, err = run_cli(capsys, "train", "--model", "xresnet18", "--model-args", "maxblur=no", "--data",
                           image_folder, "--out", tmp_path / "o")
    assert code == 2 and "option maxblur takes true or false, got 'no'" in err


# ---------------------------------------------------------------------------------- class 5: one decoder
def _rotated_jpeg(path: Path) -> Image.Image:
    """A JPEG stored sideways with EXIF Orientation=6 (rotate 90 degrees clockwise to view), and the upright image."""
    upright = Image.open(CHURCH).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)
    return upright


def test_every_entry_point_decodes_an_exif_rotated_jpeg_upright(tmp_path):
    from convtwist_zoo.data import read_image
    from convtwist_zoo.data.transforms import load_rgb
    upright = _rotated_jpeg(tmp_path / "sideways.jpg")
    trained = read_image(str(tmp_path / "sideways.jpg"))  # training's decoder
    evaluated = load_rgb(tmp_path / "sideways.jpg")  # eval's and predict's
    assert tuple(trained.shape[1:]) == (upright.height, upright.width) == (evaluated.height, evaluated.width)
    diff = np.abs(trained.permute(1, 2, 0).numpy().astype(int) - np.asarray(evaluated, dtype=int))
    assert diff.mean() < 2  # same pixels within JPEG decoders' rounding
    import sys
    sys.path.insert(0, str(ROOT / "export"))
    import classify_onnx
    assert classify_onnx.load_image(str(tmp_path / "sideways.jpg")).size == evaluated.size


def test_a_16_bit_pil_image_predicts_like_its_file(tmp_path):
    grey = (np.asarray(Image.open(CHURCH).convert("L"), dtype=np.uint16) * 257)
    path = tmp_path / "church16.png"
    Image.fromarray(grey).save(path)  # a uint16 array: a 16-bit greyscale PNG
    clf = load_classifier("resnet18.imagenette")
    by_path = clf.predict([path], topk=1)[0][0]
    with Image.open(path) as im:
        by_image = clf.predict([im], topk=1)[0][0]
    assert by_path[:2] == by_image[:2] and by_path[2] == pytest.approx(by_image[2], abs=1e-6)


def test_the_onnx_classifier_refuses_a_model_without_the_zoos_metadata(tmp_path, capsys):
    import sys
    sys.path.insert(0, str(ROOT / "export"))
    import classify_onnx
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), tmp_path / "plain.onnx", dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    assert classify_onnx.main([str(tmp_path / "plain.onnx"), str(CHURCH)]) == 2
    err = capsys.readouterr().err
    assert "does not record its preprocessing (input_size, crop_pct, mean, std missing)" in err
    assert "--input-size H W" in err
    args = [str(tmp_path / "plain.onnx"), str(CHURCH), "--input-size", "64", "64", "--crop-pct", "0.875", "--mean",
            "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5", "--json"]
    assert classify_onnx.main(args) == 0
    assert json.loads(capsys.readouterr().out)[str(CHURCH)][0]["class_name"].startswith("class ")


# ---------------------------------------------------------------------------------- class 6: early, clear errors
def test_a_bad_hub_dir_config_is_skipped_with_a_warning_not_a_traceback(tmp_path, monkeypatch, capsys):
    from convtwist_zoo.models import register_hub_dir_specs
    for name, text in (("bad", "{not json"), ("noarch", json.dumps({"pretrained_spec": {"tag": "x"}}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    monkeypatch.setenv("CONVTWIST_ZOO_HUB_DIR", str(tmp_path))
    with pytest.warns(UserWarning) as caught:
        register_hub_dir_specs()  # what importing the package does with the folder
    assert [str(w.message).split(":")[0] for w in caught] == [f"skipped {tmp_path / n / 'config.json'}"
                                                              for n in ("bad", "noarch")]
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "resnet18" in out


def test_weights_of_another_class_count_name_the_file(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run", arch="resnet18", num_classes=3)
    config = json.loads((run / "config.json").read_text())
    config.update(num_classes=5, class_ids=list("abcde"), class_names=list("abcde"))
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", "resnet18", "--checkpoint", run)
    assert code == 2 and str(run / "model.safetensors") in err and "fc.weight (3, 512) in the file" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("seed", ["-1", str(2 ** 32), str(10 ** 12)])
def test_a_seed_out_of_range_names_the_flag(seed, image_folder, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--data", image_folder, "--out", tmp_path / "o", "--seed", seed)
    assert code == 2 and "--seed must be a whole number in [0, 2**32)" in err and not (tmp_path / "o").exists()


def test_a_large_seed_trains(image_folder, tmp_path):
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(tmp_path / "o"), seed=2 ** 32 - 1,
                      image_size=32, max_steps_per_epoch=1, **TINY))
    assert (tmp_path / "o" / "model.safetensors").exists()


def test_an_empty_image_file_fails_before_training(image_folder, tmp_path, capsys):
    (image_folder / "val" / "c1" / "empty.png").write_bytes(b"")
    code, _, err = run_cli(capsys, "train", "--data", image_folder, "--out", tmp_path / "o", "--epochs", "1")
    assert code == 2 and "1 empty image file(s)" in err and "empty.png" in err and not (tmp_path / "o").exists()


def test_eval_checks_its_json_output_before_evaluating(tmp_path, capsys, monkeypatch):
    import convtwist_zoo.evaluate as evaluate
    monkeypatch.setattr(evaluate, "evaluate_on_folder", lambda *a, **k: pytest.fail("evaluated first"))
    (tmp_path / "out").mkdir()
    code, _, err = run_cli(capsys, "eval", "--model", "resnet18.imagewoof", "--json", tmp_path / "out")
    assert code == 2 and f"--json {tmp_path / 'out'} is a folder" in err and ".tmp" not in err


def test_a_folder_dataset_named_dot_has_its_real_name(tmp_path, monkeypatch):
    from convtwist_zoo.research import protocol_name
    (tmp_path / "pets").mkdir()
    monkeypatch.chdir(tmp_path / "pets")
    assert protocol_name(".", 128, 5) == "pets-128px-5ep"
    assert protocol_name("imagewoof", 128, 5) == "imagewoof-128px-5ep"


def test_plot_writes_the_file_it_names(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "top1": 50.0})
                                       + "\n")
    code, out, _ = run_cli(capsys, "plot", run, "--out", tmp_path / "curves")
    assert code == 0 and (tmp_path / "curves.png").is_file() and f"wrote {tmp_path / 'curves.png'}" in out
    code, out, _ = run_cli(capsys, "plot", run, "--out", tmp_path)
    assert code == 0 and (tmp_path / "curves.png").is_file() and f"wrote {tmp_path / 'curves.png'}" in out


def test_predict_classifies_a_large_folder_in_batches(monkeypatch):
    clf = load_classifier("resnet18.imagenette")
    sizes, forward = [], clf.model.forward
    monkeypatch.setattr(clf.model, "forward", lambda x: sizes.append(x.shape[0]) or forward(x))
    assert len(clf.predict([CHURCH] * 70, topk=1, batch_size=32)) == 70 and sizes == [32, 32, 6]


def test_num_classes_0_gives_pooled_features_for_both_families():
    for name, width in (("resnet18", 512), ("convtwist_resnet18", 512), ("xresnet18", 512)):
        model = create_model(name, num_classes=0).eval()
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, width), name


@pytest.mark.parametrize("name", ["convtwist_resnet18.imagenette", "xresnet18.imagewoof"])
def test_pretrained_weights_adapt_to_other_input_channels(name):
    import timm
    rgb = create_model(name).eval()
    x = torch.rand(2, 1, 64, 64)
    for grey in (timm.create_model(name, pretrained=True, in_chans=1).eval(), create_model(name, in_chans=1).eval()):
        with torch.no_grad():  # the grey model sums the RGB filters: a grey image gives what RGB copies of it give
            assert torch.allclose(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-3)
    five = timm.create_model(name, pretrained=True, in_chans=5, num_classes=4)
    assert five(torch.zeros(1, 5, 64, 64)).shape == (1, 4)


def test_the_cache_follows_xdg_cache_home(monkeypatch, tmp_path):
    from convtwist_zoo.files.cache import cache_dir
    monkeypatch.delenv("CONVTWIST_ZOO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "convtwist-zoo"
    monkeypatch.setenv("CONVTWIST_ZOO_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert math.isfinite(1.0)
