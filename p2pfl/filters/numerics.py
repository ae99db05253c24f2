"""Numerics shared by the filters: overflow-safe norms, weighted sums, top-k, distances.

Pure functions over float32 arrays. Norms are accumulated in float64 (a float32 vector
squared never overflows float64, so inputs up to float32's maximum give finite norms);
results that go back into a model are float32. Nothing here allocates an (m, d) float64
temporary: the work goes chunk by chunk through a 2 MiB scratch buffer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

_CHUNK = 1 << 18  # float64 scratch for norms: 2 MiB
_TINY_COEF = 1e-30  # below this a float32 row factor risks underflow; scale in float64 instead


def row_norms(u: np.ndarray) -> np.ndarray:
    """L2 norm of every row of a float32 (m, d) array, accumulated in float64.

    The squares of finite float32 values are < 1.2e77, so a float64 sum of up to 1e230 of
    them stays finite: no scaling is needed. Works chunk by chunk through one 2 MiB
    scratch buffer instead of converting the whole array. Uses ``np.einsum`` rather than
    BLAS ``dot``: multi-threaded OpenBLAS ddot on a busy 2-core machine was measured
    100x slower (0.6 s instead of 6 ms for 4 x 3.4M).
    """
    u = np.asarray(u)
    if u.ndim == 1:
        u = u[None, :]
    m, d = u.shape
    out = np.zeros(m, dtype=np.float64)
    if d == 0:
        return out
    scratch = np.empty(min(d, _CHUNK), dtype=np.float64)
    for j in range(m):
        acc = 0.0
        row = u[j]
        for s in range(0, d, _CHUNK):
            part = row[s : s + _CHUNK]
            buf = scratch[: part.size]
            buf[...] = part
            acc += float(np.einsum("i,i->", buf, buf))
        out[j] = acc
    with np.errstate(invalid="ignore"):
        return np.sqrt(out)


def vector_norm(x: np.ndarray) -> float:
    """Overflow-safe L2 norm of one vector (see :func:`row_norms`)."""
    return float(row_norms(np.ravel(x))[0])


def weighted_rows(coef: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Σ_j coef_j·u_j as float32 (d,), with one accumulator and no (m, d) temporary.

    One pass of ``np.einsum`` (single-threaded, no BLAS: see :func:`row_norms`) for
    ordinary factors, accumulated in float32; a row whose factor would underflow float32
    (|coef| < 1e-30, e.g. a clip of a 1e38-norm proposal to τ = 1e-6) is scaled in
    float64 instead so that it is not silently zeroed.
    """
    m, d = u.shape
    if m == 0:
        return np.zeros(d, dtype=np.float32)
    coef = np.asarray(coef, dtype=np.float64)
    tiny = (coef != 0) & (np.abs(coef) < _TINY_COEF)
    c32 = coef.astype(np.float32)
    c32[tiny] = 0.0
    out = np.asarray(np.einsum("j,jd->d", c32, u), dtype=np.float32)
    for j in np.flatnonzero(tiny):
        out += (u[j].astype(np.float64) * coef[j]).astype(np.float32)
    return out


def topk_indices(mag: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of a nonnegative vector (zeros never selected).

    Exactly min(k, nnz) indices, unordered. Ties at the k-th value are broken towards
    lower indices. Introselect on a stride sample bounds the k-th value from below, so the
    exact selection runs only on the ~1.25·k candidates above that bound (about 3x faster
    than ``np.argpartition`` on the full vector at d = 3.4M); if a crafted vector defeats
    the sample, the full-vector partition runs instead. No full sort anywhere.
    """
    n = mag.size
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k >= n:
        return np.flatnonzero(mag)
    cand: np.ndarray | None = None
    if n >= 1 << 17:
        sample = mag[:: n >> 15]
        ks = min(sample.size, math.ceil(k / n * sample.size * 1.25) + 64)
        lo = np.partition(sample, sample.size - ks)[sample.size - ks]
        c = np.flatnonzero(mag > 0) if lo <= 0 else np.flatnonzero(mag >= lo)
        if lo <= 0 and c.size <= k:
            return c
        if c.size >= k:
            cand = c
    if cand is None:
        thr = np.partition(mag, n - k)[n - k]
        if thr <= 0:
            return np.flatnonzero(mag)
        cand = np.flatnonzero(mag >= thr)
    vals = mag[cand]
    if vals.size > k:
        thr = np.partition(vals, vals.size - k)[vals.size - k]
        if thr <= 0:
            return cand[vals > 0]
        gt = cand[vals > thr]
        eq = cand[vals == thr][: k - gt.size]
        cand = np.concatenate([gt, eq])
    return cand


def median_of(values: Iterable[float]) -> float:
    """Median of the values (0.0 for none)."""
    arr = np.fromiter(values, dtype=np.float64)
    return float(np.median(arr)) if arr.size else 0.0


def with_self(u: np.ndarray) -> np.ndarray:
    """(m+1, d) float32: row 0 is the node's own proposal u_ii = 0, then the rows u_ij of ``u``."""
    m, d = u.shape
    x = np.empty((m + 1, d), dtype=np.float32)
    x[0] = 0.0
    x[1:] = u
    return x


def masked_norm(row: np.ndarray, factor: np.ndarray | float) -> float:
    """||row ⊙ factor|| in float64 (the part of a proposal a coordinate-wise rule applied)."""
    return vector_norm(row.astype(np.float64) * factor)


def pairwise_sq_dists(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows, float64, from direct differences.

    Not ||a||² + ||b||² − 2a·b: on large, close rows (||x|| ≈ 1e6·√d, spread ≈ 0.1 per
    coordinate) that identity cancels catastrophically even in float64 (errors of ~10% of
    the distance), which changes Krum's choice. Each pair's difference is formed in
    float64 chunks (same cost, n²/2 row differences instead of an n² Gram matrix).
    """
    n, d = x.shape
    out = np.zeros((n, n), dtype=np.float64)
    if n < 2:
        return out
    step = max(1, _CHUNK // n)
    buf = np.empty((n - 1, min(step, max(d, 1))), dtype=np.float64)
    for s in range(0, d, step):
        c = x[:, s : s + step].astype(np.float64)
        w = c.shape[1]
        for i in range(n - 1):
            diff = np.subtract(c[i + 1 :], c[i], out=buf[: n - 1 - i, :w])
            out[i, i + 1 :] += np.einsum("jd,jd->j", diff, diff)
    out += out.T
    return out


__all__ = [
    "masked_norm",
    "median_of",
    "pairwise_sq_dists",
    "row_norms",
    "topk_indices",
    "vector_norm",
    "weighted_rows",
    "with_self",
]
