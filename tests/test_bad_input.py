"""Nothing silently wrong, nothing lost: every file that is trusted is checked, and every bad input ends in one clear
line through the command line (``convtwist-zoo`` and ``export/classify_onnx.py``), never a traceback."""
from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import ROOT, make_image_folder, make_run_dir, register_spec, run_cli, trained_like
from convtwist_zoo import create_model
from convtwist_zoo.files import atomic
from convtwist_zoo.models import _hub as hub
from convtwist_zoo.export.onnx import export_onnx, run_onnx

sys.path.insert(0, str(ROOT / "export"))
import classify_onnx  # noqa: E402  (the torch-free script, run in-process)

CHURCH = ROOT / "convtwist_zoo" / "assets" / "church.jpg"
NAME = "convtwist_resnet18.tinyset"


def run_classify(capsys, *args):
    try:
        code = classify_onnx.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def rehash(run: Path) -> None:
    """Record the current weights' sha256 in the run's config, as `train` does."""
    config = json.loads((run / "config.json").read_text())
    config["weights_sha256"] = hub.sha256_file(run / "model.safetensors")
    (run / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    model = trained_like(create_model("resnet18", num_classes=10), seed=2)
    model.pretrained_config = {"class_names": [f"class {i}" for i in range(10)]}
    export_onnx(model, folder / "m.onnx", 64, compare_unfolded=False)
    return folder / "m.onnx", model


# ------------------------------------------------------------------------------------------ weights and caches
def test_a_cache_entry_linking_out_of_the_cache_is_refused_and_nothing_is_deleted(tiny_hub, hf_env, monkeypatch,
                                                                                  tmp_path, capsys):
    import huggingface_hub.constants as c
    spec = register_spec(tiny_hub[1], monkeypatch)
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    users_file = tmp_path / "my-notes.txt"
    users_file.write_text("a user's own file, not weights")
    sibling = tmp_path / "my-notes.txt.incomplete"
    sibling.write_text("also the user's")
    repo = Path(hf_env) / f"models--zoo-test--{spec.repo_name}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / spec.revision).write_text(commit)  # the pinned tag the spec downloads
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model.safetensors").symlink_to(users_file)
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", NAME)
    assert code == 2 and "outside the Hugging Face cache's blobs/ folder" in err and "nothing was deleted" in err
    assert users_file.read_text() == "a user's own file, not weights" and sibling.exists()


def test_a_bad_blob_inside_the_cache_is_still_deleted(tiny_hub, hf_env, monkeypatch):
    spec = register_spec(tiny_hub[1], monkeypatch)
    repo = Path(hf_env) / f"models--zoo-test--{spec.repo_name}"
    (repo / "blobs").mkdir(parents=True)
    blob = repo / "blobs" / "abc"
    blob.write_bytes(b"x" * spec.size)
    (repo / "snapshots" / "c0").mkdir(parents=True)
    entry = repo / "snapshots" / "c0" / "model.safetensors"
    entry.symlink_to(Path("..") / ".." / "blobs" / "abc")
    with pytest.raises(hub.IntegrityError, match="deleted from the Hugging Face cache"):
        hub._verify(entry, spec, in_cache=True)
    assert not blob.exists() and not entry.is_symlink()


def test_local_weights_are_hashed_and_a_missing_hash_is_said(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run", arch="resnet18", num_classes=10)
    assert json.loads((run / "config.json").read_text())["weights_sha256"] == \
        hub.sha256_file(run / "model.safetensors")
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-200] ^= 0x40  # one bit of one weight
    (run / "model.safetensors").write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", "resnet18", "--checkpoint", run)
    assert code == 2 and "sha256" in err and "left in place" in err
    config = json.loads((run / "config.json").read_text())
    del config["weights_sha256"]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="no sha256 is recorded"):
        create_model("resnet18", pretrained=run)


def test_the_size_is_compared_before_hashing(tiny_hub, tmp_path, monkeypatch):
    spec = tiny_hub[1]
    stray = tmp_path / "model.safetensors"
    with open(stray, "wb") as f:  # 8.6 GB, sparse: hashing it would take half a minute
        f.truncate(8_600_000_000)
    monkeypatch.setattr(hub, "sha256_file", lambda path: pytest.fail("hashed before comparing sizes"))
    with pytest.raises(hub.IntegrityError, match=f"size 8600000000 bytes, expected {spec.size}"):
        hub.resolve_weights(spec, stray)


def test_non_finite_weights_are_refused_and_named(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run", arch="resnet18", num_classes=10)
    state = load_file(str(run / "model.safetensors"))
    state["fc.weight"][0, 0] = float("nan")
    state["layer1.0.bn1.running_var"][1] = float("inf")
    save_file(state, str(run / "model.safetensors"))
    rehash(run)
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", "resnet18", "--checkpoint", run)
    assert code == 2 and "NaN or infinite values in 2 tensor(s)" in err
    assert "fc.weight" in err and "layer1.0.bn1.running_var" in err


def test_non_finite_scores_are_refused_by_predict_eval_and_the_onnx_classifier(tmp_path, capsys):
    from convtwist_zoo.evaluate import evaluate
    from convtwist_zoo.inference import load_classifier
    run = make_run_dir(tmp_path / "run", arch="resnet18", num_classes=3)
    clf = load_classifier("resnet18", run)
    with torch.no_grad():
        clf.model.fc.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN or infinite scores"):
        clf.predict([CHURCH])
    loader = [(torch.zeros(2, 3, 64, 64), torch.tensor([0, 1]))]
    with pytest.raises(FloatingPointError, match="nothing was measured"):
        evaluate(clf.model, loader, 3)
    export_onnx(clf.model, tmp_path / "nan.onnx", 64, compare_unfolded=False)
    code, _, err = run_classify(capsys, tmp_path / "nan.onnx", CHURCH)
    assert code == 2 and "NaN or infinite scores" in err


def test_a_truncated_or_oversized_header_safetensors_is_a_clear_error(tmp_path, capsys):
    good = make_run_dir(tmp_path / "run", arch="resnet18", num_classes=10) / "model.safetensors"
    truncated = tmp_path / "t" / "model.safetensors"
    truncated.parent.mkdir()
    truncated.write_bytes(good.read_bytes()[:5000])
    huge = tmp_path / "h" / "model.safetensors"
    huge.parent.mkdir()
    huge.write_bytes((10 ** 15).to_bytes(8, "little") + b"{}")
    for bad in (truncated, huge):
        with pytest.warns(UserWarning, match="no sha256"):
            code, _, err = run_cli(capsys, "predict", CHURCH, "--model", "resnet18", "--checkpoint", bad)
        assert code == 2 and "not a readable safetensors file" in err and str(bad) in err


# ------------------------------------------------------------------------------------------ images
def test_16_bit_images_decode_like_8_bit_on_every_path(tmp_path, onnx_model, capsys):
    from convtwist_zoo.data import read_image
    from convtwist_zoo.data.transforms import load_rgb
    grey = np.asarray(Image.open(CHURCH).convert("L"))
    eight, sixteen = tmp_path / "eight.png", tmp_path / "sixteen.png"
    Image.fromarray(grey).save(eight)
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen)  # the same picture, 16 bits per sample
    assert Image.open(sixteen).mode.startswith("I")
    assert np.array_equal(np.asarray(load_rgb(eight)), np.asarray(load_rgb(sixteen)))  # evaluation, predict
    assert torch.equal(read_image(str(eight)), read_image(str(sixteen)))  # training
    assert torch.equal(read_image(str(sixteen)).permute(1, 2, 0), torch.from_numpy(np.array(load_rgb(sixteen))))
    run = make_run_dir(tmp_path / "run", arch="resnet18", num_classes=10)
    code, out, _ = run_cli(capsys, "predict", eight, sixteen, "--model", "resnet18", "--checkpoint", run, "--json")
    result = json.loads(out)
    assert code == 0 and result[str(eight)] == result[str(sixteen)]
    code, out, _ = run_classify(capsys, onnx_model[0], eight, sixteen, "--json")
    result = json.loads(out)
    assert code == 0 and result[str(eight)] == result[str(sixteen)]


def test_the_onnx_classifier_refuses_bad_models_and_images_in_one_line(tmp_path, onnx_model, capsys, monkeypatch):
    model = onnx_model[0]
    empty, random_bytes, truncated = tmp_path / "empty.onnx", tmp_path / "random.onnx", tmp_path / "trunc.onnx"
    empty.write_bytes(b"")
    random_bytes.write_bytes(np.random.default_rng(0).bytes(5000))
    truncated.write_bytes(model.read_bytes()[:3000])
    for bad in (empty, random_bytes, truncated):
        code, _, err = run_classify(capsys, bad, CHURCH)
        assert code == 2 and "not a loadable ONNX model" in err and f"no {bad.name}.sha256" in err
    code, _, err = run_classify(capsys, tmp_path / "missing.onnx", CHURCH)
    assert code == 2 and "no such model file" in err
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    for image, message in ((text, "not a readable image"), (tmp_path, "is a folder"),
                           (tmp_path / "nope.jpg", "no such image file"), (tiny, "is 8x8: too small")):
        code, _, err = run_classify(capsys, model, image)
        assert code == 2 and message in err
        code, _, err = run_cli(capsys, "predict", image, "--model", "resnet18", "--checkpoint",
                               make_run_dir(tmp_path / "r", arch="resnet18", num_classes=10))
        assert code == 2, image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # CHURCH is then a decompression bomb
    code, _, err = run_classify(capsys, model, CHURCH)
    assert code == 2 and "too large to decode safely" in err
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", "resnet18", "--checkpoint", tmp_path / "r")
    assert code == 2 and "too large to decode safely" in err
    for topk in ("0", "-1"):
        assert run_classify(capsys, model, CHURCH, "--topk", topk)[0] == 2


def test_a_corrupted_onnx_file_is_refused_by_its_checksum(onnx_model, tmp_path, capsys):
    model, _ = onnx_model
    assert Path(f"{model}.sha256").read_text().split() == [hub.sha256_file(model), model.name]
    bad = tmp_path / "m.onnx"
    data = bytearray(model.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(b ^ 0x5A for b in data[middle:middle + 4096])
    bad.write_bytes(bytes(data))
    (tmp_path / "m.onnx.sha256").write_text(Path(f"{model}.sha256").read_text())
    code, _, err = run_classify(capsys, bad, CHURCH)
    assert code == 2 and "corrupt or was changed" in err
    with pytest.raises(hub.IntegrityError, match="corrupt or was changed"):
        run_onnx(bad, np.zeros((1, 3, 64, 64), np.float32))
    unverified = tmp_path / "plain.onnx"  # an intact copy without its sidecar: runs, and says it is unverified
    unverified.write_bytes(model.read_bytes())
    with pytest.warns(UserWarning, match="not verified"):
        run_onnx(unverified, np.zeros((1, 3, 64, 64), np.float32))


# ------------------------------------------------------------------------------------------ training
def test_every_numeric_knob_is_checked_before_anything_is_written(tmp_path, image_folder, capsys):
    out = tmp_path / "out"
    for flag, value, message in (("--epochs", 0, "--epochs must be >= 1, got 0"),
                                 ("--epochs", -1, "--epochs must be >= 1, got -1"),
                                 ("--lr", -1, "--lr must be > 0, got -1.0"),
                                 ("--batch-size", 0, "--batch-size must be >= 1"),
                                 ("--label-smoothing", 1.5, "--label-smoothing must be in [0, 1)"),
                                 ("--min-scale", 0, "--min-scale must be in (0, 1]"),
                                 ("--noise", 3, "--noise must be one of 0, 1, 5, 25, 50"),
                                 ("--model", "resnet19", "unknown model 'resnet19'")):
        code, _, err = run_cli(capsys, "train", "--data", image_folder, "--out", out, flag, value)
        assert code == 2 and message in err, (flag, err)
        assert not out.exists()
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "nowhere", "--out", out)
    assert code == 2 and not out.exists()


def test_resume_after_a_kill_before_the_final_weights_finishes_the_outputs(tmp_path, image_folder, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "resnet18", "--data", image_folder, "--out", out, "--epochs", "1", "--batch-size",
            "4", "--image-size", "32", "--workers", "0", "--no-progress"]
    assert run_cli(capsys, *args)[0] == 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (out / "model.safetensors").unlink()  # killed between last.pt and the final files
    (out / "config.json").unlink()
    assert run_cli(capsys, *args, "--resume")[0] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"] == history[-1] and config["metrics"]["epoch"] == 1
    assert config["weights_sha256"] == hub.sha256_file(out / "model.safetensors")


def test_a_checkpoint_missing_keys_is_a_clear_error(tmp_path, image_folder, capsys):
    from convtwist_zoo.training.checkpoint import CHECKPOINT_FORMAT
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "epoch": 1}, out / "last.pt")
    code, _, err = run_cli(capsys, "train", "--data", image_folder, "--out", out, "--resume", "--batch-size", "4")
    assert code == 2 and "lacks config, model, optimizer, rng" in err


def test_an_empty_class_folder_names_its_split_and_path(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs")
    (data / "val" / "c1").rename(data / "val" / "c1-moved")
    (data / "val" / "c1").mkdir()
    for p in (data / "val" / "c1-moved").iterdir():
        p.unlink()
    (data / "val" / "c1-moved").rmdir()
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", tmp_path / "o", "--batch-size", "4")
    assert code == 2 and f"class folder(s) c1 in {data / 'val'} hold no images" in err


@pytest.mark.parametrize("kind", ["not-gzip", "traversal", "link"])
def test_a_bad_dataset_archive_is_a_clear_error(kind, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVTWIST_ZOO_CACHE", str(tmp_path / "cache"))
    archives = tmp_path / "archives"
    archives.mkdir()
    path = archives / "imagewoof2-160.tgz"
    if kind == "not-gzip":
        path.write_bytes(b"PK\x03\x04 a zip, not a gzip tar")
    else:
        with tarfile.open(path, "w:gz") as tar:
            member = tarfile.TarInfo("imagewoof2-160/../../evil.txt" if kind == "traversal" else
                                     "imagewoof2-160/train/link")
            if kind == "link":
                member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(member)
            else:
                member.size = 4
                tar.addfile(member, io.BytesIO(b"evil"))
    code, _, err = run_cli(capsys, "train", "--data", "imagewoof", "--data-dir", archives, "--out", tmp_path / "o")
    expected = "not a readable gzip tar archive" if kind == "not-gzip" else "holds an unsafe member"
    assert code == 2 and expected in err and str(path) in err
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ export and predict
def test_export_refuses_bad_outputs_and_sizes_before_working(tmp_path, capsys):
    for args, message in (((-1, "-o", tmp_path), "is a folder"),
                          ((-1, "-o", "/proc/x.onnx"), "does not take new files"),
                          ((-1, "-o", tmp_path / "no" / "x.onnx"), "does not exist"),
                          (("--image-size", "-32", "-o", tmp_path / "x.onnx"), "at least 32"),
                          (("--image-size", "128", "128", "128", "-o", tmp_path / "x.onnx"), "S or H W")):
        code, _, err = run_cli(capsys, "export", "resnet18", *[a for a in args if a != -1])
        assert code == 2 and message in err, (args, err)
    assert not (tmp_path / "x.onnx").exists()


def test_predict_topk_must_be_positive(capsys):
    for topk in ("0", "-1"):
        code, _, err = run_cli(capsys, "predict", CHURCH, "--topk", topk)
        assert code == 2 and "--topk: must be >= 1" in err


def test_the_offline_error_names_the_command_line_flag(tiny_hub, hf_env, monkeypatch, capsys):
    import huggingface_hub.constants as c
    register_spec(tiny_hub[1], monkeypatch)
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    code, _, err = run_cli(capsys, "predict", CHURCH, "--model", NAME)
    assert code == 2 and "--checkpoint FOLDER" in err


# ------------------------------------------------------------------------------------------ atomic writes
def test_stale_temporaries_are_removed_and_outputs_get_the_umask_mode(tmp_path):
    target = tmp_path / "model.safetensors"
    dead = tmp_path / ".model.safetensors.999999999-abc.tmp"  # no such process
    live = tmp_path / f".model.safetensors.{os.getppid()}-def.tmp"  # a writer still running
    old = tmp_path / ".model.safetensors.xyz.tmp"  # the former naming, a day old
    for p in (dead, live, old):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 86400, time.time() - 86400))
    previous = os.umask(0o022)
    try:
        atomic.write_text_atomic(target, "done")
    finally:
        os.umask(previous)
    assert target.read_text() == "done" and not dead.exists() and not old.exists() and live.exists()
    assert target.stat().st_mode & 0o777 == 0o644


def test_more_commands_refuse_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    for args, message in ((["eval", "--checkpoint", tmp_path], "lacks architecture"),
                          (["eval", "--checkpoint", tmp_path / "nope"], "is not a run folder"),
                          (["flow", "--steps", "-1"], "--steps: must be >= 1"),
                          (["eval", "--model", "resnet18.imagenette", "--crop-pct", "1.5"], "--crop-pct must be in (0, 1]"),
                          (["download", "imagenette", "--archive", "../../etc"], "is not a imagenette archive"),
                          (["leaderboard", "table", tmp_path / "none.jsonl"], "no results file"),
                          (["leaderboard", "table", "--results", tmp_path / "gone.jsonl"],
                           f"no results file {tmp_path / 'gone.jsonl'}"),
                          (["leaderboard", "run", "--models", "xresnet18", "--seeds", "0"], "--seeds: must be >= 1"),
                          (["leaderboard", "run", "--models", "xresnet18", "--results", tmp_path],
                           f"--results {tmp_path} is a folder"),
                          (["finetune", "--model", "resnet18", "--data", tmp_path], "finetune needs --pretrained")):
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and message in err, (args, err)


def test_leaderboard_refuses_a_bad_knob_before_any_run_or_detaching(tmp_path, capsys):
    runs = tmp_path / "runs"
    base = ["leaderboard", "run", "--models", "xresnet18", "convtwist_xresnet18", "--runs", runs,
            "--results", tmp_path / "rows.jsonl"]
    for extra, message in ((["--lr", "foo=1e-3"], "'foo' is not one of --models (xresnet18, convtwist_xresnet18)"),
                           (["--lr", "xresnet18=1e-3"], "no peak lr for convtwist_xresnet18"),
                           (["--lr", "fast"], "--lr 'fast' is not a number"),
                           (["--lr", "-1"], "--lr must be > 0, got -1.0"),
                           (["--image-size", "16"], "--image-size must be >= 32, got 16"),
                           (["--model-args", "maxblur=true,bogus=1"], "xresnet18 has no option 'bogus'; its options: "
                                                                      "act_layer, drop_path_rate, drop_rate, in_chans, "
                                                                      "maxblur, sa, wide_stem"),
                           (["--model-args", "bogus=1", "--background"], "xresnet18 has no option 'bogus'"),
                           (["--probe", "--batch-size", "0"], "--batch-size must be >= 1, got 0")):
        code, out, err = run_cli(capsys, *base, *extra)
        assert code == 2 and message in err and "training" not in out, (extra, out, err)
    assert not runs.exists()  # nothing started, nothing detached


def test_an_unreadable_image_met_by_a_loader_worker_ends_in_one_line(tmp_path, image_folder, capsys):
    (image_folder / "train" / "c0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    code, _, err = run_cli(capsys, "train", "--model", "resnet18", "--data", image_folder, "--out", tmp_path / "run",
                           "--epochs", "1", "--batch-size", "25", "--image-size", "32", "--workers", "1", "--no-amp")
    bar, message = err.strip().rsplit("\n", 1)  # the progress bar ends its line before the error's one line
    assert code == 2 and bar.startswith("epoch 1/1:") and "DataLoader worker" not in err, err
    assert message.startswith("convtwist-zoo train: error: cannot read image ") and "broken.jpg" in message
    assert message.endswith("Remove or replace the file.")


def test_train_refuses_an_undeclared_model_option_in_one_line_before_reading_data(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "xresnet18", "--model-args", "maxblur=true,bogus=1",
                           "--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert code == 2 and "xresnet18 has no option 'bogus'; its options: act_layer," in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
