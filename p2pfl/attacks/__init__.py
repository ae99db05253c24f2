"""What adversarial nodes announce: model poisoning (docs/threat-model.md).

An attack is a :class:`~p2pfl.behaviour.Behaviour`: ``craft(view) -> Crafted``. It sees what its
node knows (:class:`~p2pfl.behaviour.NodeView`: its model x, its shard and trainer, its
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
              :mod:`p2pfl.attacks.constrained` (registered here): projected training onto an eps ball
              around x or x + the own benign update; the same on the coordinates outside the
              benign update's top ``ratio``; constrain-and-scale with gamma_j = 1/W_jm per
              receiver, capped by ``budget`` and/or an estimated clip radius ``clip_to``.
``dissensus``, ``minmax``, ``minsum``, ``adaptive``  attacks shaped by the defence they face
              (He et al. 2022; Shejwalkar & Houmansadr 2021; an attacker that knows
              ``topk-clip``): :mod:`p2pfl.attacks.adaptive`, which documents them and their
              parameters ``perturb``, ``gamma_init``, ``kappa``, ``tau``, ``budget``,
              ``support`` (and ``eps``, default 1.0 for dissensus).

The distance term is rho/2 ||w - w_ref||^2, the reference code's ``tf.nn.l2_loss``
convention, so rho = 1e-4 means what it meant in the paper's runs. w_ref = x + delta_ben:
``constrain = "self"`` trains the node's own honest update (E epochs from x);
``constrain = "neighbours"`` uses the W-weighted mean of the neighbours' estimated updates
(rho is 0 while no estimate exists, as the reference code does at t = 0).

Layout (one family per module, shared machinery apart)::

    base.py         the Attack base class (delay, estimation, equivocation, stealth
                    statistics) and TrainingLoop, the minibatch loop on a node's trainer
    params.py       the parameter table (PARAMS) and check_params
    estimation.py   the benign neighbours' update of round t-1, and collusion
    stealth.py      stealth statistics: distance spread, norm ratio, announced accuracy
    paper.py        boost, stealth, altmin (Bhagoji et al., ICML 2019), replace
    byzantine.py    signflip, labelflip, gaussian, alie, ipm
    constrained.py  pgd, scale, neurotoxin (norm- and distance-bounded backdoors)
    adaptive.py     dissensus, minmax, minsum, adaptive (shaped by the defence)
    backdoor.py     what the adversaries want learnt: single, class, trigger backdoors
    __init__.py     the registry: ATTACKS and build_attack
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2pfl.behaviour import Honest

from .adaptive import Adaptive, Dissensus, MinMax, MinSum
from .backdoor import BACKDOOR_PARAMS, Backdoor, check_backdoor_params
from .base import Attack, TrainingLoop, boost
from .byzantine import Alie, Gaussian, Ipm, LabelFlip, SignFlip, alie_update, alie_z, ipm_update
from .constrained import PGD, Neurotoxin, Scale
from .estimation import (
    Collusion,
    collusion_board,
    delta_updates,
    neighbour_updates,
    weighted_mean,
    weighted_sum,
)
from .paper import AltMin, Boost, Replace, Stealth, distance_gradient, distance_penalty
from .params import (
    ATTACKS,
    AUX_ONLY,
    CONSTRAINTS,
    ESTIMATES,
    PARAMS,
    PERTURBATIONS,
    SOURCES,
    check_params,
)
from .stealth import distances, pairwise

#: The class of every attack but ``none`` (an honest node), by name.
CLASSES: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (Boost, Stealth, AltMin, SignFlip, Gaussian, LabelFlip, Alie, Ipm, Replace,
                PGD, Scale, Neurotoxin, Dissensus, MinMax, MinSum, Adaptive)
}


def build_attack(name: str, params: Mapping[str, Any], *, plan: Any, node: int) -> Any:
    """The behaviour of adversarial node ``node``: attack ``name`` with validated ``params``.

    ``"none"`` gives :class:`~p2pfl.behaviour.Honest`. Raises :class:`~p2pfl.errors.ConfigError`
    for an unknown name (field ``attack``) or parameter (field ``attack.<param>``).
    """
    check_params(name, params)
    if name == "none":
        return Honest()
    return CLASSES[name](plan=plan, node=node, params=params)


__all__ = [
    "ATTACKS",
    "AUX_ONLY",
    "BACKDOOR_PARAMS",
    "CLASSES",
    "CONSTRAINTS",
    "ESTIMATES",
    "PARAMS",
    "PERTURBATIONS",
    "PGD",
    "SOURCES",
    "Adaptive",
    "AltMin",
    "Alie",
    "Attack",
    "Backdoor",
    "Boost",
    "Collusion",
    "Dissensus",
    "Gaussian",
    "Ipm",
    "LabelFlip",
    "MinMax",
    "MinSum",
    "Neurotoxin",
    "Replace",
    "Scale",
    "SignFlip",
    "Stealth",
    "TrainingLoop",
    "alie_update",
    "alie_z",
    "boost",
    "build_attack",
    "check_backdoor_params",
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
