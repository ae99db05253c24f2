"""Local defences: what a node applies of its neighbours' proposals.

Node i holds its freshly trained model z_i and, for each neighbour j, a *proposal*
u_ij = x̂_j − z_i (x̂_j is i's public copy of j) with Metropolis–Hastings weight W_ij
(Σ_j W_ij <= 1; the rest is i's self weight). The node applies

    x_i(t+1) = z_i + F({u_ij, W_ij}),        no filter: F = Σ_j W_ij u_ij.

A filter is pure math: arrays in, arrays out; no sockets, clocks or per-call logging.
It runs in two stages, so filters chain:

1. :meth:`Filter.screen` may drop or transform proposals (accuracy check, BALANCE, clip);
2. :meth:`Filter.aggregate` turns the surviving proposals into the update (weighted sum,
   top-k of the clipped sum, coordinate median, Krum, ...).

``build_filter("accuracy-check,topk-clip")`` screens with every member in order and
aggregates with the last one.

The reference defence is ``topk-clip`` (SparseFed, Panda et al., AISTATS 2022, ported to
one node): whatever neighbour j sends, its contribution to x_i in one round has L2 norm at
most W_ij·τ, and at most k = max(1, round(κ·d)) coordinates of x_i change.

Numerics: norms are accumulated in float64 (a float32 vector squared never overflows
float64, so inputs up to float32's maximum give finite norms); updates are float32.
Proposals with NaN/Inf entries are dropped before any filter sees them (the wire layer
already rejects them; this is defence in depth).
"""

from __future__ import annotations

import logging
import math
from abc import ABC
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from p2pfl.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
TAU_RULES = ("median-with-own", "own", "median")
TOPK_MODES = ("aggregate", "per-proposal")
COUNTER_KEYS = ("calls", "proposals", "clipped", "dropped", "nonfinite", "coords_kept")

_CHUNK = 1 << 18  # float64 scratch for norms: 2 MiB
_TINY_COEF = 1e-30  # below this a float32 row factor risks underflow; scale in float64 instead


# --------------------------------------------------------------------------- data types


@dataclass
class Proposals:
    """The proposals a node received in one round.

    Attributes
    ----------
    ids : tuple of int
        Neighbour ids, in canonical (ascending) order.
    u : ndarray, shape (m, d), float32
        Row k is u_{i, ids[k]} = x̂_{ids[k]} − z_i.
    w : ndarray, shape (m,), float64
        Mixing weights W_{i, ids[k]}.
    """

    ids: tuple[int, ...]
    u: np.ndarray
    w: np.ndarray
    _norms: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def m(self) -> int:
        return len(self.ids)

    @property
    def d(self) -> int:
        return int(self.u.shape[1])

    def norms(self) -> np.ndarray:
        """||u_ij|| per row (float64, cached; inf/nan for rows with non-finite entries)."""
        if self._norms is None:
            self._norms = row_norms(self.u)
        return self._norms

    def subset(self, keep: np.ndarray) -> Proposals:
        """The proposals whose rows are selected by the boolean mask ``keep``."""
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return self
        out = Proposals(
            tuple(i for i, k in zip(self.ids, keep, strict=True) if k), self.u[keep], self.w[keep]
        )
        if self._norms is not None:
            out._norms = self._norms[keep]
        return out


@dataclass(frozen=True)
class FilterContext:
    """What a node knows about itself when it filters.

    Attributes
    ----------
    node, round, rounds : int
        Node id, the current round (1-based) and the total number of rounds T.
    own : ndarray, shape (d,), float32
        z_i, the node's freshly trained model.
    own_update : ndarray or None
        z_i − x_i, the node's own training update this round (None if it did not train).
    evaluate : callable or None
        Accuracy in [0, 1] of a model vector on the node's local validation split. The
        callable must not keep a reference to the array it is given.
    seed : int
        Experiment seed (filters here are deterministic and do not use it).
    """

    node: int
    round: int
    rounds: int
    own: np.ndarray
    own_update: np.ndarray | None
    evaluate: Callable[[np.ndarray], float] | None = None
    seed: int = 0


@dataclass
class FilterResult:
    """What a filter decided in one round.

    Attributes
    ----------
    update : ndarray, shape (d,), float32
        What is added to z_i.
    norm_in : dict
        ||u_ij|| per neighbour, on the proposals as received (inf if non-finite).
    norm_out : dict
        L2 norm of neighbour j's contribution to ``update`` (0 for dropped).
    survived : dict
        norm_out / (W_ij ||u_ij||): in [0, 1] for clipping and selection filters
        (1.0 when W_ij ||u_ij|| = 0, 0.0 when dropped). Rules that apply a selected
        proposal with more than its own weight (Krum: (Σ_j W_ij)·u*, median, trimmed
        mean) can exceed 1; coordinate-wise rules attribute a coordinate to every
        proposal that ties with the selected value.
    dropped : tuple of int
        Neighbours whose proposal was rejected entirely.
    kept_coords : int
        Coordinates of z_i changed by ``update`` (nonzeros).
    tau : float or None
        Clip radius used this round (clipping filters only).
    """

    update: np.ndarray
    norm_in: dict[int, float]
    norm_out: dict[int, float]
    survived: dict[int, float]
    dropped: tuple[int, ...]
    kept_coords: int
    tau: float | None = None


# --------------------------------------------------------------------------- numerics


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


def _median(values: Iterable[float]) -> float:
    arr = np.fromiter(values, dtype=np.float64)
    return float(np.median(arr)) if arr.size else 0.0


# --------------------------------------------------------------------------- parameters


def _number(field_: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(field_, value, allowed)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(field_, value, allowed) from None
    if not math.isfinite(x):
        raise ConfigError(field_, value, allowed)
    return x


def _positive(name: str, value: Any) -> float:
    x = _number(f"defence.{name}", value, "a finite number > 0")
    if x <= 0:
        raise ConfigError(f"defence.{name}", value, "a finite number > 0")
    return x


def _int(name: str, value: Any, lo: int) -> int:
    allowed = f"an integer >= {lo}"
    x = _number(f"defence.{name}", value, allowed)
    if x != int(x) or x < lo:
        raise ConfigError(f"defence.{name}", value, allowed)
    return int(x)


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"defence.{name}", value, "one of " + ", ".join(choices))
    return str(value)


def _tau_param(value: Any) -> float | str:
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    allowed = '"auto" or a finite number > 0'
    x = _number("defence.tau", value, allowed)
    if x <= 0:
        raise ConfigError("defence.tau", value, allowed)
    return x


def _own_norm(ctx: FilterContext) -> float | None:
    """||own_update|| if it exists, is finite and nonzero; else None."""
    if ctx.own_update is None:
        return None
    n = vector_norm(ctx.own_update)
    return n if math.isfinite(n) and n > 0 else None


# --------------------------------------------------------------------------- base class


def _canonical(p: Proposals) -> Proposals:
    """Validate shapes and dtypes and sort rows by neighbour id (a node-side invariant)."""
    u = np.asarray(p.u)
    ids = tuple(int(i) for i in p.ids)
    if u.ndim != 2 or u.shape[0] != len(ids):
        raise ValueError(f"proposals: u has shape {u.shape}, expected ({len(ids)}, d)")
    w = np.asarray(p.w, dtype=np.float64).reshape(-1)
    if w.shape != (len(ids),):
        raise ValueError(f"proposals: w has shape {w.shape}, expected ({len(ids)},)")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() > 1 + 1e-9:
        raise ValueError(f"proposals: weights must be >= 0 with sum <= 1, got {w.tolist()}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"proposals: duplicate neighbour ids {ids}")
    u = np.ascontiguousarray(u, dtype=np.float32)
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    if np.any(order != np.arange(len(ids))):
        ids = tuple(ids[k] for k in order)
        u, w = u[order], w[order]
    out = Proposals(ids, u, w)
    if p.u is u and p._norms is not None:
        out._norms = p._norms
    return out


def _new_counters() -> dict[str, int]:
    return dict.fromkeys(COUNTER_KEYS, 0)


class Filter(ABC):  # noqa: B024 -- every stage has a default; subclasses override some
    """A local defence: ``screen`` (drop/transform) then ``aggregate`` (combine).

    Subclasses declare ``name`` (the CLI value) and ``PARAMS`` (parameter -> default, the
    keywords of ``__init__``). ``__call__`` is the entry point: it validates and sorts the
    proposals, drops non-finite ones, runs the two stages, and fills the bookkeeping of
    :class:`FilterResult` against the proposals *as received*.

    Counters (cumulative): ``calls``, ``proposals`` (seen), ``clipped`` (proposals whose
    norm exceeded τ), ``dropped`` (rejected entirely, including ``nonfinite``),
    ``coords_kept`` (sum of ``kept_coords``).
    """

    name: ClassVar[str] = ""
    PARAMS: ClassVar[Mapping[str, Any]] = {}
    #: ``screen`` does something: the filter may stand before another one in a chain.
    screens: ClassVar[bool] = False
    #: ``aggregate`` applies the screen itself (for speed); the pipeline skips ``screen``
    #: for the aggregating filter.
    fused_screen: ClassVar[bool] = False

    def __init__(self) -> None:
        self.counters: dict[str, int] = _new_counters()

    @property
    def spec(self) -> str:
        """The name that rebuilds this filter with :func:`build_filter`."""
        return self.name

    def params(self) -> dict[str, Any]:
        """The resolved parameters (for the run's config record)."""
        return {k: getattr(self, k) for k in self.PARAMS}

    def check(self, degree: int) -> None:  # noqa: B027 -- most filters have nothing to check
        """Validate parameters that depend on the neighbourhood size; raise ConfigError."""

    def screen(self, p: Proposals, ctx: FilterContext) -> Proposals:
        """Stage 1: drop or transform proposals. Default: identity."""
        return p

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        """Stage 2: the gossip step Σ_j W_ij u_ij over the proposals given."""
        update = weighted_rows(p.w, p.u)
        norms = p.norms()
        return _result(update, p, {j: float(p.w[k] * norms[k]) for k, j in enumerate(p.ids)})

    def __call__(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        p = _canonical(p)
        norms = p.norms()
        finite = np.isfinite(norms)
        norm_in = {
            j: float(n) if math.isfinite(n) else math.inf for j, n in zip(p.ids, norms, strict=True)
        }
        bad = tuple(j for j, ok in zip(p.ids, finite, strict=True) if not ok)
        if bad:
            self.counters["nonfinite"] += len(bad)
            p = p.subset(finite)
        res = self._run(p, ctx)
        return self._finish(res, p, norm_in, bad)

    def _run(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        q = p if self.fused_screen else self.screen(p, ctx)
        return self.aggregate(q, ctx)

    def _finish(
        self, res: FilterResult, p: Proposals, norm_in: dict[int, float], bad: tuple[int, ...]
    ) -> FilterResult:
        weights = dict(zip(p.ids, p.w.tolist(), strict=True))
        dropped = set(bad) | set(res.dropped) | (set(norm_in) - set(res.norm_out))
        norm_out: dict[int, float] = {}
        survived: dict[int, float] = {}
        for j, n in norm_in.items():
            if j in dropped:
                norm_out[j], survived[j] = 0.0, 0.0
                continue
            out = float(res.norm_out.get(j, 0.0))
            denom = weights.get(j, 0.0) * n
            share = 1.0 if denom <= 0 else out / denom
            norm_out[j] = out
            survived[j] = 1.0 if 1.0 < share <= 1.0 + 1e-6 else share
        order = tuple(sorted(dropped))
        self.counters["calls"] += 1
        self.counters["proposals"] += len(norm_in)
        self.counters["dropped"] += len(order)
        self.counters["coords_kept"] += int(res.kept_coords)
        return FilterResult(
            update=res.update,
            norm_in=norm_in,
            norm_out=norm_out,
            survived=survived,
            dropped=order,
            kept_coords=int(res.kept_coords),
            tau=res.tau,
        )

    # state (checkpoints) -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state: counters plus whatever the filter remembers across rounds."""
        return {"name": self.spec, "counters": dict(self.counters), **self._extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.spec:
            raise ConfigError(
                "defence", self.spec, f"the checkpoint was written by filter {state.get('name')!r}"
            )
        self.counters = _new_counters() | {k: int(v) for k, v in state["counters"].items()}
        self._load_extra(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _result(
    update: np.ndarray,
    p: Proposals,
    norm_out: dict[int, float],
    *,
    dropped: Iterable[int] = (),
    kept: int | None = None,
    tau: float | None = None,
) -> FilterResult:
    """A partial result; ``Filter._finish`` completes norm_in/survived."""
    update = np.asarray(update, dtype=np.float32)
    return FilterResult(
        update=update,
        norm_in={},
        norm_out=norm_out,
        survived={},
        dropped=tuple(dropped),
        kept_coords=int(np.count_nonzero(update)) if kept is None else kept,
        tau=tau,
    )


class NoFilter(Filter):
    """No defence: F = Σ_j W_ij u_ij (plain gossip averaging)."""

    name = "none"


# --------------------------------------------------------------------------- clipping


class _ClipBase(Filter):
    """Norm clipping c_j = u_ij·min(1, τ/||u_ij||) with a radius chosen by ``_resolve_tau``.

    As a screen (a chain member before the aggregating one) it returns the clipped
    proposals; as the aggregator it folds the clip factors into the weights, so no
    clipped copy of the (m, d) array is made.
    """

    screens = True
    fused_screen = True

    def _resolve_tau(self, p: Proposals, ctx: FilterContext) -> float:
        raise NotImplementedError

    def _factors(self, p: Proposals, ctx: FilterContext) -> tuple[float, np.ndarray]:
        tau = self._resolve_tau(p, ctx)
        norms = p.norms()
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(norms > tau, tau / norms, 1.0)
        self.counters["clipped"] += int(np.count_nonzero(norms > tau))
        return tau, s

    def screen(self, p: Proposals, ctx: FilterContext) -> Proposals:
        _, s = self._factors(p, ctx)
        if np.all(s == 1.0):
            return p
        u = p.u.copy()
        for k in np.flatnonzero(s != 1.0):
            u[k] = weighted_rows(np.array([s[k]]), p.u[k : k + 1])
        return Proposals(p.ids, u, p.w)

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        tau, s = self._factors(p, ctx)
        coef = p.w * s
        update = weighted_rows(coef, p.u)
        norms = p.norms()
        norm_out = {j: float(coef[k] * norms[k]) for k, j in enumerate(p.ids)}
        return _result(update, p, norm_out, tau=tau)


class ClipFilter(_ClipBase):
    """Norm clipping, then the weighted sum: F = Σ_j W_ij·u_ij·min(1, τ/||u_ij||).

    Guarantee: neighbour j moves z_i by at most W_ij·τ in L2 per round, whatever it sends.

    Parameters
    ----------
    tau : float > 0 or "auto"
        Clip radius. "auto" picks it each round by ``tau_rule``.
    tau_rule : {"median-with-own", "own", "median"}
        * ``median-with-own`` (default): τ = median({||u_ij||}_j ∪ {||z_i − x_i||}). The
          node's own training-update norm is one of the votes, so on a ring (two
          neighbours) one adjacent attacker cannot move the median beyond the larger of
          the two honest norms.
        * ``own``: τ = tau_scale·||z_i − x_i||, set by the node alone.
        * ``median``: τ = median of the incoming norms only. Kept for comparison: on a ring
          the median of two proposals is their mean, so an attacker sending a norm-N
          proposal gets τ ≈ N/2 and is barely clipped (docs/filters.md).
        When the node did not train this round (own update None or zero) the anchored rules
        fall back to the median of the last ``tau_history`` own-anchored radii, and to the
        incoming median only if there is no history yet.
    tau_scale : float > 0
        Multiplier of the ``own`` rule (default 1.0).
    tau_history : int >= 1
        How many own-anchored radii are remembered for the fallback (default 20).

    References
    ----------
    Sun et al., "Can you really backdoor federated learning?", 2019 (norm clipping);
    Panda et al., "SparseFed", AISTATS 2022 (clipping as the first stage of SparseFed).
    """

    name = "clip"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        "tau": AUTO,
        "tau_rule": "median-with-own",
        "tau_scale": 1.0,
        "tau_history": 20,
    }

    def __init__(
        self,
        *,
        tau: float | str = AUTO,
        tau_rule: str = "median-with-own",
        tau_scale: float = 1.0,
        tau_history: int = 20,
    ) -> None:
        super().__init__()
        self.tau = _tau_param(tau)
        self.tau_rule = _choice("tau_rule", tau_rule, TAU_RULES)
        self.tau_scale = _positive("tau_scale", tau_scale)
        self.tau_history = _int("tau_history", tau_history, 1)
        self._history: deque[float] = deque(maxlen=self.tau_history)

    def _resolve_tau(self, p: Proposals, ctx: FilterContext) -> float:
        if self.tau != AUTO:
            return float(self.tau)
        incoming = p.norms()
        if self.tau_rule == "median":
            return _median(incoming)
        own = _own_norm(ctx)
        if own is not None:
            tau = (
                self.tau_scale * own
                if self.tau_rule == "own"
                else _median([*incoming.tolist(), own])
            )
            self._history.append(tau)
            return tau
        if self._history:
            return _median(self._history)
        return _median(incoming)

    def _extra_state(self) -> dict[str, Any]:
        return {"tau_history": list(self._history)}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        self._history = deque((float(t) for t in state.get("tau_history", ())), self.tau_history)


class TopKClipFilter(ClipFilter):
    """Clip + top-k, the reference defence (SparseFed ported to one node).

    c_j = u_ij·min(1, τ/||u_ij||),  a = Σ_j W_ij c_j,  F = top_k(a),

    where top_k keeps the k = max(1, round(κ·d)) largest-|a| coordinates and zeroes the
    rest. Guarantee (aggregate mode): whatever j sends, its contribution mask ⊙ W_ij c_j
    has L2 norm <= W_ij·τ, and at most k coordinates of z_i change per round.

    No error feedback: SparseFed accumulates what top-k dropped because its clients send
    gradients, which are gone once sent. Here a proposal is a *model difference*, i.e.
    state: whatever is not applied this round is still in x̂_j − z_i next round and is
    proposed again. Error feedback would apply it twice and would let a neighbour bank
    influence across rounds, breaking the per-round bound.

    Parameters
    ----------
    tau, tau_rule, tau_scale, tau_history
        As in :class:`ClipFilter` (default τ = "auto" by "median-with-own").
    kappa : float in (0, 1]
        Fraction of coordinates kept (default 0.1; SparseFed's k is a fixed coordinate
        budget, here a fraction of d so that it carries across model sizes).
    mode : {"aggregate", "per-proposal"}
        ``aggregate`` (default): top-k of the weighted clipped sum, at most k coordinates
        change. ``per-proposal``: top-k of each W_ij c_j separately, then the sum; the norm
        bound still holds per neighbour, but up to m·k coordinates may change.

    References
    ----------
    Panda, Mahloujifar, Bhagoji, Chakraborty, Mittal, "SparseFed: Mitigating model
    poisoning attacks in federated learning with sparsification", AISTATS 2022.
    """

    name = "topk-clip"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        **ClipFilter.PARAMS,
        "kappa": 0.1,
        "mode": "aggregate",
    }

    def __init__(
        self,
        *,
        tau: float | str = AUTO,
        tau_rule: str = "median-with-own",
        tau_scale: float = 1.0,
        tau_history: int = 20,
        kappa: float = 0.1,
        mode: str = "aggregate",
    ) -> None:
        super().__init__(tau=tau, tau_rule=tau_rule, tau_scale=tau_scale, tau_history=tau_history)
        k = _number("defence.kappa", kappa, "a fraction 0 < kappa <= 1")
        if not 0 < k <= 1:
            raise ConfigError("defence.kappa", kappa, "a fraction 0 < kappa <= 1")
        self.kappa = k
        self.mode = _choice("mode", mode, TOPK_MODES)

    def k_for(self, d: int) -> int:
        """k = max(1, round(κ·d)), capped at d."""
        return min(d, max(1, round(self.kappa * d)))

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        tau, s = self._factors(p, ctx)
        coef = p.w * s
        d, k = p.d, self.k_for(p.d)
        if self.mode == "per-proposal":
            return self._per_proposal(p, coef, k, tau)
        a = weighted_rows(coef, p.u)
        idx = topk_indices(np.abs(a), k)
        vals = a[idx]
        a.fill(0.0)  # reuse the accumulator as the output
        a[idx] = vals
        sub_norms = row_norms(p.u[:, idx]) if idx.size < d else p.norms()
        norm_out = {j: float(coef[r] * sub_norms[r]) for r, j in enumerate(p.ids)}
        return _result(a, p, norm_out, kept=int(np.count_nonzero(vals)), tau=tau)

    def _per_proposal(self, p: Proposals, coef: np.ndarray, k: int, tau: float) -> FilterResult:
        update = np.zeros(p.d, dtype=np.float32)
        norm_out: dict[int, float] = {}
        for r, j in enumerate(p.ids):
            if coef[r] == 0:
                norm_out[j] = 0.0
                continue
            idx = topk_indices(np.abs(p.u[r]), k)
            part = p.u[r : r + 1, idx]
            update[idx] += weighted_rows(coef[r : r + 1], part)
            norm_out[j] = float(coef[r] * row_norms(part)[0])
        return _result(update, p, norm_out, tau=tau)


class ClippedGossipFilter(_ClipBase):
    """Self-centred clipping, ClippedGossip (He, Karimireddy & Jaggi, 2022).

    x_i(t+1) = z_i + Σ_j W_ij·clip(x̂_j − z_i, τ_i), clip(v, τ) = v·min(1, τ/||v||):
    the same update as :class:`ClipFilter`, with the paper's adaptive radius.

    Adaptive τ (``tau = "auto"``): τ_i is chosen so that a bounded share of the
    neighbourhood is clipped. The node's own update norm ||z_i − x_i|| takes part with the
    self weight 1 − Σ_j W_ij (own-update anchoring, as for ``topk-clip``).

    * ``delta`` unset (default): clip the single largest, τ = the second-largest norm of
      {||u_ij||} ∪ {||own update||} — the rule of the authors' code
      (epfml/byzantine-robust-decentralized-optimizer, ``SelfCenteredClipping``).
    * ``delta`` in (0, 1): walk the norms from the largest down and clip while the
      clipped weight stays <= delta·(total weight); τ is the first norm that does not fit,
      i.e. a (1 − delta)-weighted quantile of the norms. This follows our reading of the
      paper's adaptive rule: clip the farthest neighbours up to the Byzantine weight δ_i.

    Parameters
    ----------
    tau : float > 0 or "auto"
        Fixed radius, or the adaptive rule above (default "auto").
    delta : float in (0, 1), optional
        Weight share that may be clipped (default: unset, clip the largest one).

    References
    ----------
    He, Karimireddy, Jaggi, "Byzantine-robust decentralized learning via ClippedGossip",
    arXiv:2202.01545, 2022.
    """

    name = "clipped-gossip"
    PARAMS: ClassVar[Mapping[str, Any]] = {"tau": AUTO, "delta": None}

    def __init__(self, *, tau: float | str = AUTO, delta: float | None = None) -> None:
        super().__init__()
        self.tau = _tau_param(tau)
        if delta is not None:
            x = _number("defence.delta", delta, "a weight share 0 < delta < 1")
            if not 0 < x < 1:
                raise ConfigError("defence.delta", delta, "a weight share 0 < delta < 1")
            delta = x
        self.delta = delta

    def _resolve_tau(self, p: Proposals, ctx: FilterContext) -> float:
        if self.tau != AUTO:
            return float(self.tau)
        norms = p.norms().tolist()
        weights = p.w.tolist()
        own = _own_norm(ctx)
        if own is not None:
            norms.append(own)
            weights.append(max(0.0, 1.0 - float(p.w.sum())))
        if not norms:
            return 0.0
        order = sorted(range(len(norms)), key=lambda k: -norms[k])
        if self.delta is None:
            return norms[order[1]] if len(order) > 1 else norms[order[0]]
        total = math.fsum(weights)
        budget = self.delta * total
        # Summed in floating point, k weights of 1/m can land just above k/m: a tolerance
        # keeps "clip exactly the budget" from clipping one proposal too few.
        slack = 1e-9 * max(total, 1.0)
        clipped = 0.0
        for k in order:
            if clipped + weights[k] <= budget + slack:
                clipped += weights[k]
                continue
            return norms[k]
        return 0.0


# --------------------------------------------------------------------------- screens


class BalanceFilter(Filter):
    """BALANCE (Fang et al., CCS 2024): keep neighbour j iff

        ||x̂_j − z_i|| = ||u_ij|| <= γ·exp(−κ_b·t/T)·||z_i||,

    then the weighted sum over the accepted ones; a rejected neighbour's weight stays with
    the node (its proposal counts as 0). The threshold tightens as training proceeds
    (λ(t) = t/T).

    Deviation: BALANCE mixes the accepted models as α·z_i + (1 − α)·mean; here the
    accepted ones keep their Metropolis–Hastings weights, so with no attacker BALANCE
    equals plain gossip.

    Parameters
    ----------
    gamma : float > 0
        Default 0.3, the paper's default setting as we read it (Fang et al. 2024, §6);
        public re-implementations use 0.7–2.0, so tune it per model (it is relative to
        ||z_i||).
    kappa_b : float >= 0
        Decay rate κ, default 1 (the paper's default).

    References
    ----------
    Fang, Zhang, Hairi, Khanduri, Liu, Lu, Liu, Gong, "Byzantine-robust decentralized
    federated learning", ACM CCS 2024 (arXiv:2406.10416).
    """

    name = "balance"
    PARAMS: ClassVar[Mapping[str, Any]] = {"gamma": 0.3, "kappa_b": 1.0}
    screens = True

    def __init__(self, *, gamma: float = 0.3, kappa_b: float = 1.0) -> None:
        super().__init__()
        self.gamma = _positive("gamma", gamma)
        k = _number("defence.kappa_b", kappa_b, "a finite number >= 0")
        if k < 0:
            raise ConfigError("defence.kappa_b", kappa_b, "a finite number >= 0")
        self.kappa_b = k

    def threshold(self, ctx: FilterContext) -> float:
        lam = ctx.round / max(1, ctx.rounds)
        return self.gamma * math.exp(-self.kappa_b * lam) * vector_norm(ctx.own)

    def screen(self, p: Proposals, ctx: FilterContext) -> Proposals:
        return p.subset(p.norms() <= self.threshold(ctx))


class AccuracyCheckFilter(Filter):
    """The accuracy check of Bhagoji et al. (ICML 2019) as a screen.

    Reject neighbour j iff acc(z_i + u_ij) < acc(z_i) − threshold, accuracies measured by
    ``ctx.evaluate`` on the node's local validation split (z_i + u_ij = x̂_j, the
    neighbour's announced model). The survivors are summed with their weights.

    Parameters
    ----------
    threshold : float in [0, 1]
        Tolerated accuracy drop, default 0.1. The paper flags an update whose validation
        accuracy is "much lower" than the others' and gives no number; 0.1 (ten points)
        is our choice: above the spread between honest neighbours' models on non-IID
        shards in a few rounds, well below the drop of a boosted update.

    The last accuracies are kept in ``last_accuracy`` ({"own": a0, j: a_j}) for the
    stealth statistics (docs/threat-model.md).

    References
    ----------
    Bhagoji, Chakraborty, Mittal, Calo, "Analyzing federated learning through an
    adversarial lens", ICML 2019, §4 (stealth: accuracy checking).
    """

    name = "accuracy-check"
    PARAMS: ClassVar[Mapping[str, Any]] = {"threshold": 0.1}
    screens = True

    def __init__(self, *, threshold: float = 0.1) -> None:
        super().__init__()
        x = _number("defence.threshold", threshold, "an accuracy drop 0 <= threshold <= 1")
        if not 0 <= x <= 1:
            raise ConfigError(
                "defence.threshold", threshold, "an accuracy drop 0 <= threshold <= 1"
            )
        self.threshold = x
        self.last_accuracy: dict[str | int, float] = {}

    def screen(self, p: Proposals, ctx: FilterContext) -> Proposals:
        if ctx.evaluate is None:
            raise ConfigError(
                "defence", self.name, "needs a local validation split (FilterContext.evaluate)"
            )
        own = np.asarray(ctx.own, dtype=np.float32)
        base = float(ctx.evaluate(own.copy()))
        acc: dict[str | int, float] = {"own": base}
        keep = np.zeros(p.m, dtype=bool)
        for r, j in enumerate(p.ids):
            a = float(ctx.evaluate(own + p.u[r]))
            acc[j] = a
            keep[r] = math.isfinite(a) and a >= base - self.threshold
        self.last_accuracy = acc
        return p.subset(keep)


# --------------------------------------------------------------------------- robust aggregators


def _warn_degraded(filt: Filter, what: str) -> None:
    """Log once per filter that a screen left too few proposals for its parameters."""
    if not getattr(filt, "_warned", False):
        log.warning("%s: fewer proposals than configured for (%s)", filt.name, what)
        filt._warned = True  # type: ignore[attr-defined]


def _with_self(p: Proposals) -> np.ndarray:
    """(m+1, d) float32: row 0 is the node's own proposal u_ii = 0, then the u_ij."""
    x = np.empty((p.m + 1, p.d), dtype=np.float32)
    x[0] = 0.0
    x[1:] = p.u
    return x


def _masked_norm(row: np.ndarray, factor: np.ndarray | float) -> float:
    return vector_norm(row.astype(np.float64) * factor)


class MedianFilter(Filter):
    """Coordinate-wise median over the node's own proposal and its neighbours'.

    F = (Σ_j W_ij)·med({0} ∪ {u_ij}_j)    (per coordinate; u_ii = 0 is z_i itself).

    This is the decentralised form of the coordinate median (e.g. "DeCM" in He et al.
    2022): the node is one of the voters, and the median displacement is applied with the
    total neighbour weight so that, with identical proposals, it equals plain gossip.
    Attribution for ``norm_out``: a coordinate counts for every proposal equal to the
    selected value (half each for the two middle values when m + 1 is even).

    References
    ----------
    Yin, Chen, Ramchandran, Bartlett, "Byzantine-robust distributed learning: towards
    optimal statistical rates", ICML 2018.
    """

    name = "median"

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        if p.m == 0:
            return _result(np.zeros(p.d, np.float32), p, {})
        scale = float(p.w.sum())
        x = _with_self(p)
        n = x.shape[0]
        lo, hi = (n - 1) // 2, n // 2
        part = np.partition(x, [lo, hi], axis=0)
        vlo, vhi = part[lo], part[hi]
        med = (vlo.astype(np.float64) + vhi) * 0.5
        update = (med * scale).astype(np.float32)
        norm_out = {}
        for r, j in enumerate(p.ids):
            row = p.u[r]
            share = 0.5 * (row == vlo) + 0.5 * (row == vhi)
            norm_out[j] = scale * _masked_norm(row, share)
        return _result(update, p, norm_out)


class TrimmedMeanFilter(Filter):
    """Coordinate-wise trimmed mean over {0 (self)} ∪ {u_ij}.

    Per coordinate, drop the b largest and the b smallest of the n = m + 1 values and
    average the rest; F = (Σ_j W_ij)·that mean (the same decentralised form as
    :class:`MedianFilter`).

    Parameters
    ----------
    b : int >= 0
        Values trimmed at each end (default 1). ``check`` needs 2b < m + 1; at run time,
        with fewer proposals (after a screen), b shrinks to (n − 1) // 2.

    References
    ----------
    Yin et al., ICML 2018 (coordinate-wise trimmed mean).
    """

    name = "trimmed-mean"
    PARAMS: ClassVar[Mapping[str, Any]] = {"b": 1}

    def __init__(self, *, b: int = 1) -> None:
        super().__init__()
        self.b = _int("b", b, 0)

    def check(self, degree: int) -> None:
        if 2 * self.b >= degree + 1:
            raise ConfigError(
                "defence.b",
                self.b,
                f"needs 2b < m + 1 = {degree + 1}, i.e. b <= {degree // 2}, "
                f"for a node with {degree} neighbours",
            )

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        if p.m == 0:
            return _result(np.zeros(p.d, np.float32), p, {})
        scale = float(p.w.sum())
        x = _with_self(p)
        n = x.shape[0]
        b = min(self.b, (n - 1) // 2)
        if b < self.b:
            _warn_degraded(self, f"b={self.b} needs m >= {2 * self.b}; trimming {b} with m={p.m}")
        kept = n - 2 * b
        part = np.partition(x, sorted({b, n - 1 - b}), axis=0)
        mean = part[b : n - b].sum(axis=0, dtype=np.float64) / kept
        update = (mean * scale).astype(np.float32)
        vlo, vhi = part[b], part[n - 1 - b]
        norm_out = {}
        for r, j in enumerate(p.ids):
            row = p.u[r]
            norm_out[j] = scale / kept * _masked_norm(row, (row >= vlo) & (row <= vhi))
        return _result(update, p, norm_out)


def _pairwise_sq_dists(x: np.ndarray) -> np.ndarray:
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


class KrumFilter(Filter):
    """Krum (Blanchard et al., NeurIPS 2017) over {0 (self)} ∪ {u_ij}.

    With n = m + 1 candidates and f assumed Byzantine, score(v) = Σ of the squared
    distances from v to its n − f − 2 nearest other candidates; Krum keeps the
    lowest-scoring candidate and applies F = (Σ_j W_ij)·v*. The node's own proposal is a
    candidate: if it wins, F = 0 and every neighbour counts as dropped. Ties are broken
    towards the node itself, then the lower id.

    Parameters
    ----------
    f : int >= 0
        Assumed number of Byzantine neighbours (default 1). ``check`` needs n − f − 2 >= 1.
        At run time, with fewer proposals (after a screen), the neighbour count
        n − f − 2 is raised to 1.

    References
    ----------
    Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine learning with adversaries:
    Byzantine tolerant gradient descent", NeurIPS 2017.
    """

    name = "krum"
    PARAMS: ClassVar[Mapping[str, Any]] = {"f": 1}

    def __init__(self, *, f: int = 1) -> None:
        super().__init__()
        self.f = _int("f", f, 0)

    def check(self, degree: int) -> None:
        n = degree + 1
        if n - self.f - 2 < 1:
            raise ConfigError(
                "defence.f",
                self.f,
                f"needs n - f - 2 >= 1 with n = m + 1 = {n} (so f <= {max(n - 3, 0)}; "
                f"at least {self.f + 2} neighbours), for a node with {degree} neighbours",
            )

    def _how_many(self, n: int) -> int:
        return 1

    def scores(self, p: Proposals) -> np.ndarray:
        """Krum score of each candidate (index 0: the node itself, then p.ids)."""
        x = _with_self(p)
        n = x.shape[0]
        d2 = _pairwise_sq_dists(x)
        q = min(n - 1, max(1, n - self.f - 2))
        if q != n - self.f - 2:
            _warn_degraded(self, f"f={self.f} needs m >= {self.f + 2}; scoring {q} with m={p.m}")
        near = np.sort(d2 + np.diag(np.full(n, np.inf)), axis=1)[:, :q]
        return near.sum(axis=1)

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        if p.m == 0:
            return _result(np.zeros(p.d, np.float32), p, {})
        n = p.m + 1
        sel = np.argsort(self.scores(p), kind="stable")[: self._how_many(n)]
        chosen = sorted(int(c) - 1 for c in sel if c > 0)  # rows of p
        factor = float(p.w.sum()) / len(sel)
        coef = np.zeros(p.m)
        coef[chosen] = factor
        update = weighted_rows(coef, p.u)
        norms = p.norms()
        norm_out = {p.ids[r]: factor * float(norms[r]) for r in chosen}
        kept = set(chosen)
        dropped = [j for r, j in enumerate(p.ids) if r not in kept]
        return _result(update, p, norm_out, dropped=dropped)


class MultiKrumFilter(KrumFilter):
    """Multi-Krum (Blanchard et al. 2017): average the ``multi`` lowest Krum scores.

    F = (Σ_j W_ij)·mean(selected candidates), candidates {0 (self)} ∪ {u_ij} as in
    :class:`KrumFilter`; the node's zero proposal, if selected, takes one slot.

    Parameters
    ----------
    f : int >= 0
        As in Krum (default 1).
    multi : int >= 1, optional
        How many candidates to average; default n − f with n = m + 1 (Blanchard et al.'s
        choice m = n − f), capped at n.
    """

    name = "multi-krum"
    PARAMS: ClassVar[Mapping[str, Any]] = {"f": 1, "multi": None}

    def __init__(self, *, f: int = 1, multi: int | None = None) -> None:
        super().__init__(f=f)
        self.multi = None if multi is None else _int("multi", multi, 1)

    def check(self, degree: int) -> None:
        super().check(degree)
        if self.multi is not None and self.multi > degree + 1:
            raise ConfigError(
                "defence.multi",
                self.multi,
                f"needs multi <= m + 1 = {degree + 1} for a node with {degree} neighbours",
            )

    def _how_many(self, n: int) -> int:
        want = n - self.f if self.multi is None else self.multi
        return min(n, max(1, want))


# --------------------------------------------------------------------------- chains


class Chain(Filter):
    """Several filters in a row: every member screens in order, the last aggregates.

    Counters: the chain's own totals (as for any filter; ``clipped`` sums the members')
    plus every member's counters under ``"<member name>.<counter>"``.
    """

    name = "chain"

    def __init__(self, members: Sequence[Filter]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("defence", "", "at least one filter")
        self.members = list(members)

    @property
    def spec(self) -> str:
        return ",".join(m.spec for m in self.members)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.members:
            out.update(m.params())
        return out

    def check(self, degree: int) -> None:
        for m in self.members:
            m.check(degree)

    def screen(self, p: Proposals, ctx: FilterContext) -> Proposals:
        for m in self.members:
            p = self._screen_with(m, p, ctx)
        return p

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        return self.members[-1].aggregate(p, ctx)

    @staticmethod
    def _screen_with(m: Filter, p: Proposals, ctx: FilterContext) -> Proposals:
        q = m.screen(p, ctx)
        m.counters["calls"] += 1
        m.counters["proposals"] += p.m
        m.counters["dropped"] += p.m - q.m
        return q

    def _run(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        *first, last = self.members
        for m in first:
            p = self._screen_with(m, p, ctx)
        if not last.fused_screen:
            p = self._screen_with(last, p, ctx)
        else:
            last.counters["calls"] += 1
            last.counters["proposals"] += p.m
        res = last.aggregate(p, ctx)
        last.counters["dropped"] += len(res.dropped)
        last.counters["coords_kept"] += int(res.kept_coords)
        return res

    def _finish(
        self, res: FilterResult, p: Proposals, norm_in: dict[int, float], bad: tuple[int, ...]
    ) -> FilterResult:
        out = super()._finish(res, p, norm_in, bad)
        self._merge_counters()
        return out

    def _merge_counters(self) -> None:
        own = {k: self.counters.get(k, 0) for k in COUNTER_KEYS}
        own["clipped"] = sum(m.counters["clipped"] for m in self.members)
        merged = dict(own)
        for m in self.members:
            for k, v in m.counters.items():
                merged[f"{m.name}.{k}"] = v
        self.counters = merged

    def _extra_state(self) -> dict[str, Any]:
        return {"members": [m.state_dict() for m in self.members]}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        members = state.get("members", [])
        if len(members) != len(self.members):
            raise ConfigError("defence", self.spec, "the checkpoint has a different chain")
        for m, s in zip(self.members, members, strict=True):
            m.load_state_dict(s)
        self.counters = {k: v for k, v in self.counters.items() if "." not in k}
        self._merge_counters()


# --------------------------------------------------------------------------- registry

FILTERS: dict[str, type[Filter]] = {
    cls.name: cls
    for cls in (
        NoFilter,
        TopKClipFilter,
        ClipFilter,
        MedianFilter,
        TrimmedMeanFilter,
        KrumFilter,
        MultiKrumFilter,
        ClippedGossipFilter,
        BalanceFilter,
        AccuracyCheckFilter,
    )
}


def _names(spec: str | Sequence[str]) -> list[str]:
    parts = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise ConfigError("defence", part, "a filter name or a comma-separated chain")
        names.extend(n.strip().lower() for n in part.split(",") if n.strip())
    if not names:
        raise ConfigError("defence", spec, "one of " + ", ".join(FILTERS))
    return names


def build_filter(spec: str | Sequence[str], params: Mapping[str, Any] | None = None) -> Filter:
    """Build a filter or a chain from its CLI name(s) and a flat parameter mapping.

    ``build_filter("topk-clip", {"kappa": 0.05})``,
    ``build_filter("accuracy-check,topk-clip")``, ``build_filter(["clip", "median"])``.
    A parameter is given to every member that takes it (``tau`` to both ``clip`` and
    ``topk-clip``). Raises ConfigError naming ``defence`` for an unknown filter or a
    misplaced aggregator, and ``defence.<param>`` for an unknown or invalid parameter.
    """
    names = _names(spec)
    for n in names:
        if n not in FILTERS:
            raise ConfigError(
                "defence", n, "one of " + ", ".join(FILTERS) + " (comma-separated to chain)"
            )
    classes = [FILTERS[n] for n in names]
    for cls in classes[:-1]:
        if not cls.screens:
            raise ConfigError(
                "defence",
                ",".join(names),
                f"{cls.name!r} only aggregates; it can stand only last in a chain",
            )
    params = dict(params or {})
    accepted = {k for cls in classes for k in cls.PARAMS}
    for key, value in params.items():
        if key not in accepted:
            takes = ", ".join(sorted(accepted)) if accepted else "no parameters"
            raise ConfigError(
                f"defence.{key}", value, f"not a parameter of {','.join(names)}; it takes: {takes}"
            )
    members = [cls(**{k: v for k, v in params.items() if k in cls.PARAMS}) for cls in classes]
    return members[0] if len(members) == 1 else Chain(members)


__all__ = [
    "AUTO",
    "FILTERS",
    "AccuracyCheckFilter",
    "BalanceFilter",
    "Chain",
    "ClipFilter",
    "ClippedGossipFilter",
    "Filter",
    "FilterContext",
    "FilterResult",
    "KrumFilter",
    "MedianFilter",
    "MultiKrumFilter",
    "NoFilter",
    "Proposals",
    "TopKClipFilter",
    "TrimmedMeanFilter",
    "build_filter",
    "row_norms",
    "topk_indices",
    "vector_norm",
    "weighted_rows",
]
