"""Pretrained weights: every resolution path, integrity checks, the loopback Hub, torch.hub and publishing."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from convtwist_zoo import create_model
from convtwist_zoo.models._builder import load_pretrained
from convtwist_zoo.models._hub import IntegrityError, WeightsError, resolve_weights
from convtwist_zoo.models._pretrained import specs_in_folder as specs_from_hub
from convtwist_zoo.release.staging import publish_folder
from convtwist_zoo import get_transform, list_pretrained
from convtwist_zoo.models._registry import UnknownModelError

NAME = "convtwist_resnet18.tinyset"


def logits(model, seed=0):
    torch.manual_seed(seed)
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, 3, 64, 64))


@pytest.fixture
def server(spec, served_tiny_repo):
    """The loopback Hub serving the tiny repo, its spec registered."""
    return served_tiny_repo


def reference_model(tiny_hub):
    return load_pretrained("convtwist_resnet18", tiny_hub[0] / NAME)


def test_spec_from_staged_folder(tiny_hub):
    (spec,) = specs_from_hub(tiny_hub[0])
    assert spec.name == NAME and spec.num_classes == 3 and len(spec.sha256) == 64
    assert spec.class_names == ("class 0", "class 1", "class 2")
    weights = tiny_hub[0] / NAME / "model.safetensors"
    from safetensors import safe_open
    with safe_open(str(weights), "pt") as f:  # the hub copy is fp16
        assert f.get_tensor("conv1.weight").dtype == torch.float16
        assert f.metadata()["architecture"] == "convtwist_resnet18"


def test_save_fp16_in_place_halves_floats_only(tmp_path):
    from safetensors.torch import load_file, save_file
    from convtwist_zoo.release.staging import save_fp16
    path = tmp_path / "model.safetensors"
    w, steps = torch.randn(4, 3), torch.tensor([7, 8])
    save_file({"w": w, "bn.num_batches_tracked": steps}, str(path))
    save_fp16(path, path, architecture="x")
    state = load_file(str(path))
    assert state["w"].dtype == torch.float16 and torch.equal(state["w"], w.half())
    assert torch.equal(state["bn.num_batches_tracked"], steps)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it


def test_hub_dir_resolution_and_name_tag(tiny_hub, spec, monkeypatch):
    monkeypatch.setenv("CONVTWIST_ZOO_HUB_DIR", str(tiny_hub[0]))
    a = create_model(NAME)
    b = create_model("convtwist_resnet18", pretrained="tinyset")
    assert torch.equal(logits(a), logits(b))
    assert a.pretrained_spec == spec
    assert NAME in list_pretrained()
    assert get_transform(NAME)(torch.zeros(3, 200, 300, dtype=torch.uint8)).shape == (3, 128, 128)


def test_explicit_file_is_hash_checked_and_never_deleted(tiny_hub, spec, tmp_path):
    good = tiny_hub[0] / NAME / "model.safetensors"
    assert resolve_weights(spec, good) == good
    bad = tmp_path / "bad.safetensors"
    data = bytearray(good.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=spec.sha256) as e:
        create_model(NAME, pretrained_file=str(bad))
    assert str(bad) in str(e.value) and bad.exists()
    truncated = tmp_path / "short.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(IntegrityError, match="size 1000 bytes"):
        resolve_weights(spec, truncated)
    assert truncated.exists()


def test_download_then_cache_with_server_gone(tiny_hub, spec, hf_env, server):
    expected = logits(reference_model(tiny_hub))
    model = create_model(NAME)
    assert torch.equal(logits(model), expected)
    assert ("GET", f"/lfs-blob/zoo-test/{NAME}/model.safetensors") in server.requests
    cached = list(Path(hf_env).rglob("model.safetensors"))
    assert cached, "hf_hub_download should have filled the cache"
    server.stop()
    n = len(server.requests)
    again = create_model(NAME)  # from the cache: no request needed
    assert torch.equal(logits(again), expected) and len(server.requests) == n


def test_corrupt_download_refused_and_removed(tiny_hub, spec, hf_env, server):
    weights = server.repo / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="deleted from the Hugging Face cache"):
        create_model(NAME)
    leftovers = [p for p in Path(hf_env).rglob("*") if p.is_file() and p.stat().st_size > 1000]
    assert leftovers == []


def test_corrupt_cache_copy_is_replaced_by_fresh_download(tiny_hub, spec, hf_env, server):
    create_model(NAME)
    (blob,) = [p for p in Path(hf_env).rglob("*") if p.is_file() and "blobs" in p.parts]
    blob.write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = create_model(NAME)
    assert any("deleted from the Hugging Face cache" in str(w.message) for w in caught)
    assert torch.equal(logits(model), logits(reference_model(tiny_hub)))


def test_truncated_transfer_keeps_nothing(tiny_hub, spec, hf_env, server):
    server.truncate_to = 4096
    with pytest.raises(Exception):
        create_model(NAME)
    assert not any(p.is_file() and p.name == "model.safetensors" for p in Path(hf_env).rglob("*"))
    server.truncate_to = None
    assert torch.equal(logits(create_model(NAME)), logits(reference_model(tiny_hub)))


def test_offline_without_cache_says_how_to_get_it(spec, hf_env, monkeypatch):
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError) as e:
        create_model(NAME)
    text = str(e.value)
    assert "zoo-test/convtwist_resnet18.tinyset" in text and "hf download" in text
    assert "CONVTWIST_ZOO_HUB_DIR" in text and "pretrained_file=PATH" in text and "--checkpoint FOLDER" in text


def test_missing_repo_on_server(spec, hf_env, server, monkeypatch):
    monkeypatch.setenv("CONVTWIST_ZOO_HF_ORG", "someone-else")
    with pytest.raises(WeightsError, match="someone-else/convtwist_resnet18.tinyset"):
        create_model(NAME)


def test_registry_errors(spec):
    with pytest.raises(UnknownModelError, match="Did you mean 'convtwist_resnet50'.*Known models: convtwist_resnet18"):
        create_model("convtwist_resnet5O")
    with pytest.raises(UnknownModelError, match="available for convtwist_resnet18: .*tinyset"):
        create_model("convtwist_resnet18.nosuchtag")
    with pytest.raises(ValueError, match="asks for tag"):
        create_model(NAME, pretrained="other")


def test_torch_hub_load_local(tiny_hub, spec, monkeypatch):
    monkeypatch.setenv("CONVTWIST_ZOO_HUB_DIR", str(tiny_hub[0]))
    from convtwist_zoo.models._registry import list_models
    for name in list_models():  # one entrypoint per registry name
        assert torch.hub.load(str(ROOT), name, source="local", num_classes=5).fc.out_features == 5
    model = torch.hub.load(str(ROOT), "convtwist_resnet18", source="local", pretrained="tinyset")
    assert torch.equal(logits(model), logits(reference_model(tiny_hub)))


def test_publish_dry_run_and_refusal(tiny_hub, spec, tmp_path):
    files = publish_folder(tiny_hub[0] / NAME, dry_run=True)
    assert "model.safetensors" in files and "config.json" in files
    broken = tmp_path / NAME
    shutil.copytree(tiny_hub[0] / NAME, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(IntegrityError):
        publish_folder(broken, dry_run=True)


def test_hubconf_has_one_entrypoint_per_registered_architecture():
    import importlib.util

    from convtwist_zoo import list_models
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    public = sorted(n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_"))
    assert public == list_models()  # what torch.hub.list shows: generated from the registry
    assert "ConvTwist" in hubconf.convtwist_resnet18.__doc__ and "pathlib.Path" in hubconf.xresnet50.__doc__
