"""Containers and helpers shared by the data loaders: :class:`TensorData`,
:class:`DatasetBundle`, seeded generators and class-stratified subsets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("fmnist", "adult")

#: ``DatasetBundle.name`` of user data (short: it travels in the handshake's data identity).
USER_DATASET = "custom"

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
# shared helpers: file search, seeded generators, class-stratified subsets


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


def _limit_split(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
    max_train: int | None, max_test: int | None, seed: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """Class-stratified subsets of both splits (independent streams of ``seed``), and what a
    data source's description adds for them: ``""`` or ``", stratified subset A / B"``."""
    train = _limit(*train, max_train, _rng(seed, 1))
    test = _limit(*test, max_test, _rng(seed, 2))
    note = ""
    if max_train is not None or max_test is not None:
        note = f", stratified subset {train[1].shape[0]} / {test[1].shape[0]}"
    return train, test, note

