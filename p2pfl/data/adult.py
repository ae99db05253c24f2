"""UCI Adult ("Census Income"): reading, encoding, :func:`_load_adult`."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from p2pfl.errors import DataError

from .base import DatasetBundle, TensorData, _candidate_dirs, _find_file, _limit_split

#: The package's logger: records keep the name "p2pfl.data" they had before the split.
logger = logging.getLogger("p2pfl.data")

ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
)  # fmt: skip
ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")

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
    (tr_x, tr_y), (te_x, te_y), subset = _limit_split((tr_x, tr_y), (te_x, te_y), max_train, max_test, seed)
    source = f"UCI Adult from {d} ({counts}){subset}"
    logger.info("dataset adult: %s", source)
    return DatasetBundle(
        train=TensorData(torch.from_numpy(np.ascontiguousarray(tr_x)), torch.from_numpy(tr_y), 2),
        test=TensorData(torch.from_numpy(np.ascontiguousarray(te_x)), torch.from_numpy(te_y), 2),
        name="adult",
        source=source,
        input_shape=(int(tr_x.shape[1]),),
        kind="full",
    )
