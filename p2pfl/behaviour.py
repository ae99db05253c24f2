"""What a node announces each round: honest training, or an attack.

A *behaviour* turns a :class:`NodeView` (everything a node knows when it crafts its
announcement; for an adversary, exactly its threat model's knowledge) into a
:class:`Crafted` (its own new model and what it announces, possibly a different model per
neighbour). The node calls ``behaviour.craft(view)`` once per round in an executor thread.

This module depends on nothing else in p2pfl, so :mod:`p2pfl.attacks` and the node both
import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class NodeView:
    """What a node knows when it crafts its announcement (the adversary's knowledge, too)."""

    node: int
    round: int
    rounds: int
    x: np.ndarray
    trainer: Any  # p2pfl.train.Trainer
    data: Any  # p2pfl.data.TensorData: the node's own shard
    neighbours: tuple[int, ...]
    weights: Mapping[int, float]  # W_ij for neighbours j
    public: Mapping[int, np.ndarray]  # xhat_j: this node's copies of its neighbours (read-only)
    public_round: Mapping[int, int]
    last_deltas: Mapping[int, np.ndarray]  # the delta each neighbour sent last (dense, read-only)
    announced: Mapping[int, np.ndarray]  # what each neighbour holds as this node's model
    seed: int
    epochs: int


@dataclass
class Crafted:
    """A behaviour's output: the node's own new model and what it announces."""

    own: np.ndarray
    announce: np.ndarray | Mapping[int, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)


class Behaviour(Protocol):
    name: str

    def craft(self, view: NodeView) -> Crafted: ...


class Honest:
    """Train E epochs on the own shard and announce the result to everybody."""

    name = "benign"

    def craft(self, view: NodeView) -> Crafted:
        if view.epochs <= 0:
            z = view.x.copy()
        else:
            z = view.trainer.train(view.x, view.data)
        return Crafted(own=z, announce=z)


__all__ = ["Behaviour", "Crafted", "Honest", "NodeView"]
