"""From a finished run to a Hub repo folder and back out: fp16 staging, the checkpoint's declaration in its model
file, and upload to the Hugging Face Hub at the spec's pinned revision. For whoever maintains the zoo; nothing on the user's load path imports it."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from safetensors.torch import load_file

from ..data.datasets import DATASETS
from ..errors import InputError
from ..files.atomic import atomic_path, write_text_atomic
from ..files.hashing import sha256_file
from ..models._hub import WeightsError, _verify
from ..models._pretrained import PretrainedSpec, checkpoint, get_pretrained
from ..models._registry import get_builder, parse_model_args, split_model_name
from ..run_config import read_run_config

__all__ = ["publish_folder", "save_fp16", "stage_run", "hub_config_json", "declaration", "declare_checkpoint",
           "model_file_of", "representative_run", "RUN_RECORD_KEYS"]


def publish_folder(folder: str | os.PathLike, repo_id: str | None = None, dry_run: bool = False,
                   revision: str | None = None, private: bool = False) -> list[str]:
    """Upload a ``hub/<arch>.<tag>`` folder to the Hub with ``upload_folder`` and tag the commit with the spec's
    pinned revision; refuses a folder whose weights do not match its spec. Returns the uploaded file names (what
    would be uploaded with ``dry_run``)."""
    folder = Path(folder)
    arch, tag = split_model_name(folder.name)
    spec = get_pretrained(arch, tag)
    weights = folder / spec.filename
    if not weights.is_file():
        raise WeightsError(f"{folder} has no {spec.filename}")
    _verify(weights, spec, in_cache=False)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    repo_id = repo_id or spec.repo_id()
    if dry_run:
        return files
    import huggingface_hub
    api = huggingface_hub.HfApi()
    api.create_repo(repo_id, exist_ok=True, private=private)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                               commit_message=f"convtwist-zoo: {spec.name} (sha256 {spec.sha256[:12]})")
    # the tag the spec pins: later uploads to the repo never change what an installed zoo downloads
    api.create_tag(repo_id, tag=spec.revision, revision=commit.oid, exist_ok=True)
    return files


def save_fp16(src: str | os.PathLike, dest: str | os.PathLike, **metadata: str) -> Path:
    """Write the safetensors file ``src`` to ``dest`` (may be the same path) with its floating-point tensors in
    float16, atomically; ``metadata`` joins the file's header. The form the Hub folders hold."""
    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()}
    with atomic_path(Path(dest)) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", **metadata, "dtype": "float16"})
    return Path(dest)


def stage_run(run_dir: str | os.PathLike, hub_root: str | os.PathLike, tag: str | None = None,
              default: bool = False, extra: dict | None = None) -> PretrainedSpec:
    """Turn a finished training run (``model.safetensors`` + ``config.json``) into a Hub repo folder
    ``hub_root/<arch>.<tag>/`` with fp16 weights and its ``config.json``; returns the new spec, which
    `declare_checkpoint` writes into the model file (the specs' one store).

    The model card (``README.md``) is written by ``python -m convtwist_zoo.release cards``."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir / "config.json", required=("architecture", "dataset", "recipe"))
    arch = config["architecture"]
    tag = tag or config["dataset"]
    folder = Path(hub_root) / f"{arch}.{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    weights = save_fp16(run_dir / "model.safetensors", folder / "model.safetensors", architecture=arch)
    model_args = (config.get("recipe") or {}).get("model_args") or ""
    spec = PretrainedSpec(arch, tag, **checkpoint(config["dataset"], sha256_file(weights), weights.stat().st_size,
                                                  default=default, model_args=model_args,
                                                  image_size=config["input_size"][-1], crop_pct=config["crop_pct"],
                                                  interpolation=config["interpolation"],
                                                  classes=None if config["dataset"] in DATASETS else
                                                  (config["class_ids"], config["class_names"])))
    write_text_atomic(folder / "config.json", json.dumps(hub_config_json(spec, config, extra), indent=2) + "\n")
    if (run_dir / "metrics.jsonl").exists():  # the training log travels with the weights
        shutil.copyfile(run_dir / "metrics.jsonl", folder / "metrics.jsonl")
    return spec


# what a Hub folder's config.json carries of the run that made it (the rest is derived from the checkpoint's spec)
RUN_RECORD_KEYS = ("dataset", "recipe", "metrics", "trained_on", "provenance", "leaderboard")


def hub_config_json(spec: PretrainedSpec, run_config: dict, extra: dict | None = None) -> dict:
    """A Hub folder's ``config.json``, derived from the checkpoint's spec: what timm's ``hf-hub:`` loader reads
    (``architecture``, ``num_classes``, ``label_names``, ``model_args``, ``pretrained_cfg``), the zoo's spec (for
    ``$CONVTWIST_ZOO_HUB_DIR`` folders), the input conventions a run folder's config.json has, and the record of the
    run that trained it (`RUN_RECORD_KEYS`)."""
    timm_cfg = {k: v for k, v in spec.timm_cfg().items()
                if k not in ("hf_hub_id", "label_names")}  # timm fills in the repo it loads from
    record = {k: run_config[k] for k in RUN_RECORD_KEYS if k in run_config}
    config = {"architecture": spec.architecture, "num_classes": spec.num_classes,
              "label_names": list(spec.class_names), "class_ids": list(spec.class_ids),
              "class_names": list(spec.class_names), "input_size": list(spec.input_size), "mean": list(spec.mean),
              "std": list(spec.std), "crop_pct": spec.crop_pct, "interpolation": spec.interpolation,
              **({"model_args": parse_model_args(spec.model_args)} if spec.model_args else {}),
              "weights_sha256": spec.sha256, "pretrained_spec": spec.to_dict(), "pretrained_cfg": timm_cfg,
              **record, **(extra or {})}
    return json.loads(json.dumps(config))  # as it reads back from the file


def declaration(spec: PretrainedSpec) -> str:
    """The spec as its line in a model file's ``default_cfgs`` (what `declare_checkpoint` writes)."""
    options = "".join([", default=True" if spec.default else "",
                       f", model_args={spec.model_args!r}" if spec.model_args else "",
                       f", image_size={spec.input_size[-1]}" if spec.input_size[-1] != 128 else ""])
    return f'    "{spec.name}": checkpoint(\n        "{spec.dataset}", "{spec.sha256}", {spec.size}{options}),'


def declare_checkpoint(spec: PretrainedSpec, model_file: str | os.PathLike) -> Path:
    """Write ``spec`` into ``model_file``'s ``default_cfgs`` (replacing the entry of the same name, or adding it at
    the end), atomically: the model file stays the one store of its checkpoints."""
    path = Path(model_file)
    text = path.read_text()
    entry = re.compile(rf'    "{re.escape(spec.name)}": checkpoint\(\n[^\n]*\),\n')
    line = declaration(spec) + "\n"
    if entry.search(text):
        text = entry.sub(lambda m: line, text)
    else:
        start = text.index("default_cfgs = register_checkpoints({\n")
        end = text.index("\n})\n", start)
        text = text[:end + 1] + line + text[end + 1:]
    if spec.default:  # one default per architecture
        text = re.sub(rf'(    "{re.escape(spec.architecture)}\.(?!{re.escape(spec.tag)}")[^"]+": checkpoint\(\n[^\n]*), default=True',
                      r"\1", text)
    write_text_atomic(path, text)
    return path


def model_file_of(arch: str) -> Path:
    """The model file that declares ``arch``'s checkpoints."""
    import sys
    return Path(sys.modules[get_builder(arch).__module__].__file__)


def representative_run(results: str | os.PathLike, model: str, runs_dir: str | os.PathLike,
                       model_args: str = "") -> tuple[Path, dict, dict]:
    """The leaderboard run of ``model`` to publish: the one whose top-1 is closest to its arm's mean, among the runs
    whose final weights are still at hand in ``runs_dir`` (and match the sha256 their row recorded).

    Returns:
        (run folder, its row, ``{"seed", "mean", "std", "n", "results", "closer_without_weights"}`` for the card; the
        last counts the runs nearer the mean whose weights were not at hand).
    """
    import statistics

    from .. import research as leaderboard
    if not Path(results).is_file():
        raise FileNotFoundError(f"no results file {results}: `convtwist-zoo leaderboard run` writes it")
    rows = leaderboard.read_rows(results)
    arm = leaderboard.arms(rows).get((model, model_args))
    if not arm:
        raise InputError(f"{results} has no finished run of {model}{' ' + model_args if model_args else ''}")
    top1 = [r["top1"] for r in arm]
    mean = statistics.fmean(top1)

    def off(r):
        return abs(r["top1"] - mean)

    for row in sorted(arm, key=off):
        folder = (Path(runs_dir).expanduser() /
                  leaderboard.protocol_name(row["dataset"], row["image_size"], row["epochs"]) / row["run"])
        weights = folder / "model.safetensors"
        if weights.is_file() and sha256_file(weights) == row["weights_sha256"]:
            summary = {"seed": row["seed"], "mean": round(mean, 2), "n": len(top1), "results": Path(results).name,
                       "std": round(statistics.stdev(top1), 2) if len(top1) > 1 else None,
                       "closer_without_weights": sum(off(r) < off(row) - 1e-6 for r in arm)}  # ties don't count
            return folder, row, summary
    raise FileNotFoundError(f"none of the {len(arm)} runs of {model} in {results} has its weights in {runs_dir} (or "
                            "they differ from the recorded sha256); rerun one seed with `convtwist-zoo leaderboard "
                            "run` after removing its row")
