"""What adversarial nodes announce: model poisoning (DESIGN.md section 3).

An attack is a :class:`~p2pfl.node.Behaviour`: ``craft(view) -> Crafted``. It sees what its
node knows (:class:`~p2pfl.node.NodeView`: its model x, its shard and trainer, its
neighbours' public copies xhat_j and last deltas, the mixing weights W_mj, the round) plus
what :class:`~p2pfl.plan.Plan` gives every adversary at start-up: the auxiliary set
{(x_l, tau_l)} (inputs with the labels the adversaries want), the graph and who colludes.
It returns the model it keeps (``own``, merged with its neighbours like every node does, so
the adversary keeps following the consensus) and what it announces: one model for everybody
or, with ``equivocate = true``, one model per neighbour.

Notation (Bhagoji et al., ICML 2019, and their code inspire-group/ModelPoisoning,
``malicious_agent.py``)::

    x       the adversary's model at the start of round t (the consensus it follows)
    s       the start point of the malicious optimisation: x, or x + B with estimate = "pre"
    w       the model the optimisation ends at
    B       estimate of the others' update: sum_j W_mj d_j over benign neighbours j, where
            d_j is j's update of round t-1 (see "Estimation" below)
    lam     boost factor; default deg(m) + 1, the gossip analogue of the paper's lam = K:
            a neighbour i weighs the adversary by W_im ~ 1/(deg + 1) (exactly on regular
            graphs), so lam * W_im ~ 1 and i's model moves by the whole malicious update

Attacks (:data:`ATTACKS`)
-------------------------
``boost``     explicit boosting: minimise CE(aux) from s (Adam/SGD as the benign nodes)
              for at least ``mal_epochs`` steps and until CE(aux) <= ``tol`` (at most
              ``max_steps``); announce x + lam * (w - s) (``post``: x + lam * (w - s - B)).
``stealth``   one joint objective CE(own data) + lam CE(aux) + rho/2 ||w - w_ref||^2 over
              ``mal_epochs`` epochs of the own shard. Each step moves w by the benign step
              (CE(batch) + distance term) plus lam times a step on CE(aux), both taken from
              the same point with their own optimiser state: with plain SGD that is exactly
              a gradient step on the sum; with Adam it keeps lam meaningful (Adam would
              otherwise normalise the scale away). This is the reference code's "concat"
              training. Announce x + (w - s) (``post``: minus B).
``altmin``    alternating minimisation: ``ls`` benign steps on CE(batch) + rho/2 ||w - w_ref||^2,
              then one malicious step on CE(aux) boosted by lam
              (w <- w_b + lam (w_m - w_b)), repeated for ``mal_epochs`` epochs of benign steps;
              announce x + (w - s) (``post``: minus B). Paper settings: lam = 10,
              rho = 1e-4, ls = 10, 10 epochs.
``replace``   model replacement (Bagdasaryan et al. 2020): train on the own shard with the
              aux set appended to every batch, announce x + lam (w - x).
``signflip``  announce x - lam (z - x), z the honest model (lam default 1).
``gaussian``  announce x + N(0, sigma^2 I); sigma defaults to the RMS coordinate of the
              node's own honest update (a noise update of honest size).
``labelflip`` train on the own shard with labels y -> C - 1 - y, announce x + lam (w - x)
              (lam default 1).
``alie``      "A little is enough" (Baruch et al. 2019): announce x + mu - z sigma, mu and
              sigma the coordinate-wise mean and standard deviation of the estimated benign
              updates (neighbours' and its own honest one); z default 1.0 (Baruch's
              z_max = Phi^-1((n - s)/n), s = floor(n/2 + 1) - f, is 0 for n = 10, f = 1).
``ipm``       inner-product manipulation (Xie et al. 2019): announce x - eps mu (eps 0.1).
``pgd``, ``neurotoxin``, ``scale``   norm- and distance-constrained backdoor training, in
              :mod:`p2pfl.constrained` (registered here): projected training onto an eps ball
              around x or x + the own benign update; the same on the coordinates outside the
              benign update's top ``ratio``; constrain-and-scale with gamma_j = 1/W_jm per
              receiver, capped by ``budget`` and/or an estimated clip radius ``clip_to``.
``dissensus``, ``minmax``, ``minsum``, ``adaptive``  attacks shaped by the defence they face
              (He et al. 2022; Shejwalkar & Houmansadr 2021; an attacker that knows
              ``topk-clip``): :mod:`p2pfl.adaptive`, which documents them and their
              parameters ``perturb``, ``gamma_init``, ``kappa``, ``tau``, ``budget``,
              ``support`` (and ``eps``, default 1.0 for dissensus).

The distance term is rho/2 ||w - w_ref||^2, the reference code's ``tf.nn.l2_loss``
convention, so rho = 1e-4 means what it meant in the paper's runs. w_ref = x + delta_ben:
``constrain = "self"`` trains the node's own honest update (E epochs from x);
``constrain = "neighbours"`` uses the W-weighted mean of the neighbours' estimated updates
(rho is 0 while no estimate exists, as the reference code does at t = 0).

Parameters (``[attack]`` table or ``attack.<name>`` overrides; each attack accepts the ones
it uses, see :data:`PARAMS`; others are configuration errors)
------------------------------------------------------------------------------------------
``lam``         boost factor / aux weight / scale, > 0. Default deg + 1 (boost, stealth,
                altmin, replace) or 1 (signflip, labelflip).
``rho``         distance weight, >= 0, default 1e-4 (paper).
``ls``          benign steps per malicious step (altmin), default 10 (paper).
``mal_epochs``  boost: minimum number of aux steps, default 5 (reference ``mal_E``);
                stealth/altmin/replace/labelflip: epochs over the own shard, default 2 E
                (paper: 10 with E = 5).
``tol``         aux loss counted as reached: boost trains until CE(aux) <= tol (default
                1e-6, the reference's stopping rule); stealth/altmin skip a malicious step
                when CE(aux) <= tol (default 0: never skip, as the reference).
``max_steps``   cap on boost's aux steps, default 1000.
``mal_optimizer``, ``mal_lr``  the optimiser of the malicious (aux) steps of boost, stealth
                and altmin: ``node`` (default: the nodes' optimiser and lr, as the paper)
                | ``sgd`` | ``adam``, at ``mal_lr`` (default: the nodes' lr). Adam moves every
                coordinate by about lr per step whatever its gradient, so a boosted Adam step
                on one example is large and spread over the whole model; SGD puts the change
                where the aux gradient is, for a smaller norm at equal effect.
``estimate``    ``none`` | ``pre`` | ``post`` (boost, stealth, altmin), default none.
``source``      where d_j comes from: ``updates`` (default) | ``deltas``.
``collude``     share estimates with the other adversaries of the run, default false.
``constrain``   ``self`` | ``neighbours`` (stealth, altmin), default self.
``delay``       honest rounds before the attack starts (the reference's ``mal_delay``):
                the node attacks from round delay + 1; default 0.
``equivocate``  announce a different model to each neighbour j, the update scaled by
                lam (deg + 1)^-1 / W_mj so that every neighbour, whatever its weight,
                receives the intended share (the same on regular graphs); gaussian draws
                independent noise per neighbour. Default false.
``sigma``, ``z``, ``eps``   gaussian, alie, ipm (above); ``eps`` is also pgd/neurotoxin's radius.
``eps_rel``, ``ref``, ``norm``, ``project_every``, ``ratio``, ``mask_from``, ``alpha``, ``gamma``,
``clip_to``, ``budget``   pgd, neurotoxin and scale (:mod:`p2pfl.constrained`, defaults there).
``target``, ``aux_size``    the shared auxiliary set, consumed by
                :func:`p2pfl.plan.choose_aux`; accepted and ignored here.
``backdoor``, ``poison_fraction``, ``trigger_size``, ``trigger_value``, ``trigger_pos``
                the backdoor kind (``single`` default | ``class`` | ``trigger``) and its
                trigger, built once by the plan (:mod:`p2pfl.backdoor`); accepted by every
                attack, validated here, used through ``self.backdoor``. For class and trigger
                the aux-only attacks (boost, stealth, altmin) train on the node's own backdoor
                examples (``Backdoor.aux_for``: class-S examples labelled T, or stamped
                examples of the other classes labelled T) instead of the shared aux set;
                ``replace`` (and the attacks of :mod:`p2pfl.constrained`) mix the backdoor
                into every own batch (``Backdoor.poison``). ``single`` is unchanged.

Estimation of the others' update ("previous step")
---------------------------------------------------
The paper estimates the benign agents' aggregate update of round t by that of round t-1.
Here d_j is neighbour j's update of round t-1:

* ``source = "updates"``: d_j = xhat_j - x_m(t-1), j's announced model of round t-1 minus
  the model the adversary itself started round t-1 from (it remembers it). Benign nodes
  start a round from the consensus the adversary follows, so this is j's training update;
  on the complete graph it is exact (everyone, the adversary included, holds the same x).
* ``source = "deltas"``: d_j = the delta j sent in round t-1. That is j's change of
  announced model, which also carries one round of consensus drift, including the
  adversary's own boosted push of round t-2; kept for comparison.

``pre`` starts the optimisation from s = x + B (so after the neighbours add their updates
the model is near w); ``post`` subtracts B from the update before boosting (so the
neighbours' updates are cancelled). Round 1 has no estimate (B = 0).

Colluding adversaries share one auxiliary set (``plan.aux`` is global). With
``collude = true`` they also pool their estimates: each posts the W-weighted mean of its
benign neighbours' updates for round t on a board shared by the adversaries of the run, and
uses the count-weighted mean of the posts present at that moment, rescaled by its own
total neighbour weight. The board lives in the process: it pools across adversaries of an
in-process run; with one process per node each adversary uses its own estimate. Which
posts are present depends on thread timing, so pooled runs are not bit-reproducible.

Stealth statistics (``info`` of every round, also in delayed rounds)
--------------------------------------------------------------------
``delta_norm``   max over neighbours of ||announced delta||;
``dist_min/max`` L2 distances of this round's delta to the benign neighbours' deltas of
                 round t-1 (the newest the adversary has seen);
``prev_dist_min/max``, ``benign_min/max``  the paper's comparison, one round late: the
                 adversary's round t-1 delta against the benign deltas of round t-1, and
                 the pairwise distances among those benign deltas;
``benign_norm_max``  largest benign delta norm of round t-1;
``update_norm``  max ||announced model - x||: the update in the paper's sense (relative to the
                 model the round started from; a delta also carries the consensus drift);
``prev_update_dist_min/max``, ``update_benign_min/max``, ``update_benign_norm_max``  the same
                 comparison for updates, one round late: the adversary's round t-1 update
                 against the benign neighbours' round t-1 updates d_j = xhat_j - x_m(t-1)
                 (exact on the complete graph), and their pairwise spread;
``prev_within``, ``prev_update_within``  1.0 when the adversary's round t-1 delta (update) is
                 no farther from any benign one than the benign ones are from each other
                 (``prev_dist_max <= benign_max``), else 0.0: the paper's distance-spread
                 stealth test, one round late; summaries count the rounds that pass it;
``announced_acc``    accuracy of the announced model on up to 500 clean test examples;
                 when it equivocates, the mean over the distinct models it announced, and
                 ``announced_acc_min`` the lowest;
``benign_update_norm``, ``norm_ratio``  ``update_norm`` / the norm of a benign update of
                 this round: the adversary's own honest update ||z - x|| when the attack
                 trains z anyway (signflip, gaussian without sigma, alie, ipm, minmax, minsum,
                 dissensus, adaptive, stealth/altmin with ``constrain = "self"``, and every
                 delayed round; ``benign_norm_own`` = 1.0), else the W-weighted mean norm of
                 its benign neighbours' round t-1 updates d_j (``benign_norm_own`` = 0.0; no
                 value in round 1). 1.0 means an update of honest size.
"""

from __future__ import annotations

import hashlib
import logging
import math
import statistics
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .backdoor import BACKDOOR_PARAMS, Backdoor, check_backdoor_params
from .behaviour import Crafted, Honest, NodeView
from .errors import ConfigError
from .timing import TIMING_PARAMS, check_timing
from .train import get_flat, set_flat

log = logging.getLogger(__name__)

ATTACKS: tuple[str, ...] = (
    "none", "boost", "stealth", "altmin", "signflip", "gaussian", "labelflip", "alie", "ipm", "replace",
    "pgd", "scale", "neurotoxin",  # p2pfl.constrained
    "dissensus", "minmax", "minsum", "adaptive",  # p2pfl.adaptive
)  # fmt: skip
ESTIMATES = ("none", "pre", "post")
CONSTRAINTS = ("self", "neighbours")
SOURCES = ("updates", "deltas")
MAL_OPTIMIZERS = ("node", "sgd", "adam")
REFS = ("start", "benign")  # pgd / neurotoxin: the centre of the ball
NORMS = ("l2", "linf")
EPS_FROM = ("norm", "spread")  # pgd / neurotoxin: what eps_rel multiplies
MASK_FROM = ("own", "neighbours")
PERTURBATIONS = ("unit", "sign", "std")  # minmax / minsum (p2pfl.adaptive)

_ESTIMATING = ("estimate", "source", "collude")
_MALICIOUS = ("mal_optimizer", "mal_lr")
#: The parameters each attack accepts (besides ``target`` and ``aux_size``).
PARAMS: dict[str, tuple[str, ...]] = {
    "none": (),
    "boost": ("lam", "mal_epochs", "tol", "max_steps", *_MALICIOUS, *_ESTIMATING, "delay", "equivocate"),
    "stealth": ("lam", "rho", "mal_epochs", "tol", *_MALICIOUS, *_ESTIMATING, "constrain", "delay",
                "equivocate"),
    "altmin": ("lam", "rho", "ls", "mal_epochs", "tol", *_MALICIOUS, *_ESTIMATING, "constrain", "delay",
               "equivocate"),
    "signflip": ("lam", "delay", "equivocate"),
    "gaussian": ("sigma", "delay", "equivocate"),
    "labelflip": ("lam", "mal_epochs", "delay", "equivocate"),
    "alie": ("z", "source", "delay", "equivocate"),
    "ipm": ("eps", "source", "delay", "equivocate"),
    "replace": ("lam", "mal_epochs", "delay", "equivocate"),
    # p2pfl.adaptive
    "dissensus": ("eps", "delay"),
    "minmax": ("perturb", "gamma_init", "source", "delay", "equivocate"),
    "minsum": ("perturb", "gamma_init", "source", "delay", "equivocate"),
    "adaptive": ("kappa", "tau", "budget", "support", "mal_epochs", "delay"),
}
_PROJECTED = ("eps", "eps_rel", "eps_from", "ref", "norm", "project_every", "mal_epochs", *_MALICIOUS, "delay")
PARAMS.update({  # p2pfl.constrained
    "pgd": _PROJECTED,
    "neurotoxin": (*_PROJECTED, "ratio", "mask_from", "source"),
    "scale": ("alpha", "gamma", "clip_to", "budget", "mal_epochs", *_MALICIOUS, "source", "delay"),
})
#: Read by the plan (p2pfl.plan.choose_backdoor, choose_aux): accepted by every attack.
_PLAN_PARAMS = ("target", "aux_size", *BACKDOOR_PARAMS)
_NEEDS_AUX = ("boost", "stealth", "altmin", "replace", "pgd", "scale", "neurotoxin", "adaptive")
AUX_ONLY = ("boost", "stealth", "altmin")  # train on the aux set alone: it must not be empty
_EVAL_SIZE = 500  # clean examples for the announced model's accuracy (a stealth statistic)


# ---- pure math -------------------------------------------------------------------------------------
def boost(base: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """Explicit boosting: ``base + lam * (w - base)`` as float32."""
    base64 = np.asarray(base, dtype=np.float64)
    return (base64 + float(lam) * (np.asarray(w, dtype=np.float64) - base64)).astype(np.float32)


def distance_penalty(w: np.ndarray, ref: np.ndarray, rho: float) -> float:
    """``rho/2 * ||w - ref||^2`` (``tf.nn.l2_loss`` convention of the reference code)."""
    diff = np.asarray(w, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    return 0.5 * float(rho) * float(diff @ diff)


def distance_gradient(w: np.ndarray, ref: np.ndarray, rho: float) -> np.ndarray:
    """Gradient of :func:`distance_penalty` in w: ``rho * (w - ref)``; it points away from ref."""
    return float(rho) * (np.asarray(w, dtype=np.float64) - np.asarray(ref, dtype=np.float64))


def neighbour_updates(public: Mapping[int, np.ndarray], public_round: Mapping[int, int],
                      prev_x: np.ndarray, prev_round: int, *, exclude: frozenset[int] = frozenset()
                      ) -> dict[int, np.ndarray]:
    """d_j = xhat_j - x_prev for neighbours whose copy holds their announcement of ``prev_round``.

    ``prev_x`` is the model the adversary started round ``prev_round`` from; benign nodes
    started that round from (nearly) the same consensus, so d_j estimates j's training update.
    """
    return {j: np.subtract(c, prev_x, dtype=np.float32) for j, c in public.items()
            if j not in exclude and public_round.get(j) == prev_round}


def delta_updates(last_deltas: Mapping[int, np.ndarray], public_round: Mapping[int, int], prev_round: int,
                  *, exclude: frozenset[int] = frozenset()) -> dict[int, np.ndarray]:
    """d_j = the delta neighbour j sent in round ``prev_round`` (when its copy is at that round)."""
    return {j: np.asarray(d, dtype=np.float32) for j, d in last_deltas.items()
            if j not in exclude and public_round.get(j) == prev_round}


def weighted_sum(updates: Mapping[int, np.ndarray], weights: Mapping[int, float]) -> np.ndarray | None:
    """``sum_j W_j d_j`` (None when there is no update)."""
    if not updates:
        return None
    total = np.zeros_like(next(iter(updates.values())), dtype=np.float64)
    for j, d in updates.items():
        total += float(weights[j]) * d
    return total.astype(np.float32)


def weighted_mean(updates: Mapping[int, np.ndarray], weights: Mapping[int, float]) -> np.ndarray | None:
    """``sum_j W_j d_j / sum_j W_j`` (None when there is no update)."""
    total = weighted_sum(updates, weights)
    if total is None:
        return None
    return (total / np.float32(sum(float(weights[j]) for j in updates))).astype(np.float32)


def alie_z(n: int, f: int) -> float:
    """Baruch et al.'s z_max = Phi^-1((n - s) / n), s = floor(n/2 + 1) - f (0 when it would be <= 0)."""
    s = math.floor(n / 2 + 1) - f
    p = (n - s) / n
    if p <= 0.5:
        return 0.0
    return statistics.NormalDist().inv_cdf(min(p, 1 - 1e-12))


def alie_update(updates: np.ndarray, z: float) -> np.ndarray:
    """``mu - z * sigma`` over the rows of ``updates`` (k, d), sigma the population std."""
    u = np.asarray(updates, dtype=np.float64)
    return (u.mean(axis=0) - float(z) * u.std(axis=0)).astype(np.float32)


def ipm_update(updates: np.ndarray, eps: float) -> np.ndarray:
    """Inner-product manipulation: ``-eps * mean`` of the rows of ``updates`` (k, d)."""
    return (-float(eps) * np.asarray(updates, dtype=np.float64).mean(axis=0)).astype(np.float32)


def distances(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> list[float]:
    """L2 distances of every vector of ``a`` to every vector of ``b``."""
    return [float(np.linalg.norm(np.subtract(x, y, dtype=np.float64))) for x in a for y in b]


def pairwise(vectors: Sequence[np.ndarray]) -> list[float]:
    """L2 distances of every unordered pair of ``vectors``."""
    return [float(np.linalg.norm(np.subtract(vectors[i], vectors[k], dtype=np.float64)))
            for i in range(len(vectors)) for k in range(i + 1, len(vectors))]


# ---- collusion -------------------------------------------------------------------------------------
class Collusion:
    """A board on which the adversaries of one run pool their estimates (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: dict[int, dict[int, tuple[np.ndarray, int]]] = {}

    def share(self, round_: int, node: int, mean: np.ndarray, count: int) -> np.ndarray:
        """Post ``node``'s mean benign update for ``round_``; return the pooled mean of the posts present."""
        with self._lock:
            posts = self._posts.setdefault(round_, {})
            posts[node] = (mean, count)
            for r in [r for r in self._posts if r < round_ - 2]:
                del self._posts[r]
            entries = list(posts.values())
        total = sum(c for _, c in entries)
        pooled = np.zeros_like(mean, dtype=np.float64)
        for m, c in entries:
            pooled += (c / total) * m
        return pooled.astype(np.float32)


_BOARDS: weakref.WeakValueDictionary[tuple[str, int], Collusion] = weakref.WeakValueDictionary()
_BOARDS_LOCK = threading.Lock()


def collusion_board(plan: Any) -> Collusion:
    """The board shared by the adversaries built from this plan object."""
    key = (str(plan.exp_id), id(plan))
    with _BOARDS_LOCK:
        board = _BOARDS.get(key)
        if board is None:
            board = Collusion()
            _BOARDS[key] = board
        return board


# ---- parameters ------------------------------------------------------------------------------------
def _real(name: str, v: Any, lo: float, *, open_lo: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or v < lo or (open_lo and v == lo):
        raise ConfigError(f"attack.{name}", v, f"a finite number {'>' if open_lo else '>='} {lo}")
    return float(v)


def _integer(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"attack.{name}", v, f"an integer >= {lo}")
    return int(v)


def _choice(name: str, v: Any, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise ConfigError(f"attack.{name}", v, "one of " + ", ".join(allowed))
    return str(v)


def _fraction(name: str, v: Any, *, hi_open: bool = False) -> float:
    """A number in (0, 1) (``hi_open``) or (0, 1]."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0 \
            or v > 1 or (hi_open and v == 1):
        raise ConfigError(f"attack.{name}", v, f"a number in (0, 1{')' if hi_open else ']'}")
    return float(v)


def _tau(name: str, v: Any) -> float | str:
    if v == "auto":
        return "auto"
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"attack.{name}", v, '"auto" or a finite number > 0')
    return float(v)


def _flag(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"attack.{name}", v, "true or false")
    return v


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "lam": lambda k, v: _real(k, v, 0.0, open_lo=True),
    "rho": lambda k, v: _real(k, v, 0.0),
    "ls": lambda k, v: _integer(k, v, 1),
    "mal_epochs": lambda k, v: _integer(k, v, 1),
    "tol": lambda k, v: _real(k, v, 0.0),
    "max_steps": lambda k, v: _integer(k, v, 1),
    "mal_optimizer": lambda k, v: _choice(k, v, MAL_OPTIMIZERS),
    "mal_lr": lambda k, v: _real(k, v, 0.0, open_lo=True),
    "estimate": lambda k, v: _choice(k, v, ESTIMATES),
    "source": lambda k, v: _choice(k, v, SOURCES),
    "collude": _flag,
    "constrain": lambda k, v: _choice(k, v, CONSTRAINTS),
    "delay": lambda k, v: _integer(k, v, 0),
    "equivocate": _flag,
    "sigma": lambda k, v: _real(k, v, 0.0, open_lo=True),
    "z": lambda k, v: _real(k, v, 0.0),
    "eps": lambda k, v: _real(k, v, 0.0, open_lo=True),
    # p2pfl.constrained
    "eps_rel": lambda k, v: _real(k, v, 0.0, open_lo=True),
    "eps_from": lambda k, v: _choice(k, v, EPS_FROM),
    "ref": lambda k, v: _choice(k, v, REFS),
    "norm": lambda k, v: _choice(k, v, NORMS),
    "project_every": lambda k, v: _integer(k, v, 1),
    "ratio": lambda k, v: _fraction(k, v, hi_open=True),
    "mask_from": lambda k, v: _choice(k, v, MASK_FROM),
    "alpha": lambda k, v: _fraction(k, v, hi_open=False),
    "gamma": lambda k, v: _real(k, v, 0.0, open_lo=True),
    "clip_to": lambda k, v: v if v == "auto" else _real(k, v, 0.0, open_lo=True),
    "budget": lambda k, v: _real(k, v, 0.0, open_lo=True),
    # p2pfl.adaptive
    "perturb": lambda k, v: _choice(k, v, PERTURBATIONS),
    "gamma_init": lambda k, v: _real(k, v, 0.0, open_lo=True),
    "kappa": _fraction,
    "tau": _tau,
    "support": _fraction,
}


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate attack ``name`` and its parameters; return the ones the attack uses.

    Raises
    ------
    ConfigError
        ``attack`` for an unknown name, ``attack.<param>`` for a parameter this attack
        does not take or an invalid value (the message lists what is allowed).
    """
    if name not in ATTACKS:
        raise ConfigError("attack", name, "one of " + ", ".join(ATTACKS))
    accepted = PARAMS[name]
    check_backdoor_params(params)  # backdoor kind and trigger: read by the plan, checked here too
    check_timing(params)  # async announcement timing: read by the node (p2pfl.timing)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in _PLAN_PARAMS or key in TIMING_PARAMS:
            continue
        if key not in accepted:
            known = ", ".join((*accepted, *_PLAN_PARAMS, *TIMING_PARAMS))
            raise ConfigError(f"attack.{key}", value, f"not a parameter of attack {name!r}; known: {known}")
        out[key] = _CHECKS[key](key, value)
    return out


# ---- training loops on a trainer's model -----------------------------------------------------------
class _Loop:
    """Minibatch steps on a trainer's model with optimisers of the trainer's kind.

    The attack's optimisers are its own (their state persists across calls within one
    craft, as the reference code's per-round TensorFlow optimisers); batch order and dropout
    masks come from the trainer's seeded generator, so attacks are reproducible too.
    """

    def __init__(self, trainer: Any, start: np.ndarray) -> None:
        self.trainer = trainer
        self.model = trainer.model
        set_flat(self.model, start)
        self.model.train()
        self.params = list(self.model.parameters())

    def optimizer(self, kind: str = "node", lr: float | None = None) -> torch.optim.Optimizer:
        """An optimiser like the nodes' (``kind = "node"``), or plain SGD / Adam at ``lr``."""
        s = self.trainer.spec
        kind = s.optimizer if kind == "node" else kind
        lr = s.lr if lr is None else lr
        if kind == "sgd":
            momentum = s.momentum if s.optimizer == "sgd" else 0.0
            return torch.optim.SGD(self.params, lr=lr, momentum=momentum, weight_decay=s.weight_decay)
        return torch.optim.Adam(self.params, lr=lr, weight_decay=s.weight_decay)

    def batches(self, n: int) -> Iterator[torch.Tensor]:
        """Endless shuffled index batches of the trainer's batch size."""
        bs = self.trainer.spec.batch_size
        while True:
            perm = torch.randperm(n, generator=self.trainer.generator)
            for start in range(0, n, bs):
                yield perm[start:start + bs]

    def step(self, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
             extra: Callable[[], torch.Tensor] | None = None) -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(xb), yb)
        if extra is not None:
            loss = loss + extra()
        loss.backward()
        opt.step()

    def penalty(self, ref: np.ndarray, rho: float) -> Callable[[], torch.Tensor] | None:
        """``rho/2 ||w - ref||^2`` as a closure over the live parameters (None when rho = 0)."""
        if rho <= 0:
            return None
        refs, offset = [], 0
        flat = torch.from_numpy(np.array(ref, dtype=np.float32, copy=True))
        for p in self.params:
            refs.append(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()

        def term() -> torch.Tensor:
            return 0.5 * rho * sum(((p - r) ** 2).sum() for p, r in zip(self.params, refs, strict=True))

        return term

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def restore(self, snap: list[torch.Tensor]) -> None:
        for p, s in zip(self.params, snap, strict=True):
            p.copy_(s)

    @torch.no_grad()
    def boost_from(self, base: list[torch.Tensor], lam: float, plus: list[torch.Tensor] | None = None) -> None:
        """w <- base + lam (w - base) [+ (plus - base)]: boost the step just taken from ``base``."""
        for k, p in enumerate(self.params):
            step = lam * (p - base[k])
            if plus is not None:
                step = step + (plus[k] - base[k])
            p.copy_(base[k] + step)

    @torch.no_grad()
    def loss(self, data: Any) -> float:
        """Mean cross-entropy on ``data`` in eval mode (no dropout), then back to train mode."""
        self.model.eval()
        value = float(F.cross_entropy(self.model(data.x), data.y))
        self.model.train()
        return value

    def flat(self) -> np.ndarray:
        return get_flat(self.model)


def _honest(view: NodeView) -> np.ndarray:
    return view.x.copy() if view.epochs <= 0 else view.trainer.train(view.x, view.data)


def _distinct(announce: np.ndarray | Mapping[int, np.ndarray]) -> list[np.ndarray]:
    """The announced models with distinct contents (one when it does not equivocate)."""
    if isinstance(announce, np.ndarray):
        return [announce]
    seen: dict[bytes, np.ndarray] = {}
    for m in announce.values():
        seen.setdefault(hashlib.blake2b(np.ascontiguousarray(m).tobytes(), digest_size=16).digest(), m)
    return list(seen.values())


def _steps_per_epoch(trainer: Any, data: Any) -> int:
    return max(1, math.ceil(len(data) / trainer.spec.batch_size))


# ---- the attacks -----------------------------------------------------------------------------------
@dataclass
class _Memory:
    """What an attack remembers between rounds."""

    round: int = -1
    x: np.ndarray | None = None  # model at the start of that round
    deltas: dict[int, np.ndarray] = field(default_factory=dict)  # announced delta per neighbour
    updates: list[np.ndarray] = field(default_factory=list)  # distinct announced models minus x


class Attack:
    """Common machinery: delay, estimation, equivocation, stealth statistics.

    Subclasses implement :meth:`attack` and return ``(d, scale, info)`` or a full
    :class:`Crafted`; the announced model is x + scale * d.
    """

    name = "attack"
    default_lam: float | None = None  # None: deg + 1

    def __init__(self, *, plan: Any, node: int, params: Mapping[str, Any]) -> None:
        p = check_params(self.name, params)
        self.node = node
        neighbours = tuple(plan.topology.neighbours(node))
        self.degree = len(neighbours)
        self.colluders = frozenset(int(a) for a in plan.adversaries) - {node}
        self.lam = float(p.get("lam", self.default_lam if self.default_lam is not None else self.degree + 1))
        self.rho = p.get("rho", 1e-4)
        self.ls = p.get("ls", 10)
        self.mal_epochs: int | None = p.get("mal_epochs")
        self.tol: float | None = p.get("tol")
        self.max_steps = p.get("max_steps", 1000)
        self.mal_optimizer = p.get("mal_optimizer", "node")
        self.mal_lr: float | None = p.get("mal_lr")
        self.estimate = p.get("estimate", "none")
        self.source = p.get("source", "updates")
        self.collude = p.get("collude", False)
        self.constrain = p.get("constrain", "self")
        self.delay = p.get("delay", 0)
        self.equivocate = p.get("equivocate", False)
        self.params = p
        self.aux = plan.aux  # single: the shared aux set; class/trigger: this node's, set per craft
        self.backdoor: Backdoor | None = getattr(plan, "backdoor", None)
        if self.backdoor is None and self.aux is not None:
            self.backdoor = Backdoor.single(self.aux)
        if self.name in _NEEDS_AUX and self.backdoor is None:
            raise ConfigError("attack", self.name, "an attack with an auxiliary set (plan.aux is missing)")
        self._aux_of: int | None = None  # id of the shard self.aux was built from (class/trigger)
        test = getattr(plan, "test", None)
        self.eval_set = None if test is None or len(test) == 0 else test.subset(np.arange(min(len(test), _EVAL_SIZE)))
        self.board = collusion_board(plan) if self.collude else None
        self.memory = _Memory()
        self.trace: list[str] = []  # 'b' benign step, 'm' malicious step (last craft; for tests)
        self._honest_model: np.ndarray | None = None  # this round's honest model, once computed

    def honest(self, view: NodeView) -> np.ndarray:
        """z, the node's honest model of this round (trained once per round, then reused).

        Attacks that need it call this rather than :func:`_honest`, so the stealth statistics
        can compare the announced update with the adversary's own benign update for free.
        """
        if self._honest_model is None:
            self._honest_model = _honest(view)
        return self._honest_model

    def poisoned_training(self, view: NodeView) -> tuple[np.ndarray, _Loop]:
        """w: ``mal_epochs`` (default E) epochs from x on the own shard with the backdoor mixed
        into every batch (:meth:`p2pfl.backdoor.Backdoor.poison`); also the loop, for losses."""
        data, backdoor = view.data, self.backdoor
        assert backdoor is not None
        loop = _Loop(view.trainer, view.x)
        opt = loop.optimizer()
        batches = loop.batches(len(data))
        epochs = self.mal_epochs if self.mal_epochs is not None else max(view.epochs, 1)
        for _ in range(epochs * _steps_per_epoch(view.trainer, data)):
            idx = next(batches)
            loop.step(opt, *backdoor.poison(data.x[idx], data.y[idx], view.trainer.generator))
        return loop.flat(), loop

    # ---- estimation ----
    def updates(self, view: NodeView, source: str | None = None) -> dict[int, np.ndarray]:
        """d_j for the benign neighbours: their updates of round t-1 (empty in round 1)."""
        prev = view.round - 1
        if (source or self.source) == "deltas":
            return delta_updates(view.last_deltas, view.public_round, prev, exclude=self.colluders)
        if self.memory.x is None or self.memory.round != prev:
            return {}
        return neighbour_updates(view.public, view.public_round, self.memory.x, prev, exclude=self.colluders)

    def others(self, view: NodeView) -> np.ndarray | None:
        """B = sum_j W_mj d_j, pooled with the colluders' estimates when ``collude``."""
        ups = self.updates(view)
        if not ups:
            return None
        if self.board is None:
            return weighted_sum(ups, view.weights)
        mean = weighted_mean(ups, view.weights)
        assert mean is not None
        pooled = self.board.share(view.round, self.node, mean, len(ups))
        return (pooled * np.float32(sum(view.weights[j] for j in ups))).astype(np.float32)

    def reference(self, view: NodeView) -> tuple[np.ndarray, float]:
        """w_ref = x + delta_ben and the effective rho for the distance term."""
        if self.rho <= 0:
            return view.x, 0.0
        if self.constrain == "self":
            return self.honest(view), self.rho
        mean = weighted_mean(self.updates(view), view.weights)
        if mean is None:
            return view.x, 0.0
        return (view.x + mean).astype(np.float32), self.rho

    # ---- output ----
    def scale_for(self, view: NodeView, j: int, scale: float) -> float:
        """Per-neighbour scale under equivocation: scale (deg+1)^-1 / W_mj."""
        return scale / ((self.degree + 1) * float(view.weights[j]))

    def emit(self, view: NodeView, d: np.ndarray | Mapping[int, np.ndarray], scale: float,
             info: dict[str, float]) -> Crafted:
        x = view.x
        if isinstance(d, Mapping):
            base = next(iter(d.values()))
            per = d
        else:
            base, per = d, None
        own = boost(x, x + base, scale)
        if not self.equivocate:
            return Crafted(own=own, announce=own, info=info)
        announce = {j: boost(x, x + (per[j] if per else base), self.scale_for(view, j, scale))
                    for j in view.neighbours}
        return Crafted(own=own, announce=announce, info=info)

    # ---- the behaviour ----
    def attack(self, view: NodeView) -> Crafted:
        raise NotImplementedError

    def craft(self, view: NodeView) -> Crafted:
        self.trace = []
        self._honest_model = None
        active = view.round > self.delay
        if active:
            if self.backdoor is not None and self.backdoor.kind != "single" and self._aux_of != id(view.data):
                if self.name in AUX_ONLY:
                    self.backdoor.check_holds(view.data.y.numpy(), self.node)
                self.aux = self.backdoor.aux_for(view.data, self.node)
                self._aux_of = id(view.data)
            crafted = self.attack(view)
        else:
            crafted = Honest().craft(view)
            self._honest_model = crafted.own
        info = {"active": float(active), **{k: float(v) for k, v in crafted.info.items()}}
        deltas = self._deltas(view, crafted.announce)
        models = [crafted.announce] if isinstance(crafted.announce, np.ndarray) else \
            list({id(m): m for m in crafted.announce.values()}.values())
        updates = [np.subtract(m, view.x, dtype=np.float32) for m in models]
        info.update(self.stealth(view, deltas, updates, crafted.announce, crafted.own))
        self.memory = _Memory(round=view.round, x=view.x.copy(), deltas=deltas, updates=updates)
        crafted.info = info
        return crafted

    # ---- stealth statistics ----
    @staticmethod
    def _deltas(view: NodeView, announce: np.ndarray | Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        cache: dict[int, np.ndarray] = {}
        out = {}
        for j in view.neighbours:
            model = announce if isinstance(announce, np.ndarray) else announce[j]
            pub = view.announced[j]
            key = id(pub) if isinstance(announce, np.ndarray) else -1 - j
            if key not in cache:
                cache[key] = np.subtract(model, pub, dtype=np.float32)
            out[j] = cache[key]
        return out

    def stealth(self, view: NodeView, deltas: Mapping[int, np.ndarray], updates: Sequence[np.ndarray],
                announce: np.ndarray | Mapping[int, np.ndarray], own: np.ndarray) -> dict[str, float]:
        """The stealth statistics of this round's announcement (module docstring)."""
        mine = list({id(d): d for d in deltas.values()}.values())
        out = {"delta_norm": max(float(np.linalg.norm(d)) for d in mine),
               "update_norm": max(float(np.linalg.norm(u)) for u in updates)}
        out.update(self.benign_norm(view, out["update_norm"]))
        if self.memory.round == view.round - 1 and self.memory.x is not None and self.memory.updates:
            ben = list(neighbour_updates(view.public, view.public_round, self.memory.x, view.round - 1,
                                         exclude=self.colluders).values())
            if ben:
                dist = distances(self.memory.updates, ben)
                out.update(prev_update_dist_min=min(dist), prev_update_dist_max=max(dist),
                           update_benign_norm_max=max(float(np.linalg.norm(b)) for b in ben))
            if len(ben) > 1:
                spread = pairwise(ben)
                out.update(update_benign_min=min(spread), update_benign_max=max(spread),
                           prev_update_within=float(out["prev_update_dist_max"] <= max(spread)))
        benign = list(delta_updates(view.last_deltas, view.public_round, view.round - 1,
                                    exclude=self.colluders).values())
        if benign:
            dist = distances(mine, benign)
            out.update(dist_min=min(dist), dist_max=max(dist),
                       benign_norm_max=max(float(np.linalg.norm(b)) for b in benign))
            if len(benign) > 1:
                spread = pairwise(benign)
                out.update(benign_min=min(spread), benign_max=max(spread))
            if self.memory.round == view.round - 1 and self.memory.deltas:
                prev = list({id(d): d for d in self.memory.deltas.values()}.values())
                dist = distances(prev, benign)
                out.update(prev_dist_min=min(dist), prev_dist_max=max(dist))
                if "benign_max" in out:
                    out["prev_within"] = float(max(dist) <= out["benign_max"])
        if self.eval_set is not None:
            accs = [float(view.trainer.evaluate(m, self.eval_set).accuracy) for m in _distinct(announce)]
            out["announced_acc"] = sum(accs) / len(accs)
            if len(accs) > 1:
                out["announced_acc_min"] = min(accs)
        return out

    def benign_norm(self, view: NodeView, update_norm: float) -> dict[str, float]:
        """``benign_update_norm``, ``benign_norm_own`` and ``norm_ratio`` (module docstring).

        The adversary's own honest update ||z - x|| when this round's attack computed z anyway
        (:meth:`honest`; delayed rounds too), else the W-weighted mean norm of the benign
        neighbours' round t-1 updates d_j (no extra training); nothing in round 1 without z.
        """
        if self._honest_model is not None:
            norm, own = float(np.linalg.norm(np.subtract(self._honest_model, view.x, dtype=np.float64))), 1.0
        else:
            ups = self.updates(view, "updates")
            total = sum(float(view.weights[j]) for j in ups)
            if not ups or total <= 0:
                return {}
            norm = sum(float(view.weights[j]) * float(np.linalg.norm(d)) for j, d in ups.items()) / total
            own = 0.0
        out = {"benign_update_norm": norm, "benign_norm_own": own}
        if norm > 0 and math.isfinite(norm):
            out["norm_ratio"] = update_norm / norm
        return out


class _EstimatingAttack(Attack):
    """boost, stealth, altmin: estimate = none|pre|post around an optimisation from s."""

    final_scale_is_lam = False

    def optimise(self, view: NodeView, start: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        raise NotImplementedError

    def attack(self, view: NodeView) -> Crafted:
        b = self.others(view) if self.estimate != "none" else None
        start = (view.x + b).astype(np.float32) if self.estimate == "pre" and b is not None else view.x
        w, info = self.optimise(view, start)
        d = np.subtract(w, start, dtype=np.float32)
        if self.estimate == "post" and b is not None:
            d = d - b
        info["est_norm"] = 0.0 if b is None else float(np.linalg.norm(b))
        info["lam"] = self.lam
        return self.emit(view, d, self.lam if self.final_scale_is_lam else 1.0, info)


class Boost(_EstimatingAttack):
    """Explicit boosting: train on the aux set only, announce x + lam (w - s)."""

    name = "boost"
    final_scale_is_lam = True

    def optimise(self, view: NodeView, start: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        aux = self.aux
        loop = _Loop(view.trainer, start)
        opt = loop.optimizer(self.mal_optimizer, self.mal_lr)
        batches = loop.batches(len(aux))
        min_steps = self.mal_epochs if self.mal_epochs is not None else 5
        tol = 1e-6 if self.tol is None else self.tol
        steps, loss = 0, loop.loss(aux)
        while steps < self.max_steps and (steps < min_steps or loss > tol):
            idx = next(batches)
            loop.step(opt, aux.x[idx], aux.y[idx])
            self.trace.append("m")
            steps += 1
            loss = loop.loss(aux)
        return loop.flat(), {"mal_steps": float(steps), "mal_loss": loss}


@dataclass
class _Joint:
    """What stealth and altmin share: the distance reference, the two optimisers, the batches."""

    ref: np.ndarray
    rho: float
    loop: _Loop
    opt_b: Any
    opt_m: Any
    extra: Any
    batches: Any
    aux_batches: Any
    total: int  # benign minibatch steps: epochs x steps per epoch
    tol: float


class _DistanceConstrained(_EstimatingAttack):
    """Base of the stealthy attacks: benign steps with rho/2 ||w - w_ref||^2, boosted aux steps."""

    def _joint(self, view: NodeView, start: np.ndarray) -> _Joint:
        ref, rho = self.reference(view)
        loop = _Loop(view.trainer, start)
        epochs = self.mal_epochs if self.mal_epochs is not None else 2 * max(view.epochs, 1)
        return _Joint(
            ref=ref, rho=rho, loop=loop,
            opt_b=loop.optimizer(), opt_m=loop.optimizer(self.mal_optimizer, self.mal_lr),
            extra=loop.penalty(ref, rho),
            batches=loop.batches(len(view.data)), aux_batches=loop.batches(len(self.aux)),
            total=epochs * _steps_per_epoch(view.trainer, view.data),
            tol=0.0 if self.tol is None else self.tol,
        )

    def _benign_step(self, j: _Joint, data: Any) -> None:
        """One minibatch step on CE(batch) + the distance term."""
        idx = next(j.batches)
        j.loop.step(j.opt_b, data.x[idx], data.y[idx], j.extra)
        self.trace.append("b")

    def _boosted_step(self, j: _Joint, base: list[torch.Tensor], plus: list[torch.Tensor] | None = None) -> None:
        """One step on CE(aux) from the current weights, boosted by lam relative to ``base``."""
        ia = next(j.aux_batches)
        j.loop.step(j.opt_m, self.aux.x[ia], self.aux.y[ia])
        self.trace.append("m")
        j.loop.boost_from(base, self.lam, plus=plus)

    def _result(self, j: _Joint, mal: int) -> tuple[np.ndarray, dict[str, float]]:
        w = j.loop.flat()
        return w, {"mal_steps": float(mal), "mal_loss": j.loop.loss(self.aux), "rho": j.rho,
                   "ref_dist": float(np.linalg.norm(np.subtract(w, j.ref, dtype=np.float64)))}


class Stealth(_DistanceConstrained):
    """Joint objective CE(own) + lam CE(aux) + rho/2 ||w - w_ref||^2 (the reference's concat training)."""

    name = "stealth"

    def optimise(self, view: NodeView, start: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        j = self._joint(view, start)
        loop, aux = j.loop, self.aux
        mal = 0
        for _ in range(j.total):
            base = loop.snapshot()
            hit = loop.loss(aux) > j.tol
            self._benign_step(j, view.data)
            if hit:
                benign = loop.snapshot()
                loop.restore(base)
                self._boosted_step(j, base, plus=benign)
                mal += 1
        return self._result(j, mal)


class AltMin(_DistanceConstrained):
    """Alternating minimisation: ls benign steps with the distance term, then one boosted aux step."""

    name = "altmin"

    def optimise(self, view: NodeView, start: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        j = self._joint(view, start)
        done = mal = 0
        while done < j.total:
            for _ in range(self.ls):
                self._benign_step(j, view.data)
                done += 1
            if j.loop.loss(self.aux) > j.tol:
                self._boosted_step(j, j.loop.snapshot())
                mal += 1
        w, info = self._result(j, mal)
        return w, {**info, "benign_steps": float(done)}


class Replace(Attack):
    """Model replacement: train on own data with the backdoor in every batch, announce x + lam (w - x)."""

    name = "replace"

    def attack(self, view: NodeView) -> Crafted:
        aux = self.aux
        w, loop = self.poisoned_training(view)
        d = np.subtract(w, view.x, dtype=np.float32)
        info = {"lam": self.lam, **({"mal_loss": loop.loss(aux)} if aux is not None and len(aux) else {})}
        return self.emit(view, d, self.lam, info)


class SignFlip(Attack):
    """Announce x - lam (z - x), z the honest model."""

    name = "signflip"
    default_lam = 1.0

    def attack(self, view: NodeView) -> Crafted:
        d = np.subtract(view.x, self.honest(view), dtype=np.float32)
        return self.emit(view, d, self.lam, {"lam": self.lam})


class LabelFlip(Attack):
    """Train on the own shard with labels y -> C - 1 - y, announce x + lam (w - x)."""

    name = "labelflip"
    default_lam = 1.0

    def attack(self, view: NodeView) -> Crafted:
        data = view.data
        flipped = type(data)(data.x, (data.classes - 1 - data.y).to(torch.int64), data.classes)
        epochs = self.mal_epochs if self.mal_epochs is not None else max(view.epochs, 1)
        w = view.trainer.train(view.x, flipped, epochs=epochs)
        return self.emit(view, np.subtract(w, view.x, dtype=np.float32), self.lam, {"lam": self.lam})


class Gaussian(Attack):
    """Announce x + N(0, sigma^2 I) (independent noise per neighbour when equivocating)."""

    name = "gaussian"

    def attack(self, view: NodeView) -> Crafted:
        sigma = self.params.get("sigma")
        if sigma is None:
            honest = np.subtract(self.honest(view), view.x, dtype=np.float64)
            sigma = float(np.sqrt(np.mean(honest * honest)))
        dim = view.x.shape[0]

        def noise(j: int) -> np.ndarray:
            rng = np.random.default_rng(np.random.SeedSequence([view.seed, self.node, view.round, j + 1]))
            return (sigma * rng.standard_normal(dim)).astype(np.float32)

        d: np.ndarray | dict[int, np.ndarray]
        d = {j: noise(j) for j in view.neighbours} if self.equivocate else noise(-1)
        return self.emit(view, d, 1.0, {"sigma": sigma})

    def scale_for(self, view: NodeView, j: int, scale: float) -> float:
        return scale  # independent draws already differ; no reweighting of noise


class _StatisticalAttack(Attack):
    """alie, ipm: built from the benign updates the adversary can estimate (and its own honest one)."""

    def benign_rows(self, view: NodeView) -> np.ndarray:
        own = np.subtract(self.honest(view), view.x, dtype=np.float32)
        rows = [own, *self.updates(view).values()]
        return np.stack(rows)


class Alie(_StatisticalAttack):
    """A little is enough: x + mu - z sigma."""

    name = "alie"

    def attack(self, view: NodeView) -> Crafted:
        rows = self.benign_rows(view)
        z = self.params.get("z", 1.0)
        return self.emit(view, alie_update(rows, z), 1.0, {"z": z, "rows": float(len(rows))})


class Ipm(_StatisticalAttack):
    """Inner-product manipulation: x - eps mu."""

    name = "ipm"

    def attack(self, view: NodeView) -> Crafted:
        rows = self.benign_rows(view)
        eps = self.params.get("eps", 0.1)
        return self.emit(view, ipm_update(rows, eps), 1.0, {"eps": eps, "rows": float(len(rows))})


_CLASSES: dict[str, type[Attack]] = {
    cls.name: cls for cls in (Boost, Stealth, AltMin, SignFlip, Gaussian, LabelFlip, Alie, Ipm, Replace)
}


def build_attack(name: str, params: Mapping[str, Any], *, plan: Any, node: int) -> Any:
    """The behaviour of adversarial node ``node``: attack ``name`` with validated ``params``.

    ``"none"`` gives :class:`~p2pfl.node.Honest`. Raises :class:`ConfigError` for an unknown
    name (field ``attack``) or parameter (field ``attack.<param>``).
    """
    check_params(name, params)
    if name == "none":
        return Honest()
    if name not in _CLASSES:  # imported here: p2pfl.constrained and p2pfl.adaptive subclass Attack
        from .adaptive import CLASSES
        from .constrained import PGD, Neurotoxin, Scale

        _CLASSES.update({cls.name: cls for cls in (PGD, Scale, Neurotoxin)})
        _CLASSES.update(CLASSES)
    return _CLASSES[name](plan=plan, node=node, params=params)


__all__ = [
    "ATTACKS",
    "CONSTRAINTS",
    "ESTIMATES",
    "PARAMS",
    "SOURCES",
    "AltMin",
    "Alie",
    "Attack",
    "Boost",
    "Collusion",
    "Gaussian",
    "Ipm",
    "LabelFlip",
    "Replace",
    "SignFlip",
    "Stealth",
    "alie_update",
    "alie_z",
    "boost",
    "build_attack",
    "check_params",
    "collusion_board",
    "delta_updates",
    "distance_gradient",
    "distance_penalty",
    "distances",
    "ipm_update",
    "neighbour_updates",
    "pairwise",
    "weighted_mean",
    "weighted_sum",
]
