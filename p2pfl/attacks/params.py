"""The attacks' parameter table and its checks (:func:`check_params`).

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
``clip_to``, ``budget``   pgd, neurotoxin and scale (:mod:`p2pfl.attacks.constrained`, defaults there).
``target``, ``aux_size``    the shared auxiliary set, consumed by
                :func:`p2pfl.plan.choose_aux`; accepted and ignored here.
``backdoor``, ``poison_fraction``, ``trigger_size``, ``trigger_value``, ``trigger_pos``
                the backdoor kind (``single`` default | ``class`` | ``trigger``) and its
                trigger, built once by the plan (:mod:`p2pfl.attacks.backdoor`); accepted by every
                attack, validated here, used through ``self.backdoor``. For class and trigger
                the aux-only attacks (boost, stealth, altmin) train on the node's own backdoor
                examples (``Backdoor.aux_for``: class-S examples labelled T, or stamped
                examples of the other classes labelled T) instead of the shared aux set;
                ``replace`` (and the attacks of :mod:`p2pfl.attacks.constrained`) mix the backdoor
                into every own batch (``Backdoor.poison``). ``single`` is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from p2pfl.errors import ConfigError
from p2pfl.timing import TIMING_PARAMS, check_timing
from p2pfl.validate import auto_or_positive, choice, flag, fraction, integer, real

from .backdoor import BACKDOOR_PARAMS, check_backdoor_params

ATTACKS: tuple[str, ...] = (
    "none", "boost", "stealth", "altmin", "signflip", "gaussian", "labelflip", "alie", "ipm", "replace",
    "pgd", "scale", "neurotoxin",  # p2pfl.attacks.constrained
    "dissensus", "minmax", "minsum", "adaptive",  # p2pfl.attacks.adaptive
)  # fmt: skip
ESTIMATES = ("none", "pre", "post")
CONSTRAINTS = ("self", "neighbours")
SOURCES = ("updates", "deltas")
MAL_OPTIMIZERS = ("node", "sgd", "adam")
REFS = ("start", "benign")  # pgd / neurotoxin: the centre of the ball
NORMS = ("l2", "linf")
EPS_FROM = ("norm", "spread")  # pgd / neurotoxin: what eps_rel multiplies
MASK_FROM = ("own", "neighbours")
PERTURBATIONS = ("unit", "sign", "std")  # minmax / minsum (p2pfl.attacks.adaptive)

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
    # p2pfl.attacks.adaptive
    "dissensus": ("eps", "delay"),
    "minmax": ("perturb", "gamma_init", "source", "delay", "equivocate"),
    "minsum": ("perturb", "gamma_init", "source", "delay", "equivocate"),
    "adaptive": ("kappa", "tau", "budget", "support", "mal_epochs", "delay"),
}
_PROJECTED = ("eps", "eps_rel", "eps_from", "ref", "norm", "project_every", "mal_epochs", *_MALICIOUS, "delay")
PARAMS.update({  # p2pfl.attacks.constrained
    "pgd": _PROJECTED,
    "neurotoxin": (*_PROJECTED, "ratio", "mask_from", "source"),
    "scale": ("alpha", "gamma", "clip_to", "budget", "mal_epochs", *_MALICIOUS, "source", "delay"),
})
#: Read by the plan (p2pfl.plan.choose_backdoor, choose_aux): accepted by every attack.
PLAN_PARAMS = ("target", "aux_size", *BACKDOOR_PARAMS)
NEEDS_AUX = ("boost", "stealth", "altmin", "replace", "pgd", "scale", "neurotoxin", "adaptive")
AUX_ONLY = ("boost", "stealth", "altmin")  # train on the aux set alone: it must not be empty


def _positive(field: str, v: Any) -> float:
    return real(field, v, 0.0, open_lo=True, allowed="a finite number > 0")


def _nonnegative(field: str, v: Any) -> float:
    return real(field, v, 0.0, allowed="a finite number >= 0")


def _at_least(lo: int) -> Callable[[str, Any], int]:
    return lambda field, v: integer(field, v, lo, allowed=f"an integer >= {lo}")


def _one_of(allowed: tuple[str, ...]) -> Callable[[str, Any], str]:
    return lambda field, v: choice(field, v, allowed)


#: How each parameter is checked: ``check(field, value)`` with field ``attack.<name>``.
CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "lam": _positive,
    "rho": _nonnegative,
    "ls": _at_least(1),
    "mal_epochs": _at_least(1),
    "tol": _nonnegative,
    "max_steps": _at_least(1),
    "mal_optimizer": _one_of(MAL_OPTIMIZERS),
    "mal_lr": _positive,
    "estimate": _one_of(ESTIMATES),
    "source": _one_of(SOURCES),
    "collude": flag,
    "constrain": _one_of(CONSTRAINTS),
    "delay": _at_least(0),
    "equivocate": flag,
    "sigma": _positive,
    "z": _nonnegative,
    "eps": _positive,
    # p2pfl.attacks.constrained
    "eps_rel": _positive,
    "eps_from": _one_of(EPS_FROM),
    "ref": _one_of(REFS),
    "norm": _one_of(NORMS),
    "project_every": _at_least(1),
    "ratio": lambda field, v: fraction(field, v, open_hi=True),
    "mask_from": _one_of(MASK_FROM),
    "alpha": fraction,
    "gamma": _positive,
    "clip_to": auto_or_positive,
    "budget": _positive,
    # p2pfl.attacks.adaptive
    "perturb": _one_of(PERTURBATIONS),
    "gamma_init": _positive,
    "kappa": fraction,
    "tau": auto_or_positive,
    "support": fraction,
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
        if key in PLAN_PARAMS or key in TIMING_PARAMS:
            continue
        if key not in accepted:
            known = ", ".join((*accepted, *PLAN_PARAMS, *TIMING_PARAMS))
            raise ConfigError(f"attack.{key}", value, f"not a parameter of attack {name!r}; known: {known}")
        out[key] = CHECKS[key](f"attack.{key}", value)
    return out


__all__ = [
    "ATTACKS",
    "AUX_ONLY",
    "CHECKS",
    "CONSTRAINTS",
    "EPS_FROM",
    "ESTIMATES",
    "MAL_OPTIMIZERS",
    "MASK_FROM",
    "NEEDS_AUX",
    "NORMS",
    "PARAMS",
    "PERTURBATIONS",
    "PLAN_PARAMS",
    "REFS",
    "SOURCES",
    "check_params",
]
