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
random choice in this package comes from a ``numpy.random.Generator`` built from the
caller's seed, never from global state.

The package's modules: :mod:`~p2pfl.data.base` (containers, shared helpers),
:mod:`~p2pfl.data.fmnist`, :mod:`~p2pfl.data.adult`, :mod:`~p2pfl.data.user` (the loaders),
:mod:`~p2pfl.data.identity` (the handshake's data identity) and
:mod:`~p2pfl.data.partition`; every public name is importable from :mod:`p2pfl.data`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from p2pfl.errors import ConfigError

# ADULT_COLUMNS, ADULT_NUMERIC and FASHION_MNIST_FILES were attributes of p2pfl.data (not in
# __all__) before the split; the redundant aliases keep them so.
from .adult import ADULT_COLUMNS as ADULT_COLUMNS
from .adult import ADULT_NUMERIC as ADULT_NUMERIC
from .adult import _load_adult
from .base import DATASETS, USER_DATASET, DatasetBundle, TensorData
from .fmnist import (
    EMBEDDED_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MIRROR,
    FASHION_MNIST_SHA256,
    _load_fmnist,
    read_idx,
)
from .fmnist import (
    FASHION_MNIST_FILES as FASHION_MNIST_FILES,
)
from .identity import IDENTITY_KEYS, identity, identity_difference
from .partition import PARTITIONS, partition, split_validation
from .user import (
    LOADER_SIGNATURE,
    DataSource,
    UserData,
    describe_data,
    is_user_data,
    user_bundle,
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
