"""Image transforms and the normalisation constants: the one place that knows how pixels become tensors."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode, v2
from ..errors import InputError, ZooError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AUGMENTATIONS", "train_transform", "eval_transform", "normalize_batch",
           "to_rgb", "load_rgb", "is_high_bit_depth_png", "ImageError"]


class ImageError(ZooError, ValueError):
    """An image file that cannot be decoded."""


# PIL modes of more than 8 bits per sample; ``convert("RGB")`` clips them (a 16-bit grey image turns almost white)
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of any PIL image. 16-bit samples are scaled by 255/65535 (an 8-bit image saved as 16 bits
    comes back exactly); 32-bit integer images are read on the 16-bit scale, float images on [0, 1]."""
    if image.mode not in _WIDE_MODES:
        return image.convert("RGB")
    a = np.asarray(image, dtype=np.float64)
    scale = 1.0 if image.mode == "F" else 65535.0
    grey = np.clip(np.rint(a * (255.0 / scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as 8-bit RGB (`to_rgb`), upright (a JPEG's EXIF orientation applied, as TorchCodec does in
    training), with an error that names the file: the one decoder of the evaluation and prediction paths, and of
    training for the images TorchCodec would decode differently."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
    except (FileNotFoundError, IsADirectoryError):
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path} is too large to decode safely ({e}); downscale it first") from e
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises all three for damaged files
        raise ImageError(f"{path} is not a readable image ({e}); use a JPEG or PNG file") from e


def is_high_bit_depth_png(path: str | os.PathLike) -> bool:
    """A PNG of 16 bits per sample (from its header; no decoding)."""
    if not str(path).lower().endswith(".png"):
        return False
    with open(path, "rb") as f:
        head = f.read(25)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 25 and head[24] == 16

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


AUGMENTATIONS = ("crop", "trivial")


def train_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, min_scale: float = 0.35,
                    augment: str = "crop", normalize: bool = True):
    """RandomResizedCrop + horizontal flip (``crop``), plus TrivialAugmentWide (``trivial``), then normalise.

    With ``normalize=False`` the images stay uint8 tensors and `normalize_batch` finishes the job on whole batches
    in the training process: per-image float conversion was about 40% of a DataLoader worker's time, and uint8
    batches are 4x less to copy between processes (and to a GPU)."""
    if augment not in AUGMENTATIONS:
        raise InputError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
    steps = [v2.RGB(), v2.RandomResizedCrop(image_size, scale=(min_scale, 1.0), antialias=True),
             v2.RandomHorizontalFlip()]
    if augment == "trivial":
        steps.append(v2.TrivialAugmentWide())
    if not normalize:
        return v2.Compose(steps + [v2.PILToTensor()])
    return v2.Compose(steps + [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def normalize_batch(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """A uint8 batch (N, C, H, W) from a ``normalize=False`` transform -> float32, normalised as the per-image
    transforms do (memory format kept). Float batches are returned unchanged."""
    if images.dtype != torch.uint8:
        return images
    shape = (1, -1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(shape) * 255
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(shape) * 255
    return images.float().sub_(m).div_(s)


def eval_transform(image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct: float = 0.875,
                   interpolation: str = "bilinear", angle: float = 0.0, scale: float = 1.0, normalize: bool = True):
    """Resize the shortest side to ``image_size / crop_pct``, centre-crop ``image_size``, normalise (the fast.ai and
    timm protocol). ``image_size`` is an int or (height, width).

    ``angle`` (degrees, counter-clockwise) and ``scale`` (>1 zooms in) turn/rescale the crop about its centre, with
    black where the image has no pixels: the robustness sweeps. ``normalize=False``: uint8 out, see
    `normalize_batch`."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    steps = [v2.RGB(),
             v2.Resize(int(round(min(h, w) / crop_pct)), interpolation=InterpolationMode(interpolation),
                       antialias=True),
             v2.CenterCrop((h, w))]
    if angle or scale != 1.0:
        steps.append(v2.Lambda(lambda im: v2.functional.affine(
            im, angle=float(angle), translate=[0.0, 0.0], scale=float(scale), shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR, fill=0)))
    if not normalize:
        return v2.Compose(steps + [v2.PILToTensor()])
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)
