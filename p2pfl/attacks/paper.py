"""The attacks of Bhagoji et al. (ICML 2019) and model replacement: boost, stealth, altmin, replace.

``boost`` trains on the auxiliary set alone and boosts the result; ``stealth`` and
``altmin`` add the benign objective and a distance term rho/2 ||w - w_ref||^2 to stay close
to a benign update; ``replace`` (Bagdasaryan et al. 2020) trains on the own shard with the
backdoor in every batch and scales the update. All but ``replace`` can estimate the benign
neighbours' update (``estimate = "pre" | "post"``, :mod:`p2pfl.attacks.estimation`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from p2pfl.behaviour import Crafted, NodeView

from .base import Attack, TrainingLoop, steps_per_epoch


def distance_penalty(w: np.ndarray, ref: np.ndarray, rho: float) -> float:
    """``rho/2 * ||w - ref||^2`` (``tf.nn.l2_loss`` convention of the reference code)."""
    diff = np.asarray(w, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    return 0.5 * float(rho) * float(diff @ diff)


def distance_gradient(w: np.ndarray, ref: np.ndarray, rho: float) -> np.ndarray:
    """Gradient of :func:`distance_penalty` in w: ``rho * (w - ref)``; it points away from ref."""
    return float(rho) * (np.asarray(w, dtype=np.float64) - np.asarray(ref, dtype=np.float64))


class _EstimatingAttack(Attack):
    """boost, stealth, altmin: estimate = none|pre|post around an optimisation from s."""

    final_scale_is_lam = False

    @abc.abstractmethod
    def optimise(self, view: NodeView, start: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Optimise from ``start``; return where it ends (w) and its ``info``."""

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
        loop = TrainingLoop(view.trainer, start)
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
    loop: TrainingLoop
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
        loop = TrainingLoop(view.trainer, start)
        epochs = self.mal_epochs if self.mal_epochs is not None else 2 * max(view.epochs, 1)
        return _Joint(
            ref=ref, rho=rho, loop=loop,
            opt_b=loop.optimizer(), opt_m=loop.optimizer(self.mal_optimizer, self.mal_lr),
            extra=loop.penalty(ref, rho),
            batches=loop.batches(len(view.data)), aux_batches=loop.batches(len(self.aux)),
            total=epochs * steps_per_epoch(view.trainer, view.data),
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


__all__ = ["AltMin", "Boost", "Replace", "Stealth", "distance_gradient", "distance_penalty"]
