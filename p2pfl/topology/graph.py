"""The graph: :class:`Topology`, a validated, connected, undirected graph, its mixing
weights, hop distances and description (see :mod:`p2pfl.topology`)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import networkx as nx
import numpy as np

from ..errors import ConfigError, TopologyError

logger = logging.getLogger(__name__)

MIXING_RULES: tuple[str, ...] = ("metropolis", "uniform")


# --------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """A validated, connected, undirected graph on the node ids ``0..n-1``.

    Parameters
    ----------
    name
        Human-readable name (the generator's name or the file's ``name``).
    n
        Number of nodes, at least 2.
    edges
        Undirected edges. Any iterable of pairs is accepted; it is normalised to a
        sorted tuple of ``(i, j)`` with ``i < j``, with ``(i, j)``/``(j, i)`` duplicates
        merged silently. Self-loops, unknown ids and disconnected graphs raise
        :class:`~p2pfl.errors.TopologyError`.

    Notes
    -----
    Equality and hashing use ``(name, n, edges)`` only. Derived data (adjacency, mixing
    matrices, diameter) is computed on first use and cached on the instance.
    """

    name: str
    n: int
    edges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        n = self.n
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise TopologyError("nodes", n, "an integer number of nodes, at least 2")
        n = int(n)
        if n < 2:
            raise TopologyError("nodes", n, "at least 2 nodes are needed for gossip")
        edges = _normalise_edges(self.edges, n)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "edges", edges)
        _check_connected(self.name, n, self._adjacency)

    # -- structure ---------------------------------------------------------------------

    @cached_property
    def _adjacency(self) -> tuple[tuple[int, ...], ...]:
        adj: list[list[int]] = [[] for _ in range(self.n)]
        for i, j in self.edges:
            adj[i].append(j)
            adj[j].append(i)
        return tuple(tuple(sorted(a)) for a in adj)

    @cached_property
    def _degrees(self) -> np.ndarray:
        degrees = np.fromiter((len(a) for a in self._adjacency), dtype=np.int64, count=self.n)
        degrees.setflags(write=False)
        return degrees

    def _check_node(self, i: int, field: str = "node") -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < self.n:
            raise TopologyError(field, i, f"unknown node id; ids are 0..{self.n - 1}")
        return int(i)

    def neighbours(self, i: int) -> tuple[int, ...]:
        """Sorted ids of the nodes joined to ``i``."""
        return self._adjacency[self._check_node(i)]

    def degree(self, i: int) -> int:
        """Number of neighbours of ``i``."""
        return len(self._adjacency[self._check_node(i)])

    def degrees(self) -> np.ndarray:
        """Degrees of all nodes, shape ``(n,)``, int64 (a read-only array)."""
        return self._degrees

    # -- mixing ------------------------------------------------------------------------

    def mixing(self, rule: str = "metropolis") -> np.ndarray:
        """Gossip mixing matrix ``W`` of shape ``(n, n)``, float64.

        ``W[i, j]`` is the weight node ``i`` gives to neighbour ``j``'s proposal and
        ``W[i, i]`` the weight it keeps for itself; ``W[i, j] = 0`` for non-neighbours.

        Parameters
        ----------
        rule
            ``"metropolis"`` (Metropolis-Hastings, default):
            ``W_ij = 1 / (1 + max(deg_i, deg_j))`` for neighbours and
            ``W_ii = 1 - sum_j W_ij``. It is symmetric and doubly stochastic, so plain
            gossip converges to the exact *average* of the initial models on any
            connected graph, using only the degrees of the two endpoints.

            ``"uniform"``: ``W_ij = W_ii = 1 / (deg_i + 1)``. Row-stochastic but not
            symmetric on irregular graphs, so the consensus value is a degree-weighted
            average rather than the plain mean.

        Returns
        -------
        numpy.ndarray
            A fresh copy; callers may modify it.
        """
        return self._mixing(_check_rule(rule)).copy()

    def mixing_row(self, i: int, rule: str = "metropolis") -> dict[int, float]:
        """``W[i, j]`` for ``i``'s neighbours ``j``, without building the ``(n, n)`` matrix.

        The same numbers as :meth:`mixing` (one division each, as there), at O(deg) cost: what
        a node needs, and what keeps plans of tens of thousands of nodes small.
        """
        rule = _check_rule(rule)
        i = self._check_node(i)
        deg = self._degrees
        if rule == "metropolis":
            return {j: float(1.0 / (1.0 + np.maximum(deg[i], deg[j]))) for j in self.neighbours(i)}
        share = float(1.0 / (deg[i] + 1.0))
        return {j: share for j in self.neighbours(i)}

    def _mixing(self, rule: str) -> np.ndarray:
        cache: dict[str, np.ndarray] = self.__dict__.setdefault("_mixing_cache", {})
        if rule not in cache:
            cache[rule] = _mixing_matrix(self.n, self.edges, self._degrees, rule)
        return cache[rule]

    def spectral_gap(self, rule: str = "metropolis") -> float:
        """``1 - |lambda_2|`` of the mixing matrix, in ``(0, 1]`` for connected graphs.

        ``|lambda_2|`` is the second largest eigenvalue modulus of ``W``; the gap sets the
        speed of consensus (disagreement shrinks roughly like ``(1 - gap)^t``), so it is
        the one number that compares topologies for gossip.
        """
        rule = _check_rule(rule)
        if rule == "metropolis":
            eigenvalues = np.linalg.eigvalsh(self._mixing(rule))
        else:
            # W = D^-1 (A + I) is similar to the symmetric D^-1/2 (A + I) D^-1/2, so its
            # eigenvalues are real and eigvalsh on the symmetric form is exact and stable.
            scale = 1.0 / np.sqrt(self._degrees + 1.0)
            a = np.eye(self.n) + _adjacency_matrix(self.n, self.edges)
            eigenvalues = np.linalg.eigvalsh(scale[:, None] * a * scale[None, :])
        moduli = np.sort(np.abs(eigenvalues))[::-1]
        return float(np.clip(1.0 - moduli[1], 0.0, 1.0))

    # -- distances ---------------------------------------------------------------------

    def hops(self, sources: Iterable[int]) -> np.ndarray:
        """Hop distance of every node to the nearest of ``sources``.

        Returns an int64 array of shape ``(n,)``: 0 at the sources, -1 everywhere when
        ``sources`` is empty (no node has a nearest source). Used to split benign nodes by
        their distance to the adversaries.
        """
        dist = np.full(self.n, -1, dtype=np.int64)
        queue: deque[int] = deque()
        for s in sources:
            s = self._check_node(s, "sources")
            if dist[s] != 0:
                dist[s] = 0
                queue.append(s)
        adjacency = self._adjacency
        while queue:
            i = queue.popleft()
            for j in adjacency[i]:
                if dist[j] < 0:
                    dist[j] = dist[i] + 1
                    queue.append(j)
        return dist

    def graph(self) -> nx.Graph:
        """A new :class:`networkx.Graph` with nodes ``0..n-1`` and the edges (a copy)."""
        g = nx.Graph(name=self.name)
        g.add_nodes_from(range(self.n))
        g.add_edges_from(self.edges)
        return g

    @cached_property
    def _diameter(self) -> int:
        return int(nx.diameter(self.graph()))

    def diameter(self) -> int:
        """Largest hop distance between two nodes: the rounds a message needs to reach all."""
        return self._diameter

    # -- summaries ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Summary numbers, JSON-ready: name, size, degrees, diameter, spectral gap."""
        degrees = self._degrees
        return {
            "name": self.name,
            "n": self.n,
            "edges": len(self.edges),
            "degree_min": int(degrees.min()),
            "degree_mean": float(degrees.mean()),
            "degree_max": int(degrees.max()),
            "diameter": self.diameter(),
            "spectral_gap": self.spectral_gap("metropolis"),
        }

    def to_toml(self) -> str:
        """Explicit edge-list TOML that :func:`from_file` reads back to an equal Topology."""
        import tomli_w

        lines = [
            f"# p2pfl topology: {self.n} nodes, {len(self.edges)} edges",
            tomli_w.dumps({"name": self.name}).rstrip("\n"),
            f"nodes = {self.n}",
            "edges = [",
        ]
        per_line = 8
        for start in range(0, len(self.edges), per_line):
            chunk = self.edges[start : start + per_line]
            lines.append("    " + " ".join(f"[{i}, {j}]," for i, j in chunk))
        lines.append("]")
        return "\n".join(lines) + "\n"


def _normalise_edges(edges: Iterable[Any], n: int) -> tuple[tuple[int, int], ...]:
    """Check and canonicalise an edge list: ``i < j``, sorted, duplicates merged."""
    if isinstance(edges, str | bytes) or not isinstance(edges, Iterable):
        raise TopologyError("topology.edges", edges, "a list of [i, j] node-id pairs")
    pairs: set[tuple[int, int]] = set()
    loops: list[int] = []
    unknown: set[int] = set()
    for edge in edges:
        if isinstance(edge, str | bytes) or not isinstance(edge, Iterable):
            raise TopologyError("topology.edges", edge, "each edge must be a pair [i, j]")
        pair = tuple(edge)
        if len(pair) != 2 or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair
        ):
            raise TopologyError(
                "topology.edges", list(pair), "each edge must be a pair [i, j] of integers"
            )
        i, j = int(pair[0]), int(pair[1])
        unknown.update(v for v in (i, j) if not 0 <= v < n)
        if i == j:
            loops.append(i)
        pairs.add((min(i, j), max(i, j)))
    if loops:
        shown = sorted(set(loops))
        raise TopologyError(
            "topology.edges",
            [[v, v] for v in shown[:10]],
            f"self-loops are not allowed (a node joined to itself: {_few(shown)})",
        )
    if unknown:
        shown = sorted(unknown)
        raise TopologyError(
            "topology.edges",
            shown[:10],
            f"unknown node ids {_few(shown)}; with nodes = {n} the ids are 0..{n - 1}",
        )
    return tuple(sorted(pairs))


def _check_connected(name: str, n: int, adjacency: tuple[tuple[int, ...], ...]) -> None:
    """Raise TopologyError naming the component count and the smallest component."""
    seen = [False] * n
    components: list[list[int]] = []
    for start in range(n):
        if seen[start]:
            continue
        seen[start] = True
        component = [start]
        queue = deque([start])
        while queue:
            for j in adjacency[queue.popleft()]:
                if not seen[j]:
                    seen[j] = True
                    component.append(j)
                    queue.append(j)
        components.append(sorted(component))
    if len(components) > 1:
        smallest = min(components, key=lambda c: (len(c), c[0]))
        raise TopologyError(
            "topology",
            name,
            f"the graph is disconnected: {len(components)} components; the smallest has "
            f"{len(smallest)} node(s): {_few(smallest)} (gossip cannot reach them)",
        )


def _few(values: list[int], limit: int = 8) -> str:
    """``"1, 2, 3"`` or ``"1, 2, 3, ... (12 in all)"``."""
    shown = ", ".join(str(v) for v in values[:limit])
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"


def _check_rule(rule: str) -> str:
    if rule not in MIXING_RULES:
        raise ConfigError("mixing", rule, "one of " + ", ".join(MIXING_RULES))
    return rule


def _adjacency_matrix(n: int, edges: tuple[tuple[int, int], ...]) -> np.ndarray:
    a = np.zeros((n, n), dtype=np.float64)
    if edges:
        ij = np.asarray(edges, dtype=np.int64)
        a[ij[:, 0], ij[:, 1]] = 1.0
        a[ij[:, 1], ij[:, 0]] = 1.0
    return a


def _mixing_matrix(
    n: int, edges: tuple[tuple[int, int], ...], degrees: np.ndarray, rule: str
) -> np.ndarray:
    w = np.zeros((n, n), dtype=np.float64)
    ij = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    i, j = ij[:, 0], ij[:, 1]
    if rule == "metropolis":
        weight = 1.0 / (1.0 + np.maximum(degrees[i], degrees[j]))
        w[i, j] = weight
        w[j, i] = weight
        # W_ii = 1 - sum_j W_ij >= 1 - deg_i / (1 + deg_i) > 0: every node keeps some self weight.
        w[np.arange(n), np.arange(n)] = 1.0 - w.sum(axis=1)
    else:
        share = 1.0 / (degrees + 1.0)
        w[i, j] = share[i]
        w[j, i] = share[j]
        w[np.arange(n), np.arange(n)] = share
    w.setflags(write=False)
    return w


__all__ = ["MIXING_RULES", "Topology"]
