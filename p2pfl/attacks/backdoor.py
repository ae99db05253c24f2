"""What the adversaries want the benign models to learn: the backdoor (docs/threat-model.md).

Three kinds (``attack.backdoor``, CLI ``--backdoor``), all built once by
:class:`~p2pfl.plan.Plan` from the attack parameters, deterministically from the seed:

``single``   (default; the paper's objective) r auxiliary test examples with wrong target
             labels (``target``, ``aux_size``: :func:`p2pfl.plan.choose_aux`); they are
             removed from the clean test set. Exactly what p2pfl did before backdoor kinds.
``class``    semantic backdoor: every training example of class S the adversary holds is
             relabelled T (``target = "S:T"``; ``"random"`` draws S != T from the seed).
             Success: held-out test examples of class S classified as T.
``trigger``  pixel-pattern backdoor (BadNets, Gu et al. 2017; the pattern backdoor of
             Bagdasaryan et al. AISTATS 2020): a ``trigger_size`` x ``trigger_size`` patch of
             value ``trigger_value`` in corner ``trigger_pos`` is stamped on a fraction
             ``poison_fraction`` of each of the adversary's own batches, whose labels become T
             (``target = "S:T"`` gives T, S is not used; ``"random"`` draws T from the seed).
             Success: held-out test images of the classes other than T, stamped, classified
             as T. Images only (``(N, C, H, W)``); tabular data is refused.

What a :class:`Backdoor` gives the attacks and the evaluation:

``aux_for(data, node)``   the set the aux-only attacks (boost, stealth, altmin) train on:
                          single: the shared auxiliary set; class: the node's own examples
                          of class S labelled T; trigger: the node's own examples of classes
                          other than T, stamped, labelled T (both at most :data:`AUX_CAP`
                          examples, a seeded subset; empty when the node holds none: the
                          plan refuses such a run for the aux-only attacks).
``poison(x, y, gen)``     one of the adversary's own training batches with the backdoor
                          mixed in: single appends the auxiliary set (as ``replace`` always
                          did); class relabels S -> T; trigger stamps a fraction p of the
                          batch (chosen with ``gen``) and labels those T. Inputs are never
                          modified in place.
``success_set``           held-out examples with the labels the attacker wants; the attack
                          success and target confidence of every node are measured on it.

Clean accuracy is always measured on the clean test set (``plan.test``), which is never
stamped or relabelled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from p2pfl.data import TensorData
from p2pfl.errors import ConfigError
from p2pfl.validate import choice, fraction, integer, real

KINDS = ("single", "class", "trigger")
POSITIONS = ("br", "bl", "tr", "tl")
#: Parameters of the backdoor, read from the attack table (accepted by every attack).
BACKDOOR_PARAMS = ("backdoor", "poison_fraction", "trigger_size", "trigger_value", "trigger_pos")
AUX_CAP = 500  # largest class/trigger aux set of one adversary (boost evaluates CE(aux) per step)
SUCCESS_CAP = 1000  # largest class/trigger success set (every node evaluates it every round)


def check_backdoor_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the backdoor parameters of an attack table; return them with defaults filled in.

    Raises :class:`ConfigError` naming ``attack.<param>`` and the allowed values.
    """
    kind = choice("attack.backdoor", params.get("backdoor", "single"), KINDS)
    p = fraction("attack.poison_fraction", params.get("poison_fraction", 0.5))
    size = integer("attack.trigger_size", params.get("trigger_size", 4), 1, allowed="an integer >= 1 (pixels)")
    value = params.get("trigger_value")
    if value is not None:
        value = real("attack.trigger_value", value, allowed="a finite number (default: the largest pixel value)")
    pos = choice("attack.trigger_pos", params.get("trigger_pos", "br"), POSITIONS)
    return {"backdoor": kind, "poison_fraction": float(p), "trigger_size": int(size),
            "trigger_value": None if value is None else float(value), "trigger_pos": pos}


def _region(shape: tuple[int, ...], size: int, pos: str) -> tuple[slice, slice]:
    h, w = shape[-2], shape[-1]
    rows = slice(h - size, h) if pos[0] == "b" else slice(0, size)
    cols = slice(w - size, w) if pos[1] == "r" else slice(0, size)
    return rows, cols


def stamp(x: torch.Tensor, *, size: int, value: float, pos: str) -> torch.Tensor:
    """A copy of images ``x`` (N, C, H, W) with a ``size`` x ``size`` patch of ``value`` in corner ``pos``."""
    if x.dim() != 4:
        raise ConfigError("attack.backdoor", "trigger",
                          f"single or class: the trigger backdoor stamps images (N, C, H, W), got inputs of "
                          f"shape {tuple(x.shape)}")
    out = x.clone()
    rows, cols = _region(tuple(x.shape), size, pos)
    out[:, :, rows, cols] = value
    return out


def _seeded_subset(n: int, cap: int, *seed: int) -> np.ndarray:
    """All of 0..n-1, or a sorted seeded subset of ``cap`` of them."""
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    return np.sort(rng.choice(n, size=cap, replace=False))


def parse_target(target: Any, classes: int, seed: int) -> tuple[int, int]:
    """(S, T) from ``"S:T"``, or drawn from the seed for ``"random"``."""
    if target == "random":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0, 4]))
        s = int(rng.integers(classes))
        t = int((s + rng.integers(1, classes)) % classes)
        return s, t
    parts = str(target).split(":")
    try:
        s, t = int(parts[0]), int(parts[1])
        if len(parts) != 2 or not (0 <= s < classes and 0 <= t < classes) or s == t:
            raise ValueError
    except (ValueError, IndexError):
        raise ConfigError("attack.target", target,
                          f"'random' or 'S:T' with two different classes in 0..{classes - 1}") from None
    return s, t


@dataclass
class Backdoor:
    """One run's backdoor: what the adversaries train on, poison with, and are measured on."""

    kind: str
    success_set: TensorData
    aux: TensorData | None = None  # single: the shared auxiliary set (plan.aux)
    source: int | None = None  # S (class)
    target: int | None = None  # T (class, trigger)
    poison_fraction: float = 0.5
    trigger_size: int = 4
    trigger_value: float = 1.0
    trigger_pos: str = "br"
    seed: int = 0

    # ---- construction ----
    @classmethod
    def single(cls, aux: TensorData) -> Backdoor:
        """Today's objective: the auxiliary set is trained on and measured on."""
        return cls(kind="single", success_set=aux, aux=aux)

    @classmethod
    def build(cls, params: Mapping[str, Any], *, test: TensorData, train: TensorData,
              aux: TensorData | None, seed: int) -> Backdoor:
        """The backdoor the attack ``params`` ask for.

        ``test`` is the clean test set (for single, already without the auxiliary set
        ``aux``); ``train`` gives the largest pixel value (the trigger's default value).
        """
        p = check_backdoor_params(params)
        kind = p["backdoor"]
        if kind == "single":
            if aux is None:
                raise ConfigError("attack.backdoor", kind, "an auxiliary set (plan.aux is missing)")
            return cls.single(aux)
        s, t = parse_target(params.get("target", "random"), test.classes, seed)
        common = {"poison_fraction": p["poison_fraction"], "seed": seed}
        if kind == "class":
            pool = np.flatnonzero(test.y.numpy() == s)
            if len(pool) == 0:
                raise ConfigError("attack.target", params.get("target", "random"),
                                  f"a source class with test examples (class {s} has none)")
            pool = pool[_seeded_subset(len(pool), SUCCESS_CAP, seed, 0, 6)]
            success = TensorData(test.x[torch.as_tensor(pool)], torch.full((len(pool),), t, dtype=torch.int64),
                                 test.classes)
            return cls(kind=kind, success_set=success, source=s, target=t, **common)
        if test.x.dim() != 4:
            raise ConfigError("attack.backdoor", kind,
                              "single or class: the trigger backdoor stamps images (N, C, H, W), and this "
                              f"data set is tabular (inputs of shape {tuple(test.x.shape[1:])})")
        h, w = test.x.shape[-2:]
        if p["trigger_size"] > min(h, w):
            raise ConfigError("attack.trigger_size", p["trigger_size"], f"an integer in 1..{min(h, w)}")
        value = p["trigger_value"] if p["trigger_value"] is not None else float(train.x.max())
        bd = cls(kind=kind, success_set=test, source=None, target=t, trigger_size=p["trigger_size"],
                 trigger_value=value, trigger_pos=p["trigger_pos"], **common)
        pool = np.flatnonzero(test.y.numpy() != t)
        pool = pool[_seeded_subset(len(pool), SUCCESS_CAP, seed, 0, 6)]
        bd.success_set = TensorData(bd.stamp(test.x[torch.as_tensor(pool)]),
                                    torch.full((len(pool),), t, dtype=torch.int64), test.classes)
        return bd

    # ---- what the attacks use ----
    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        """A stamped copy of images ``x`` (never in place)."""
        return stamp(x, size=self.trigger_size, value=self.trigger_value, pos=self.trigger_pos)

    def region(self, shape: tuple[int, ...]) -> tuple[slice, slice]:
        """The rows and columns of the trigger patch in images of ``shape``."""
        return _region(shape, self.trigger_size, self.trigger_pos)

    def aux_for(self, data: TensorData, node: int = 0) -> TensorData:
        """The set aux-only attacks train on, for an adversary holding ``data``."""
        if self.kind == "single":
            assert self.aux is not None
            return self.aux
        pool = self.sources(data.y.numpy())
        pool = pool[_seeded_subset(len(pool), AUX_CAP, self.seed, node, 5)]
        xs = data.x[torch.as_tensor(pool)]
        if self.kind == "trigger":
            xs = self.stamp(xs)
        return TensorData(xs, torch.full((len(pool),), int(self.target or 0), dtype=torch.int64), data.classes)

    def sources(self, labels: np.ndarray) -> np.ndarray:
        """Indices of the examples the backdoor turns into T: class S (class), classes != T (trigger)."""
        if self.kind == "class":
            return np.flatnonzero(labels == self.source)
        return np.flatnonzero(labels != self.target)

    def check_holds(self, labels: np.ndarray, node: int) -> None:
        """Refuse an adversary whose shard has nothing to build its aux set from (class, trigger)."""
        if self.kind != "single" and len(self.sources(labels)) == 0:
            what = f"class {self.source}" if self.kind == "class" else f"a class other than {self.target}"
            raise ConfigError("attack.target", f"{self.source}:{self.target}",
                              f"a backdoor source the adversary holds (node {node} has no example of {what}; "
                              "pick another source class or partition)")

    def poison(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """One own training batch with the backdoor mixed in (inputs are not modified)."""
        if self.kind == "single":
            assert self.aux is not None
            return torch.cat([x, self.aux.x]), torch.cat([y, self.aux.y])
        if self.kind == "class":
            return x, torch.where(y == self.source, torch.full_like(y, int(self.target or 0)), y)
        n = int(y.shape[0])
        k = min(n, int(math.floor(self.poison_fraction * n + 0.5)))
        if k == 0:
            return x, y
        chosen = torch.randperm(n, generator=generator)[:k]
        x2, y2 = x.clone(), y.clone()
        x2[chosen] = self.stamp(x[chosen])
        y2[chosen] = int(self.target or 0)
        return x2, y2

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "success_size": len(self.success_set)}
        if self.kind != "single":
            out.update(source=self.source, target=self.target)
        if self.kind == "trigger":
            out.update(poison_fraction=self.poison_fraction, trigger_size=self.trigger_size,
                       trigger_value=self.trigger_value, trigger_pos=self.trigger_pos)
        return out


__all__ = ["AUX_CAP", "BACKDOOR_PARAMS", "KINDS", "POSITIONS", "SUCCESS_CAP", "Backdoor",
           "check_backdoor_params", "parse_target", "stamp"]
