"""Weight updates of an in-process run: every node's update norm and its L2 distances to the
benign nodes' updates per round (``updates.jsonl``), and a fixed sample of coordinates of
every update in a few rounds (``updates/round-TTT.npz``). These feed the paper's
weight-update views in :mod:`p2pfl.report`.

Pass :class:`RecordUpdates` to :func:`p2pfl.launch.run` (``hooks=[RecordUpdates()]``);
``p2pfl run``, :meth:`p2pfl.Experiment.run` and the sweep do.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .launch import RunHook, RunResult
from .plan import Plan, node_seed

log = logging.getLogger(__name__)

UPDATES_FILE = "updates.jsonl"
UPDATES_DIR = "updates"
SAMPLE_SIZE = 10_000


class _Recording:
    """A behaviour that reports the update it produced (announced model - x) and delegates."""

    def __init__(self, inner: Any, recorder: UpdateRecorder, node: int) -> None:
        self._inner = inner
        self._recorder = recorder
        self._node = node
        self.name = getattr(inner, "name", "benign")

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    def craft(self, view: Any) -> Any:
        crafted = self._inner.craft(view)
        try:
            self._recorder.add(view.round, self._node, view.x, crafted.announce)
        except Exception:  # a measurement never breaks a run
            log.exception("node %d: could not record the update of round %d", self._node, view.round)
        return crafted


@dataclass
class UpdateRecorder:
    """Collects every node's weight update of each round (in-process runs).

    The update of node i in round t is ``a - x``: the model it announces (the mean over
    neighbours when it announces different models) minus its model at the start of the
    round; for a benign node that is its training update, for an adversary its crafted
    (e.g. boosted) update. When all nodes of a round are in, one line goes to
    ``updates.jsonl``: per node the role, the update's L2 norm and the min/max L2 distance
    to the *benign* nodes' updates (the paper's stealth view), and the min/max pairwise
    distance among benign updates. In ``sample_rounds`` a fixed random subset of
    ``sample_size`` coordinates of every update is saved to ``updates/round-TTT.npz``.
    """

    n: int
    roles: Mapping[int, str]
    out: Path | None = None
    sample_rounds: frozenset[int] = frozenset()
    sample_size: int = SAMPLE_SIZE
    seed: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    _pending: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    _index: np.ndarray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_plan(cls, plan: Plan, out: Path | None, *, sample_rounds: Iterable[int] | None = None,
                 sample_size: int = SAMPLE_SIZE) -> UpdateRecorder:
        rounds = plan.config.rounds
        if sample_rounds is None:
            sample_rounds = default_sample_rounds(rounds)
        return cls(n=plan.config.nodes, roles={i: plan.role(i) for i in range(plan.config.nodes)},
                   out=out, sample_rounds=frozenset(int(r) for r in sample_rounds if 1 <= r <= rounds),
                   sample_size=sample_size, seed=plan.config.seed)

    def attach(self, node: Any) -> None:
        """Wrap the node's behaviour so that it reports every update it produces."""
        node.behaviour = _Recording(node.behaviour, self, node.id)

    def add(self, t: int, node: int, x: np.ndarray, announce: np.ndarray | Mapping[int, np.ndarray]) -> None:
        if isinstance(announce, Mapping):
            a = np.mean(np.stack([np.asarray(v, dtype=np.float32) for v in announce.values()]), axis=0)
        else:
            a = np.asarray(announce, dtype=np.float32)
        u = np.subtract(a, x, dtype=np.float32)
        with self._lock:
            pending = self._pending.setdefault(t, {})
            pending[node] = u
            if len(pending) == self.n:
                del self._pending[t]
            else:
                return
        self._complete(t, pending)

    def close(self) -> None:
        """Flush rounds that did not hear from every node (a node failed or was excluded)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for t in sorted(pending):
            self._complete(t, pending[t])

    def _complete(self, t: int, updates: Mapping[int, np.ndarray]) -> None:
        row = update_stats(t, updates, self.roles)
        samples = None
        if t in self.sample_rounds:
            dim = next(iter(updates.values())).shape[0]
            if self._index is None:
                rng = np.random.default_rng(node_seed(self.seed, 0, 7))
                k = min(dim, self.sample_size)
                self._index = np.sort(rng.choice(dim, size=k, replace=False))
            samples = {i: updates[i][self._index].copy() for i in sorted(updates)}
        with self._lock:
            self.rows.append(row)
            self.rows.sort(key=lambda r: r["round"])
            if samples is not None:
                self.samples[t] = samples
            if self.out is not None:
                with (self.out / UPDATES_FILE).open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, separators=(",", ":")) + "\n")
                if samples is not None:
                    folder = self.out / UPDATES_DIR
                    folder.mkdir(exist_ok=True)
                    np.savez_compressed(folder / f"round-{t:03d}.npz", index=self._index,
                                        **{f"node_{i}": v for i, v in samples.items()})


def default_sample_rounds(rounds: int) -> tuple[int, ...]:
    """Rounds whose update samples are kept: the first three and the last."""
    return tuple(sorted({r for r in (1, 2, 3, rounds) if 1 <= r <= rounds}))


def update_stats(t: int, updates: Mapping[int, np.ndarray], roles: Mapping[int, str]) -> dict[str, Any]:
    """Norms and L2 distances of one round's updates (see :class:`UpdateRecorder`)."""
    ids = sorted(updates)
    u = np.stack([updates[i] for i in ids]).astype(np.float64)
    sq = np.einsum("ij,ij->i", u, u)
    gram = u @ u.T
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0))
    benign = [k for k, i in enumerate(ids) if roles.get(i, "benign") == "benign"]
    nodes: dict[str, dict[str, Any]] = {}
    for k, i in enumerate(ids):
        entry: dict[str, Any] = {"role": roles.get(i, "benign"), "norm": round(float(np.sqrt(sq[k])), 6)}
        others = [b for b in benign if b != k]
        if others:
            entry["dist_min"] = round(float(dist[k, others].min()), 6)
            entry["dist_max"] = round(float(dist[k, others].max()), 6)
        nodes[str(i)] = entry
    row: dict[str, Any] = {"round": t, "nodes": nodes}
    if len(benign) > 1:
        pair = dist[np.ix_(benign, benign)][np.triu_indices(len(benign), 1)]
        row["benign_spread"] = {"min": round(float(pair.min()), 6), "max": round(float(pair.max()), 6),
                                "mean": round(float(pair.mean()), 6)}
    return row


class RecordUpdates(RunHook):
    """The :func:`p2pfl.launch.run` hook that records weight updates (in-process runs).

    The statistics land in ``result.extra["updates"]`` and ``updates.jsonl``, the samples in
    ``result.extra["update_samples"]`` and ``updates/``. A run in node processes records none.
    """

    def __init__(self, *, sample_rounds: Iterable[int] | None = None, sample_size: int = SAMPLE_SIZE) -> None:
        self.sample_rounds = sample_rounds
        self.sample_size = sample_size
        self.recorder: UpdateRecorder | None = None
        self._attached = False

    def start(self, plan: Plan, out: Path | None) -> None:
        self.recorder = UpdateRecorder.for_plan(plan, out, sample_rounds=self.sample_rounds,
                                                sample_size=self.sample_size)

    def attach(self, node: Any) -> None:
        if self.recorder is not None:
            self.recorder.attach(node)
            self._attached = True

    def finish(self, result: RunResult | None) -> None:
        if self.recorder is None or not self._attached:
            return
        self.recorder.close()
        if result is not None:
            result.extra["updates"] = self.recorder.rows
            result.extra["update_samples"] = self.recorder.samples


__all__ = ["SAMPLE_SIZE", "UPDATES_DIR", "UPDATES_FILE", "RecordUpdates", "UpdateRecorder",
           "default_sample_rounds", "update_stats"]
