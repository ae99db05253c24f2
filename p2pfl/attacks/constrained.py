"""Attacks that stay inside norm and distance bounds (docs/threat-model.md): pgd, scale, neurotoxin.

They train on the adversary's own shard with the backdoor mixed into every batch
(:meth:`p2pfl.attacks.backdoor.Backdoor.poison`: single appends the auxiliary set, class relabels
S -> T, trigger stamps a fraction of the batch), for ``mal_epochs`` epochs (default the
nodes' E), with the nodes' optimiser (or ``mal_optimizer`` / ``mal_lr``). All three also
train the node's honest update b = z - x from x (as an honest node would, E epochs): the
reference of their bound, and the denominator of ``norm_ratio``. Notation as in
:mod:`p2pfl.attacks` (x the model the round starts from, w where training ends).

``pgd``        projected training (Sun et al. 2019, "Can you really backdoor federated
               learning?"; Wang et al. NeurIPS 2020, "Attack of the tails"): every
               ``project_every`` steps and at the end, w - ref is projected onto the L2 ball
               (``norm = "l2"``) or the L-infinity box (``"linf"``) of radius eps around
               ``ref`` = x (``ref = "start"``, default) or x + b (``"benign"``). eps is ``eps``
               (absolute) or ``eps_rel`` times the norm of b in the same norm (default
               eps_rel = 1: the update is no larger than an honest one). Announces w.
               ``eps_from = "spread"`` (default ``"norm"``) makes eps_rel multiply the
               margin of the distance-spread stealth test instead of ||b||: m = max_{i,j}
               ||d_i - d_j|| - max_j ||b' - d_j||, over the benign neighbours' round t-1
               updates d_j and its own honest update b' of round t-1 (so it is the
               test of :class:`~p2pfl.attacks.base.Attack` applied to its own honest update, one
               round late, the newest it can evaluate), 0 when negative or unknown (round
               1, fewer than two benign neighbours). With ``ref = "benign"`` and eps_rel <= 1
               the triangle inequality gives ||u - d_j|| <= ||u - b|| + ||b - d_j|| <= m +
               max_j ||b - d_j||, which is within the benign spread whenever this round's
               spread and own distance are those of the last round: the "bounded by
               construction" of a ball of radius ||b|| does not hold for this test (the benign
               updates of a round are much closer to each other than ||b||), this does, up
               to the change between rounds. L-infinity: eps = eps_rel m / sqrt(d), the box
               inside that ball.
``neurotoxin`` Zhang et al. ICML 2022: pgd on the coordinates outside the top ``ratio``
               (default 0.1) of |g|, g the benign direction: the own honest update b
               (``mask_from = "own"``) or b plus the neighbours' last updates weighted by
               W_mj (``"neighbours"``; own only in round 1). The masked coordinates never
               move: gradients are masked at every step and the coordinates are reset after
               every optimiser step (so weight decay or Adam cannot move them), so the
               announced update is exactly 0 there. With ``ref = "benign"`` the centre is
               x + b restricted to the free coordinates, so projection keeps the mask.
``scale``      constrain-and-scale / model replacement (Bagdasaryan et al. AISTATS 2020):
               minimise alpha CE(poisoned batch) + (1 - alpha) ||w - x|| (the anomaly term,
               ``alpha`` default 0.7), then announce to each neighbour j its own model
               x + gamma_j (w - x), gamma_j = ``gamma`` or 1 / W_jm, so that after j's
               mixing weight the whole update lands (equivocation). The node knows W_mj
               (``view.weights``); it takes W_jm = W_mj, exact for the default
               Metropolis-Hastings weights (symmetric); with ``mixing = "uniform"`` W_jm =
               1/(deg(j) + 1) differs and gamma_j is off by that ratio. gamma_j is then
               shrunk so that ||gamma_j (w - x)|| <= the smallest cap given: ``clip_to`` (an
               estimated clip radius tau-hat > 0, or ``"auto"``: the median of the neighbours'
               last update norms and the own honest update norm, like topk-clip's
               ``median-with-own`` tau rule seen from the receiver) and ``budget`` times ||b||
               (the update-norm budget). The node keeps w.

Threat model: what :class:`~p2pfl.behaviour.NodeView` holds (own shard, x, its neighbours'
public copies and last deltas, its mixing weights) plus the plan's backdoor. No attack here
sees the neighbours' round-t updates before it sends; ``clip_to = "auto"`` and
``mask_from = "neighbours"`` use the round t-1 ones.

``info`` (besides the stealth statistics of :class:`~p2pfl.attacks.base.Attack`): ``eps``,
``update_norm`` (largest announced ||update||), ``benign_update_norm`` (||b||),
``norm_ratio`` (update_norm / ||b||, 0 when b = 0), ``mal_loss`` (CE of the trained model on
the backdoor's training set), and per attack ``masked`` (neurotoxin), ``gamma_min/max``,
``trained_norm``, ``tau_hat``, ``cap`` (scale).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from p2pfl.behaviour import Crafted, NodeView

from .base import Attack, TrainingLoop, boost, steps_per_epoch
from .estimation import weighted_sum
from .stealth import distances, pairwise


def _split(flat: np.ndarray, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """A flat vector as tensors shaped like ``params`` (copies)."""
    out, offset = [], 0
    t = torch.from_numpy(np.array(flat, dtype=np.float32, copy=True))
    for p in params:
        out.append(t[offset:offset + p.numel()].view_as(p).clone())
        offset += p.numel()
    return out


def norm_of(v: np.ndarray, norm: str = "l2") -> float:
    """L2 or L-infinity norm of a vector (float64)."""
    v64 = np.asarray(v, dtype=np.float64)
    if v64.size == 0:
        return 0.0
    return float(np.abs(v64).max()) if norm == "linf" else float(np.linalg.norm(v64))


def top_mask(g: np.ndarray, ratio: float) -> np.ndarray:
    """1.0 outside the ceil(ratio d) largest-|g| coordinates, 0.0 on them (float32)."""
    d = g.shape[0]
    k = min(d, max(1, math.ceil(ratio * d)))
    mask = np.ones(d, dtype=np.float32)
    mask[np.argpartition(np.abs(g), d - k)[d - k:]] = 0.0
    return mask


class _Constrained(Attack):
    """Shared: the honest update b, the poisoned training loop, the info fields."""

    def epochs(self, view: NodeView) -> int:
        return self.mal_epochs if self.mal_epochs is not None else max(view.epochs, 1)

    def benign(self, view: NodeView) -> np.ndarray:
        """b = z - x, the node's own honest update this round."""
        return np.subtract(self.honest(view), view.x, dtype=np.float32)

    def batches(self, loop: TrainingLoop, view: NodeView) -> Any:
        """Endless own-shard batches with the backdoor mixed in."""
        assert self.backdoor is not None
        data, gen = view.data, view.trainer.generator
        for idx in loop.batches(len(data)):
            yield self.backdoor.poison(data.x[idx], data.y[idx], gen)

    def steps(self, view: NodeView) -> int:
        return self.epochs(view) * steps_per_epoch(view.trainer, view.data)

    def mal_loss(self, loop: TrainingLoop) -> dict[str, float]:
        """CE of the trained model on the backdoor's training set (nothing when the node holds none)."""
        return {"mal_loss": loop.loss(self.aux)} if self.aux is not None and len(self.aux) else {}


class PGD(_Constrained):
    """Projected training: poisoned batches, w - ref projected onto an eps ball (L2) or box (Linf)."""

    name = "pgd"

    def mask(self, view: NodeView, b: np.ndarray) -> np.ndarray | None:
        """Coordinates allowed to move (1.0) or frozen (0.0); None: all move."""
        return None

    def radius(self, view: NodeView, b: np.ndarray) -> float:
        if "eps" in self.params:
            return float(self.params["eps"])
        rel = float(self.params.get("eps_rel", 1.0))
        norm = self.params.get("norm", "l2")
        if self.params.get("eps_from", "norm") == "spread":
            m = self.margin(view)
            return rel * (m / math.sqrt(max(b.size, 1)) if norm == "linf" else m)
        return rel * norm_of(b, norm)

    def margin(self, view: NodeView) -> float:
        """The distance-spread test's margin of its own honest update of round t-1 (L2, >= 0)."""
        last = getattr(self, "_last_benign", None)
        ups = list(self.updates(view, "updates").values())
        if last is None or last[0] != view.round - 1 or len(ups) < 2:
            return 0.0
        return max(0.0, max(pairwise(ups)) - max(distances([last[1]], ups)))

    @torch.no_grad()
    def project(self, loop: TrainingLoop, ref: list[torch.Tensor], eps: float, norm: str) -> None:
        """Move the live parameters w to the nearest point with ||w - ref|| <= eps (L2 or Linf)."""
        if norm == "linf":
            for p, r in zip(loop.params, ref, strict=True):
                p.copy_(r + (p - r).clamp(-eps, eps))
            return
        total = math.sqrt(sum(float(((p - r).double() ** 2).sum()) for p, r in zip(loop.params, ref, strict=True)))
        if total > eps:
            f = eps / total
            for p, r in zip(loop.params, ref, strict=True):
                p.copy_(r + (p - r) * f)

    def attack(self, view: NodeView) -> Crafted:
        x = view.x
        b = self.benign(view)
        bnorm = norm_of(b)
        mask = self.mask(view, b)
        norm = self.params.get("norm", "l2")
        centre = x if self.params.get("ref", "start") == "start" else \
            (x + (b if mask is None else b * mask)).astype(np.float32)
        eps = self.radius(view, b)
        self._last_benign = (view.round, b)
        loop = TrainingLoop(view.trainer, x)
        opt = loop.optimizer(self.mal_optimizer, self.mal_lr)
        ref = _split(centre, loop.params)
        frozen = None if mask is None else _split(mask, loop.params)
        start = loop.snapshot() if mask is not None else None
        every = self.params.get("project_every", 1)
        steps = self.steps(view)
        batches = self.batches(loop, view)
        projected = False
        for s in range(steps):
            xb, yb = next(batches)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(loop.model(xb), yb).backward()
            if frozen is not None:
                for p, m in zip(loop.params, frozen, strict=True):
                    if p.grad is not None:
                        p.grad.mul_(m)
            opt.step()
            if frozen is not None and start is not None:
                with torch.no_grad():
                    for p, m, p0 in zip(loop.params, frozen, start, strict=True):
                        p.copy_(torch.where(m > 0, p, p0))
            self.trace.append("m")
            projected = False
            if (s + 1) % every == 0:
                self.project(loop, ref, eps, norm)
                self.trace.append("p")
                projected = True
        if not projected:
            self.project(loop, ref, eps, norm)
            self.trace.append("p")
        w = loop.flat()
        d = np.subtract(w, x, dtype=np.float32)
        if mask is not None:
            d = d * mask  # already 0 there; makes the zeros exact whatever the float rounding
        un = norm_of(d)
        info = {"eps": eps, "update_norm": un, "benign_update_norm": bnorm, "eps_rel_norm": eps / bnorm if bnorm > 0 else 0.0,
                "norm_ratio": un / bnorm if bnorm > 0 else 0.0, **self.mal_loss(loop),
                "ref_dist": norm_of(np.subtract(w, centre, dtype=np.float32), norm)}
        if mask is not None:
            info["masked"] = float(mask.size - mask.sum())
        return self.emit(view, d, 1.0, info)


class Neurotoxin(PGD):
    """Masked pgd: only the coordinates outside the top ``ratio`` of the benign direction move."""

    name = "neurotoxin"

    def mask(self, view: NodeView, b: np.ndarray) -> np.ndarray | None:
        g = b
        if self.params.get("mask_from", "own") == "neighbours":
            others = weighted_sum(self.updates(view), view.weights)
            if others is not None:
                g = (b + others).astype(np.float32)
        return top_mask(g, float(self.params.get("ratio", 0.1)))


class Scale(_Constrained):
    """Constrain and scale: alpha CE + (1 - alpha) ||w - x||, then x + gamma_j (w - x) per receiver j."""

    name = "scale"

    def tau_hat(self, view: NodeView, bnorm: float) -> float:
        """The receivers' clip radius as topk-clip's median-with-own rule would set it (estimated)."""
        norms = [norm_of(d) for d in self.updates(view).values()]
        return float(np.median([*norms, bnorm]))

    def attack(self, view: NodeView) -> Crafted:
        x = view.x
        b = self.benign(view)
        bnorm = norm_of(b)
        alpha = float(self.params.get("alpha", 0.7))
        loop = TrainingLoop(view.trainer, x)
        opt = loop.optimizer(self.mal_optimizer, self.mal_lr)
        start = _split(x, loop.params)
        batches = self.batches(loop, view)
        for _ in range(self.steps(view)):
            xb, yb = next(batches)
            opt.zero_grad(set_to_none=True)
            loss = alpha * F.cross_entropy(loop.model(xb), yb)
            if alpha < 1:
                sq = sum(((p - p0) ** 2).sum() for p, p0 in zip(loop.params, start, strict=True))
                loss = loss + (1 - alpha) * torch.sqrt(sq + 1e-12)  # ||w - x||, smooth at w = x
            loss.backward()
            opt.step()
            self.trace.append("m")
        w = loop.flat()
        dn = norm_of(np.subtract(w, x, dtype=np.float32))
        info: dict[str, float] = {"alpha": alpha, "trained_norm": dn, "benign_update_norm": bnorm,
                                  **self.mal_loss(loop)}
        caps = []
        clip_to = self.params.get("clip_to")
        if clip_to == "auto":
            info["tau_hat"] = self.tau_hat(view, bnorm)
            caps.append(info["tau_hat"])
        elif clip_to is not None:
            info["tau_hat"] = float(clip_to)
            caps.append(float(clip_to))
        if "budget" in self.params:
            caps.append(float(self.params["budget"]) * bnorm)
        cap = min(caps) if caps else math.inf
        if caps:
            info["cap"] = cap
        gammas = {j: self.gamma_for(view, j, dn, cap) for j in view.neighbours}
        announce = {j: boost(x, w, g) for j, g in gammas.items()}
        un = max(norm_of(np.subtract(m, x, dtype=np.float32)) for m in announce.values()) if announce else 0.0
        info.update(gamma_min=min(gammas.values(), default=0.0), gamma_max=max(gammas.values(), default=0.0),
                    update_norm=un, norm_ratio=un / bnorm if bnorm > 0 else 0.0)
        return Crafted(own=w, announce=announce, info=info)

    def gamma_for(self, view: NodeView, j: int, dn: float, cap: float) -> float:
        """gamma_j = ``gamma`` or 1 / W_jm (W_jm = W_mj, symmetric weights), shrunk to ``cap``."""
        g = float(self.params["gamma"]) if "gamma" in self.params else 1.0 / float(view.weights[j])
        if dn > 0 and g * dn > cap:
            g = cap / dn
        return g


__all__ = ["PGD", "Neurotoxin", "Scale", "norm_of", "top_mask"]
