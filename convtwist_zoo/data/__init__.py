"""Data: the two datasets and their archives (`datasets`), image folders as training and validation sets
(`folders`), and the one image decoder and the transforms (`transforms`)."""
from .datasets import (DATASETS, DatasetInfo, DatasetNotFoundError, dataset_sha256, download_archive, find_archive,
                       prepare_dataset, read_class_names)
from .folders import (SeededTransformDataset, build_datasets, class_balanced_subset, data_of_run, read_image,
                      val_split)
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, ImageError, eval_transform, load_rgb, normalize_batch, to_rgb,
                         train_transform)

__all__ = ["DATASETS", "DatasetInfo", "DatasetNotFoundError", "dataset_sha256", "download_archive", "find_archive",
           "prepare_dataset", "read_class_names", "SeededTransformDataset", "build_datasets", "class_balanced_subset",
           "data_of_run", "read_image", "val_split", "IMAGENET_MEAN", "IMAGENET_STD", "ImageError", "eval_transform",
           "load_rgb", "normalize_batch", "to_rgb", "train_transform"]
