"""Checkpoint specs: one store (the model files' ``default_cfgs``), an explicit default tag per architecture, a
revision pinned to the weights, and every Hub folder's config.json derived from its spec."""
from __future__ import annotations

import json
from pathlib import Path

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


def test_staging_declares_a_checkpoint_in_its_model_file(tmp_path):
    from convtwist_zoo.release.staging import declaration, declare_checkpoint, model_file_of
    source = model_file_of("xresnet18")
    assert source == Path(xresnet.__file__)
    copy = tmp_path / "xresnet.py"
    copy.write_text(source.read_text())
    old = get_pretrained("xresnet18", "imagewoof")
    replaced = PretrainedSpec("xresnet18", "imagewoof", "ab" * 32, 123, dataset="imagewoof", model_args="maxblur=true",
                              class_ids=old.class_ids, class_names=old.class_names)
    added = PretrainedSpec("xresnet18", "imagewoof20", "cd" * 32, 456, dataset="imagewoof", default=True,
                           class_ids=old.class_ids, class_names=old.class_names)
    declare_checkpoint(replaced, copy)
    declare_checkpoint(added, copy)
    text = copy.read_text()
    compile(text, str(copy), "exec")
    assert declaration(replaced) in text and old.sha256 not in text  # the entry of the same name replaced
    assert text.index(declaration(added)) > text.index(declaration(replaced))  # a new one added at the end
    assert text.count('"xresnet18.imagenette": checkpoint(') == 1
    # one default per architecture: the new default takes it from imagenette's entry
    assert 'default=True' not in text.split('"xresnet18.imagenette": checkpoint(')[1].split("\n")[1]
    assert declaration(added).endswith('456, default=True),')
