"""Attacks shaped by the defence they face (issue 13, DESIGN.md section 9).

Attacks that use what a node of the graph knows to stay inside the bounds a defence
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

Parameters (``[attack]``; validated in :mod:`p2pfl.attacks`)
----------------------------------------------------------
dissensus:  ``eps`` > 0 (default 1.0), ``delay``.
minmax/minsum: ``perturb`` unit|sign|std (default std), ``gamma_init`` > 0 (default 10, the
            paper's), ``source``, ``delay``, ``equivocate``. The search stops when two
            successive gammas differ by < 1e-5 (the paper's threshold) or after 200 steps.

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

from .attacks import PERTURBATIONS, Attack, _StatisticalAttack
from .behaviour import Crafted, NodeView

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
class _ShejwalkarAttack(_StatisticalAttack):
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


CLASSES: dict[str, type[Attack]] = {cls.name: cls for cls in (Dissensus, MinMax, MinSum)}

__all__ = [
    "CLASSES",
    "PERTURBATIONS",
    "Dissensus",
    "MinMax",
    "MinSum",
    "deviation",
    "dissensus_model",
    "gamma_search",
    "minmax_update",
    "minsum_update",
]
