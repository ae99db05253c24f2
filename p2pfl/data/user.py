"""The user's own data: :class:`UserData`, the loader's checks, :func:`user_bundle`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
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

from .base import DATASETS, USER_DATASET, DatasetBundle, TensorData, _limit_split

#: The package's logger: records keep the name "p2pfl.data" they had before the split.
logger = logging.getLogger("p2pfl.data")

#: The documented signature of a user's data loader (quoted in error messages).
LOADER_SIGNATURE = "loader(seed, data_dirs) -> UserData or (x_train, y_train, x_test, y_test, classes)"

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
    (tr_x, tr_y), (te_x, te_y), _ = _limit_split((tr_x, tr_y), (te_x, te_y), max_train, max_test, seed)
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
