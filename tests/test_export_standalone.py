"""export/classify_onnx.py works where torch cannot be imported, and agrees with PyTorch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch

from conftest import ROOT, trained_like
from convtwist_zoo import create_model
from convtwist_zoo.export.onnx import export_onnx
from convtwist_zoo.data.transforms import eval_transform
from convtwist_zoo.inference import open_image

IMAGES = sorted(str(p) for p in (ROOT / "convtwist_zoo" / "assets").glob("*.jpg"))


def test_classify_onnx_without_torch(tmp_path):
    model = trained_like(create_model("convtwist_resnet18", num_classes=10), seed=3)
    names = [f"class {i}" for i in range(10)]
    model.pretrained_config = {"class_ids": [f"c{i}" for i in range(10)], "class_names": names}
    onnx_path = tmp_path / "m.onnx"
    export_onnx(model, onnx_path, (128, 96), compare_unfolded=False)
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is not available in this deployment')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "not available" in check.stderr
    result = subprocess.run([sys.executable, str(ROOT / "export" / "classify_onnx.py"), str(onnx_path), *IMAGES,
                             "--json", "--topk", "3"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    tf = eval_transform((128, 96))
    batch = torch.stack([tf(open_image(p)) for p in IMAGES])
    with torch.no_grad():
        probs = model(batch).softmax(1).numpy()
    for path, p in zip(IMAGES, probs):
        assert got[path][0]["index"] == int(np.argmax(p))
        assert got[path][0]["class_name"] == names[int(np.argmax(p))]
        assert abs(got[path][0]["probability"] - float(p.max())) < 1e-3
