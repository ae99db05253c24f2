"""Datasets and their partition over nodes.

Two datasets are supported:

``"fmnist"``
    Fashion-MNIST images, ``x`` of shape ``(N, 1, 28, 28)``, float32 pixels in ``[0, 1]``.
    Where the files come from, in order:

    1. a folder given in ``search`` (or ``cache_dir``) holding all four IDX files, directly
       or in ``fashion-mnist/`` or ``FashionMNIST/raw/`` below it: the full 60,000 / 10,000
       split;
    2. with ``download=True`` and a ``cache_dir``: the four official files from
       :data:`FASHION_MNIST_MIRROR`, checked against their published sha256;
    3. otherwise the copy of the official 10,000-image *test* split embedded in the package
       (``p2pfl/_data/fashion-mnist``), split by class into train and test parts.

``"adult"``
    UCI Adult ("Census Income"), ``x`` of shape ``(N, F)``: numeric columns standardised and
    categorical columns one-hot encoded, both fitted on the train file only; ``y`` is 1 when
    income is above 50K. It is not embedded; a folder with ``adult.data(.gz)`` and
    ``adult.test(.gz)`` must be given in ``search``.

Your own data: ``data.dataset = "package.module:loader"`` (an import path, see
:mod:`p2pfl.imports`), or a loader callable or the tensors themselves given to
:class:`~p2pfl.Experiment`. A loader is called with those of these keywords it takes::

    loader(seed: int, data_dirs: tuple[Path, ...]) -> UserData | (x_train, y_train, x_test, y_test, classes)

``data_dirs`` is the run's data search path (``--data-dir``, ``data.data_dir``, ...).
Inputs are any real-valued tensors or arrays of shape ``(N, *input_shape)`` (cast to
float32, every value finite), labels 1-D integers in ``[0, classes)``; see
:func:`user_bundle`. ``max_train``/``max_test`` take class-stratified subsets as for the
built-in sets; ``test_fraction`` does not apply (the loader gives its own test split).

Partitions (:func:`partition`) are pure functions of the label vector and a seed; every
random choice in this module comes from a ``numpy.random.Generator`` built from the
caller's seed, never from global state.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import re
import struct
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from p2pfl.errors import ConfigError, DataError
from p2pfl.imports import (
    IMPORT_PATH_HELP,
    call_with,
    import_object,
    import_path_of,
    is_import_path,
    is_placeholder,
)

logger = logging.getLogger(__name__)

DATASETS = ("fmnist", "adult")

#: The documented signature of a user's data loader (quoted in error messages).
LOADER_SIGNATURE = "loader(seed, data_dirs) -> UserData or (x_train, y_train, x_test, y_test, classes)"

#: ``DatasetBundle.name`` of user data (short: it travels in the handshake's data identity).
USER_DATASET = "custom"
PARTITIONS = ("iid", "dirichlet", "shards")

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
EMBEDDED_FASHION_MNIST_DIR = Path(__file__).resolve().parent / "_data" / "fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
)  # fmt: skip
ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")

_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------
# containers


@dataclass(frozen=True, eq=False)
class TensorData:
    """An in-memory labelled set.

    Attributes
    ----------
    x : torch.Tensor
        float32 inputs, ``(N, 1, 28, 28)`` for images or ``(N, F)`` for tabular data.
    y : torch.Tensor
        int64 labels ``(N,)`` in ``[0, classes)``.
    classes : int
        Number of classes of the task (not necessarily all present in this set).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: int

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")
        if self.y.dtype != torch.int64 or self.y.dim() != 1:
            raise ValueError(
                f"y must be a 1-D int64 tensor, got {self.y.dtype} {tuple(self.y.shape)}"
            )
        if self.x.dtype != torch.float32:
            raise ValueError(f"x must be float32, got {self.x.dtype}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """The labels as a numpy int64 array (a copy), e.g. for :func:`partition`."""
        return self.y.numpy().copy()

    def subset(self, idx: np.ndarray | Sequence[int]) -> TensorData:
        """Return the rows ``idx`` (in that order) as a new set; tensors are copied."""
        index = torch.as_tensor(np.asarray(idx, dtype=np.int64).reshape(-1))
        return TensorData(self.x[index], self.y[index], self.classes)


@dataclass(frozen=True, eq=False)
class DatasetBundle:
    """A train/test pair and where it came from.

    Attributes
    ----------
    train, test : TensorData
    name : str
        One of :data:`DATASETS`, or :data:`USER_DATASET` for the user's own data.
    source : str
        Human-readable origin, e.g. ``"embedded Fashion-MNIST test split (8000 train /
        2000 test)"``; goes into run summaries.
    input_shape : tuple of int
        Shape of one input, without the batch dimension.
    kind : str
        ``"embedded"`` (the split of the copy shipped in the package) or ``"full"`` (the
        data set read from files, found or downloaded); see :func:`identity`. Empty when
        unknown (a hand-made bundle): :func:`identity` then derives it from ``source``.
    """

    train: TensorData
    test: TensorData
    name: str
    source: str
    input_shape: tuple[int, ...]
    kind: str = ""


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


def _candidate_dirs(search: Sequence[str | os.PathLike], subdirs: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for d in search:
        base = Path(d).expanduser()
        out.append(base)
        out.extend(base / s for s in subdirs)
    return out


def _find_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` or ``directory/stem.gz``, preferring the uncompressed file."""
    for name in (stem, stem + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    return None


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


def _stratified_take(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Choose ``k`` indices with class proportions as in ``labels`` (sorted result).

    Per-class quotas use the largest-remainder method (ties to the lower class), so the
    total is exactly ``k``; within a class the members are drawn uniformly by ``rng``.
    """
    n = labels.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot take {k} of {n} samples")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * k / n if n else counts * 0.0
    take = np.floor(quota).astype(np.int64)
    rest = k - int(take.sum())
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:rest]] += 1
    chosen = []
    for c, t in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(members)[:t])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, stream) pair."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _limit(
    x: np.ndarray, y: np.ndarray, limit: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= y.shape[0]:
        return x, y
    idx = _stratified_take(y, limit, rng)
    return x[idx], y[idx]


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
    tr_x, tr_y = _limit(tr_x, tr_y, max_train, _rng(seed, 1))
    te_x, te_y = _limit(te_x, te_y, max_test, _rng(seed, 2))
    source = f"{origin} ({counts})"
    if max_train is not None or max_test is not None:
        source += f", stratified subset {tr_y.shape[0]} / {te_y.shape[0]}"
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


# --------------------------------------------------------------------------------------
# UCI Adult


def _read_adult_rows(path: Path) -> list[list[str]]:
    """Rows of 15 stripped fields; skips blank lines and ``|`` comment lines (adult.test)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    rows: list[list[str]] = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("|"):
                    continue
                fields = [s.strip() for s in line.split(",")]
                if len(fields) != len(ADULT_COLUMNS):
                    raise DataError(
                        f"{path}:{lineno}: expected {len(ADULT_COLUMNS)} comma-separated "
                        f"fields, got {len(fields)}"
                    )
                fields[-1] = fields[-1].rstrip(".")  # adult.test writes '>50K.'
                rows.append(fields)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def _adult_labels(rows: list[list[str]], path: Path) -> np.ndarray:
    y = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        if r[-1] == ">50K":
            y[i] = 1
        elif r[-1] == "<=50K":
            y[i] = 0
        else:
            raise DataError(f"{path}: income {r[-1]!r} is neither '>50K' nor '<=50K'")
    return y


def _adult_numeric(rows: list[list[str]], path: Path) -> np.ndarray:
    cols = [ADULT_COLUMNS.index(c) for c in ADULT_NUMERIC]
    out = np.empty((len(rows), len(cols)), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            v = r[c]
            try:
                out[i, j] = np.nan if v == "?" else float(v)
            except ValueError as exc:
                raise DataError(f"{path}: {ADULT_COLUMNS[c]} value {v!r} is not a number") from exc
    return out


def _encode_adult(
    train_rows: list[list[str]], test_rows: list[list[str]], train_path: Path, test_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Standardised numeric columns, then one-hot categorical ones, fitted on train only.

    A missing value ``?`` is its own category in categorical columns and the train mean
    (0 after standardisation) in numeric ones. Categories absent from train encode as
    all zeros.
    """
    num_tr = _adult_numeric(train_rows, train_path)
    num_te = _adult_numeric(test_rows, test_path)
    mean = np.nanmean(num_tr, axis=0)
    std = np.nanstd(num_tr, axis=0)
    std[~(std > 0)] = 1.0
    num_tr = np.nan_to_num((num_tr - mean) / std, nan=0.0)
    num_te = np.nan_to_num((num_te - mean) / std, nan=0.0)

    cat_cols = [i for i, c in enumerate(ADULT_COLUMNS[:-1]) if c not in ADULT_NUMERIC]
    blocks_tr, blocks_te = [num_tr], [num_te]
    for c in cat_cols:
        cats = {v: k for k, v in enumerate(sorted({r[c] for r in train_rows}))}
        for rows, blocks in ((train_rows, blocks_tr), (test_rows, blocks_te)):
            onehot = np.zeros((len(rows), len(cats)), dtype=np.float64)
            for i, r in enumerate(rows):
                k = cats.get(r[c])
                if k is not None:
                    onehot[i, k] = 1.0
            blocks.append(onehot)
    return (
        np.concatenate(blocks_tr, axis=1).astype(np.float32),
        np.concatenate(blocks_te, axis=1).astype(np.float32),
    )


def _load_adult(
    search: Sequence[str | os.PathLike],
    seed: int,
    max_train: int | None,
    max_test: int | None,
) -> DatasetBundle:
    looked = _candidate_dirs(search, ("adult",))
    for d in looked:
        train_path = _find_file(d, "adult.data")
        test_path = _find_file(d, "adult.test")
        if train_path is not None and test_path is not None:
            break
    else:
        places = ", ".join(str(d) for d in looked) or "(no search directories were given)"
        raise DataError(
            "UCI Adult not found; looked for adult.data(.gz) and adult.test(.gz) in: "
            f"{places}. Get the files from https://archive.ics.uci.edu/dataset/2/adult "
            "and pass their folder with search=[...]"
        )
    train_rows = _read_adult_rows(train_path)
    test_rows = _read_adult_rows(test_path)
    tr_y = _adult_labels(train_rows, train_path)
    te_y = _adult_labels(test_rows, test_path)
    tr_x, te_x = _encode_adult(train_rows, test_rows, train_path, test_path)
    counts = f"{tr_y.shape[0]} train / {te_y.shape[0]} test, {tr_x.shape[1]} features"
    tr_x, tr_y = _limit(tr_x, tr_y, max_train, _rng(seed, 1))
    te_x, te_y = _limit(te_x, te_y, max_test, _rng(seed, 2))
    source = f"UCI Adult from {d} ({counts})"
    if max_train is not None or max_test is not None:
        source += f", stratified subset {tr_y.shape[0]} / {te_y.shape[0]}"
    logger.info("dataset adult: %s", source)
    return DatasetBundle(
        train=TensorData(torch.from_numpy(np.ascontiguousarray(tr_x)), torch.from_numpy(tr_y), 2),
        test=TensorData(torch.from_numpy(np.ascontiguousarray(te_x)), torch.from_numpy(te_y), 2),
        name="adult",
        source=source,
        input_shape=(int(tr_x.shape[1]),),
        kind="full",
    )


# --------------------------------------------------------------------------------------
# the user's own data


@dataclass(frozen=True, eq=False)
class UserData:
    """What a user's data loader returns (a plain 5-tuple in this order is accepted too).

    Attributes
    ----------
    x_train, x_test
        Inputs ``(N, *input_shape)``: torch tensors or numpy arrays of a real dtype, cast
        to float32; every value must be finite. Both splits have the same ``input_shape``.
    y_train, y_test
        Labels ``(N,)``: integer tensors or arrays with values in ``[0, classes)``.
    classes
        Number of classes (model outputs), >= 2.
    """

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    classes: int


#: What ``data.dataset`` may be: a built-in name, an import path, a loader or the data.
DataSource = str | Callable[..., Any] | UserData | tuple


def is_user_data(source: Any) -> bool:
    """True unless ``source`` is a built-in data set name."""
    return not (isinstance(source, str) and source in DATASETS)


def describe_data(source: Any) -> str:
    """A short name of a data source for settings and messages."""
    if isinstance(source, str):
        return source
    if isinstance(source, UserData | tuple | list):
        return "tensors"
    return import_path_of(source) or getattr(source, "__qualname__", None) or type(source).__name__


def _array(value: Any, what: str, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise DataError(f"{where}: {what} is a {type(value).__name__}; expected a torch tensor or numpy array")


def _inputs(value: Any, what: str, where: str) -> np.ndarray:
    arr = _array(value, what, where)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{where}: {what} has dtype {arr.dtype}; expected real numbers (cast to float32)")
    if arr.ndim < 2 or arr.shape[0] == 0 or 0 in arr.shape[1:]:
        raise DataError(f"{where}: {what} has shape {arr.shape}; expected (N, *input_shape) with N >= 1 "
                        "and a non-empty input shape")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise DataError(f"{where}: {what} has {bad} non-finite value(s) (NaN or inf, or beyond float32); "
                        "expected finite numbers")
    return out


def _labels(value: Any, what: str, where: str, n: int, classes: int) -> np.ndarray:
    arr = _array(value, what, where)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{where}: {what} has dtype {arr.dtype}; expected integer class labels")
    if arr.shape != (n,):
        raise DataError(f"{where}: {what} has shape {arr.shape}; expected ({n},), one label per input")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= classes):
        raise DataError(f"{where}: {what} holds labels {int(arr.min())}..{int(arr.max())}; expected labels "
                        f"in 0..{classes - 1} (classes = {classes})")
    return np.ascontiguousarray(arr, dtype=np.int64)


def user_bundle(
    source: DataSource,
    *,
    field: str = "data.dataset",
    seed: int = 0,
    search: Sequence[str | os.PathLike] = (),
    max_train: int | None = None,
    max_test: int | None = None,
) -> DatasetBundle:
    """The user's data as a :class:`DatasetBundle` (``name`` :data:`USER_DATASET`, kind ``user``).

    Parameters
    ----------
    source
        An import path ``"package.module:loader"``, a loader callable
        (:data:`LOADER_SIGNATURE`), a :class:`UserData` or a 5-tuple
        ``(x_train, y_train, x_test, y_test, classes)``. An import path may also name the
        data object itself.
    field
        The setting, named in errors.
    seed, search
        Passed to a loader as ``seed`` and ``data_dirs`` (when it takes them); ``seed`` also
        seeds the ``max_*`` subsets.
    max_train, max_test
        Keep a deterministic class-stratified subset of at most this many samples.

    Raises
    ------
    ConfigError
        The import path does not load, the loader does not take its arguments.
    DataError
        What the loader returned is not the expected data: wrong type, shape or dtype,
        labels outside ``[0, classes)``, non-finite inputs. Messages name ``field``.
    """
    name = describe_data(source)
    if is_placeholder(source):
        raise ConfigError(field, source, "the Python object itself (Experiment(dataset=...), in this process); "
                                         f"node processes and other hosts need {IMPORT_PATH_HELP}")
    if isinstance(source, str):
        if not is_import_path(source):
            raise ConfigError(field, source, f"one of {', '.join(DATASETS)}, or {IMPORT_PATH_HELP} of a data "
                                             f"loader {LOADER_SIGNATURE}")
        source = import_object(source, field, f"a data loader {LOADER_SIGNATURE}")
    data = source
    if callable(source) and not isinstance(source, UserData | tuple | list):
        data = call_with(source, field, LOADER_SIGNATURE, seed=seed,
                         data_dirs=tuple(Path(d).expanduser() for d in search))
    where = f"{field} ({name})"
    if isinstance(data, UserData):
        parts: tuple[Any, ...] = (data.x_train, data.y_train, data.x_test, data.y_test, data.classes)
    elif isinstance(data, tuple | list) and len(data) == 5:
        parts = tuple(data)
    else:
        got = f"a {len(data)}-tuple" if isinstance(data, tuple | list) else f"a {type(data).__name__}"
        raise DataError(f"{where}: got {got}; expected UserData or (x_train, y_train, x_test, y_test, classes)")
    classes = parts[4]
    if isinstance(classes, bool) or not isinstance(classes, int | np.integer) or classes < 2:
        raise DataError(f"{where}: classes is {classes!r}; expected an integer >= 2")
    classes = int(classes)
    tr_x = _inputs(parts[0], "x_train", where)
    te_x = _inputs(parts[2], "x_test", where)
    if tr_x.shape[1:] != te_x.shape[1:]:
        raise DataError(f"{where}: x_train inputs have shape {tr_x.shape[1:]} but x_test inputs "
                        f"{te_x.shape[1:]}; expected the same input shape")
    tr_y = _labels(parts[1], "y_train", where, tr_x.shape[0], classes)
    te_y = _labels(parts[3], "y_test", where, te_x.shape[0], classes)
    tr_x, tr_y = _limit(tr_x, tr_y, max_train, _rng(seed, 1))
    te_x, te_y = _limit(te_x, te_y, max_test, _rng(seed, 2))
    source_text = f"user data {name} ({tr_y.shape[0]} train / {te_y.shape[0]} test)"
    logger.info("dataset %s: %s", field, source_text)
    return DatasetBundle(
        train=TensorData(torch.from_numpy(np.ascontiguousarray(tr_x)), torch.from_numpy(tr_y), classes),
        test=TensorData(torch.from_numpy(np.ascontiguousarray(te_x)), torch.from_numpy(te_y), classes),
        name=USER_DATASET,
        source=source_text,
        input_shape=tuple(int(s) for s in tr_x.shape[1:]),
        kind="user",
    )


# --------------------------------------------------------------------------------------
# public entry points


def _check_limit(field: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(field, value, "a positive integer or None")


def load_dataset(
    name: DataSource,
    *,
    search: Sequence[str | os.PathLike] = (),
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    embedded_test_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
    mirror: str = FASHION_MNIST_MIRROR,
) -> DatasetBundle:
    """Load a dataset as in-memory tensors.

    Parameters
    ----------
    name
        One of :data:`DATASETS`; or the user's data: an import path, a loader, a
        :class:`UserData` or a 5-tuple (see :func:`user_bundle`).
    search
        Folders to look in, in order (a user's loader gets them as ``data_dirs``). For Fashion-MNIST each folder ``D`` is tried as ``D``,
        ``D/fashion-mnist`` and ``D/FashionMNIST/raw`` (torchvision's layout); for Adult as
        ``D`` and ``D/adult``.
    download
        Fashion-MNIST only: fetch the official files into ``cache_dir`` if no full set is
        found. Ignored without ``cache_dir``.
    cache_dir
        Fashion-MNIST only: searched after ``search``; the download target.
    seed
        Seeds the split of the embedded set and the ``max_*`` subsets.
    embedded_test_fraction
        Share of the embedded 10,000 images kept as test set (stratified by class).
    max_train, max_test
        Keep a deterministic class-stratified subset of at most this many samples.
    mirror
        Base URL of the Fashion-MNIST files (tests point it at a local server).

    Returns
    -------
    DatasetBundle

    Raises
    ------
    ConfigError
        Unknown name or an invalid numeric argument.
    DataError
        Files are missing, corrupt, or a download failed; the message names the files or
        every place searched.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", seed, "a non-negative integer")
    if is_user_data(name):
        _check_limit("max_train", max_train)
        _check_limit("max_test", max_test)
        return user_bundle(name, field="data.dataset", seed=seed, search=search, max_train=max_train,
                           max_test=max_test)
    if not 0.0 < embedded_test_fraction < 1.0:
        raise ConfigError(
            "embedded_test_fraction", embedded_test_fraction, "strictly between 0 and 1"
        )
    _check_limit("max_train", max_train)
    _check_limit("max_test", max_test)
    if name == "fmnist":
        cache = Path(cache_dir).expanduser() if cache_dir is not None else None
        return _load_fmnist(
            search, download, cache, mirror, seed, embedded_test_fraction, max_train, max_test
        )
    return _load_adult(search, seed, max_train, max_test)


# --------------------------------------------------------------------------------------
# data identity: what two nodes compare at handshake

#: Keys of :func:`identity`, in the order :func:`identity_difference` compares them.
IDENTITY_KEYS = ("dataset", "source", "train", "test", "classes", "test_hash", "train_hash")

_HASH_CHARS = 16  # hex characters of sha256 kept per split
_IDENTITY_JSON_MAX = 4096  # a JSON-encoded identity longer than this is malformed
_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]{1,32}")
_HEX_RE = re.compile(r"[0-9a-f]{8,64}")
_SOURCE_NAMES = {
    ("embedded", "fmnist"): "embedded split",
    ("full", "fmnist"): "full Fashion-MNIST",
    ("full", "adult"): "full UCI Adult",
    ("user", USER_DATASET): "user-supplied data",
}


def _split_hash(data: TensorData) -> str:
    """sha256 (first :data:`_HASH_CHARS` hex chars) of a split's dtypes, shapes and bytes."""
    h = hashlib.sha256()
    parts = []
    for t, dtype in ((data.x, "<f4"), (data.y, "<i8")):
        arr = np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)
        h.update(f"{dtype}{arr.shape};".encode())
        parts.append(arr)
    for arr in parts:
        h.update(arr)  # C-contiguous buffer, hashed without a copy
    return h.hexdigest()[:_HASH_CHARS]


def identity(bundle: DatasetBundle) -> dict[str, str | int]:
    """What a node's data is, in a few msgpack/JSON scalars, for the handshake.

    Keys (:data:`IDENTITY_KEYS`): ``dataset`` (``"fmnist"``, ``"adult"``, ``"custom"``), ``source``
    (``"embedded"`` split of the packaged copy, ``"full"`` set read from files, ``"user"``
    data from a loader or tensors), ``train``
    and ``test`` (sizes after ``max_train`` / ``max_test``), ``classes``, and ``test_hash``
    / ``train_hash``: the first 16 hex characters of the sha256 of each split's inputs and
    labels as they are used (after every subset). Paths are left out on purpose: the same
    files in different folders on two machines are the same data; different files are
    caught by the hashes. Costs one pass of sha256 over the data (~0.15 s for the full
    Fashion-MNIST); compute it once per plan.
    """
    kind = bundle.kind or ("embedded" if bundle.source.startswith("embedded") else "full")
    return {
        "dataset": bundle.name,
        "source": kind,
        "train": len(bundle.train),
        "test": len(bundle.test),
        "classes": int(bundle.train.classes),
        "test_hash": _split_hash(bundle.test),
        "train_hash": _split_hash(bundle.train),
    }


def _describe_source(kind: str, dataset: object) -> str:
    return _SOURCE_NAMES.get((kind, dataset if isinstance(dataset, str) else ""), f"{kind} data")


def _valid(key: str, value: object) -> bool:
    if key in ("train", "test", "classes"):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
    if not isinstance(value, str):
        return False
    return bool((_HEX_RE if key.endswith("_hash") else _NAME_RE).fullmatch(value))


def _short(h: str) -> str:
    return h[:8] + "\u2026"


def identity_difference(theirs: object, ours: Mapping[str, object], src: object) -> str:
    """``""`` when a peer's data identity equals ours, else one line naming the difference.

    Parameters
    ----------
    theirs
        What node ``src`` sent: any decoded value (mapping, list, number, None, deeply nested,
        or the identity as a JSON string of at most 4096 characters). Never trusted.
    ours
        This node's :func:`identity`.
    src
        The peer's id, for the message.

    Returns
    -------
    str
        E.g. ``"data differs: embedded split at node 1, full Fashion-MNIST here"``,
        ``"data differs: 2000 training examples at node 1, 60000 here"``,
        ``"data differs: test split hash 3fa2c1d0… at node 1, 9b1c77e2… here"`` or
        ``"data identity missing or malformed at node 1 (...)"``. Only validated values of
        ``theirs`` are quoted (short names, hex, integers), so the line is safe to log.
        Never raises.
    """
    node = str(src) if isinstance(src, int) and not isinstance(src, bool) else "?"
    try:
        if isinstance(theirs, str | bytes) and len(theirs) <= _IDENTITY_JSON_MAX:
            try:
                theirs = json.loads(theirs)
            except (ValueError, RecursionError):
                return f"data identity missing or malformed at node {node} (not a JSON object)"
        if not isinstance(theirs, Mapping):
            return f"data identity missing or malformed at node {node}"
        for key in IDENTITY_KEYS:
            if key not in ours:
                continue
            value = theirs.get(key)
            if not _valid(key, value):
                what = "missing" if value is None else "malformed"
                return f"data identity missing or malformed at node {node} ('{key}' is {what})"
            mine = ours[key]
            if value == mine:
                continue
            if key == "dataset":
                return f"data differs: data set {value} at node {node}, {mine} here"
            if key == "source":
                return (f"data differs: {_describe_source(str(value), theirs.get('dataset'))} at node "
                        f"{node}, {_describe_source(str(mine), ours.get('dataset'))} here")
            if key in ("train", "test", "classes"):
                noun = {"train": "training examples", "test": "test examples", "classes": "classes"}[key]
                return f"data differs: {value} {noun} at node {node}, {mine} here"
            split = "training" if key == "train_hash" else "test"
            return (f"data differs: {split} split hash {_short(str(value))} at node {node}, "
                    f"{_short(str(mine))} here")
        return ""
    except Exception:  # noqa: BLE001 - a hostile value must not crash the handshake
        return f"data identity missing or malformed at node {node}"


def partition(
    labels: np.ndarray,
    n: int,
    scheme: str = "iid",
    *,
    alpha: float = 0.5,
    shards_per_node: int = 2,
    seed: int = 0,
) -> list[np.ndarray]:
    """Split sample indices over ``n`` nodes.

    Parameters
    ----------
    labels
        1-D integer class labels, one per sample.
    n
        Number of nodes, ``1 <= n <= len(labels)``.
    scheme
        ``"iid"``: a uniform random split into near-equal parts.
        ``"dirichlet"``: for each class, shares drawn from Dirichlet(alpha, ..., alpha) over
        the nodes (small ``alpha`` -> strong label skew). Draws leaving a node empty are
        redrawn from the same generator (up to 100 times), then repaired by moving one
        sample from the largest part, so every node gets at least one sample.
        ``"shards"``: samples sorted by label, cut into ``n * shards_per_node`` contiguous
        shards, each node gets ``shards_per_node`` random shards (McMahan et al.).
    alpha
        Dirichlet concentration, > 0.
    shards_per_node
        Shards per node, >= 1; needs ``n * shards_per_node <= len(labels)``.
    seed
        All randomness comes from this seed.

    Returns
    -------
    list of numpy.ndarray
        ``n`` sorted int64 index arrays, pairwise disjoint, together covering
        ``range(len(labels))``.

    Raises
    ------
    ConfigError
        Unknown scheme or an invalid parameter.
    """
    labels = np.asarray(labels).reshape(-1)
    total = labels.shape[0]
    if scheme not in PARTITIONS:
        raise ConfigError("partition", scheme, f"one of {', '.join(PARTITIONS)}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max(total, 1):
        raise ConfigError(
            "partition.n", n, f"an integer between 1 and the number of samples ({total})"
        )
    if total == 0:
        raise ConfigError("partition.labels", "empty", "at least one sample")
    rng = _rng(seed, 10)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(total), n)
    elif scheme == "dirichlet":
        if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
            raise ConfigError("partition.alpha", alpha, "a finite number > 0")
        parts = _dirichlet(labels, n, float(alpha), rng)
    else:
        if (
            isinstance(shards_per_node, bool)
            or not isinstance(shards_per_node, int)
            or shards_per_node < 1
        ):
            raise ConfigError("partition.shards_per_node", shards_per_node, "an integer >= 1")
        if n * shards_per_node > total:
            raise ConfigError(
                "partition.shards_per_node",
                shards_per_node,
                f"at most {total // n} so that {n} nodes get non-empty shards of {total} samples",
            )
        # random order first, then a stable sort: ties inside a class are shuffled
        perm = rng.permutation(total)
        by_label = perm[np.argsort(labels[perm], kind="stable")]
        shards = np.array_split(by_label, n * shards_per_node)
        order = rng.permutation(len(shards))
        parts = [
            np.concatenate(
                [shards[s] for s in order[i * shards_per_node : (i + 1) * shards_per_node]]
            )
            for i in range(n)
        ]
    return [np.sort(p).astype(np.int64) for p in parts]


def _dirichlet(
    labels: np.ndarray, n: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    for _attempt in range(100):
        buckets: list[list[np.ndarray]] = [[] for _ in range(n)]
        for idx in members:
            shares = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(shares)[:-1] * idx.shape[0]).astype(np.int64)
            for node, piece in enumerate(np.split(idx, cuts)):
                buckets[node].append(piece)
        parts = [np.concatenate(b) for b in buckets]
        if min(p.shape[0] for p in parts) > 0:
            return parts
    # Deterministic repair: give each empty node one sample from the currently largest part.
    for i in range(n):
        if parts[i].shape[0] == 0:
            j = int(np.argmax([p.shape[0] for p in parts]))
            parts[i], parts[j] = parts[j][-1:], parts[j][:-1]
    logger.debug("dirichlet partition repaired after 100 draws with empty nodes")
    return parts


def split_validation(
    data: TensorData, fraction: float, *, seed: int
) -> tuple[TensorData, TensorData]:
    """Hold out a class-stratified validation part.

    Parameters
    ----------
    data
        The set to split (e.g. one node's shard).
    fraction
        Share of samples for validation, strictly between 0 and 1; at least one sample goes
        to each side when ``len(data) >= 2``.
    seed
        Seeds the choice.

    Returns
    -------
    (train, validation) : tuple of TensorData
        Disjoint, together all of ``data``, both in the original order.
    """
    if not (isinstance(fraction, int | float) and 0.0 < fraction < 1.0):
        raise ConfigError("validation_fraction", fraction, "strictly between 0 and 1")
    total = len(data)
    if total < 2:
        raise DataError(f"cannot split a validation part from {total} sample(s)")
    k = min(max(1, round(total * fraction)), total - 1)
    val_idx = _stratified_take(data.labels, k, _rng(seed, 20))
    is_val = np.zeros(total, dtype=bool)
    is_val[val_idx] = True
    return data.subset(np.flatnonzero(~is_val)), data.subset(val_idx)


__all__ = [
    "DATASETS",
    "LOADER_SIGNATURE",
    "USER_DATASET",
    "DataSource",
    "UserData",
    "describe_data",
    "is_user_data",
    "user_bundle",
    "EMBEDDED_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MIRROR",
    "FASHION_MNIST_SHA256",
    "IDENTITY_KEYS",
    "PARTITIONS",
    "DatasetBundle",
    "TensorData",
    "identity",
    "identity_difference",
    "load_dataset",
    "partition",
    "read_idx",
    "split_validation",
]
