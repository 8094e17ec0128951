"""Multi-process training: 2 gloo processes under torchrun equal one process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys

from safetensors.torch import load_file

from conftest import ROOT, make_image_folder, one_thread
from convtwist_zoo.cli import main


def test_torchrun_two_processes_match_single_process(tmp_path):
    data = make_image_folder(tmp_path / "imgs", per_class=(16, 2))
    common = ["train", "--model", "convtwist_resnet18", "--data", str(data), "--image-size", "32",
              "--batch-size", "8", "--epochs", "1", "--max-steps-per-epoch", "3", "--workers", "0", "--no-amp",
              "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with one_thread():  # the single-process run here, with each rank's one thread
        assert main(common + ["--out", str(tmp_path / "one")]) == 0
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                            "29533", "-m", "convtwist_zoo", *common, "--out", str(tmp_path / "two")],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert multi.returncode == 0, multi.stderr[-3000:]
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    moved = max((a[k].double()).abs().max().item() for k in a if k.endswith("running_mean"))
    assert moved > 0  # BN statistics were updated
    assert worst < 1e-4, worst
