"""Datasets (Imagenette, Imagewoof, any ImageFolder), archive extraction into a cache, and transforms.

Archives are fast.ai-style tarballs ``<name>/{train,val}/<wnid>/*.JPEG`` plus ``<name>/noisy_<dataset>.csv``. They are
found in ``--data PATH`` or ``$CONVTWIST_DATA`` (or downloaded from the official URL), extracted once into
``$CONVTWIST_ZOO_CACHE/data`` (default ``~/.cache/convtwist-zoo/data``) through a temporary folder that is renamed
only when the file counts per split are right, so a killed extraction never looks complete.
"""
from __future__ import annotations

import csv
import functools
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.transforms.v2.functional import pil_to_tensor


from .cache import cache_dir
from .locks import hold_lock
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, ImageError, eval_transform, is_high_bit_depth_png, load_rgb,
                         train_transform)

__all__ = ["DatasetInfo", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "DatasetNotFoundError", "find_archive",
           "prepare_dataset", "build_datasets", "train_transform", "eval_transform", "SeededTransformDataset",
           "cache_dir", "read_image", "val_split", "dataset_sha256", "class_balanced_subset", "data_of_run"]

FASTAI_URL = "https://s3.amazonaws.com/fast-ai-imageclas/{}.tgz"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetNotFoundError(FileNotFoundError):
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


def _count_images(split_dir: Path) -> int:
    return sum(1 for p in split_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def _is_complete(root: Path, info: DatasetInfo) -> bool:
    return all((root / s).is_dir() and _count_images(root / s) == n for s, n in info.split_sizes.items())


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
    from .hub import sha256_file
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
            raise ValueError(f"{path}:{n}: {line!r} has no tab between the class id and its name; write "
                             "id<TAB>name, one class a line")
        key, name = (part.strip() for part in line.split("\t", 1))
        if key in names:
            raise ValueError(f"{path}:{n}: class id {key!r} is named twice ({names[key]!r}, then {name!r})")
        if key not in class_ids:
            raise ValueError(f"{path}:{n}: {key!r} is no class folder of {path.parent / 'train'} "
                             f"({', '.join(class_ids)})")
        names[key] = name
    return names


def data_of_run(config: dict, where: str = "the run") -> str:
    """Where a run's data is, from its ``config.json``: a named dataset (``imagewoof``), or the folder it recorded
    (``data_path``), which must still be there.

    Example:
        >>> data_of_run({"dataset": "imagewoof"})
        'imagewoof'
    """
    if config.get("dataset") in DATASETS:
        return config["dataset"]
    if path := config.get("data_path"):
        if not Path(path).is_dir():
            raise DatasetNotFoundError(f"{where} was trained on {path}, which is not there any more; pass --data "
                                       "FOLDER")
        return path
    raise DatasetNotFoundError(f"{where} was trained on a folder named {config.get('dataset')!r} whose location it "
                               "does not record; pass --data FOLDER")


@functools.lru_cache(maxsize=1)
def _torchcodec_decoder():
    """TorchCodec's image decoder (the [decoders] extra), imported on first use; None where it is not installed or
    was built for another torch: PIL decodes then."""
    try:
        from torchcodec.decoders import decode_image
    except (ImportError, OSError, RuntimeError):
        return None
    return decode_image


def read_image(path: str) -> torch.Tensor:
    """An image file as a uint8 RGB tensor (3, H, W), the training split's loader.

    TorchCodec decodes (libjpeg-turbo, libpng, libwebp) straight to a tensor, so the crop runs on the tensor,
    with pixels within one grey level of the PIL path (same crop, same flip). Formats it does not read (BMP, TIFF,
    ...) and 16-bit PNGs go through `load_rgb`, the evaluation path's decoder."""
    decode_error = None
    if is_high_bit_depth_png(path):  # decoded as evaluation decodes it, so both see the same pixels
        return pil_to_tensor(load_rgb(path))
    if (decode := _torchcodec_decoder()) is not None:
        try:
            image = decode(path, mode="RGB")
            return image[0] if image.dim() == 4 else image  # an animated GIF: its first frame, as PIL gives
        except (ValueError, RuntimeError) as e:
            decode_error = e
    try:
        with Image.open(path) as im:
            return pil_to_tensor(im.convert("RGB"))
    except OSError as e:
        why = f"{decode_error}; {e}" if decode_error else str(e)
        raise OSError(f"cannot read image {path}: {why}. Remove or replace the file.") from e


class SeededTransformDataset(Dataset):
    """Applies a random transform with an RNG seeded by (seed, epoch, index), so augmentation does not depend on
    worker count or on where a run was resumed: a resumed run sees exactly the images an uninterrupted run saw."""

    def __init__(self, base: Dataset, transform, seed: int = 0):
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, target = self.base[index]
        with torch.random.fork_rng(devices=[]):
            # the CPU generator alone: torch.manual_seed also queues a CUDA seeding with a captured stack trace,
            # which made up about a third of a worker's time per image
            # within the generator's 64 bits whatever the seed (values below 2**64, every earlier run's, unchanged)
            torch.default_generator.manual_seed(((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index) % 2 ** 64)
            return self.transform(image), target


def class_balanced_subset(dataset, size: int) -> Dataset:
    """A fixed subset of about ``size`` images of an ImageFolder, each class in its share of the whole (its first
    images in file order: no randomness, so every run and every epoch sees the same ones); the whole dataset where
    ``size`` is not smaller.

    Example:
        >>> len(class_balanced_subset(val, 1000))  # doctest: +SKIP
        1000
    """
    from torch.utils.data import Subset
    if size >= len(dataset):
        return dataset
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(dataset.targets):
        by_class.setdefault(target, []).append(index)
    share = size / len(dataset)
    picked = [i for indices in by_class.values() for i in indices[:max(1, round(len(indices) * share))]]
    return Subset(dataset, sorted(picked))


class _NoisyImageFolder(tv_datasets.ImageFolder):
    """ImageFolder whose labels come from a fast.ai ``noisy_*.csv`` column (``noisy_labels_<pct>``)."""

    def __init__(self, root: Path, csv_path: Path, noise: int, split: str):
        super().__init__(str(root / split), loader=read_image)  # the training split only
        column = f"noisy_labels_{noise}"
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and column not in rows[0]:
            raise ValueError(f"{csv_path} has no column {column!r}; choose --noise among 0, 1, 5, 25, 50")
        labels = {r["path"]: r[column] for r in rows}
        self.samples = [(p, self.class_to_idx[labels[str(Path(p).relative_to(root).as_posix())]])
                        for p, _ in self.samples]
        self.targets = [t for _, t in self.samples]
        self.imgs = self.samples


def _image_folder(split_dir: Path, build):
    """Build an ImageFolder over ``split_dir``, saying which split and folder is empty when one is."""
    try:
        return build()
    except FileNotFoundError as e:  # torchvision names neither the split nor the path
        empty = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and _count_images(d) == 0) \
            if split_dir.is_dir() else []
        what = f"class folder(s) {', '.join(empty)} in {split_dir} hold no images" if empty else \
            f"{split_dir} holds no class folders with images"
        raise DatasetNotFoundError(f"{what} (looked for {', '.join(IMAGE_EXTENSIONS)}); add images or remove the "
                                   "empty folders") from e


def val_split(data: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The validation folder (``val/<class>/``) of a named dataset or of a folder.

    Args:
        data: ``imagenette``, ``imagewoof`` (extracted from its archive once, as `prepare_dataset`) or a folder
            holding ``val/``.
        data_dir: where the archives are (else ``$CONVTWIST_DATA``, then the download cache).

    Returns:
        The ``val`` folder.

    Example:
        >>> val_split("imagewoof", "/data/fastai")  # doctest: +SKIP
        PosixPath('/root/.cache/convtwist-zoo/data/imagewoof2-160/val')
    """
    if data in DATASETS:
        return prepare_dataset(data, data_dir) / "val"
    val = Path(data) / "val"
    if not val.is_dir():
        raise DatasetNotFoundError(f"{str(data)!r} is neither a known dataset ({', '.join(DATASETS)}) nor a folder "
                                   "with a val/ sub-folder holding one folder of images per class")
    return val


def build_datasets(data: str, data_dir: str | None = None, noise: int = 0):
    """(train, val, class_ids, class_names) for a named dataset or any ``train/``+``val/`` ImageFolder directory.

    The training split yields uint8 tensors (`read_image`), the validation split PIL images, so evaluation resizes
    exactly as the published metrics were measured; the transforms take either. For a folder, class ids are its
    sub-folder names and the names are the same (or read from a ``classes.txt`` of ``id<TAB>name`` lines).
    """
    if data in DATASETS:
        info = DATASETS[data]
        root = prepare_dataset(data, data_dir)
        class_ids, class_names = info.class_ids, info.class_names
    else:
        root = Path(data)
        if not (root / "train").is_dir() or not (root / "val").is_dir():
            raise DatasetNotFoundError(
                f"{data!r} is neither a known dataset ({', '.join(DATASETS)}) nor a folder with train/ and val/ "
                "sub-folders holding one folder of images per class")
        class_ids = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
        names = read_class_names(root / "classes.txt", class_ids) if (root / "classes.txt").exists() else {}
        class_names = tuple(names.get(c, c) for c in class_ids)
    if noise:
        csv_files = sorted(root.glob("noisy_*.csv"))
        if not csv_files:
            raise DatasetNotFoundError(f"--noise {noise} needs a noisy_*.csv in {root}")
        train = _image_folder(root / "train", lambda: _NoisyImageFolder(root, csv_files[0], noise, "train"))
    else:
        train = _image_folder(root / "train", lambda: tv_datasets.ImageFolder(str(root / "train"), loader=read_image))
    val = _image_folder(root / "val", lambda: tv_datasets.ImageFolder(str(root / "val"), loader=load_rgb))
    for split, ds in (("train", train), ("val", val)):
        if tuple(ds.classes) != tuple(class_ids):
            raise ValueError(f"{root / split} has classes {ds.classes}, expected {list(class_ids)}")
        # an empty file fails only when a loader reaches it, an epoch in: find it now (a stat per file, no decoding)
        if empty := [p for p, _ in ds.samples if os.path.getsize(p) == 0]:
            raise ImageError(f"{len(empty)} empty image file(s) in {root / split}, e.g. {empty[0]}; remove or "
                             "replace them")
    return train, val, tuple(class_ids), tuple(class_names)
