"""Byzantine baselines: signflip, labelflip, gaussian, alie (Baruch et al. 2019), ipm (Xie et al. 2019)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch

from p2pfl.behaviour import Crafted, NodeView

from .base import Attack


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


class StatisticalAttack(Attack):
    """alie, ipm: built from the benign updates the adversary can estimate (and its own honest one)."""

    def benign_rows(self, view: NodeView) -> np.ndarray:
        own = np.subtract(self.honest(view), view.x, dtype=np.float32)
        rows = [own, *self.updates(view).values()]
        return np.stack(rows)


class Alie(StatisticalAttack):
    """A little is enough: x + mu - z sigma."""

    name = "alie"

    def attack(self, view: NodeView) -> Crafted:
        rows = self.benign_rows(view)
        z = self.params.get("z", 1.0)
        return self.emit(view, alie_update(rows, z), 1.0, {"z": z, "rows": float(len(rows))})


class Ipm(StatisticalAttack):
    """Inner-product manipulation: x - eps mu."""

    name = "ipm"

    def attack(self, view: NodeView) -> Crafted:
        rows = self.benign_rows(view)
        eps = self.params.get("eps", 0.1)
        return self.emit(view, ipm_update(rows, eps), 1.0, {"eps": eps, "rows": float(len(rows))})


__all__ = ["Alie", "Gaussian", "Ipm", "LabelFlip", "SignFlip", "StatisticalAttack", "alie_update", "alie_z",
           "ipm_update"]
