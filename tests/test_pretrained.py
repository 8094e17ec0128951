"""Checkpoint specs: one store (the model files' ``default_cfgs``), an explicit default tag per architecture, a
revision pinned to the weights, and every Hub folder's config.json derived from its spec."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT
from convtwist_zoo import create_model, default_tag, list_pretrained
from convtwist_zoo.models import get_pretrained, resnet, xresnet
from convtwist_zoo.models._hub import WeightsError
from convtwist_zoo.models._pretrained import PretrainedSpec, checkpoint, pinned_revision, register_checkpoints


def test_the_model_files_declare_every_checkpoint_and_nothing_else_does():
    declared = {**resnet.default_cfgs, **xresnet.default_cfgs}
    assert sorted(declared) == list_pretrained() == sorted(p.name for p in (ROOT / "hub").iterdir() if p.is_dir())
    assert not (ROOT / "convtwist_zoo" / "pretrained.json").exists()
    spec = declared["convtwist_xresnet18.imagewoof"]
    assert (spec.dataset, spec.model_args, spec.num_classes, spec.class_names[0]) == \
        ("imagewoof", "maxblur=true", 10, "Shih-Tzu")


def test_each_architecture_declares_one_default_and_pretrained_true_gives_it():
    for arch in ("resnet18", "resnet50", "convtwist_resnet18", "convtwist_resnet50", "xresnet18", "xresnet50",
                 "convtwist_xresnet18", "convtwist_xresnet50"):
        assert default_tag(arch) == "imagenette" and get_pretrained(arch).name == f"{arch}.imagenette"
    assert default_tag("xresnet34") is None  # no checkpoint yet
    assert create_model("resnet18", pretrained=True).pretrained_spec.name == "resnet18.imagenette"
    sha = "0" * 64
    with pytest.raises(AssertionError, match="declares 2 default checkpoints"):
        register_checkpoints({"resnet18.a": checkpoint("imagewoof", sha, 1, default=True),
                              "resnet18.b": checkpoint("imagenette", sha, 1, default=True)})
    with pytest.raises(AssertionError, match="declares 0 default checkpoints"):
        register_checkpoints({"resnet18.c": checkpoint("imagewoof", sha, 1)})


def test_a_spec_pins_the_revision_its_weights_were_published_under():
    for name in list_pretrained():
        spec = get_pretrained(*name.split("."))
        assert spec.revision == pinned_revision(spec.sha256) == f"weights-{spec.sha256[:16]}"
    assert PretrainedSpec("resnet18", "x", "ab" * 32, revision="v2").revision == "v2"  # an explicit pin stays


def test_a_hub_that_lacks_the_pinned_revision_says_so(tiny_hub, hf_env, monkeypatch):
    import huggingface_hub.constants as c
    from conftest import register_spec
    from hub_server import HubServer
    spec = register_spec(tiny_hub[1], monkeypatch)
    with HubServer({f"zoo-test/{spec.name}": tiny_hub[0] / spec.name}) as srv:  # main only: never tagged
        monkeypatch.setattr(c, "ENDPOINT", srv.url)
        monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", srv.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        with pytest.raises(WeightsError, match=f"has no revision {spec.revision}"):
            create_model(spec.name)
        assert not any("/resolve/main/" in path for _, path in srv.requests)  # never falls back to main


def test_every_hub_folders_config_is_derived_from_its_spec():
    from convtwist_zoo.release.staging import RUN_RECORD_KEYS, hub_config_json
    for folder in sorted(p for p in (ROOT / "hub").iterdir() if p.is_dir()):
        config = json.loads((folder / "config.json").read_text())
        spec = get_pretrained(*folder.name.split("."))
        record = {k: config[k] for k in RUN_RECORD_KEYS if k in config}
        assert config == hub_config_json(spec, record), f"{folder.name}: regenerate with `release stage`"
        assert config["pretrained_spec"] == json.loads(json.dumps(spec.to_dict()))
