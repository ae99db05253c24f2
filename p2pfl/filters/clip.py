"""Norm clipping: ``clip``, ``topk-clip`` (the reference defence) and ``clipped-gossip``.

All three clip every proposal to a radius τ, c_j = u_ij·min(1, τ/||u_ij||), and differ in
how τ is chosen and what is done with the clipped sum. ``topk-clip`` (SparseFed, Panda et
al., AISTATS 2022, ported to one node) guarantees: whatever neighbour j sends, its
contribution to x_i in one round has L2 norm at most W_ij·τ, and at most
k = max(1, round(κ·d)) coordinates of x_i change.
"""

from __future__ import annotations

import abc
import math
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from p2pfl.validate import auto_or_positive, choice, fraction, integer, real

from .base import Filter, FilterContext, FilterResult, Proposals, partial_result
from .numerics import median_of, row_norms, topk_indices, vector_norm, weighted_rows

AUTO = "auto"
TAU_RULES = ("median-with-own", "own", "median")
TOPK_MODES = ("aggregate", "per-proposal")


def tau_param(value: Any) -> float | str:
    """``defence.tau``: "auto" or a finite radius > 0."""
    return auto_or_positive("defence.tau", value, AUTO)


def own_norm(ctx: FilterContext) -> float | None:
    """||own_update|| if it exists, is finite and nonzero; else None."""
    if ctx.own_update is None:
        return None
    n = vector_norm(ctx.own_update)
    return n if math.isfinite(n) and n > 0 else None


class _ClipBase(Filter):
    """Norm clipping c_j = u_ij·min(1, τ/||u_ij||) with a radius chosen by ``_resolve_tau``.

    As a screen (a chain member before the aggregating one) it returns the clipped
    proposals; as the aggregator it folds the clip factors into the weights, so no
    clipped copy of the (m, d) array is made.
    """

    screens = True
    fused_screen = True

    @abc.abstractmethod
    def _resolve_tau(self, p: Proposals, ctx: FilterContext) -> float:
        """The clip radius τ of this round (may remember it, for the fallback rules)."""

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
        return partial_result(update, p, norm_out, tau=tau)


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
        self.tau = tau_param(tau)
        self.tau_rule = choice("defence.tau_rule", tau_rule, TAU_RULES)
        self.tau_scale = real("defence.tau_scale", tau_scale, 0.0, open_lo=True)
        self.tau_history = integer("defence.tau_history", tau_history, 1)
        self._history: deque[float] = deque(maxlen=self.tau_history)

    def _resolve_tau(self, p: Proposals, ctx: FilterContext) -> float:
        if self.tau != AUTO:
            return float(self.tau)
        incoming = p.norms()
        if self.tau_rule == "median":
            return median_of(incoming)
        own = own_norm(ctx)
        if own is not None:
            tau = (
                self.tau_scale * own
                if self.tau_rule == "own"
                else median_of([*incoming.tolist(), own])
            )
            self._history.append(tau)
            return tau
        if self._history:
            return median_of(self._history)
        return median_of(incoming)

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
        self.kappa = fraction("defence.kappa", kappa)
        self.mode = choice("defence.mode", mode, TOPK_MODES)

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
        return partial_result(a, p, norm_out, kept=int(np.count_nonzero(vals)), tau=tau)

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
        return partial_result(update, p, norm_out, tau=tau)


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
        self.tau = tau_param(tau)
        self.delta = None if delta is None else fraction("defence.delta", delta, open_hi=True)

    def _resolve_tau(self, p: Proposals, ctx: FilterContext) -> float:
        if self.tau != AUTO:
            return float(self.tau)
        norms = p.norms().tolist()
        weights = p.w.tolist()
        own = own_norm(ctx)
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


__all__ = ["AUTO", "TAU_RULES", "TOPK_MODES", "ClipFilter", "ClippedGossipFilter", "TopKClipFilter"]
