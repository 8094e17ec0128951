"""Pretrained weights: resolve, download, cache, verify and load (publishing is `convtwist_zoo.release`'s).

Resolution order for a spec'd checkpoint (``arch.tag``):
1. an explicit local file or folder (``pretrained_file=``),
2. ``$CONVTWIST_ZOO_HUB_DIR`` or the repository's own ``hub/`` folder (a clone works offline),
3. the Hugging Face cache (``$HF_HOME``),
4. ``huggingface_hub.hf_hub_download`` (honours ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, proxies, ``revision``).
The size, then the sha256 of the weights is checked on every load where a hash is known (a zoo checkpoint's spec, or
the ``weights_sha256`` that `train` records in a run's ``config.json``); a bad copy in the HF cache is deleted when it
lies in the cache's own ``blobs/`` folder, and nothing else ever is. Only safetensors are read, and weights holding
NaN or infinity are refused.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import ZooError
from ..files.hashing import sha256_file
from ._pretrained import PretrainedSpec

__all__ = ["WeightsError", "IntegrityError", "CacheLinkError", "sha256_file", "verify_file", "check_finite", "hub_dir",
           "resolve_weights", "load_weights", "verify_local", "REPO_HUB_DIR"]

# a source checkout carries its checkpoints in hub/ beside the package: the offline, embedded default
REPO_HUB_DIR = Path(__file__).resolve().parents[2] / "hub"


class WeightsError(ZooError, RuntimeError):
    """Weights that cannot be found or do not fit."""


class IntegrityError(WeightsError):
    """A weights file whose sha256 differs from its spec (corrupt or truncated)."""


class CacheLinkError(IntegrityError):
    """A corrupt Hugging Face cache entry that points outside the cache's ``blobs/``: refused, never deleted."""


def hub_dir() -> Path | None:
    """Folder of Hub-style model repos to use before the network: ``$CONVTWIST_ZOO_HUB_DIR`` or the repo's ``hub/``."""
    env = os.environ.get("CONVTWIST_ZOO_HUB_DIR")
    if env:
        return Path(env)
    return REPO_HUB_DIR if REPO_HUB_DIR.is_dir() else None


def verify_file(path: Path, sha256: str, size: int = 0, *, what: str = "", in_cache: bool = False) -> Path:
    """Check ``path`` against a known size (first: a stray multi-GB file fails at once) and sha256.

    A bad copy in the Hugging Face cache is deleted (see `_delete_cached`); any other file is left in place."""
    actual_size = path.stat().st_size
    if size and actual_size != size:
        detail, actual = f"size {actual_size} bytes, expected {size}", None
    else:
        actual = sha256_file(path)
        if actual == sha256:
            return path
        detail = f"sha256 {actual}, expected {sha256}"
    if in_cache:
        _delete_cached(path, f"{path} for {what} has {detail}")
        fate = "was deleted from the Hugging Face cache; load again to download it afresh"
    else:
        fate = "was left in place; replace it with an intact copy or remove it"
    raise IntegrityError(f"{path}{' for ' + what if what else ''} has {detail}: the file is corrupt, truncated or "
                         f"another file, and {fate}")


def _verify(path: Path, spec: PretrainedSpec, *, in_cache: bool) -> Path:
    return verify_file(path, spec.sha256, spec.size, what=spec.name, in_cache=in_cache)


def _delete_cached(path: Path, problem: str) -> None:
    """Remove a bad snapshot entry, the blob it points to and any half-finished download of it, but only where the
    blob resolves inside the Hugging Face cache's own ``blobs/`` folder of that repo; otherwise touch nothing."""
    from huggingface_hub import constants

    cache = Path(os.path.realpath(constants.HF_HUB_CACHE))
    entry = Path(os.path.abspath(path))
    blob = Path(os.path.realpath(path))
    repo = entry.parent.parent.parent  # <cache>/models--org--name/snapshots/<revision>/<file>
    inside = (Path(os.path.realpath(repo)).parent == cache and blob.parent == Path(os.path.realpath(repo / "blobs")))
    if not inside:
        raise CacheLinkError(f"{problem}; it resolves to {blob}, outside the Hugging Face cache's blobs/ folder "
                             f"({cache}), so nothing was deleted. Remove or fix the entry {entry} yourself, then load "
                             "again")
    for p in (entry, blob, blob.with_name(blob.name + ".incomplete")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def resolve_weights(spec: PretrainedSpec, local: str | os.PathLike | None = None) -> Path:
    """Path of a verified copy of ``spec``'s weights, following the resolution order above."""
    if local is not None:
        path = Path(local)
        path = path / spec.filename if path.is_dir() else path
        if not path.is_file():
            raise WeightsError(f"pretrained file {path} does not exist")
        return _verify(path, spec, in_cache=False)
    folder = hub_dir()
    if folder is not None and (folder / spec.repo_name / spec.filename).is_file():
        return _verify(folder / spec.repo_name / spec.filename, spec, in_cache=False)

    import huggingface_hub
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    repo_id = spec.repo_id()
    cached = huggingface_hub.try_to_load_from_cache(repo_id, spec.filename, revision=spec.revision)
    if isinstance(cached, str):
        try:
            return _verify(Path(cached), spec, in_cache=True)
        except CacheLinkError:
            raise
        except IntegrityError as e:  # the bad copy is gone: fetch a fresh one below
            warnings.warn(str(e))
    try:
        path = Path(huggingface_hub.hf_hub_download(repo_id, spec.filename, revision=spec.revision))
    except LocalEntryNotFoundError as e:
        raise WeightsError(
            f"{spec.name}: no copy of {spec.filename} in the Hugging Face cache and the Hub could not be reached "
            f"(offline: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}). Either go online once, or run "
            f"`hf download {repo_id} {spec.filename} --revision {spec.revision}` on a connected machine and copy "
            f"$HF_HOME over, or put the file at hub/{spec.repo_name}/{spec.filename} (or "
            f"$CONVTWIST_ZOO_HUB_DIR/{spec.repo_name}/{spec.filename}), or give a copy of its folder "
            f"(hub/{spec.repo_name}/, whose config.json records the sha256): `--checkpoint FOLDER` on the command line, "
            f"create_model({spec.name!r}, pretrained_file=PATH) in Python") from e
    except RevisionNotFoundError as e:
        raise WeightsError(f"{spec.name}: {repo_id} has no revision {spec.revision} (the tag its weights were published "
                           f"under) on {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}: the repo was not "
                           "published by `release publish`, or the tag was deleted; check CONVTWIST_ZOO_HF_ORG, or "
                           "use the checkpoint's folder from the zoo's hub/") from e
    except (RepositoryNotFoundError, EntryNotFoundError) as e:
        raise WeightsError(f"{spec.name}: {repo_id}@{spec.revision} has no {spec.filename} on "
                           f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co')} (check "
                           f"CONVTWIST_ZOO_HF_ORG and the revision): {e}") from e
    return _verify(path, spec, in_cache=True)


def _read_safetensors(path: Path) -> dict:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file ({e}); it is truncated, corrupt or another "
                           "format: replace it with an intact copy") from e


def check_finite(state: dict, path) -> None:
    """Refuse weights holding NaN or infinity, naming the tensors."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{path} holds NaN or infinite values in {len(bad)} tensor(s) ({', '.join(bad[:5])}"
                           f"{', ...' if len(bad) > 5 else ''}): the training run diverged or the file is damaged; "
                           "use another checkpoint")


def load_weights(model: nn.Module, path: str | os.PathLike, what: str = "", adapt=None) -> None:
    """Load a safetensors file into ``model`` strictly, with an error that says which keys do not fit; NaN or
    infinite weights are refused. ``adapt(model, state)`` may first reshape tensors the model builds differently
    (the input convolution for other ``in_chans``)."""
    state = _read_safetensors(Path(path))
    check_finite(state, path)
    state = adapt(model, state) if adapt else state
    own = model.state_dict()
    mismatched = [f"{k} {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model" for k, v in state.items()
                  if k in own and own[k].shape != v.shape]
    if mismatched:
        raise WeightsError(f"{path} does not fit {what or type(model).__name__}: {len(mismatched)} tensor(s) of "
                           f"another shape (e.g. {'; '.join(mismatched[:2])}); the file holds another architecture "
                           "or class count than its metadata says, so replace it with an intact copy or rebuild "
                           "its config.json")
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} keys (e.g. {result.missing_keys[:3]})")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} keys (e.g. {result.unexpected_keys[:3]})")
    if problems:
        raise WeightsError(f"{path} does not fit {what or type(model).__name__}: " + "; ".join(problems))


def verify_local(path: Path, config: dict) -> None:
    """Check a user's weights file against the hash its folder's ``config.json`` records, and say so when none is."""
    spec = config.get("pretrained_spec") or {}
    known = config.get("weights_sha256") or spec.get("sha256")
    if not known:
        warnings.warn(f"{path}: no sha256 is recorded for it (no weights_sha256 in {path.parent / 'config.json'}), "
                      "so it was loaded without an integrity check")
        return
    verify_file(path, known, spec.get("size", 0) if known == spec.get("sha256") else 0, what=path.parent.name)


