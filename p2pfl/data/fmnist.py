"""Fashion-MNIST: IDX files, search, download, the embedded split (:func:`_load_fmnist`)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from p2pfl.errors import DataError

from .base import (
    DatasetBundle,
    TensorData,
    _candidate_dirs,
    _find_file,
    _limit_split,
    _rng,
    _stratified_take,
)

#: The package's logger: records keep the name "p2pfl.data" they had before the split.
logger = logging.getLogger("p2pfl.data")

#: Official Fashion-MNIST mirror (Zalando Research); ``load_dataset(mirror=...)`` overrides it.
FASHION_MNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: sha256 of the official gzip files, as published in zalandoresearch/fashion-mnist.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}

#: The four files of the full set, keyed by role; each may also be stored uncompressed.
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Folder of the embedded official test split (shipped as package data).
#: ``p2pfl/_data/fashion-mnist``: this module is ``p2pfl/data/fmnist.py``.
EMBEDDED_FASHION_MNIST_DIR = Path(__file__).resolve().parent.parent / "_data" / "fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20

# --------------------------------------------------------------------------------------
# Fashion-MNIST: IDX files, search, download


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzip-compressed, by ``.gz`` suffix).

    Parameters
    ----------
    path
        File to read.
    magic
        Expected magic number (``0x801`` labels, ``0x803`` images); ``None`` accepts any
        unsigned-byte IDX file.

    Returns
    -------
    numpy.ndarray
        uint8 array of the shape given in the header (read-only view of the file bytes).

    Raises
    ------
    DataError
        The file cannot be read, its magic number is wrong or its size does not match the
        header. The message names the file.
    """
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read IDX file: {exc}") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    (found,) = struct.unpack(">I", raw[:4])
    ndim = raw[3]
    if raw[:3] != b"\x00\x00\x08" or ndim == 0 or (magic is not None and found != magic):
        wanted = f"0x{magic:08x}" if magic is not None else "0x000008nn (unsigned-byte IDX)"
        raise DataError(f"{path}: bad IDX magic number 0x{found:08x}, expected {wanted}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(
            f"{path}: {len(raw)} bytes but the header {dims} implies {expected}; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_fmnist_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one images/labels pair of Fashion-MNIST."""
    images = read_idx(images_path, magic=_IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, magic=_IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{labels_path}: label {int(labels.max())} is not in 0..9")
    return images, labels


def _find_full_fmnist(directory: Path) -> dict[str, Path] | None:
    found = {role: _find_file(directory, stem) for role, stem in FASHION_MNIST_FILES.items()}
    if any(p is None for p in found.values()):
        return None
    return found  # type: ignore[return-value]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_verified(url: str, dest: Path, sha256: str) -> None:
    """Download ``url`` to ``dest`` atomically, accepting it only if its sha256 matches."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                    for chunk in iter(lambda: resp.read(_CHUNK), b""):
                        h.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DataError(f"download of {url} failed: {exc}") from exc
        got = h.hexdigest()
        if got != sha256:
            raise DataError(
                f"download of {url}: sha256 {got} does not match the expected {sha256}; "
                "the file is corrupt or the mirror serves something else"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _download_fmnist(cache_dir: Path, mirror: str) -> dict[str, Path]:
    """Ensure the four official files are in ``cache_dir``, downloading what is missing."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create cache_dir {cache_dir}: {exc}") from exc
    paths: dict[str, Path] = {}
    for role, stem in FASHION_MNIST_FILES.items():
        name = stem + ".gz"
        dest = cache_dir / name
        expected = FASHION_MNIST_SHA256[name]
        if dest.is_file() and _sha256(dest) == expected:
            logger.debug("using cached %s", dest)
        else:
            url = mirror.rstrip("/") + "/" + name
            logger.info("downloading %s to %s", url, dest)
            _download_verified(url, dest, expected)
        paths[role] = dest
    return paths


def _images_to_tensor(images: np.ndarray) -> torch.Tensor:
    arr = images.astype(np.float32)[:, None, :, :]
    arr /= 255.0
    return torch.from_numpy(arr)


def _load_fmnist(
    search: Sequence[str | os.PathLike],
    download: bool,
    cache_dir: Path | None,
    mirror: str,
    seed: int,
    embedded_test_fraction: float,
    max_train: int | None,
    max_test: int | None,
) -> DatasetBundle:
    dirs = list(search) + ([cache_dir] if cache_dir is not None else [])
    looked = _candidate_dirs(dirs, ("fashion-mnist", "FashionMNIST/raw"))
    files: dict[str, Path] | None = None
    origin = ""
    for d in looked:
        files = _find_full_fmnist(d)
        if files is not None:
            origin = f"full Fashion-MNIST from {d}"
            break
    if files is None and download and cache_dir is None:
        logger.warning("download=True has no effect without a cache_dir")
    if files is None and download and cache_dir is not None:
        files = _download_fmnist(cache_dir, mirror)
        origin = f"full Fashion-MNIST downloaded from {mirror} to {cache_dir}"

    if files is not None:
        tr_x, tr_y = _read_fmnist_pair(files["train_images"], files["train_labels"])
        te_x, te_y = _read_fmnist_pair(files["test_images"], files["test_labels"])
    else:
        emb_images = _find_file(EMBEDDED_FASHION_MNIST_DIR, FASHION_MNIST_FILES["test_images"])
        emb_labels = _find_file(EMBEDDED_FASHION_MNIST_DIR, FASHION_MNIST_FILES["test_labels"])
        if emb_images is None or emb_labels is None:
            places = ", ".join(str(d) for d in [*looked, EMBEDDED_FASHION_MNIST_DIR]) or "-"
            hint = "" if download else "; pass download=True with a cache_dir to fetch it"
            raise DataError(
                f"Fashion-MNIST not found; looked for {', '.join(FASHION_MNIST_FILES.values())} "
                f"(optionally .gz) in: {places}{hint}"
            )
        where = (
            f"full Fashion-MNIST not found in {', '.join(str(d) for d in dirs)} (nor in their "
            "fashion-mnist/ or FashionMNIST/raw/ folders)"
            if dirs
            else "no data search directories were given"
        )
        logger.warning(
            "%s; using the embedded 10,000-image test split instead (point --data-dir, "
            "$P2PFL_DATA or data.data_dir at the four IDX files for the full set)",
            where,
        )
        images, labels = _read_fmnist_pair(emb_images, emb_labels)
        test_idx = _stratified_take(
            labels, round(labels.shape[0] * embedded_test_fraction), _rng(seed, 0)
        )
        is_test = np.zeros(labels.shape[0], dtype=bool)
        is_test[test_idx] = True
        tr_x, tr_y = images[~is_test], labels[~is_test]
        te_x, te_y = images[is_test], labels[is_test]
        origin = "embedded Fashion-MNIST test split"
    kind = "full" if files is not None else "embedded"

    counts = f"{tr_y.shape[0]} train / {te_y.shape[0]} test"
    (tr_x, tr_y), (te_x, te_y), subset = _limit_split((tr_x, tr_y), (te_x, te_y), max_train, max_test, seed)
    source = f"{origin} ({counts}){subset}"
    logger.info("dataset fmnist: %s", source)
    classes = len(FASHION_MNIST_CLASSES)
    return DatasetBundle(
        train=TensorData(_images_to_tensor(tr_x), torch.from_numpy(tr_y.astype(np.int64)), classes),
        test=TensorData(_images_to_tensor(te_x), torch.from_numpy(te_y.astype(np.int64)), classes),
        name="fmnist",
        source=source,
        input_shape=(1, 28, 28),
        kind=kind,
    )
