"""Datasets: official on-disk formats written here, seeded splits, statistics, on-device augmentation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from snnbench.data import crop_flip, from_arrays, load_dataset, random_crop_flip

RNG = np.random.default_rng(1234)


# --------------------------------------------------------------------------- augmentation


def naive_crop_flip(img: np.ndarray, p: int, dy: int, dx: int, flip: bool) -> np.ndarray:
    """One [C, H, W] image: zero-pad, crop at (dy, dx), mirror."""
    c, h, w = img.shape
    padded = np.zeros((c, h + 2 * p, w + 2 * p), dtype=img.dtype)
    padded[:, p : p + h, p : p + w] = img
    out = padded[:, dy : dy + h, dx : dx + w]
    return out[:, :, ::-1] if flip else out


@pytest.mark.parametrize("padding,shape", [(4, (7, 3, 12, 12)), (1, (5, 1, 8, 8)), (2, (3, 2, 5, 9))])
def test_crop_flip_equals_per_image_loop(padding, shape):
    imgs = torch.from_numpy(RNG.integers(0, 256, shape, dtype=np.uint8))
    b = shape[0]
    dy = torch.from_numpy(RNG.integers(0, 2 * padding + 1, b))
    dx = torch.from_numpy(RNG.integers(0, 2 * padding + 1, b))
    flip = torch.from_numpy(RNG.integers(0, 2, b).astype(bool))
    out = crop_flip(imgs, padding, dy, dx, flip)
    assert out.dtype == torch.uint8 and out.shape == imgs.shape
    for i in range(b):
        expect = naive_crop_flip(imgs[i].numpy(), padding, int(dy[i]), int(dx[i]), bool(flip[i]))
        np.testing.assert_array_equal(out[i].numpy(), expect)


def test_random_crop_flip_draws_every_offset_and_is_seeded():
    p, b = 2, 400
    imgs = torch.from_numpy(RNG.integers(1, 256, (1, 1, 6, 6), dtype=np.uint8)).expand(b, 1, 6, 6).contiguous()
    out = random_crop_flip(imgs, p, True, torch.Generator().manual_seed(5))
    again = random_crop_flip(imgs, p, True, torch.Generator().manual_seed(5))
    assert torch.equal(out, again)
    candidates = {
        (dy, dx, f): naive_crop_flip(imgs[0].numpy(), p, dy, dx, f).tobytes()
        for dy in range(2 * p + 1)
        for dx in range(2 * p + 1)
        for f in (False, True)
    }
    seen = set()
    for i in range(b):
        matches = [k for k, v in candidates.items() if v == out[i].numpy().tobytes()]
        assert matches, "output is not a crop/flip of the input"
        seen.update(matches)
    assert seen == set(candidates)  # 50 outcomes, 400 draws: all appear (fails with prob < 1e-5)
    no_flip = random_crop_flip(imgs, 0, False, torch.Generator().manual_seed(5))
    assert torch.equal(no_flip, imgs)


# --------------------------------------------------------------------------- digits, statistics, splits


def test_digits_fixed_test_split_seeded_val_and_stats():
    from sklearn.datasets import load_digits

    raw = load_digits()
    d = load_dataset("digits", seed=0)
    assert (d.channels, d.image_size, d.num_classes, d.crop_padding, d.hflip) == (1, 8, 10, 1, False)
    test_idx = np.arange(1797)[np.arange(1797) % 5 == 4]
    np.testing.assert_array_equal(d.test.labels.numpy(), raw.target[test_idx])
    expect = np.round(raw.images[test_idx] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(d.test.images[:, 0].numpy(), expect)
    assert len(d.train) + len(d.val) == 1797 - 359 and len(d.test) == 359
    # stratified hold-out: round(0.1 * n_c) per class
    rest = raw.target[np.arange(1797) % 5 != 4]
    np.testing.assert_array_equal(
        np.bincount(d.val.labels.numpy(), minlength=10), np.round(0.1 * np.bincount(rest, minlength=10)).astype(int)
    )
    # train + val is exactly the non-test multiset of images
    non_test = np.round(raw.images[np.arange(1797) % 5 != 4] * 255 / 16).astype(np.uint8)
    both = torch.cat([d.train.images, d.val.images])[:, 0].numpy()
    assert sorted(x.tobytes() for x in both) == sorted(x.tobytes() for x in non_test)
    # statistics are those of the train split only, in 0..1
    x = d.train.images.numpy().astype(np.float64) / 255
    assert d.mean[0] == pytest.approx(x.mean(), abs=1e-12) and d.std[0] == pytest.approx(x.std(), abs=1e-12)
    # seeds: same seed same split, another seed another validation set, same test set
    same, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(same.val.images, d.val.images) and not torch.equal(other.val.images, d.val.images)
    assert torch.equal(other.test.images, d.test.images)


def test_normalize_matches_formula_and_subset():
    d = load_dataset("digits", seed=3)
    x = d.train.images[:50]
    got = d.normalize(x)
    expect = (x.double() / 255 - d.mean[0]) / d.std[0]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expect, atol=1e-5, rtol=0)
    s = d.subset(train=100, test=30, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (100, len(d.val), 30)
    xs = s.train.images.numpy().astype(np.float64) / 255
    assert s.mean[0] == pytest.approx(xs.mean(), abs=1e-12)


def test_val_fraction_zero_and_bad_names():
    d = load_dataset("digits", val_fraction=0.0)
    assert len(d.val) == 0 and len(d.train) == 1438
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


# --------------------------------------------------------------------------- CIFAR pickles (official layout)


def write_cifar_batch(path, images_chw: np.ndarray, labels, key: bytes, extra: dict | None = None) -> None:
    """Exactly the official layout: a dict with bytes keys, 'data' uint8 [N, 3072] (R plane, G, B, row-major)."""
    obj = {b"batch_label": b"testing batch 1 of 1", key: list(map(int, labels)), b"data": images_chw.reshape(len(labels), -1)}
    obj[b"filenames"] = [f"img_{i}.png".encode() for i in range(len(labels))]
    obj.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar10(root, n_per_batch=6):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    truth = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        imgs = RNG.integers(0, 256, (n_per_batch, 3, 32, 32), dtype=np.uint8)
        labels = RNG.integers(0, 10, n_per_batch)
        write_cifar_batch(base / name, imgs, labels, b"labels")
        truth[name] = (imgs, labels)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_vis": 3072, b"num_cases_per_batch": n_per_batch}, f, protocol=2)
    return truth


def test_cifar10_official_pickles(tmp_path):
    truth = make_cifar10(tmp_path)
    d = load_dataset("cifar10", tmp_path, val_fraction=0.0)
    assert (d.channels, d.image_size, d.num_classes, d.crop_padding, d.hflip) == (3, 32, 10, 4, True)
    train_imgs = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(d.train.images.numpy(), train_imgs)
    flat = truth["test_batch"][0].reshape(6, 3072)  # pixel (c, y, x) is data[c * 1024 + y * 32 + x]
    assert d.test.images[2, 1, 5, 7].item() == flat[2, 1 * 1024 + 5 * 32 + 7]
    np.testing.assert_array_equal(d.test.labels.numpy(), truth["test_batch"][1])
    mean = train_imgs.reshape(30, 3, -1).transpose(1, 0, 2).reshape(3, -1).astype(np.float64).mean(1) / 255
    np.testing.assert_allclose(d.mean, mean, atol=1e-12)


def test_cifar100_official_pickles(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    imgs = RNG.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    fine = np.arange(20) * 5  # labels up to 95
    write_cifar_batch(base / "train", imgs, fine, b"fine_labels", {b"coarse_labels": [0] * 20})
    write_cifar_batch(base / "test", imgs[:4], fine[:4], b"fine_labels", {b"coarse_labels": [0] * 4})
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"x"] * 100, b"coarse_label_names": [b"y"] * 20}, f, protocol=2)
    d = load_dataset("cifar100", tmp_path, val_fraction=0.0)
    assert d.num_classes == 100 and len(d.train) == 20 and len(d.test) == 4
    np.testing.assert_array_equal(d.train.labels.numpy(), fine)
    np.testing.assert_array_equal(d.train.images.numpy(), imgs)


def test_cifar_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py is missing.*--download"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python is missing.*--download"):
        load_dataset("cifar100", tmp_path)
    make_cifar10(tmp_path)
    base = tmp_path / "cifar-10-batches-py"
    (base / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        load_dataset("cifar10", tmp_path)
    (base / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="data_batch_3: not an official CIFAR python batch file"):
        load_dataset("cifar10", tmp_path)
    marker = tmp_path / "pwned"
    (base / "data_batch_3").write_bytes(pickle.dumps(os.system, protocol=2))  # a global that is not allowed
    with pytest.raises(ValueError, match="not allowed"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    write_cifar_batch(base / "data_batch_3", np.zeros((2, 3, 16, 16), np.uint8), [0, 1], b"labels")
    with pytest.raises(ValueError, match=r"uint8 \[N, 3072\]"):
        load_dataset("cifar10", tmp_path)


# --------------------------------------------------------------------------- Tiny-ImageNet folders


COLORS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def make_tiny(root, size=16):
    base = root / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577"]
    (base).mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for k, w in enumerate(wnids):
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (size, size), COLORS[k]).save(folder / f"{w}_{i}.JPEG")
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for i, k in enumerate([2, 0, 1, 2]):
        name = f"val_{i}.JPEG"
        if i == 3:  # a grayscale JPEG, as some Tiny-ImageNet files are
            Image.new("L", (size, size), 128).save(base / "val" / "images" / name)
        else:
            Image.new("RGB", (size, size), COLORS[k]).save(base / "val" / "images" / name)
        lines.append(f"{name}\t{wnids[k]}\t0\t0\t{size - 1}\t{size - 1}")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base, wnids


def test_tinyimagenet_folder_layout(tmp_path):
    make_tiny(tmp_path)
    d = load_dataset("tinyimagenet", tmp_path, val_fraction=0.25)
    assert (d.num_classes, d.channels, d.image_size, d.crop_padding) == (3, 3, 16, 2)
    assert (len(d.train), len(d.val), len(d.test)) == (9, 3, 4)
    np.testing.assert_array_equal(np.bincount(d.val.labels.numpy()), [1, 1, 1])
    np.testing.assert_array_equal(d.test.labels.numpy(), [2, 0, 1, 2])
    for split in (d.train, d.test):
        for img, label in zip(split.images[:3], split.labels[:3]):
            colour = img.float().mean(dim=(1, 2)).numpy()
            assert np.abs(colour - np.array(COLORS[int(label)])).max() < 12  # JPEG round trip of a flat colour
    grey = d.test.images[3].float()
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])


def test_tinyimagenet_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tiny-imagenet-200 is missing.*--download"):
        load_dataset("tinyimagenet", tmp_path)
    base, wnids = make_tiny(tmp_path)
    ann = base / "val" / "val_annotations.txt"
    text = ann.read_text()
    ann.write_text(text.replace(wnids[0], "n99999999", 1))
    with pytest.raises(ValueError, match="val_annotations.txt line 2"):
        load_dataset("tinyimagenet", tmp_path)
    ann.unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt is missing"):
        load_dataset("tinyimagenet", tmp_path)
    ann.write_text(text)
    for f in (base / "train" / wnids[1] / "images").iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match=f"no .JPEG images in .*{wnids[1]}"):
        load_dataset("tinyimagenet", tmp_path)


# --------------------------------------------------------------------------- npz pairs


def test_npz_pair(tmp_path):
    tr_x = RNG.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    tr_y = np.repeat(np.arange(4), 10)
    te_x = RNG.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", images=tr_x, labels=tr_y, classes=np.array(["a", "b", "c", "d"]))
    np.savez(tmp_path / "test.npz", images=te_x, labels=np.arange(6) % 4)
    d = load_dataset(tmp_path / "train.npz", val_fraction=0.2, seed=7)
    assert (d.num_classes, d.channels, d.image_size, len(d.train), len(d.val), len(d.test)) == (4, 3, 8, 32, 8, 6)
    np.testing.assert_array_equal(d.test.images.numpy(), te_x.transpose(0, 3, 1, 2))
    rows = {x.tobytes() for x in tr_x.transpose(0, 3, 1, 2)}
    assert all(x.numpy().tobytes() in rows for x in torch.cat([d.train.images, d.val.images]))


def test_npz_errors(tmp_path):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "train.npz", images=x, labels=np.arange(4))
    with pytest.raises(FileNotFoundError, match="test.npz is missing"):
        load_dataset(tmp_path / "train.npz")
    np.savez(tmp_path / "test.npz", images=x)
    with pytest.raises(ValueError, match="needs arrays 'images'.*'labels'"):
        load_dataset(tmp_path / "train.npz")
    np.savez(tmp_path / "test.npz", images=x.astype(np.float32), labels=np.arange(4))
    with pytest.raises(ValueError, match=r"test images must be uint8"):
        load_dataset(tmp_path / "train.npz")
    (tmp_path / "test.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_dataset(tmp_path / "train.npz")
    with pytest.raises(ValueError, match="pass the training file"):
        load_dataset(tmp_path / "test.npz")
    np.savez(tmp_path / "test.npz", images=x, labels=np.array([0, 1, 2, 30_000_000_000]))  # not 3e10 classes
    with pytest.raises(ValueError) as err:
        load_dataset(tmp_path / "train.npz")
    assert str(err.value) == f"{tmp_path / 'test.npz'}: labels must be below 100,000 (classes), got label 30000000000"


def test_from_arrays_refuses_labels_past_the_class_bound() -> None:
    x, y = np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 100_000], np.uint64)
    with pytest.raises(ValueError) as err:
        from_arrays("mine", (x, np.arange(2)), (x, y), val_fraction=0.0, seed=0)
    assert str(err.value) == "mine: test labels must be below 100,000 (classes), got label 100000"
    assert from_arrays("mine", (x, np.arange(2)), (x, np.array([0, 99_999])), val_fraction=0.0, seed=0).num_classes == 100_000


def test_make_subset_keeps_balanced_source_rows_and_loads(tmp_path) -> None:
    """benchmarks/make_subset.py: per-class counts, rows found in the source in order, seeded, loadable."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("make_subset", Path(__file__).resolve().parents[1] / "benchmarks/make_subset.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    src.mkdir()
    for split, n in (("train", 90), ("test", 40)):
        labels = rng.integers(0, 3, n)
        images = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
        images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256  # each row tells its index
        np.savez(src / f"{split}.npz", images=images, labels=labels, classes=np.array(["a", "b", "c"]))
    mod.write_subset(src, tmp_path / "out", {"train": 30, "test": 9}, seed=1)
    for split, n in (("train", 30), ("test", 9)):
        with np.load(src / f"{split}.npz") as a, np.load(tmp_path / "out" / f"{split}.npz") as b:
            index = b["images"][:, 0, 0, 0].astype(int) + 256 * b["images"][:, 0, 0, 1].astype(int)
            assert len(index) == n and (np.diff(index) > 0).all()  # source order kept, no repeats
            assert np.array_equal(b["images"], a["images"][index]) and np.array_equal(b["labels"], a["labels"][index])
            assert np.bincount(b["labels"], minlength=3).tolist() == [n // 3] * 3
            assert b["classes"].tolist() == ["a", "b", "c"]
    again = mod.subset_indices(np.load(src / "train.npz")["labels"], 30, 1)
    assert np.array_equal(again, mod.subset_indices(np.load(src / "train.npz")["labels"], 30, 1))
    assert not np.array_equal(again, mod.subset_indices(np.load(src / "train.npz")["labels"], 30, 2))
    with pytest.raises(ValueError, match="evenly"):
        mod.subset_indices(np.zeros(10, int) + np.arange(10) % 3, 10, 0)
    with pytest.raises(ValueError, match="fewer than"):
        mod.subset_indices(np.array([0] * 8 + [1, 2]), 6, 0)
    data = load_dataset(str(tmp_path / "out" / "train.npz"), val_fraction=0.0)
    assert data.num_classes == 3 and len(data.train.labels) + len(data.val.labels) == 30
