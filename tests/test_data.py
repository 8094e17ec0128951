"""Datasets: fast.ai archives extracted once and atomically, noisy labels, folders, transforms, seeded augmentation."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from convtwist_zoo import data as data_lib


def test_archive_extracted_once_with_marker(tiny_fastai, tmp_path):
    root = data_lib.prepare_dataset("imagewoof", tiny_fastai)
    assert root == tmp_path / "cache" / "data" / "imagewoof2-160"
    assert (root / ".complete").exists() and len(list((root / "train").rglob("*.png"))) == 12
    stamp = (root / ".complete").stat().st_mtime_ns
    assert data_lib.prepare_dataset("imagewoof", tiny_fastai) == root
    assert (root / ".complete").stat().st_mtime_ns == stamp  # not extracted again
    train, val, ids, names = data_lib.build_datasets("imagewoof", str(tiny_fastai))
    assert (len(train), len(val), ids, names) == (12, 6, ("n1", "n2", "n3"), ("one", "two", "three"))


def test_env_var_locates_archive(tiny_fastai, monkeypatch):
    monkeypatch.setenv("CONVTWIST_DATA", str(tiny_fastai))
    assert data_lib.find_archive(data_lib.DATASETS["imagewoof"]).name == "imagewoof2-160.tgz"


def test_truncated_archive_leaves_nothing_complete(tiny_fastai, tmp_path):
    archive = tiny_fastai / "imagewoof2-160.tgz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises((tarfile.TarError, EOFError, OSError)):
        data_lib.prepare_dataset("imagewoof", tiny_fastai)
    target = tmp_path / "cache" / "data" / "imagewoof2-160"
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if not p.name.startswith(".")] if target.parent.exists() else True


def test_incomplete_archive_is_refused(tiny_fastai, monkeypatch):
    info = data_lib.DATASETS["imagewoof"]
    monkeypatch.setitem(data_lib.DATASETS, "imagewoof", data_lib.DatasetInfo(
        info.name, info.archives, info.class_ids, info.class_names, {"train": 13, "val": 6}))
    with pytest.raises(data_lib.DatasetNotFoundError, match="incomplete or corrupt"):
        data_lib.prepare_dataset("imagewoof", tiny_fastai)


def test_noisy_labels_column(tiny_fastai):
    clean, _, _, _ = data_lib.build_datasets("imagewoof", str(tiny_fastai))
    noisy, _, _, _ = data_lib.build_datasets("imagewoof", str(tiny_fastai), noise=5)
    changed = [(Path(a[0]).name, a[1], b[1]) for a, b in zip(clean.samples, noisy.samples) if a[1] != b[1]]
    assert sorted(changed) == [("n1_0.png", 0, 2), ("n2_0.png", 1, 2)]
    with pytest.raises(ValueError, match="choose --noise among"):
        data_lib.build_datasets("imagewoof", str(tiny_fastai), noise=7)


def test_missing_dataset_error_names_places(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVTWIST_ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONVTWIST_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(data_lib.DatasetNotFoundError) as e:
        data_lib.build_datasets("imagenette")
    assert str(tmp_path / "nowhere" / "imagenette2-160sq.tgz") in str(e.value)
    assert "convtwist-zoo download imagenette" in str(e.value)
    assert "pass --data-dir FOLDER or set CONVTWIST_DATA=FOLDER" in str(e.value)  # the flag the commands take


def test_folder_dataset_and_bad_folder(image_folder, tmp_path):
    (image_folder / "classes.txt").write_text("c0\tzero\nc1\tone\n")
    train, val, ids, names = data_lib.build_datasets(str(image_folder))
    assert ids == ("c0", "c1", "c2") and names == ("zero", "one", "c2") and len(train) == 24
    with pytest.raises(data_lib.DatasetNotFoundError, match="train/ and val/"):
        data_lib.build_datasets(str(tmp_path))
    assert data_lib.val_split(str(image_folder)) == image_folder / "val"
    with pytest.raises(data_lib.DatasetNotFoundError) as e:  # eval and robustness read val/ only
        data_lib.val_split(str(tmp_path / "nowhere"))
    assert str(e.value) == (f"'{tmp_path / 'nowhere'}' is neither a known dataset (imagenette, imagewoof) nor a "
                            "folder with a val/ sub-folder holding one folder of images per class")


def test_seeded_augmentation_depends_on_epoch_and_index_only(image_folder):
    train, _, _, _ = data_lib.build_datasets(str(image_folder))
    ds = data_lib.SeededTransformDataset(train, data_lib.train_transform(32), seed=3)
    a = ds[5][0]
    torch.rand(10)  # global RNG use must not matter
    assert torch.equal(ds[5][0], a)
    ds.set_epoch(1)
    assert not torch.equal(ds[5][0], a)
    assert a.shape == (3, 32, 32)


def test_seeded_augmentation_is_the_published_runs_and_leaves_the_global_rng(image_folder):
    """Seeding only the CPU generator (fast) gives the crops `torch.manual_seed` gave the zoo's training runs, and
    the caller's RNG state is restored."""
    train, _, _, _ = data_lib.build_datasets(str(image_folder))
    tf = data_lib.train_transform(32, normalize=False)
    ds = data_lib.SeededTransformDataset(train, tf, seed=3)
    ds.set_epoch(2)
    state = torch.get_rng_state()
    got = ds[1][0]
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed((3 * 1_000_003 + 2) * 10_000_019 + 1)
    assert torch.equal(got, tf(train[1][0]))
    assert got.dtype == torch.uint8 and not torch.equal(got, ds[2][0])



def test_uint8_transforms_with_batch_normalisation_match_the_float_transforms(image_folder):
    # training ships uint8 crops out of the workers and normalises whole batches: the same pixels as per-image floats
    from convtwist_zoo.data.transforms import normalize_batch
    train, _, _, _ = data_lib.build_datasets(str(image_folder))
    as_float = data_lib.SeededTransformDataset(train, data_lib.train_transform(32), seed=3)
    as_uint8 = data_lib.SeededTransformDataset(train, data_lib.train_transform(32, normalize=False), seed=3)
    raw = torch.stack([as_uint8[i][0] for i in range(4)])
    assert raw.dtype == torch.uint8 and raw.shape == (4, 3, 32, 32)
    batch = normalize_batch(raw.contiguous(memory_format=torch.channels_last))
    assert batch.dtype == torch.float32 and batch.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(batch, torch.stack([as_float[i][0] for i in range(4)]), rtol=0, atol=1e-5)
    img = train[0][0]
    torch.testing.assert_close(normalize_batch(data_lib.eval_transform(24, normalize=False)(img)[None])[0],
                               data_lib.eval_transform(24)(img), rtol=0, atol=1e-5)
    assert normalize_batch(batch) is batch  # float batches pass through

def test_eval_transform_resize_crop_and_rotation():
    from PIL import Image
    img = Image.new("RGB", (300, 200), (255, 0, 0))
    x = data_lib.eval_transform(128)(img)
    assert x.shape == (3, 128, 128)
    assert torch.allclose(x[:, 64, 64], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]),
                          atol=1e-3)
    turned = data_lib.eval_transform(128, angle=45)(img)
    black = torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])
    assert torch.allclose(turned[:, 0, 0], black, atol=1e-3) and torch.allclose(turned[:, 64, 64], x[:, 64, 64])


@pytest.mark.skipif(not (SHARED_DATA / "imagenette2-160sq.tgz").exists(), reason="shared data not present")
def test_shared_archives_are_found():
    for name in ("imagenette", "imagewoof"):
        assert data_lib.find_archive(data_lib.DATASETS[name], SHARED_DATA).suffix == ".tgz"


def test_training_images_decode_like_pil_and_crop_within_one_grey_level(image_folder, tmp_path):
    """The training split decodes with TorchCodec and crops tensors: decoding equals PIL's bit for bit, and the
    seeded crops are the ones the PIL path of the published runs made, within one grey level (resampling rounding)."""
    from PIL import Image
    from torchvision.datasets.folder import pil_loader
    from torchvision.transforms.v2.functional import pil_to_tensor
    asset = Path(data_lib.__file__).parents[1] / "assets" / "tench.jpg"
    noisy = np.asarray(Image.open(image_folder / "train" / "c0" / "c0_0.png").resize((96, 80)))
    Image.fromarray(noisy).save(tmp_path / "noisy.jpg", quality=90)
    Image.fromarray(noisy).save(tmp_path / "noisy.bmp")  # a format TorchCodec does not read: PIL's path
    Image.fromarray(noisy[..., 0]).save(tmp_path / "grey.png")
    for path in (asset, tmp_path / "noisy.jpg", tmp_path / "noisy.bmp", tmp_path / "grey.png"):
        ours = data_lib.read_image(str(path))
        assert ours.dtype == torch.uint8 and ours.shape[0] == 3
        assert torch.equal(ours, pil_to_tensor(pil_loader(str(path)))), path
    train, val, _, _ = data_lib.build_datasets(str(image_folder))
    assert isinstance(val[0][0], Image.Image)  # evaluation keeps PIL's resize, as the published metrics used
    tf = data_lib.train_transform(32, normalize=False)
    worst = []
    for i, (path, _) in enumerate(train.samples + [(str(asset), 0), (str(tmp_path / "noisy.jpg"), 0)]):
        torch.manual_seed(i)
        ours = tf(data_lib.read_image(path))
        torch.manual_seed(i)
        published = tf(pil_loader(path))
        assert ours.shape == published.shape == (3, 32, 32)
        worst.append((ours.int() - published.int()).abs().max().item())
    assert max(worst) <= 1 and sum(worst) > 0  # rounding differs somewhere; nowhere by more than one level


def test_unreadable_training_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(OSError, match="broken.jpg.*Remove or replace"):
        data_lib.read_image(str(bad))
