"""Partitions of sample indices over nodes (:func:`partition`) and the validation split
(:func:`split_validation`)."""

from __future__ import annotations

import logging
import math

import numpy as np

from p2pfl.errors import ConfigError, DataError

from .base import TensorData, _rng, _stratified_take

#: The package's logger: records keep the name "p2pfl.data" they had before the split.
logger = logging.getLogger("p2pfl.data")

PARTITIONS = ("iid", "dirichlet", "shards")


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
