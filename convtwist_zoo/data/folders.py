"""Image folders as training and validation datasets: the training split's decoder, seeded augmentation, the
noisy-label variants, the class-balanced validation subset, and where a run's data is."""
from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.transforms.v2.functional import pil_to_tensor

from ..errors import InputError
from .datasets import DATASETS, IMAGE_EXTENSIONS, DatasetNotFoundError, count_images, prepare_dataset, read_class_names
from .transforms import ImageError, is_high_bit_depth_png, load_rgb

__all__ = ["build_datasets", "SeededTransformDataset", "read_image", "val_split", "class_balanced_subset",
           "data_of_run"]


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
            raise InputError(f"{csv_path} has no column {column!r}; choose --noise among 0, 1, 5, 25, 50")
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
        empty = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and count_images(d) == 0) \
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
            raise InputError(f"{root / split} has classes {ds.classes}, expected {list(class_ids)}")
        # an empty file fails only when a loader reaches it, an epoch in: find it now (a stat per file, no decoding)
        if empty := [p for p, _ in ds.samples if os.path.getsize(p) == 0]:
            raise ImageError(f"{len(empty)} empty image file(s) in {root / split}, e.g. {empty[0]}; remove or "
                             "replace them")
    return train, val, tuple(class_ids), tuple(class_names)
