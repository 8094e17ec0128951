"""Imagenette and Imagewoof: their classes and split sizes, and their fast.ai-style archives found (``--data PATH``,
``$CONVTWIST_DATA``) or downloaded, hashed, and extracted once into the cache.

Archives are tarballs ``<name>/{train,val}/<wnid>/*.JPEG`` plus ``<name>/noisy_<dataset>.csv``. They are extracted
into ``$CONVTWIST_ZOO_CACHE/data`` (default ``~/.cache/convtwist-zoo/data``) through a temporary folder that is renamed
only when the file counts per split are right, so a killed extraction never looks complete.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ZooError
from ..files.cache import cache_dir
from ..files.locks import hold_lock

__all__ = ["DatasetInfo", "DATASETS", "DatasetNotFoundError", "find_archive", "download_archive", "prepare_dataset",
           "dataset_sha256", "read_class_names", "IMAGE_EXTENSIONS", "count_images"]

FASTAI_URL = "https://s3.amazonaws.com/fast-ai-imageclas/{}.tgz"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetNotFoundError(ZooError, FileNotFoundError):
    """No archive or folder for a dataset where we looked."""


@dataclass(frozen=True)
class DatasetInfo:
    """A fast.ai-style dataset: archive stems to look for (first = preferred), class ids/names, split sizes."""
    name: str
    archives: tuple
    class_ids: tuple
    class_names: tuple
    split_sizes: dict  # split -> number of images, the completeness check

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)


DATASETS = {
    "imagenette": DatasetInfo(
        "imagenette", ("imagenette2-160sq", "imagenette2-160", "imagenette2-320", "imagenette2"),
        ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042", "n03425413",
         "n03445777", "n03888257"),
        ("tench", "English springer", "cassette player", "chain saw", "church", "French horn", "garbage truck",
         "gas pump", "golf ball", "parachute"),
        {"train": 9469, "val": 3925}),
    "imagewoof": DatasetInfo(
        "imagewoof", ("imagewoof2-160", "imagewoof2-320", "imagewoof2"),
        ("n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294", "n02099601", "n02105641",
         "n02111889", "n02115641"),
        ("Shih-Tzu", "Rhodesian ridgeback", "beagle", "English foxhound", "Border terrier", "Australian terrier",
         "golden retriever", "Old English sheepdog", "Samoyed", "dingo"),
        {"train": 9025, "val": 3929}),
}


def _search_dirs(data: str | os.PathLike | None) -> list[Path]:
    dirs = [Path(data)] if data else []
    if os.environ.get("CONVTWIST_DATA"):
        dirs.append(Path(os.environ["CONVTWIST_DATA"]))
    dirs.append(cache_dir() / "downloads")
    return dirs


def find_archive(info: DatasetInfo, data: str | os.PathLike | None = None) -> Path:
    """The dataset's archive or extracted folder in ``data``, ``$CONVTWIST_DATA`` or the download cache."""
    looked = []
    for d in _search_dirs(data):
        for stem in info.archives:
            for candidate in (d / f"{stem}.tgz", d / stem):
                looked.append(str(candidate))
                if candidate.exists():
                    return candidate
    raise DatasetNotFoundError(
        f"dataset {info.name!r} not found; looked for {', '.join(looked)}. Put the fast.ai archive "
        f"({info.archives[0]}.tgz) in a folder and pass --data-dir FOLDER or set CONVTWIST_DATA=FOLDER, "
        f"or run `convtwist-zoo download {info.name}` to fetch {FASTAI_URL.format(info.archives[-1])}")


def download_archive(info: DatasetInfo, stem: str | None = None, timeout: float = 30) -> Path:
    """Download the official fast.ai archive into the cache, checking its size against Content-Length."""
    stem = stem or info.archives[1 if info.name == "imagenette" else 0]
    url = FASTAI_URL.format(stem)
    dest = cache_dir() / "downloads" / f"{stem}.tgz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tgz.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            expected = int(response.headers.get("Content-Length", -1))
            shutil.copyfileobj(response, out, length=1 << 20)
        if expected >= 0 and tmp.stat().st_size != expected:
            raise OSError(f"download of {url} truncated: {tmp.stat().st_size} of {expected} bytes")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise DatasetNotFoundError(f"could not download {url} ({e}); offline, copy {stem}.tgz into a folder and "
                                   f"pass --data-dir FOLDER or set CONVTWIST_DATA=FOLDER") from e
    return dest


def count_images(split_dir: Path) -> int:
    return sum(1 for p in split_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def _is_complete(root: Path, info: DatasetInfo) -> bool:
    return all((root / s).is_dir() and count_images(root / s) == n for s, n in info.split_sizes.items())


def prepare_dataset(name: str, data: str | os.PathLike | None = None) -> Path:
    """Extracted root (holding ``train/`` and ``val/``) of a named dataset, extracting its archive once.

    ``name`` is ``imagenette``/``imagewoof``; an extracted fast.ai folder is used in place when it is complete.
    """
    info = DATASETS[name]
    source = find_archive(info, data)
    if source.is_dir():
        if not _is_complete(source, info):
            raise DatasetNotFoundError(f"{source} is incomplete: expected {info.split_sizes} images per split")
        return source
    target = cache_dir() / "data" / source.name[:-len(".tgz")]
    marker = target / ".complete"
    if marker.exists():
        return target
    # one extraction at a time (two torchrun ranks, two commands): a second waits, then finds the first's folder
    with hold_lock(target.parent / f".{target.name}.lock", wait=True):
        if marker.exists():
            return target
        for stale in target.parent.glob(f".{target.name}.*"):  # a killed extraction's; none is live under the lock
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        _extract(source, target, info)
    return target


def _extract(source: Path, target: Path, info: DatasetInfo) -> None:
    """Extract ``source`` into ``target`` through a temporary folder renamed once its file counts are right."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        try:
            with tarfile.open(source, "r:gz") as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.FilterError as e:
            raise DatasetNotFoundError(f"archive {source} holds an unsafe member ({e}): it would write outside its "
                                       "folder or link out of it, so nothing was extracted. Use the official "
                                       "archive") from e
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DatasetNotFoundError(f"{source} is not a readable gzip tar archive ({type(e).__name__}: {e}); "
                                       "fetch the archive again") from e
        extracted = Path(tmp) / target.name
        if not _is_complete(extracted, info):
            raise DatasetNotFoundError(f"archive {source} is incomplete or corrupt: expected {info.split_sizes} "
                                       "images per split; fetch it again")
        (extracted / ".complete").write_text(str(info.split_sizes))
        if target.exists():  # a stale, incomplete folder from an older layout
            shutil.rmtree(target)
        os.replace(extracted, target)


def dataset_sha256(data: str, data_dir: str | os.PathLike | None = None) -> str | None:
    """The sha256 of the archive a named dataset is extracted from, part of a run's identity; None for a folder (or an
    extracted fast.ai folder), which has no one file to hash.

    Example:
        >>> dataset_sha256("imagewoof", "/data/fastai")  # doctest: +SKIP
        '3f2c...'
    """
    if data not in DATASETS:
        return None
    source = find_archive(DATASETS[data], data_dir)
    if source.is_dir():
        return None
    from ..files.hashing import sha256_file
    return sha256_file(source)


def read_class_names(path: Path, class_ids) -> dict[str, str]:
    """``{class id: name}`` from a ``classes.txt`` of ``id<TAB>name`` lines (blank lines and ``#`` comments
    skipped); a line without a tab, an id given twice or an id that is no class folder is refused with its line.

    Example:
        >>> read_class_names(Path("data/classes.txt"), ("c0", "c1"))  # doctest: +SKIP
        {'c0': 'cat', 'c1': 'dog'}
    """
    names: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" not in line:
            raise InputError(f"{path}:{n}: {line!r} has no tab between the class id and its name; write "
                             "id<TAB>name, one class a line")
        key, name = (part.strip() for part in line.split("\t", 1))
        if key in names:
            raise InputError(f"{path}:{n}: class id {key!r} is named twice ({names[key]!r}, then {name!r})")
        if key not in class_ids:
            raise InputError(f"{path}:{n}: {key!r} is no class folder of {path.parent / 'train'} "
                             f"({', '.join(class_ids)})")
        names[key] = name
    return names
