"""Estimating the benign neighbours' update, alone or pooled with the other adversaries.

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
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np


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


__all__ = ["Collusion", "collusion_board", "delta_updates", "neighbour_updates", "weighted_mean", "weighted_sum"]
