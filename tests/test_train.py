"""Training: a run on generated images, exact resume after SIGKILL, foreign checkpoints, fine-tuning, plots."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file

from conftest import FAST_AMP, FAST_AMP_FLAG, ROOT, make_image_folder, one_thread, run_cli_process
from convtwist_zoo.cli import main
from convtwist_zoo.training import loop as training
from convtwist_zoo.host import cpu_name, cpuinfo_fields, has_native_bf16
from convtwist_zoo.training import TrainConfig, train
from convtwist_zoo.training.checkpoint import CheckpointError
from convtwist_zoo.training.schedule import add_lookahead

TINY = dict(image_size=32, batch_size=8, epochs=2, workers=0, progress=False, warmup_epochs=0.5, amp=FAST_AMP)


def test_train_writes_checkpoint_metrics_weights_and_config(image_folder, tmp_path):
    out = tmp_path / "run"
    metrics = train(TrainConfig(model="convtwist_resnet18", data=str(image_folder), out=str(out), **TINY))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) >= {"epoch", "train_loss", "val_loss", "top1", "top5", "lr", "seconds", "samples_per_s"}
    assert metrics == rows[-1] and 0 <= metrics["top1"] <= 100
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "convtwist_resnet18" and config["class_ids"] == ["c0", "c1", "c2"]
    assert config["input_size"] == [3, 32, 32] and config["recipe"]["epochs"] == 2
    if torch.cuda.is_available():
        assert config["trained_on"] == torch.cuda.get_device_name(0)
    else:
        assert config["trained_on"].startswith("CPU (") and config["trained_on"].endswith(f"{os.cpu_count()} cores)")
    weights = load_file(out / "model.safetensors")
    assert weights["fc.weight"].shape == (3, 512)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["format"].startswith("convtwist-zoo/")
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        train(TrainConfig(model="convtwist_resnet18", data=str(image_folder), out=str(out), **TINY))
    (out / "model.safetensors").unlink()  # killed before its final weights: only --resume continues it
    with pytest.raises(FileExistsError, match="already holds a finished run .config.json"):
        train(TrainConfig(model="convtwist_resnet18", data=str(image_folder), out=str(out), **TINY))


def test_cpu_name_gives_the_model_and_its_bf16_instructions_from_cpuinfo():
    amx = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx512_bf16 amx_bf16 amx_tile\n"
    zen = "processor\t: 0\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: fpu avx512_bf16\n"
    zen3 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n"
    assert cpu_name(cpuinfo_fields(amx)) == "Intel Xeon Processor, AMX"
    assert cpu_name(cpuinfo_fields(zen)) == "AMD EPYC 9R14 96-Core Processor, AVX512-BF16"
    assert cpu_name(cpuinfo_fields(zen3)) == "AMD EPYC"
    assert cpu_name(cpuinfo_fields("")) == ""
    # only the first processor's block counts
    assert cpuinfo_fields(zen + "\n" + amx)["model name"] == "AMD EPYC 9R14 96-Core Processor"


def test_bf16_autocast_on_a_cpu_without_bf16_instructions_warns_before_training(monkeypatch, image_folder):
    amx = "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
    zen4 = "model name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    zen3 = "model name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    assert [has_native_bf16(cpuinfo_fields(t)) for t in (amx, zen4, zen3, arm, "")] == [True, True, False, True, True]

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop
    monkeypatch.setattr(training, "_data", stop)  # what comes after the check is not this test's business
    monkeypatch.setattr(training, "cpuinfo_fields", lambda: cpuinfo_fields(zen3))
    cfg = {k: v for k, v in TINY.items() if k != "amp"} | dict(model="convtwist_resnet18", data=str(image_folder),
                                                              out="unused")
    with pytest.warns(UserWarning, match="no bf16 instructions .* pass --no-amp"), pytest.raises(Stop):
        train(TrainConfig(**cfg, amp=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Stop):
            train(TrainConfig(**cfg, amp=False))
        monkeypatch.setattr(training, "cpuinfo_fields", lambda: cpuinfo_fields(zen4))
        with pytest.raises(Stop):
            train(TrainConfig(**cfg, amp=True))


def test_active_clock_leaves_out_the_time_the_process_was_stopped():
    # a child times a span during which it is stopped for 2.5 s; ActiveClock must count only the time it ran
    # host.py needs only the standard library: the child loads that file alone, not the package (torch)
    load_host = ("import importlib.util\nspec = importlib.util.spec_from_file_location('host', "
                 f"{str(ROOT / 'convtwist_zoo' / 'host.py')!r})\nhost = importlib.util.module_from_spec(spec)\n"
                 "spec.loader.exec_module(host)\nActiveClock = host.ActiveClock\n")
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n" + load_host +
         "with ActiveClock(tick=0.05, gap=0.5) as c:\n    t0 = time.monotonic()\n    print('in', flush=True)\n"
         "    sys.stdin.readline()\nprint(round(time.monotonic() - t0, 2), round(c.seconds(), 2), round(c.paused, 2))"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "in"
    time.sleep(0.3)
    child.send_signal(signal.SIGSTOP)
    time.sleep(2.5)
    child.send_signal(signal.SIGCONT)
    time.sleep(0.3)
    wall, active, paused = map(float, child.communicate("go\n", timeout=30)[0].split())
    assert wall >= 3.0
    assert 2.2 <= paused <= 2.6, paused
    assert active == pytest.approx(wall - paused, abs=0.02) and active < 1.0


def test_resume_after_sigkill_gives_the_same_weights(tmp_path):
    data = make_image_folder(tmp_path / "imgs", per_class=(12, 4))
    args = ["train", "--model", "resnet18", "--data", str(data), "--image-size", "48", "--batch-size", "8",
            "--epochs", "3", "--workers", "1", "--no-progress", "--warmup-epochs", "0.5", FAST_AMP_FLAG]
    env = {"OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    with one_thread():  # the uninterrupted run in this process, with the children's one thread
        assert main(args + ["--out", str(full)]) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "convtwist_zoo", *args, "--out", str(killed)], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    assert proc.poll() is None, "the run ended before it could be killed mid-way"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [json.loads(line)["epoch"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert done == list(range(1, len(done) + 1)) and len(done) < 3
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == len(done)
    assert not (killed / "model.safetensors").exists()
    result = run_cli_process(*args, "--out", killed, "--resume", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed" in result.stdout
    a, b = load_file(full / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_foreign_or_corrupt_checkpoints(image_folder, tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), lookahead=0, **{**TINY, "epochs": 1}))
    with pytest.raises(CheckpointError, match="belongs to another run.*model: 'resnet18' in the checkpoint, "
                                              "'convtwist_resnet18' in this command"):
        train(TrainConfig(model="convtwist_resnet18", data=str(image_folder), out=str(out), resume=True, **TINY))
    # another schedule would not end with the weights of an uninterrupted run
    with pytest.raises(CheckpointError, match=r"belongs to another run \(epochs: 1 in the checkpoint, 3 in this "
                                              r"command; lookahead: 0 in the checkpoint, 6 in this command\)"):
        train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), resume=True, lookahead=6,
                          **{**TINY, "epochs": 3}))
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable convtwist-zoo checkpoint"):
        train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), resume=True, **TINY))
    torch.save({"state_dict": {}}, out / "last.pt")
    with pytest.raises(CheckpointError, match="was not written by `convtwist-zoo train`"):
        train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), resume=True, **TINY))


def test_resume_compares_the_whole_recipe_a_checkpoint_has():
    from convtwist_zoo.training.checkpoint import _check_resumable
    saved = asdict(TrainConfig(model="resnet18", data="imagewoof", lookahead=0))
    _check_resumable(saved, TrainConfig(model="resnet18", data="imagewoof", lookahead=0), [], None)
    with pytest.raises(CheckpointError, match=r"\(lookahead: 0 in the checkpoint, 6 in this command\)"):
        _check_resumable(saved, TrainConfig(model="resnet18", data="imagewoof", lookahead=6), [], None)
    # every knob of the recipe, not a chosen few: each of these once resumed silently and config.json lied
    for knob, value in [("amp", False), ("label_smoothing", 0.0), ("augment", "trivial"), ("crop_pct", 1.0),
                        ("ema", 0.9), ("weight_decay", 0.0), ("min_scale", 0.08), ("pretrained", "imagenette")]:
        with pytest.raises(CheckpointError, match=rf"\({knob}: .* in the checkpoint, .* in this command\)"):
            _check_resumable(saved, TrainConfig(model="resnet18", data="imagewoof", lookahead=0, **{knob: value}),
                             [], None)
    # where and how verbosely a run goes is no part of it
    _check_resumable(saved, TrainConfig(model="resnet18", data="imagewoof", lookahead=0, workers=3, progress=False,
                                        compile=True, out="elsewhere", data_dir="/data"), [], None)
    # the data archive's hash, where both sides know it
    hashed = {**saved, "provenance": {"data_sha256": "a" * 64}}
    _check_resumable(hashed, TrainConfig(model="resnet18", data="imagewoof", lookahead=0), [], "a" * 64)
    with pytest.raises(CheckpointError, match="data_sha256"):
        _check_resumable(hashed, TrainConfig(model="resnet18", data="imagewoof", lookahead=0), [], "b" * 64)
    older = {k: v for k, v in saved.items() if k != "model_args"}  # written before the knob existed
    _check_resumable(older, TrainConfig(model="resnet18", data="imagewoof", lookahead=0), [], None)


def test_resuming_a_finished_run_is_a_no_op_that_says_so(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), lookahead=0, **{**TINY, "epochs": 1}))
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), lookahead=0, resume=True,
                      **{**TINY, "epochs": 1}))
    assert "finished all 1 epochs already: nothing to resume, nothing rewritten" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    # an EMA that never trained must not replace the finished weights
    with pytest.raises(CheckpointError, match=r"ema: 0.0 in the checkpoint, 0.9 in this command"):
        train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), lookahead=0, resume=True, ema=0.9,
                          **{**TINY, "epochs": 1}))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_a_run_records_its_provenance(image_folder, tmp_path):
    import torch as _torch
    out = tmp_path / "run"
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), lookahead=0, **{**TINY, "epochs": 1}))
    config = json.loads((out / "config.json").read_text())
    (segment,) = config["provenance"]["segments"]
    assert segment["from_epoch"] == 1 and segment["torch"] == str(_torch.__version__)
    assert segment["hardware"] == config["trained_on"]
    assert config["provenance"]["data_sha256"] is None  # a folder has no archive to hash
    assert set(segment) >= {"code_commit", "code_dirty", "package_version"}


def test_train_image_size_crops_training_batches_and_evaluates_at_image_size(image_folder, tmp_path, monkeypatch):
    import convtwist_zoo.training.loop as train_mod
    seen = {True: set(), False: set()}  # model.training -> input sizes

    def recording_create_model(*args, **kwargs):
        model = train_mod.create_model.__wrapped__(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen[m.training].add(tuple(inp[0].shape[-2:])))
        return model

    recording_create_model.__wrapped__ = train_mod.create_model
    monkeypatch.setattr(train_mod, "create_model", recording_create_model)
    out = tmp_path / "run"
    cfg = {**TINY, "epochs": 1, "image_size": 64}
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), train_image_size=32, **cfg))
    assert seen == {True: {(32, 32)}, False: {(64, 64)}}
    config = json.loads((out / "config.json").read_text())
    assert config["input_size"] == [3, 64, 64] and config["recipe"]["train_image_size"] == 32
    with pytest.raises(CheckpointError, match="train_image_size: 32 in the checkpoint, 48 in this command"):
        train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), train_image_size=48, resume=True,
                          **{**cfg, "epochs": 2}))


def _lookahead_sgd(w, k=3, alpha=0.5):
    opt = torch.optim.SGD([w], lr=0.1)
    add_lookahead(opt, k, alpha)
    return opt


def _quadratic_steps(w, opt, n, c=torch.tensor([1.0, 3.0])):
    for _ in range(n):
        opt.zero_grad()
        (c * w ** 2).sum().backward()
        opt.step()


def test_lookahead_follows_its_formula_and_resumes_from_the_optimizer_state():
    c, lr, alpha = torch.tensor([1.0, 3.0]), 0.1, 0.5
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = _lookahead_sgd(w, k=3, alpha=alpha)
    # by hand: plain SGD steps multiply w by (1 - 2 lr c); the slow weights start at step 3 and, at steps 6 and 9,
    # move alpha of the way to the fast ones, which restart there
    fast, slow = torch.tensor([1.0, -2.0]), None
    for step in range(1, 10):
        fast = fast * (1 - 2 * lr * c)
        if step == 3:
            slow = fast.clone()
        elif step % 3 == 0:
            slow = slow + alpha * (fast - slow)
            fast = slow.clone()
        _quadratic_steps(w, opt, 1)
        torch.testing.assert_close(w.detach(), fast, rtol=1e-6, atol=1e-7, msg=f"step {step}")
    assert not torch.equal(w.detach(), torch.tensor([1.0, -2.0]) * (1 - 2 * lr * c) ** 9)  # it did something

    # a state_dict taken mid-period carries the slow weights and the step count
    a = torch.tensor([1.0, -2.0], requires_grad=True)
    opt_a = _lookahead_sgd(a)
    _quadratic_steps(a, opt_a, 7)
    buf = io.BytesIO()  # through bytes, as last.pt does (a state_dict holds references to live tensors)
    torch.save(opt_a.state_dict(), buf)
    buf.seek(0)
    saved, a_at_7 = torch.load(buf, weights_only=True), a.detach().clone()
    b = a_at_7.clone().requires_grad_(True)
    opt_b = _lookahead_sgd(b)
    opt_b.load_state_dict(saved)
    _quadratic_steps(a, opt_a, 5)
    _quadratic_steps(b, opt_b, 5)
    assert torch.equal(a, b)
    # turned on when resuming from an optimizer state saved without it: counts from there
    c = torch.tensor([1.0, -2.0], requires_grad=True)
    plain = torch.optim.SGD([c], lr=0.1)
    _quadratic_steps(c, plain, 2)
    opt_c = _lookahead_sgd(c)
    opt_c.load_state_dict(plain.state_dict())
    _quadratic_steps(c, opt_c, 3)
    assert opt_c.param_groups[0]["lookahead_step"] == 3 and "lookahead_slow" in opt_c.state[c]
    with pytest.raises(ValueError, match="k >= 1"):
        add_lookahead(torch.optim.SGD([b], lr=0.1), 0)


def test_finetune_from_a_run_gets_a_new_head(image_folder, tmp_path):
    first = tmp_path / "first"
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(first), **{**TINY, "epochs": 1}))
    other = make_image_folder(tmp_path / "other", classes=("a", "b", "c", "d"), per_class=(4, 2))
    out = tmp_path / "tuned"
    before = load_file(first / "model.safetensors")
    with pytest.warns(UserWarning, match="classifier for 3 classes dropped"):
        train(TrainConfig(model="resnet18", data=str(other), out=str(out), checkpoint=str(first), freeze_epochs=1,
                          backbone_lr_mult=0.1, **{**TINY, "epochs": 1}))
    after = load_file(out / "model.safetensors")
    assert after["fc.weight"].shape == (4, 512)
    assert torch.equal(before["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])  # frozen for epoch 1


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch, capsys):
    from convtwist_zoo.cli import main
    monkeypatch.setenv("CONVTWIST_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("CONVTWIST_ZOO_CACHE", str(tmp_path / "cache"))
    assert main(["train", "--model", "resnet18", "--data", "imagewoof", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "dataset 'imagewoof' not found" in err and str(tmp_path / "empty") in err and "CONVTWIST_DATA" in err


def test_plot_writes_png(image_folder, tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), **{**TINY, "epochs": 1}))
    from convtwist_zoo.cli import main
    assert main(["plot", str(out)]) == 0
    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_augmentation_changes_every_epoch_with_workers(image_folder):
    """The training loader's worker processes see the current epoch: epoch 2's crops differ from epoch 1's (with
    persistent workers they would not, which is why the loader does not keep them)."""
    from torch.utils.data import DataLoader, SequentialSampler

    from convtwist_zoo import data as data_lib
    from convtwist_zoo.training.loop import make_train_loader
    train_base, _, _, _ = data_lib.build_datasets(str(image_folder))
    ds = data_lib.SeededTransformDataset(train_base, data_lib.train_transform(32), seed=0)

    def first_batches(loader):
        batches = []
        for epoch in range(2):
            ds.set_epoch(epoch)
            batches.append(next(iter(loader))[0])
        return batches
    ours = first_batches(make_train_loader(ds, SequentialSampler(ds), 4, workers=1))
    assert not torch.equal(ours[0], ours[1])
    persistent = first_batches(DataLoader(ds, batch_size=4, sampler=SequentialSampler(ds), num_workers=1,
                                          persistent_workers=True))
    assert torch.equal(persistent[0], persistent[1])  # the pitfall the loader avoids


def test_the_learning_curve_can_use_a_fixed_class_balanced_validation_subset(image_folder, tmp_path):
    from convtwist_zoo import data as data_lib
    _, val, _, _ = data_lib.build_datasets(str(image_folder))
    subset = data_lib.class_balanced_subset(val, 6)
    assert [val.targets[i] for i in subset.indices] == [0, 0, 1, 1, 2, 2]  # each class its share, first files first
    assert data_lib.class_balanced_subset(val, 6).indices == subset.indices  # fixed: no randomness
    assert data_lib.class_balanced_subset(val, 100) is val
    out = tmp_path / "run"
    train(TrainConfig(model="resnet18", data=str(image_folder), out=str(out), val_subset=6, **{**TINY, "epochs": 2}))
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["val_images"] for e in log] == [6, 6] and all(e["eval_seconds"] >= 0 for e in log)
    assert all(0 <= e["data_wait_seconds"] <= e["seconds"] for e in log)
    # how densely a run is measured is no part of its identity: it resumes under another subset size
    _check = __import__("convtwist_zoo.training.checkpoint", fromlist=["_check_resumable"])._check_resumable
    saved = asdict(TrainConfig(model="resnet18", data="imagewoof", val_subset=6))
    _check(saved, TrainConfig(model="resnet18", data="imagewoof", val_subset=0), [], None)
