"""Attacks shaped by the defence they face (threat model: docs/threat-model.md).

Four attacks that use what a node of the graph knows to stay inside the bounds a defence
enforces (notation of :mod:`p2pfl.attacks`: x the adversary's model at the start of round
t, z its honest model of the round, d_j = xhat_j - x_m(t-1) the update of benign
neighbour j in round t-1, W the mixing matrix of the plan, N(i) the neighbours of i).

``dissensus``  He, Karimireddy & Jaggi 2022 ("Byzantine-robust decentralized learning via
               ClippedGossip", the attack on gossip): per targeted neighbour i announce
               x_i - eps * sum_{k in N(i) benign} W_ik (x_k - x_i) / sum_{b in N(i) adversarial} W_ib,
               so that i's merge cancels (eps = 1) or reverses (eps > 1) the pull of its
               benign neighbours. Always equivocating. Centred on the target's model x_i,
               as in the paper and its code (the adversary's own model plays no part);
               the model it keeps is its honest z.
``minmax``     Shejwalkar & Houmansadr, NDSS 2021: mu - gamma * p over the estimated benign
               updates (the benign neighbours' d_j and its own honest z - x), p = mu/||mu||
               (``unit``), sign(mu) (``sign``) or the coordinate-wise std (``std``), gamma the
               largest (binary search) with max_i ||mal - u_i|| <= max_{i,j} ||u_i - u_j||.
               (The paper writes mu + gamma grad_p with grad_p = -p, the same update.)
``minsum``     the same with sum_i ||mal - u_i||^2 <= max_i sum_j ||u_i - u_j||^2.
``adaptive``   a backdoor shaped against ``topk-clip`` (:class:`Adaptive`, threat model there).

Parameters (``[attack]``; validated in :mod:`p2pfl.attacks`)
----------------------------------------------------------
dissensus:  ``eps`` > 0 (default 1.0), ``delay``.
minmax/minsum: ``perturb`` unit|sign|std (default std), ``gamma_init`` > 0 (default 10, the
            paper's), ``source``, ``delay``, ``equivocate``. The search stops when two
            successive gammas differ by < 1e-5 (the paper's threshold) or after 200 steps.
adaptive:   ``kappa`` in (0, 1] (default 0.1, the filter's default), ``tau`` "auto" or a
            number > 0 (default auto), ``budget`` > 0 (default 1.0: the multiple of the
            estimated clip radius it spends), ``support`` in (0, 1] (default = kappa: the
            fraction of coordinates it concentrates on), ``mal_epochs``, ``delay``.

What the dissensus adversary approximates
-----------------------------------------
The formula needs i's model and the models of all of i's benign neighbours at the moment i
merges. The adversary holds public copies only: for i it uses xhat_i (i's announcement of
round t-1), for i's benign neighbours k that are also its own neighbours xhat_k, and for
those it cannot see (on a ring: i's other neighbour) its own model x (it follows the
consensus they follow; on the complete graph every k is seen). The graph, W and who is
adversarial come from the plan. i's merge subtracts z_i(t), not xhat_i = z_i(t-1): the
announced model also pulls i back by one round of its own progress.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from p2pfl.behaviour import Crafted, NodeView
from p2pfl.filters.numerics import topk_indices

from .base import Attack
from .byzantine import StatisticalAttack
from .params import PERTURBATIONS

GAMMA_TOL = 1e-5  # Shejwalkar & Houmansadr's threshold_diff
GAMMA_STEPS = 200  # bound on the binary search (it needs ~log2(gamma_init / tol) ~ 20)


# ---- min-max / min-sum: pure functions ---------------------------------------------------------
def deviation(updates: np.ndarray, perturb: str) -> np.ndarray:
    """The direction p that mal = mu - gamma p moves along (float64, shape (d,))."""
    u = np.asarray(updates, dtype=np.float64)
    mu = u.mean(axis=0)
    if perturb == "unit":
        n = float(np.linalg.norm(mu))
        return mu / n if n > 0 else np.zeros_like(mu)
    if perturb == "sign":
        return np.sign(mu)
    if perturb == "std":
        return u.std(axis=0)
    raise ValueError(f"perturb must be one of {', '.join(PERTURBATIONS)}, not {perturb!r}")


def gamma_search(ok: Callable[[float], bool], gamma_init: float = 10.0, *, tol: float = GAMMA_TOL,
                 max_steps: int = GAMMA_STEPS) -> float:
    """The largest gamma with ``ok(gamma)`` by Shejwalkar & Houmansadr's binary search (0 if none).

    gamma starts at ``gamma_init`` and moves up on success, down on failure, by a step that
    starts at gamma_init / 2 and halves; it returns the last gamma that succeeded (0.0 when
    none did), so the returned value always satisfies ``ok`` (or is 0).
    """
    gamma, step, good = float(gamma_init), float(gamma_init), 0.0
    for _ in range(max_steps):
        if abs(good - gamma) <= tol:
            break
        if ok(gamma):
            good = gamma
            gamma += step / 2
        else:
            gamma -= step / 2
        step /= 2
    return good


def _centred(updates: np.ndarray, perturb: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mu, p, the rows minus mu, and their squared pairwise distances (float64)."""
    u = np.asarray(updates, dtype=np.float64)
    if u.ndim != 2 or u.shape[0] == 0:
        raise ValueError("updates must be a non-empty (k, d) array")
    mu = u.mean(axis=0)
    c = u - mu
    gram = c @ c.T
    sq = np.diag(gram)
    pair = np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0.0)
    return mu, deviation(u, perturb), c, pair


def _search(updates: np.ndarray, perturb: str, gamma_init: float, score: Callable[[np.ndarray], float],
            bound: float, tol: float, max_steps: int) -> tuple[np.ndarray, float]:
    mu, p, c, _ = _centred(updates, perturb)
    pp = float(p @ p)
    if pp == 0.0:
        return mu.astype(np.float32), 0.0
    cc = np.einsum("ij,ij->i", c, c)
    cp = c @ p

    def ok(gamma: float) -> bool:
        # ||mu - gamma p - u_i||^2 = ||c_i||^2 + 2 gamma p.c_i + gamma^2 ||p||^2
        return score(cc + 2 * gamma * cp + gamma * gamma * pp) <= bound

    gamma = gamma_search(ok, gamma_init, tol=tol, max_steps=max_steps)
    return (mu - gamma * p).astype(np.float32), gamma


def minmax_update(updates: np.ndarray, perturb: str = "std", gamma_init: float = 10.0, *,
                  tol: float = GAMMA_TOL, max_steps: int = GAMMA_STEPS) -> tuple[np.ndarray, float]:
    """Min-max: ``(mu - gamma p, gamma)``, gamma the largest found with
    max_i ||mal - u_i|| <= max_{i,j} ||u_i - u_j|| over the rows u_i of ``updates`` (k, d).

    gamma = 0 (mal = mu) always qualifies: ||mu - u_i|| <= max_j ||u_j - u_i|| by convexity.
    """
    _, _, _, pair = _centred(updates, perturb)
    return _search(updates, perturb, gamma_init, lambda d2: float(d2.max()), float(pair.max()),
                   tol, max_steps)


def minsum_update(updates: np.ndarray, perturb: str = "std", gamma_init: float = 10.0, *,
                  tol: float = GAMMA_TOL, max_steps: int = GAMMA_STEPS) -> tuple[np.ndarray, float]:
    """Min-sum: ``(mu - gamma p, gamma)``, gamma the largest found with
    sum_i ||mal - u_i||^2 <= max_i sum_j ||u_i - u_j||^2.

    gamma = 0 qualifies: sum_i ||mu - u_i||^2 is half the mean over i of sum_j ||u_i - u_j||^2.
    """
    _, _, _, pair = _centred(updates, perturb)
    return _search(updates, perturb, gamma_init, lambda d2: float(d2.sum()), float(pair.sum(axis=1).max()),
                   tol, max_steps)


# ---- the plan's graph, as every adversary knows it ---------------------------------------------
def _mixing(plan: Any) -> np.ndarray:
    w = getattr(plan, "weights", None)
    return np.asarray(w if w is not None else plan.topology.mixing(), dtype=np.float64)


class _GraphAware(Attack):
    """An attack that reads the graph, W and the adversaries from the plan."""

    def __init__(self, *, plan: Any, node: int, params: Mapping[str, Any]) -> None:
        super().__init__(plan=plan, node=node, params=params)
        self.topology = plan.topology
        self.W = _mixing(plan)
        self.adversaries = frozenset(int(a) for a in plan.adversaries) | {node}


# ---- dissensus ---------------------------------------------------------------------------------
def dissensus_model(target: np.ndarray, benign: Mapping[int, np.ndarray], weights: Mapping[int, float],
                    byzantine_weight: float, eps: float) -> np.ndarray:
    """``x_i - eps * sum_k W_ik (x_k - x_i) / sum_b W_ib`` (float32); ``benign`` maps k to x_k."""
    t = np.asarray(target, dtype=np.float64)
    pull = np.zeros_like(t)
    for k, xk in benign.items():
        pull += float(weights[k]) * (np.asarray(xk, dtype=np.float64) - t)
    return (t - float(eps) * pull / float(byzantine_weight)).astype(np.float32)


class Dissensus(_GraphAware):
    """He, Karimireddy & Jaggi's dissensus attack, per neighbour (module docstring)."""

    name = "dissensus"

    def attack(self, view: NodeView) -> Crafted:
        eps = float(self.params.get("eps", 1.0))
        z = self.honest(view)
        announce: dict[int, np.ndarray] = {}
        seen = unseen = 0
        for i in view.neighbours:
            benign: dict[int, np.ndarray] = {}
            byz = 0.0
            for k in self.topology.neighbours(i):
                if k in self.adversaries:
                    byz += float(self.W[i, k])
                elif k in view.public:
                    benign[k] = view.public[k]
                    seen += 1
                else:
                    benign[k] = view.x  # unseen: assumed at the consensus the adversary follows
                    unseen += 1
            weights = {k: float(self.W[i, k]) for k in benign}
            announce[i] = dissensus_model(view.public[i], benign, weights, byz, eps)
        norms = [float(np.linalg.norm(np.subtract(a, view.public[i], dtype=np.float64)))
                 for i, a in announce.items()]
        info = {"eps": eps, "targets": float(len(announce)), "seen": float(seen), "unseen": float(unseen),
                "push_norm": max(norms, default=0.0)}
        return Crafted(own=z, announce=announce, info=info)


# ---- min-max / min-sum attacks -----------------------------------------------------------------
class _ShejwalkarAttack(StatisticalAttack):
    rule: Callable[..., tuple[np.ndarray, float]]

    def attack(self, view: NodeView) -> Crafted:
        rows = self.benign_rows(view)
        perturb = self.params.get("perturb", "std")
        gamma_init = float(self.params.get("gamma_init", 10.0))
        mal, gamma = type(self).rule(rows, perturb, gamma_init)
        info = {"gamma": gamma, "rows": float(len(rows)), "perturb": float(PERTURBATIONS.index(perturb))}
        return self.emit(view, mal, 1.0, info)


class MinMax(_ShejwalkarAttack):
    """Min-max (Shejwalkar & Houmansadr 2021): the farthest mu - gamma p within the benign max distance."""

    name = "minmax"
    rule = staticmethod(minmax_update)


class MinSum(_ShejwalkarAttack):
    """Min-sum (Shejwalkar & Houmansadr 2021): the same within the benign max sum of squared distances."""

    name = "minsum"
    rule = staticmethod(minsum_update)


# ---- adaptive attacker against topk-clip ------------------------------------------------------
def fit_norm(x: np.ndarray, u: np.ndarray, bound: float) -> np.ndarray:
    """The float32 model x + u, shrunk until ||model - x|| <= bound despite float32 rounding."""
    x32 = np.asarray(x, dtype=np.float32)
    x64 = x32.astype(np.float64)
    u64 = np.asarray(u, dtype=np.float64)
    for _ in range(50):
        model = (x64 + u64).astype(np.float32)
        n = float(np.linalg.norm(model.astype(np.float64) - x64))
        if n <= bound:
            return model
        u64 = u64 * (bound / n) * (1 - 1e-6)
    return x32.copy()


def shape_update(mal: np.ndarray, aggregate: np.ndarray, weight: float, radius: float, k: int,
                 s: int) -> tuple[np.ndarray, np.ndarray]:
    """Concentrate ``mal`` on the coordinates expected to survive a receiver's top-k.

    ``aggregate`` is the receiver's estimated aggregate without this adversary's malicious
    push, ``weight`` the receiver's weight W_im for it, ``radius`` the norm it may spend.
    With v = mal scaled to ``radius``, T = the k largest |aggregate + weight v| (where the
    receiver's top-k is expected to fall once the push is in), S = the s largest |mal| in T;
    returns (mal on S scaled to norm ``radius``, S). Zero when mal vanishes on T.
    """
    mal64 = np.asarray(mal, dtype=np.float64)
    peak = float(np.max(np.abs(mal64))) if mal64.size else 0.0
    empty = np.empty(0, dtype=np.int64)
    if peak == 0 or not np.isfinite(peak) or radius <= 0:
        return np.zeros_like(mal64), empty
    unit = mal64 / peak  # only the direction matters; this keeps tiny updates' norms exact
    v = unit * (radius / float(np.linalg.norm(unit)))
    top = topk_indices(np.abs(np.asarray(aggregate, dtype=np.float64) + weight * v), k)
    keep = top[topk_indices(np.abs(unit[top]), s)] if top.size > s else top[unit[top] != 0]
    out = np.zeros_like(mal64)
    out[keep] = unit[keep]
    if not keep.size:
        return out, empty
    out /= float(np.max(np.abs(out)))
    return out * (radius / float(np.linalg.norm(out))), keep


class Adaptive(_GraphAware):
    """A backdoor that knows the receiver's ``topk-clip`` filter and shapes its update to pass it.

    Threat model. It knows: the filter and its parameters (kappa, the tau rule "auto" =
    median of the incoming proposal norms and the receiver's own update norm, or a fixed
    tau); the graph and W (the plan); its neighbours' public copies and their round t-1
    updates d_j; its own data, its own honest update and the auxiliary (backdoor) set. It
    cannot see: the round-t updates of the others before it sends (it uses round t-1's);
    the proposals the receiver gets from neighbours it does not share; the receiver's own
    training update of round t (it estimates it); the receiver's z_i, so it bounds the
    update it controls, ||announced - x||, while the receiver clips xhat_m - z_i, which
    also carries -(z_i - x_i) and the gap between x and x_i.

    Each round, for every neighbour (receiver) i:

    1. tau_hat_i: a fixed ``tau`` as given; with "auto" the median of the votes the receiver
       is expected to count, on the update scale: ||d_k|| for each neighbour k of i the
       adversary sees (k != m), ||d_i|| (i's own last update) for each neighbour of i it
       cannot see or that colludes, ||z - x|| for its own proposal (counted at honest size:
       with budget >= 1 its real vote is not smaller and the median is monotone) and
       ||z - x|| again for the receiver's own training update.
    2. The malicious update mal = w - x, w from :meth:`poisoned_model` (own data with the aux
       set in every batch, as ``replace``), retrained every round so the backdoor accumulates.
    3. The receiver's aggregate without the push: A_i = sum_{k in N(i), k != m} W_ik dhat_k
       + W_im (z - x) - (sum_{k in N(i)} W_ik) dhat_i, i.e. sum_k W_ik (z_k - z_i) with every
       node starting from the consensus, dhat_k = d_k when seen, else z - x (a benign update
       of its own size); in round 1 A_i = 0.
    4. Coordinates: T = the k = kappa d largest |A_i + W_im v| (v = mal spread at full
       budget): where the receiver's top-k is expected to fall once the push is in, i.e.
       where W_im mal adds to large benign coordinates or dominates small ones; keep the
       s = support d largest |mal| of T, scale to norm tau_hat_i * budget (so the receiver's
       clip, if tau_hat_i is right, does not cut it) and announce x + that to i.

    Its own model is the honest z (it keeps following the consensus). Info: ``tau_hat``
    (mean over receivers) and ``tau_hat_max``, ``support`` (largest share of coordinates announced), ``coords``
    (s), ``mal_norm`` ||mal||, ``kept`` (share of ||mal|| on the kept coordinates, mean).
    """

    name = "adaptive"

    def __init__(self, *, plan: Any, node: int, params: Mapping[str, Any]) -> None:
        super().__init__(plan=plan, node=node, params=params)
        self.kappa = float(self.params.get("kappa", 0.1))
        self.tau = self.params.get("tau", "auto")
        self.budget = float(self.params.get("budget", 1.0))
        self.support = float(self.params.get("support", self.kappa))
        self.tau_hat: dict[int, float] = {}  # per receiver, last round (for tests and reports)

    @staticmethod
    def coordinates(fraction: float, d: int) -> int:
        """max(1, round(fraction d)), capped at d: the filter's rule for k."""
        return min(d, max(1, round(fraction * d)))

    def poisoned_model(self, view: NodeView) -> np.ndarray:
        """w: the backdoor trained into the own shard (:meth:`Attack.poisoned_training`)."""
        return self.poisoned_training(view)[0]

    def estimate_tau(self, i: int, ups: Mapping[int, np.ndarray], own: float) -> float:
        """tau_hat of receiver i (step 1 of the class docstring)."""
        if self.tau != "auto":
            return float(self.tau)
        proxy = float(np.linalg.norm(ups[i])) if i in ups else own
        votes = [own, own]  # the adversary's own proposal, the receiver's own update
        for k in self.topology.neighbours(i):
            if k == self.node:
                continue
            votes.append(float(np.linalg.norm(ups[k])) if k in ups else proxy)
        return float(np.median(votes))

    def estimate_aggregate(self, i: int, ups: Mapping[int, np.ndarray], g: np.ndarray) -> np.ndarray:
        """A_i, receiver i's aggregate without the malicious push (step 3)."""
        if not ups:
            return np.zeros_like(g, dtype=np.float64)
        agg = float(self.W[i, self.node]) * g.astype(np.float64)
        total = 0.0
        for k in self.topology.neighbours(i):
            w = float(self.W[i, k])
            total += w
            if k != self.node:
                agg += w * (ups[k] if k in ups else g)
        return agg - total * (ups[i] if i in ups else g)

    def attack(self, view: NodeView) -> Crafted:
        x = view.x
        z = self.honest(view)
        g = np.subtract(z, x, dtype=np.float32)
        own = float(np.linalg.norm(g.astype(np.float64)))
        mal = np.subtract(self.poisoned_model(view), x, dtype=np.float64)
        ups = self.updates(view)
        d = x.shape[0]
        k, s = self.coordinates(self.kappa, d), self.coordinates(self.support, d)
        announce: dict[int, np.ndarray] = {}
        self.tau_hat = {}
        supports, kept = [], []
        mal_norm = float(np.linalg.norm(mal))
        for i in view.neighbours:
            tau = self.estimate_tau(i, ups, own)
            self.tau_hat[i] = tau
            radius = tau * self.budget
            u, keep = shape_update(mal, self.estimate_aggregate(i, ups, g), float(self.W[i, self.node]),
                                   radius, k, s)
            announce[i] = fit_norm(x, u, radius)
            supports.append(int(np.count_nonzero(announce[i] != x)) / d)
            kept.append(float(np.linalg.norm(mal[keep])) / mal_norm if mal_norm > 0 else 0.0)
        info = {"tau_hat": float(np.mean(list(self.tau_hat.values()))) if self.tau_hat else 0.0,
                "tau_hat_max": max(self.tau_hat.values(), default=0.0),
                "support": max(supports, default=0.0), "coords": float(s), "mal_norm": mal_norm,
                "kept": float(np.mean(kept)) if kept else 0.0, "budget": self.budget}
        return Crafted(own=z, announce=announce, info=info)


__all__ = [
    "PERTURBATIONS",
    "Adaptive",
    "Dissensus",
    "MinMax",
    "MinSum",
    "deviation",
    "dissensus_model",
    "fit_norm",
    "gamma_search",
    "minmax_update",
    "minsum_update",
    "shape_update",
]
