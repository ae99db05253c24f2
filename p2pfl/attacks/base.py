"""The attack base class: delay, estimation, equivocation, stealth statistics, and the training loop.

An attack is a :class:`~p2pfl.behaviour.Behaviour`: :meth:`Attack.craft` returns the model
the adversary keeps and what it announces. Subclasses implement :meth:`Attack.attack`;
:class:`TrainingLoop` runs minibatch steps on the node's trainer for the attacks that train.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from p2pfl.behaviour import Crafted, Honest, NodeView
from p2pfl.errors import ConfigError
from p2pfl.train import get_flat, set_flat

from .backdoor import Backdoor
from .estimation import (
    collusion_board,
    delta_updates,
    neighbour_updates,
    weighted_mean,
    weighted_sum,
)
from .params import AUX_ONLY, NEEDS_AUX, check_params
from .stealth import delta_spread, distinct_models, norm_ratio, update_spread

EVAL_SIZE = 500  # clean examples for the announced model's accuracy (a stealth statistic)



def boost(base: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """Explicit boosting: ``base + lam * (w - base)`` as float32."""
    base64 = np.asarray(base, dtype=np.float64)
    return (base64 + float(lam) * (np.asarray(w, dtype=np.float64) - base64)).astype(np.float32)



class TrainingLoop:
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


def honest_model(view: NodeView) -> np.ndarray:
    """z: what an honest node would train this round (x itself when it trains no epochs)."""
    return view.x.copy() if view.epochs <= 0 else view.trainer.train(view.x, view.data)


def steps_per_epoch(trainer: Any, data: Any) -> int:
    """Minibatches in one epoch of ``data`` at the trainer's batch size."""
    return max(1, math.ceil(len(data) / trainer.spec.batch_size))



@dataclass
class _Memory:
    """What an attack remembers between rounds."""

    round: int = -1
    x: np.ndarray | None = None  # model at the start of that round
    deltas: dict[int, np.ndarray] = field(default_factory=dict)  # announced delta per neighbour
    updates: list[np.ndarray] = field(default_factory=list)  # distinct announced models minus x


class Attack(abc.ABC):
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
        if self.name in NEEDS_AUX and self.backdoor is None:
            raise ConfigError("attack", self.name, "an attack with an auxiliary set (plan.aux is missing)")
        self._aux_of: int | None = None  # id of the shard self.aux was built from (class/trigger)
        test = getattr(plan, "test", None)
        self.eval_set = None if test is None or len(test) == 0 else test.subset(np.arange(min(len(test), EVAL_SIZE)))
        self.board = collusion_board(plan) if self.collude else None
        self.memory = _Memory()
        self.trace: list[str] = []  # 'b' benign step, 'm' malicious step (last craft; for tests)
        self._honest_model: np.ndarray | None = None  # this round's honest model, once computed

    def honest(self, view: NodeView) -> np.ndarray:
        """z, the node's honest model of this round (trained once per round, then reused).

        Attacks that need it call this rather than :func:`honest_model`, so the stealth statistics
        can compare the announced update with the adversary's own benign update for free.
        """
        if self._honest_model is None:
            self._honest_model = honest_model(view)
        return self._honest_model

    def poisoned_training(self, view: NodeView) -> tuple[np.ndarray, TrainingLoop]:
        """w: ``mal_epochs`` (default E) epochs from x on the own shard with the backdoor mixed
        into every batch (:meth:`p2pfl.attacks.backdoor.Backdoor.poison`); also the loop, for losses."""
        data, backdoor = view.data, self.backdoor
        assert backdoor is not None
        loop = TrainingLoop(view.trainer, view.x)
        opt = loop.optimizer()
        batches = loop.batches(len(data))
        epochs = self.mal_epochs if self.mal_epochs is not None else max(view.epochs, 1)
        for _ in range(epochs * steps_per_epoch(view.trainer, data)):
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
    @abc.abstractmethod
    def attack(self, view: NodeView) -> Crafted:
        """This round's poisoned announcement (called from round ``delay + 1`` on)."""

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
        """The stealth statistics of this round's announcement (:mod:`p2pfl.attacks.stealth`)."""
        mine = list({id(d): d for d in deltas.values()}.values())
        out = {"delta_norm": max(float(np.linalg.norm(d)) for d in mine),
               "update_norm": max(float(np.linalg.norm(u)) for u in updates)}
        out.update(self.benign_norm(view, out["update_norm"]))
        if self.memory.round == view.round - 1 and self.memory.x is not None and self.memory.updates:
            ben = list(neighbour_updates(view.public, view.public_round, self.memory.x, view.round - 1,
                                         exclude=self.colluders).values())
            out.update(update_spread(self.memory.updates, ben))
        benign = list(delta_updates(view.last_deltas, view.public_round, view.round - 1,
                                    exclude=self.colluders).values())
        prev = None
        if self.memory.round == view.round - 1 and self.memory.deltas:
            prev = list({id(d): d for d in self.memory.deltas.values()}.values())
        out.update(delta_spread(mine, benign, prev))
        if self.eval_set is not None:
            accs = [float(view.trainer.evaluate(m, self.eval_set).accuracy) for m in distinct_models(announce)]
            out["announced_acc"] = sum(accs) / len(accs)
            if len(accs) > 1:
                out["announced_acc_min"] = min(accs)
        return out

    def benign_norm(self, view: NodeView, update_norm: float) -> dict[str, float]:
        """``benign_update_norm``, ``benign_norm_own`` and ``norm_ratio`` (:func:`.stealth.norm_ratio`).

        The adversary's own honest update ||z - x|| when this round's attack computed z anyway
        (:meth:`honest`; delayed rounds too), else the W-weighted mean norm of the benign
        neighbours' round t-1 updates d_j (no extra training); nothing in round 1 without z.
        """
        if self._honest_model is not None:
            own = float(np.linalg.norm(np.subtract(self._honest_model, view.x, dtype=np.float64)))
            return norm_ratio(update_norm, own, {}, view.weights)
        return norm_ratio(update_norm, None, self.updates(view, "updates"), view.weights)


__all__ = ["EVAL_SIZE", "Attack", "TrainingLoop", "boost", "honest_model", "steps_per_epoch"]
