"""From a finished run to a Hub repo folder and back out: fp16 staging with its spec, the packaged specs file, and
upload to the Hugging Face Hub. For whoever maintains the zoo; nothing on the user's load path imports it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors.torch import load_file

from ..atomic import atomic_path, write_text_atomic
from ..hub import REPO_HUB_DIR, WeightsError, _verify, sha256_file
from ..registry import split_model_name
from ..specs import PretrainedSpec, get_pretrained

__all__ = ["publish_folder", "save_fp16", "stage_run", "hub_config_json", "specs_from_hub", "write_specs_file",
           "representative_run"]


def publish_folder(folder: str | os.PathLike, repo_id: str | None = None, dry_run: bool = False,
                   revision: str | None = None, private: bool = False) -> list[str]:
    """Upload a ``hub/<arch>.<tag>`` folder to the Hub with ``upload_folder``; refuses a folder whose weights do not
    match its spec. Returns the uploaded file names (what would be uploaded with ``dry_run``)."""
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
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                      commit_message=f"convtwist-zoo: {spec.name} (sha256 {spec.sha256[:12]})")
    return files


def save_fp16(src: str | os.PathLike, dest: str | os.PathLike, **metadata: str) -> Path:
    """Write the safetensors file ``src`` to ``dest`` (may be the same path) with its floating-point tensors in
    float16, atomically; ``metadata`` joins the file's header. The form the Hub folders hold."""
    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()}
    with atomic_path(Path(dest)) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", **metadata, "dtype": "float16"})
    return Path(dest)


def stage_run(run_dir: str | os.PathLike, hub_root: str | os.PathLike = REPO_HUB_DIR, tag: str | None = None,
              default: bool = False, extra_meta: dict | None = None) -> PretrainedSpec:
    """Turn a finished training run (``model.safetensors`` + ``config.json``) into a Hub repo folder
    ``hub_root/<arch>.<tag>/`` with fp16 weights and a config carrying the spec; returns the spec.

    The model card (``README.md``) is written by ``convtwist_zoo.cards``."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    arch = config["architecture"]
    tag = tag or config["dataset"]
    folder = Path(hub_root) / f"{arch}.{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    weights = save_fp16(run_dir / "model.safetensors", folder / "model.safetensors", architecture=arch)
    spec = PretrainedSpec(
        architecture=arch, tag=tag, sha256=sha256_file(weights), size=weights.stat().st_size,
        num_classes=config["num_classes"], class_ids=tuple(config["class_ids"]),
        class_names=tuple(config["class_names"]), input_size=tuple(config["input_size"]),
        mean=tuple(config["mean"]), std=tuple(config["std"]), crop_pct=config["crop_pct"],
        interpolation=config["interpolation"], default=default, metrics=config.get("metrics", {}),
        meta={"dataset": config["dataset"], "recipe": config["recipe"], **(extra_meta or {})})
    hub_config = hub_config_json(config, spec)
    write_text_atomic(folder / "config.json", json.dumps(hub_config, indent=2) + "\n")
    if (run_dir / "metrics.jsonl").exists():  # the training log travels with the weights
        shutil.copyfile(run_dir / "metrics.jsonl", folder / "metrics.jsonl")
    return spec


def hub_config_json(config: dict, spec: PretrainedSpec) -> dict:
    """A Hub folder's ``config.json``: the run's config, the weights' hash, the zoo's spec, and what timm's ``hf-hub:``
    loader reads (``architecture``, ``num_classes``, ``pretrained_cfg``, ``label_names``)."""
    from ..timm_models import timm_pretrained_cfg
    timm_cfg = {k: v for k, v in timm_pretrained_cfg(spec)
                .items() if k not in ("hf_hub_id", "label_names")}  # timm fills in the repo it loads from
    return {**config, "weights_sha256": spec.sha256, "pretrained_spec": spec.to_dict(), "pretrained_cfg": timm_cfg,
            "label_names": list(spec.class_names)}


def specs_from_hub(hub_root: str | os.PathLike = REPO_HUB_DIR) -> list[PretrainedSpec]:
    """The specs recorded in every ``hub_root/*/config.json``, sorted by name."""
    specs = []
    for config in sorted(Path(hub_root).glob("*/config.json")):
        entry = json.loads(config.read_text()).get("pretrained_spec")
        if entry:
            specs.append(PretrainedSpec.from_dict(entry))
    return specs


def write_specs_file(hub_root: str | os.PathLike = REPO_HUB_DIR, path: str | os.PathLike | None = None) -> Path:
    """Regenerate ``convtwist_zoo/pretrained.json`` (the specs that ship with the package) from ``hub_root``."""
    from ..specs import SPECS_FILE
    path = Path(path or SPECS_FILE)
    entries = [s.to_dict() for s in specs_from_hub(hub_root)]
    write_text_atomic(path, json.dumps(entries, indent=1) + "\n")
    return path


def representative_run(results: str | os.PathLike, model: str, runs_dir: str | os.PathLike,
                       model_args: str = "") -> tuple[Path, dict, dict]:
    """The leaderboard run of ``model`` to publish: the one whose top-1 is closest to its arm's mean, among the runs
    whose final weights are still at hand in ``runs_dir`` (and match the sha256 their row recorded).

    Returns:
        (run folder, its row, ``{"seed", "mean", "std", "n", "results", "closer_without_weights"}`` for the card; the
        last counts the runs nearer the mean whose weights were not at hand).
    """
    import statistics

    from .. import leaderboard
    if not Path(results).is_file():
        raise FileNotFoundError(f"no results file {results}: `convtwist-zoo leaderboard run` writes it")
    rows = leaderboard.read_rows(results)
    arm = leaderboard.arms(rows).get((model, model_args))
    if not arm:
        raise ValueError(f"{results} has no finished run of {model}{' ' + model_args if model_args else ''}")
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
