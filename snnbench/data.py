"""Image datasets as whole uint8 tensors, with seeded splits and on-device augmentation.

Invariants
----------
* A :class:`Split` holds ``images`` (uint8 ``[N, C, H, W]``) and ``labels`` (int64 ``[N]``) on one device.
* Every :class:`Dataset` has three disjoint splits: ``train``, ``val`` (held out of the training images by a
  stratified, seeded draw of ``val_fraction`` of each class; never augmented) and ``test`` (the official test
  split; for ``digits`` a fixed rule, see :func:`load_dataset`).
* ``mean`` / ``std`` are per-channel statistics in 0..1 of the ``train`` split (after the validation images
  are removed); :meth:`Dataset.normalize` maps uint8 to ``(x / 255 - mean) / std`` in float32.
* Augmentation (:func:`random_crop_flip`) is a random crop of the zero-padded image plus an optional horizontal
  flip, drawn per image but computed for a whole batch by one gather on the batch's device.

Sources (``load_dataset``): ``digits`` (scikit-learn's embedded 8x8 set, no download), ``cifar10`` /
``cifar100`` (the official python pickles ``cifar-10-batches-py/`` / ``cifar-100-python/``; ``download=True``
fetches them through torchvision), ``tinyimagenet`` (the ``tiny-imagenet-200/`` folder; its labelled ``val``
split is the test split), or a path to ``train.npz`` whose sibling ``test.npz`` holds the test split
(``images`` uint8 ``[N, H, W, C]``, ``labels`` integer ``[N]``).

Reading the CIFAR pickles uses an unpickler that resolves only the few numpy globals those files name.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

NAMES = ("digits", "cifar10", "cifar100", "tinyimagenet")
DATA_DIR_ENV = "SNNBENCH_DATA_DIR"
DIGITS_TEST_EVERY = 5  # digits: image i is a test image iff i % 5 == 4 (359 of 1,797)
MAX_CLASSES = 100_000  # labels are 0 <= y < MAX_CLASSES (the network's num_classes bound)
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@dataclass(frozen=True)
class Split:
    """One split: ``images`` uint8 ``[N, C, H, W]`` and ``labels`` int64 ``[N]`` on the same device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {list(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 [{len(self.images)}], got {self.labels.dtype} {list(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def take(self, index: torch.Tensor | np.ndarray) -> Split:
        """The images at ``index`` (in that order)."""
        idx = torch.as_tensor(index, dtype=torch.int64, device=self.labels.device)
        return Split(self.images[idx], self.labels[idx])


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits of one image classification set, with normalisation statistics."""

    name: str
    train: Split
    val: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    crop_padding: int
    hflip: bool
    source: str = ""
    _affine: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[2])

    @property
    def device(self) -> torch.device:
        return self.train.images.device

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset with every split on ``device``."""
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device), _affine={})

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, C, H, W]`` -> float32 ``(x / 255 - mean) / std`` (computed as ``x * a + b``)."""
        key = images.device
        if key not in self._affine:
            mean = torch.tensor(self.mean, dtype=torch.float64).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float64).view(1, -1, 1, 1)
            a, b = 1.0 / (255.0 * std), -mean / std
            self._affine[key] = (a.float().to(key), b.float().to(key))
        a, b = self._affine[key]
        return torch.addcmul(b, images.float(), a)

    def augment(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random crop (padding ``crop_padding``) and, if ``hflip``, random horizontal flip of a uint8 batch."""
        return random_crop_flip(images, self.crop_padding, self.hflip, generator)

    def subset(self, train: int | None = None, val: int | None = None, test: int | None = None, seed: int = 0) -> Dataset:
        """A seeded random subset of each split (``None`` keeps a split whole); statistics are recomputed."""
        rng = np.random.default_rng(seed)

        def pick(split: Split, n: int | None) -> Split:
            if n is None or n >= len(split):
                return split
            if n < 1:
                raise ValueError(f"subset sizes must be >= 1, got {n}")
            return split.take(np.sort(rng.permutation(len(split))[:n]))

        tr = pick(self.train, train)
        mean, std = channel_stats(tr.images)
        return replace(self, train=tr, val=pick(self.val, val), test=pick(self.test, test), mean=mean, std=std, _affine={})

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: sizes, shape, statistics, augmentation."""
        return {
            "name": self.name,
            "source": self.source,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "num_classes": self.num_classes,
            "channels": self.channels,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_padding": self.crop_padding,
            "hflip": self.hflip,
        }


# --------------------------------------------------------------------------- augmentation


def crop_flip(images: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop image ``i`` of the zero-padded batch at offset ``(dy[i], dx[i])``, mirrored where ``flip[i]``.

    ``dy, dx`` are int64 in ``[0, 2 * padding]``; offset ``padding`` with no flip returns the image unchanged.
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    wp = w + 2 * padding
    rows = dy[:, None] + torch.arange(h, device=images.device)  # [B, H]
    cols = dx[:, None] + torch.arange(w, device=images.device)  # [B, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(padded.reshape(b, c, -1), 2, index).view(b, c, h, w)


def random_crop_flip(
    images: torch.Tensor, padding: int, hflip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch and (if ``hflip``) flip with probability 1/2.

    Draws, in this order, ``dy``, ``dx`` and the flip bits from ``generator`` (on the images' device).
    """
    return crop_flip(images, padding, *draw_crop_flip(images.shape[0], padding, hflip, images.device, generator))


def draw_crop_flip(b: int, padding: int, hflip: bool, device: torch.device,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The draws of :func:`random_crop_flip` for ``b`` images: ``dy``, ``dx`` and the flip bits, in that order."""
    dy = torch.randint(0, 2 * padding + 1, (b,), device=device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=device, generator=generator)
    if hflip:
        flip = torch.randint(0, 2, (b,), device=device, generator=generator).bool()
    else:
        flip = torch.zeros(b, dtype=torch.bool, device=device)
    return dy, dx, flip


# --------------------------------------------------------------------------- statistics and splits


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std in 0..1 of uint8 ``[N, C, H, W]``, accumulated in float64."""
    if len(images) == 0:
        raise ValueError("cannot compute normalisation statistics of an empty training split")
    s = torch.zeros(images.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to("cpu", torch.float64) / 255.0
        s += x.sum(dim=(0, 2, 3))
        s2 += (x * x).sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt()
    return tuple(float(v) for v in mean), tuple(max(float(v), 1e-6) for v in std)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(keep, held_out)`` index arrays: ``round(fraction * n_c)`` random images of each class held out."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        held.append(rng.permutation(members)[: int(round(fraction * len(members)))])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), held_out)
    return keep, held_out


def from_arrays(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    val_fraction: float,
    seed: int,
    num_classes: int | None = None,
    crop_padding: int | None = None,
    hflip: bool = True,
    source: str = "",
) -> Dataset:
    """Build a :class:`Dataset` from uint8 ``[N, H, W, C]`` image arrays and integer labels.

    Holds out the validation split, computes the statistics on what is left, and picks
    ``crop_padding = H // 8`` unless given (CIFAR 4, Tiny-ImageNet 8, digits 1).
    """
    splits = []
    for part, (images, labels) in (("train", train), ("test", test)):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"{name}: {part} images must be uint8 [N, H, W, C], got {images.dtype} {list(images.shape)}")
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"{name}: {part} images must be square, got {images.shape[1]}x{images.shape[2]}")
        if labels.shape != images.shape[:1] or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
            raise ValueError(
                f"{name}: {part} labels must be non-negative integers [{len(images)}], got {labels.dtype} {list(labels.shape)}"
            )
        if labels.size and labels.max() >= MAX_CLASSES:
            raise ValueError(f"{name}: {part} labels must be below {MAX_CLASSES:,} (classes), got label {labels.max()}")
        splits.append((images, labels.astype(np.int64)))
    (tr_x, tr_y), (te_x, te_y) = splits
    if tr_x.shape[1:] != te_x.shape[1:]:
        raise ValueError(f"{name}: train images {list(tr_x.shape[1:])} and test images {list(te_x.shape[1:])} differ in shape")
    if len(tr_x) == 0 or len(te_x) == 0:
        raise ValueError(f"{name}: the train and test splits must not be empty")
    k = int(max(tr_y.max(), te_y.max())) + 1
    if num_classes is not None and k > num_classes:
        raise ValueError(f"{name}: label {k - 1} out of range for {num_classes} classes")
    keep, held = stratified_holdout(tr_y, val_fraction, seed)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y))

    train_split = split(tr_x[keep], tr_y[keep])
    mean, std = channel_stats(train_split.images)
    return Dataset(
        name=name,
        train=train_split,
        val=split(tr_x[held], tr_y[held]),
        test=split(te_x, te_y),
        mean=mean,
        std=std,
        num_classes=num_classes or k,
        crop_padding=tr_x.shape[1] // 8 if crop_padding is None else crop_padding,
        hflip=hflip,
        source=source,
    )


# --------------------------------------------------------------------------- sources


def default_data_dir() -> Path:
    """``$SNNBENCH_DATA_DIR`` or ``~/.cache/snnbench/data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "snnbench" / "data")


def _digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    labels = d.target.astype(np.int64)
    test = np.arange(len(labels)) % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1
    return (images[~test], labels[~test]), (images[test], labels[test])


class _CifarUnpickler(pickle.Unpickler):
    """Resolves only the globals that numpy arrays in the official CIFAR pickles need."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, 32, 32, 3] uint8, labels [N])`` from one official CIFAR python batch file."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoding failure means the file is not a CIFAR batch
        raise ValueError(f"{path}: not an official CIFAR python batch file ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not an official CIFAR python batch file (holds {type(obj).__name__}, not a dict)")
    entries = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in entries or label_key not in entries:
        raise ValueError(f"{path}: CIFAR batch file lacks the '{'data' if 'data' not in entries else label_key}' entry")
    data, labels = np.asarray(entries["data"]), np.asarray(entries[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise ValueError(f"{path}: CIFAR 'data' must be uint8 [N, 3072] with N labels, got {data.dtype} {list(data.shape)}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


_CIFAR = {
    # name: (folder, train files, test files, label key, classes, torchvision class)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10, "CIFAR10"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100, "CIFAR100"),
}


def _cifar(name: str, root: Path, download: bool):
    folder, train_files, test_files, key, _, tv_class = _CIFAR[name]
    base = root / folder
    if download and not base.is_dir():
        import torchvision.datasets as tvd

        getattr(tvd, tv_class)(root=str(root), train=True, download=True)
    missing = [f for f in train_files + test_files if not (base / f).is_file()]
    if missing:
        what = f"{base} is missing" if not base.is_dir() else f"{base} lacks {', '.join(missing)}"
        raise FileNotFoundError(
            f"{name}: {what}; pass --download (download=True) to fetch it into {root}, "
            f"or extract the official python version there"
        )
    parts = []
    for files in (train_files, test_files):
        xs, ys = zip(*(_read_cifar_batch(base / f, key) for f in files))
        parts.append((np.concatenate(xs), np.concatenate(ys)))
    return parts[0], parts[1]


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: unreadable image ({err})") from None


def _stack(paths: list[Path], read: Callable[[Path], np.ndarray], where: Path) -> np.ndarray:
    if not paths:
        raise FileNotFoundError(f"tinyimagenet: no .JPEG images under {where}")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(read, paths, chunksize=256))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"tinyimagenet: images under {where} differ in size: {sorted(shapes)[:3]}")
    return np.stack(images)


def _tinyimagenet(root: Path, download: bool):
    base = root / "tiny-imagenet-200"
    if download and not base.is_dir():
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(TINY_URL, str(root))
    how = f"pass --download (download=True) to fetch {TINY_URL} into {root}, or unzip it there"
    wnids_file = base / "wnids.txt"
    if not wnids_file.is_file():
        what = f"{base} is missing" if not base.is_dir() else f"{wnids_file} is missing"
        raise FileNotFoundError(f"tinyimagenet: {what}; {how}")
    wnids = wnids_file.read_text().split()
    if not wnids or len(set(wnids)) != len(wnids):
        raise ValueError(f"tinyimagenet: {wnids_file} must list distinct class ids (wnids), one per line")
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for w in wnids:
        folder = base / "train" / w / "images"
        if not folder.is_dir():
            raise FileNotFoundError(f"tinyimagenet: {folder} is missing (class {w} of wnids.txt); {how}")
        files = sorted(folder.glob("*.JPEG"))
        if not files:
            raise FileNotFoundError(f"tinyimagenet: no .JPEG images in {folder}; {how}")
        train_paths += files
        train_labels += [index[w]] * len(files)
    annotations = base / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(f"tinyimagenet: {annotations} is missing; {how}")
    val_paths, val_labels = [], []
    for n, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise ValueError(f"tinyimagenet: {annotations} line {n}: expected 'FILE<TAB>WNID...' with a wnid from wnids.txt")
        path = base / "val" / "images" / parts[0]
        if not path.is_file():
            raise FileNotFoundError(f"tinyimagenet: {path} (named in val_annotations.txt line {n}) is missing; {how}")
        val_paths.append(path)
        val_labels.append(index[parts[1]])
    train = (_stack(train_paths, _read_image, base / "train"), np.array(train_labels, dtype=np.int64))
    test = (_stack(val_paths, _read_image, base / "val"), np.array(val_labels, dtype=np.int64))
    return train, test, len(wnids)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: an .npz dataset is train.npz plus a sibling test.npz")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # np.load would try anything else as a pickle and say so
            raise ValueError(f"{path}: not a readable .npz file (no zip signature)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("images", "labels") if k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        reason = "an array holds Python objects (pickled), which snnbench never loads" if "pickle" in str(err) else err
        raise ValueError(f"{path}: not a readable .npz file ({reason})") from None
    if len(arrays) < 2:
        raise ValueError(f"{path}: needs arrays 'images' (uint8 [N, H, W, C]) and 'labels', has {sorted(arrays) or 'neither'}")
    labels = arrays["labels"]
    if labels.dtype.kind in "iu" and labels.size and labels.max() >= MAX_CLASSES:
        raise ValueError(f"{path}: labels must be below {MAX_CLASSES:,} (classes), got label {labels.max()}")
    return arrays["images"], labels


def load_dataset(
    name_or_npz_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Load a dataset on the CPU with a seeded validation split of ``val_fraction`` of the training images.

    * ``digits``: scikit-learn's 1,797 8x8 digits scaled from 0..16 to uint8 0..255 (``round(v * 255 / 16)``),
      1 channel. Fixed test split: image ``i`` (in scikit-learn's order) is a test image iff ``i % 5 == 4``
      (359 images); validation is drawn from the other 1,438. Crop padding 1, no flip (digits are not mirror
      symmetric).
    * ``cifar10`` / ``cifar100``: ``data_dir/cifar-10-batches-py`` / ``data_dir/cifar-100-python`` (official
      python version; fine labels for CIFAR-100); ``download=True`` fetches a missing folder via torchvision.
    * ``tinyimagenet``: ``data_dir/tiny-imagenet-200`` (the labelled ``val`` folder is the test split).
    * a path ending in ``.npz``: that file is the training set, ``test.npz`` beside it the test set.

    ``data_dir`` defaults to :func:`default_data_dir`. Missing or malformed files raise a one-line
    ``FileNotFoundError`` / ``ValueError`` saying what is missing and how to get it.
    """
    text = os.fspath(name_or_npz_path)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    common: dict[str, Any] = {"val_fraction": val_fraction, "seed": seed}
    if text == "digits":
        train, test = _digits()
        return from_arrays("digits", train, test, num_classes=10, crop_padding=1, hflip=False, source="sklearn.datasets.load_digits", **common)
    if text in _CIFAR:
        train, test = _cifar(text, root, download)
        folder = root / _CIFAR[text][0]
        return from_arrays(text, train, test, num_classes=_CIFAR[text][4], source=str(folder), **common)
    if text == "tinyimagenet":
        train, test, k = _tinyimagenet(root, download)
        return from_arrays(text, train, test, num_classes=k, source=str(root / "tiny-imagenet-200"), **common)
    if text.endswith(".npz"):
        path = Path(text)
        if path.name == "test.npz":
            raise ValueError(f"{path}: pass the training file (train.npz); its sibling test.npz is the test split")
        train, test = _read_npz(path), _read_npz(path.with_name("test.npz"))
        return from_arrays(path.parent.name or path.stem, train, test, source=str(path), **common)
    raise ValueError(f"unknown dataset {text!r}: use one of {', '.join(NAMES)} or a path to a train .npz file")


def npz_digest(train_path: str | os.PathLike) -> str:
    """First 16 hex digits of the sha256 of an .npz dataset's files (``train.npz``, then its ``test.npz``): the
    identity a table records for it, whatever its path."""
    h = hashlib.sha256()
    for path in (Path(train_path), Path(train_path).with_name("test.npz")):
        if path.exists():
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]
