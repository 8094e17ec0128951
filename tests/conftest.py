"""Shared fixtures: tiny checkpoints, a Hub-style folder, an isolated HF cache and the loopback Hub server."""
from __future__ import annotations

import contextlib
import functools
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from convtwist_zoo.host import cpuinfo_fields, has_native_bf16

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # hub_server
SHARED_DATA = ROOT.parent / "shared" / "data"


def make_run_dir(folder: Path, arch: str = "convtwist_resnet18", num_classes: int = 3, seed: int = 0,
                 data: str = "tinyset", class_ids=None, class_names=None) -> Path:
    """A finished-run folder (model.safetensors + config.json) with random weights, as `train` writes it."""
    from convtwist_zoo import create_model
    from convtwist_zoo.training import TrainConfig
    from convtwist_zoo.training.outputs import write_final

    torch.manual_seed(seed)
    model = trained_like(create_model(arch, num_classes=num_classes), seed)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(model=arch, data=data, epochs=1)
    ids = class_ids or [f"c{i}" for i in range(num_classes)]
    names = class_names or [f"class {i}" for i in range(num_classes)]
    write_final(folder, model, cfg, ids, names, {"top1": 50.0}, trained_on="test machine")
    return folder


def run_cli(capsys, *args):
    """``convtwist-zoo ARGS`` in this process (no interpreter start-up): (exit status, stdout, stderr). A bad input
    must end in one line, never a traceback."""
    from convtwist_zoo.cli import main
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def run_cli_process(*args, env=None):
    """``python -m convtwist_zoo ARGS`` in a new process, as a user runs it (extra ``env`` on top of this one's)."""
    import os
    import subprocess
    return subprocess.run([sys.executable, "-m", "convtwist_zoo", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


@contextlib.contextmanager
def one_thread():
    """Torch on one thread inside the block: a run here then matches a child started with OMP_NUM_THREADS=1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def one_per_architecture(names) -> list:
    """One checkpoint name of each architecture (the last tag in sorted order): another dataset's checkpoint of the
    same architecture has the same graph with other weights."""
    return sorted({name.split(".")[0]: name for name in sorted(names)}.values())


def result_row(model: str, seed: int, top1: float, lr: float = 4e-3, model_args: str = "", dataset: str = "imagewoof",
               epochs: int = 5, image_size: int = 128, amp: bool = True, recipe: dict | None = None, **extra) -> dict:
    """A leaderboard results row whose recipe says what its fields say (the run's identity); ``recipe`` overrides
    knobs of it."""
    return {"model": model, "model_args": model_args, "dataset": dataset, "image_size": image_size, "epochs": epochs,
            "seed": seed, "lr": lr, "top1": top1, "top5": 99.0, **extra,
            "recipe": {"model": model, "model_args": model_args, "data": dataset, "seed": seed, "lr": lr,
                       "epochs": epochs, "image_size": image_size, "amp": amp, "label_smoothing": 0.1,
                       **(recipe or {})}}


def seed_and_ours(ni, nf, stride, seed=0, dtype=torch.float32):
    """The seed's reference module with random kernels, and a ConvTwist loaded from its state dict."""
    import copy

    from convtwist_zoo import ConvTwist
    from convtwist_zoo.layers.reference import SeedConvTwist
    torch.manual_seed(seed)
    ref = SeedConvTwist(ni, nf, stride).to(dtype)
    # random (not just antisymmetric-at-init) kernels at Conv2d's scale: the seed antisymmetrises them in
    # forward, we on load
    with torch.no_grad():
        for conv in (ref.conv, ref.conv_x, ref.conv_y):
            conv.weight.normal_(0, (9 * ni) ** -0.5)
    ours = ConvTwist(ni, nf, stride).to(dtype)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))
    return ref, ours


@pytest.fixture(scope="session")
def tiny_hub(tmp_path_factory):
    """A ``hub/``-style folder with one staged checkpoint ``convtwist_resnet18.tinyset`` and its spec."""
    from convtwist_zoo.release.staging import stage_run

    root = tmp_path_factory.mktemp("zoo")
    run = make_run_dir(root / "run")
    hub_root = root / "hub"
    spec = stage_run(run, hub_root, tag="tinyset", default=False)
    return hub_root, spec


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """An empty Hugging Face cache and no repo hub/ folder, so resolution must go through the cache/network."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("CONVTWIST_ZOO_HUB_DIR", str(tmp_path / "no-hub-here"))
    monkeypatch.setenv("CONVTWIST_ZOO_HF_ORG", "zoo-test")
    return cache


@pytest.fixture
def served_tiny_repo(tiny_hub, hf_env, tmp_path, monkeypatch):
    """The loopback Hub serving a copy of the tiny repo as zoo-test/convtwist_resnet18.tinyset; ``.repo`` is the
    served folder (tests corrupt or truncate it) and ``.requests`` what was asked."""
    import shutil

    import huggingface_hub.constants as c
    from hub_server import HubServer

    name = tiny_hub[1].name
    repo = tmp_path / "served" / name
    shutil.copytree(tiny_hub[0] / name, repo)
    with HubServer({f"zoo-test/{name}": repo}, tags=[tiny_hub[1].revision]) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        monkeypatch.setattr(c, "ENDPOINT", srv.url)
        monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", srv.url + "/{repo_id}/resolve/{revision}/{filename}")
        srv.repo = repo
        yield srv


@pytest.fixture
def spec(tiny_hub, monkeypatch):
    """The tiny staged checkpoint's spec, registered for the test."""
    return register_spec(tiny_hub[1], monkeypatch)


def register_spec(spec, monkeypatch):
    from convtwist_zoo.models import _pretrained as specs
    monkeypatch.setitem(specs._PRETRAINED, spec.name, spec)
    return spec


def load_json(path):
    return json.loads(Path(path).read_text())


def make_image_folder(root: Path, classes=("c0", "c1", "c2"), per_class=(8, 4), size=(40, 48), seed=0) -> Path:
    """An ImageFolder tree ``root/{train,val}/<class>/*.png`` of generated images whose colour depends on the class
    (so a model can learn it): small enough for tests that train."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val"), per_class):
        for k, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.zeros((*size, 3), dtype=np.float32)
                base[..., k % 3] = 160
                noise = rng.normal(0, 40, size=(*size, 3))
                img = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{cls}_{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "imgs")


def trained_like(model, seed=0):
    """Random weights with non-trivial BatchNorm statistics (as after training), in eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.2, 0.8)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


ARCHIVES = {"imagenette": "imagenette2-160sq.tgz", "imagewoof": "imagewoof2-160.tgz"}
# bf16 autocast where the CPU computes bf16 in hardware, else fp32 (emulated bf16 trains many times slower): for the
# training tests whose subject is not the precision
FAST_AMP = has_native_bf16(cpuinfo_fields())
FAST_AMP_FLAG = "--amp" if FAST_AMP else "--no-amp"


@functools.lru_cache(maxsize=None)
def val_sample_by_class(dataset: str, per_class: int = 20) -> dict:
    """{wnid: the first ``per_class`` validation images of that class}, read straight from the shared archive (no
    extraction): 200 real images, the same every run."""
    from PIL import Image
    path = SHARED_DATA / ARCHIVES[dataset]
    if not path.exists():
        pytest.skip(f"{path} not here")
    picked: dict[str, list] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[1] == "val":
                images = picked.setdefault(parts[2], [])
                if len(images) < per_class:
                    images.append(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
            if len(picked) == 10 and all(len(v) == per_class for v in picked.values()):
                break
    return dict(sorted(picked.items()))


def val_sample(dataset: str, per_class: int = 20) -> tuple:
    """The images of `val_sample_by_class`, class by class."""
    return tuple(im for images in val_sample_by_class(dataset, per_class).values() for im in images)


@pytest.fixture
def tiny_fastai(tmp_path, monkeypatch):
    """A fake 'imagewoof' dataset: a fast.ai-layout archive with 3 classes, its csv, and matching split sizes."""
    from convtwist_zoo import data as data_lib
    root = make_image_folder(tmp_path / "src" / "imagewoof2-160", classes=("n1", "n2", "n3"), per_class=(4, 2))
    rows = ["path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid"]
    for p in sorted((root / "train").rglob("*.png")):
        rel = p.relative_to(root).as_posix()
        cls = p.parent.name
        noisy = "n3" if p.name.endswith("_0.png") else cls  # the 5% column relabels every *_0 image
        rows.append(f"{rel},{cls},{cls},{noisy},{noisy},{noisy},False")
    (root / "noisy_imagewoof.csv").write_text("\n".join(rows) + "\n")
    archives = tmp_path / "archives"
    archives.mkdir()
    with tarfile.open(archives / "imagewoof2-160.tgz", "w:gz") as tar:
        tar.add(root, arcname="imagewoof2-160")
    info = data_lib.DatasetInfo("imagewoof", ("imagewoof2-160",), ("n1", "n2", "n3"), ("one", "two", "three"),
                                {"train": 12, "val": 6})
    monkeypatch.setitem(data_lib.DATASETS, "imagewoof", info)
    monkeypatch.setenv("CONVTWIST_ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CONVTWIST_DATA", raising=False)
    return archives
