"""Every file the zoo writes has one writer at a time and is never overwritten unasked: run folders, results files,
the dataset cache, and atomic writes that respect an existing file's mode and links."""
from __future__ import annotations

import json
import os
import shutil
import threading
import time

import pytest

from conftest import ROOT, run_cli
from convtwist_zoo.files import atomic
from convtwist_zoo.files import locks
from convtwist_zoo import data as data_lib
from convtwist_zoo.training import TrainConfig, train

TINY = dict(epochs=1, batch_size=4, image_size=32, workers=0, progress=False, lookahead=0)


def _train_args(data, out, *extra):
    return ["train", "--model", "resnet18", "--data", data, "--out", out, "--epochs", "1", "--batch-size", "4",
            "--image-size", "32", "--workers", "0", "--no-progress", "--lookahead", "0", *extra]


def test_a_finished_run_whose_checkpoint_is_gone_is_not_overwritten(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), **TINY))
    (out / "last.pt").unlink()
    before = {name: (out / name).read_bytes() for name in ("model.safetensors", "config.json", "metrics.jsonl")}
    with pytest.raises(FileExistsError, match="already holds a finished run .model.safetensors, config.json, "
                                              "metrics.jsonl.; use another --out, or pass --overwrite"):
        train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), **TINY))
    code, _, err = run_cli(capsys, *_train_args(image_folder, out))
    assert code == 2 and "already holds a finished run" in err
    assert {name: (out / name).read_bytes() for name in before} == before
    # --resume cannot continue it either, and says why
    code, _, err = run_cli(capsys, *_train_args(image_folder, out, "--resume"))
    assert code == 2 and "no last.pt to resume from" in err
    # --overwrite is the explicit way: the old outputs go, a new run takes the folder
    code, _, _ = run_cli(capsys, *_train_args(image_folder, out, "--overwrite", "--seed", "3"))
    assert code == 0 and json.loads((out / "config.json").read_text())["recipe"]["seed"] == 3


def test_a_copy_of_a_hub_folder_is_not_trained_over(image_folder, tmp_path, capsys):
    hub_copy = tmp_path / "copy"
    shutil.copytree(ROOT / "hub" / "resnet18.imagewoof", hub_copy)
    before = {p.name: p.read_bytes() for p in hub_copy.iterdir()}
    code, _, err = run_cli(capsys, *_train_args(image_folder, hub_copy))
    assert code == 2 and f"{hub_copy} already holds a finished run (model.safetensors, config.json, metrics.jsonl)" in err
    assert {p.name: p.read_bytes() for p in hub_copy.iterdir() if p.name != ".train.lock"} == before


def test_two_trainings_into_one_folder_the_second_is_refused(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    with locks.hold_lock(out / ".train.lock", wait=False):  # as a first `train --out run` holds it
        code, _, err = run_cli(capsys, *_train_args(image_folder, out))
        assert code == 2 and f"another process (pid {os.getpid()}) is training into {out}" in err
        with pytest.raises(locks.BusyError, match="wait for it to finish, or use another --out"):
            train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), **TINY))
    assert not (out / "model.safetensors").exists()
    assert run_cli(capsys, *_train_args(image_folder, out))[0] == 0  # the lock went with its holder


def test_the_lock_rule_one_writer_at_a_time_whatever_the_file():
    held = []

    def hold(path):
        with locks.hold_lock(path, wait=True):
            held.append(("in", time.monotonic()))
            time.sleep(0.2)
            held.append(("out", time.monotonic()))

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        threads = [threading.Thread(target=hold, args=(os.path.join(d, ".x.lock"),)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [kind for kind, _ in held] == ["in", "out"] * 3  # never two inside at once


def test_two_preparations_of_one_dataset_extract_it_once_and_never_delete_the_others(tiny_fastai, monkeypatch):
    from convtwist_zoo.data import datasets
    calls, extract = [], datasets._extract

    def slow_extract(*args):
        calls.append(1)
        time.sleep(0.3)  # the window in which a second preparer used to delete the first's folder
        extract(*args)
    monkeypatch.setattr(datasets, "_extract", slow_extract)
    roots, errors = [], []

    def prepare():
        try:
            root = data_lib.prepare_dataset("imagewoof", tiny_fastai)
            roots.append(root)
            assert len(list((root / "train").rglob("*.png"))) == 12  # readable while the other one finishes
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=prepare) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(roots)) == 1 and len(calls) == 1


def test_a_killed_extractions_leftover_is_cleaned(tiny_fastai, tmp_path):
    data_dir = tmp_path / "cache" / "data"
    leftover = data_dir / ".imagewoof2-160.abc123"
    (leftover / "imagewoof2-160" / "train").mkdir(parents=True)
    (leftover / "imagewoof2-160" / "train" / "x.png").write_bytes(b"0" * 1000)
    root = data_lib.prepare_dataset("imagewoof", tiny_fastai)
    assert (root / ".complete").exists() and not leftover.exists()
    assert sorted(p.name for p in data_dir.iterdir()) == [".imagewoof2-160.lock", "imagewoof2-160"]


def test_an_atomic_write_keeps_the_files_mode_and_writes_through_a_link(tmp_path):
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    atomic.write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n" and target.stat().st_mode & 0o777 == 0o640
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    atomic.write_text_atomic(link, "through\n")
    assert link.is_symlink() and target.read_text() == "through\n" and target.stat().st_mode & 0o777 == 0o640
