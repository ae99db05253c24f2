"""``accuracy-check``: drop a neighbour whose model loses accuracy on the node's validation split."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from p2pfl.errors import ConfigError
from p2pfl.validate import real

from .base import Filter, FilterContext, Proposals


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
        self.threshold = real("defence.threshold", threshold, 0.0, 1.0,
                              allowed="an accuracy drop 0 <= threshold <= 1")
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


__all__ = ["AccuracyCheckFilter"]
