"""The filter interface: what a node hands a filter, what it gets back, and the base class.

A filter is pure math: arrays in, arrays out; no sockets, clocks or per-call logging.
It runs in two stages, so filters chain:

1. :meth:`Filter.screen` may drop or transform proposals (accuracy check, BALANCE, clip);
2. :meth:`Filter.aggregate` turns the surviving proposals into the update (weighted sum,
   top-k of the clipped sum, coordinate median, Krum, ...).

:meth:`Filter.__call__` wraps both: it validates and sorts the proposals, drops non-finite
ones (the wire layer already rejects them; this is defence in depth) and completes the
bookkeeping of :class:`FilterResult`.
"""

from __future__ import annotations

import logging
import math
from abc import ABC
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from p2pfl.errors import ConfigError

from .numerics import row_norms, weighted_rows

log = logging.getLogger(__name__)

COUNTER_KEYS = ("calls", "proposals", "clipped", "dropped", "nonfinite", "coords_kept")


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
        return partial_result(update, p, {j: float(p.w[k] * norms[k]) for k, j in enumerate(p.ids)})

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


def partial_result(
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


def warn_degraded(filt: Filter, what: str) -> None:
    """Log once per filter that a screen left too few proposals for its parameters."""
    if not getattr(filt, "_warned", False):
        log.warning("%s: fewer proposals than configured for (%s)", filt.name, what)
        filt._warned = True  # type: ignore[attr-defined]


__all__ = [
    "COUNTER_KEYS",
    "Filter",
    "FilterContext",
    "FilterResult",
    "NoFilter",
    "Proposals",
    "partial_result",
    "warn_degraded",
]
