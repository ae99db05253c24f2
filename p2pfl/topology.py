"""Communication graphs, gossip mixing weights and adversary placement.

A :class:`Topology` is an undirected, connected graph on the node ids ``0..n-1``. It is
the single source of truth for *who talks to whom*: the node loop asks it for
neighbours, the merge step for mixing weights ``W``, the metrics for hop distances to
the nearest adversary and the report for a picture.

Topologies come from built-in generators (:data:`TOPOLOGIES`) or from TOML files, both
through :func:`build_topology`::

    build_topology("ring", 10)
    build_topology("torus", 16)                       # 4 x 4, wrap-around
    build_topology("small-world", 20, seed=3, k=4, p=0.2)
    build_topology("topologies/example-edges.toml")  # shipped in p2pfl/topologies/

A TOML file is either a generator reference::

    kind = "random-regular"
    nodes = 12            # optional; the caller may give n instead
    [params]
    degree = 4

or an explicit edge list::

    name = "two-cliques"  # optional; defaults to the file's stem
    nodes = 6
    edges = [[0, 1], [1, 2], [2, 0], [2, 3], [3, 4], [4, 5], [5, 3]]

Every constructed :class:`Topology` has been validated: no self-loops, no unknown ids,
at least two nodes and a single connected component (gossip cannot reach a node it has
no path to). Invalid graphs raise :class:`~p2pfl.errors.TopologyError`; invalid settings
(unknown name, bad parameter) raise :class:`~p2pfl.errors.ConfigError`. Random
generators and placements are pure functions of their ``seed``.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from p2pfl.config import read_toml
from p2pfl.errors import ConfigError, TopologyError
from p2pfl.resources import TOPOLOGIES_DIR, locate, looks_like_path
from p2pfl.validate import integer, known_keys, real

logger = logging.getLogger(__name__)

TOPOLOGIES: tuple[str, ...] = (
    "ring",
    "line",
    "star",
    "full",
    "torus",
    "random-regular",
    "erdos-renyi",
    "small-world",
)
"""Canonical names of the built-in generators (``"complete"`` is accepted for ``"full"``)."""

ALIASES: dict[str, str] = {"complete": "full"}
"""Other accepted spellings of built-in names, mapped to their canonical name."""

MIXING_RULES: tuple[str, ...] = ("metropolis", "uniform")
PLACEMENTS: tuple[str, ...] = ("random", "central", "spread", "clustered")

_MAX_ATTEMPTS = 100
"""Resampling bound of the random generators before giving up on connectivity."""

_FILE_KEYS = ("name", "kind", "nodes", "params", "edges")

_NAMES_ALLOWED = (
    "one of "
    + ", ".join(f"{t} (alias complete)" if t == "full" else t for t in TOPOLOGIES)
    + " or a path to a .toml file"
)


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


# --------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------


def _need_n(kind: str, n: int | None, minimum: int) -> int:
    if n is None:
        raise ConfigError(
            "nodes", None, f"give the number of nodes for topology {kind!r} (at least {minimum})"
        )
    return integer("nodes", n, minimum, None, allowed=f"at least {minimum} nodes for {kind}")


def _seeds(seed: int) -> Iterable[int]:
    """Deterministic, well-mixed per-attempt seeds derived from one experiment seed."""
    for attempt in range(_MAX_ATTEMPTS):
        yield int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def _ring(n: int | None, seed: int, params: Mapping[str, Any]) -> Topology:
    known_keys("topology", params, (), "ring")
    n = _need_n("ring", n, 3)
    return Topology("ring", n, tuple((i, (i + 1) % n) for i in range(n)))


def _line(n: int | None, seed: int, params: Mapping[str, Any]) -> Topology:
    known_keys("topology", params, (), "line")
    n = _need_n("line", n, 2)
    return Topology("line", n, tuple((i, i + 1) for i in range(n - 1)))


def _star(n: int | None, seed: int, params: Mapping[str, Any]) -> Topology:
    known_keys("topology", params, (), "star")
    n = _need_n("star", n, 2)
    return Topology("star", n, tuple((0, i) for i in range(1, n)))


def _full(n: int | None, seed: int, params: Mapping[str, Any]) -> Topology:
    known_keys("topology", params, (), "full")
    n = _need_n("full", n, 2)
    return Topology("full", n, tuple((i, j) for i in range(n) for j in range(i + 1, n)))


def torus_shape(n: int) -> tuple[int, int] | None:
    """The most square ``(rows, cols)`` with ``rows * cols == n`` and both >= 3, or None."""
    for rows in range(math.isqrt(n), 2, -1):
        if n % rows == 0 and n // rows >= 3:
            return rows, n // rows
    return None


def torus_edges(rows: int, cols: int) -> tuple[tuple[int, int], ...]:
    """Edges of the ``rows x cols`` wrap-around grid; node ``r * cols + c`` sits at (r, c)."""
    edges = set()
    for r in range(rows):
        for c in range(cols):
            me = r * cols + c
            for other in (r * cols + (c + 1) % cols, ((r + 1) % rows) * cols + c):
                edges.add((min(me, other), max(me, other)))
    return tuple(sorted(edges))


def _torus(n: int | None, seed: int, params: Mapping[str, Any]) -> Topology:
    known_keys("topology", params, ("rows", "cols"), "torus")
    why = "an integer >= 3 (a smaller side would repeat edges when wrapping around)"
    rows = params.get("rows")
    cols = params.get("cols")
    if rows is not None:
        rows = integer("topology.rows", rows, 3, None, allowed=why)
    if cols is not None:
        cols = integer("topology.cols", cols, 3, None, allowed=why)
    if n is None and rows is not None and cols is not None:
        n = rows * cols
    n = _need_n("torus", n, 9)
    if rows is None and cols is None:
        shape = torus_shape(n)
        if shape is None:
            raise ConfigError(
                "nodes",
                n,
                "a torus needs nodes = rows * cols with rows, cols >= 3 (e.g. 9, 12, 16, 20, "
                f"25); {n} has no such factorisation",
            )
        rows, cols = shape
    elif rows is None:
        assert cols is not None
        rows = n // cols
    elif cols is None:
        cols = n // rows
    if rows * cols != n or rows < 3 or cols < 3:
        raise ConfigError(
            "topology.rows",
            rows,
            f"rows * cols must equal nodes = {n} with both >= 3 (cols = {cols})",
        )
    return Topology("torus", n, torus_edges(rows, cols))


def _random_regular(n: int | None, seed: int, params: Mapping[str, Any]) -> Topology:
    known_keys("topology", params, ("degree",), "random-regular")
    n = _need_n("random-regular", n, 2)
    degree = params.get("degree", min(3, n - 1))
    degree = integer("topology.degree", degree, 1, n - 1, allowed=f"an integer in 1..{n - 1}")
    if (n * degree) % 2:
        raise ConfigError(
            "topology.degree", degree, f"nodes * degree must be even (nodes = {n}); pick another"
        )
    for attempt, s in enumerate(_seeds(seed)):
        g = nx.random_regular_graph(degree, n, seed=s)
        if nx.is_connected(g):
            return Topology("random-regular", n, tuple(g.edges()))
        logger.debug("random-regular n=%d degree=%d attempt %d disconnected", n, degree, attempt)
    raise TopologyError(
        "topology.degree",
        degree,
        f"no connected {degree}-regular graph on {n} nodes in {_MAX_ATTEMPTS} samples; "
        "use degree >= 3",
    )


def _erdos_renyi(n: int | None, seed: int, params: Mapping[str, Any]) -> Topology:
    known_keys("topology", params, ("p",), "erdos-renyi")
    n = _need_n("erdos-renyi", n, 2)
    p = params.get("p", min(1.0, max(0.0, 2.0 * math.log(n) / n)))
    p = real("topology.p", p, 0.0, 1.0, allowed="an edge probability in [0, 1]")
    for attempt, s in enumerate(_seeds(seed)):
        g = nx.gnp_random_graph(n, p, seed=s)
        if nx.is_connected(g):
            return Topology("erdos-renyi", n, tuple(g.edges()))
        logger.debug("erdos-renyi n=%d p=%g attempt %d disconnected", n, p, attempt)
    raise TopologyError(
        "topology.p",
        p,
        f"no connected graph in {_MAX_ATTEMPTS} samples; raise p well above "
        f"ln(n)/n = {math.log(n) / n:.3g}",
    )


def _small_world(n: int | None, seed: int, params: Mapping[str, Any]) -> Topology:
    known_keys("topology", params, ("k", "p"), "small-world")
    n = _need_n("small-world", n, 3)
    k = params.get("k", 4 if n >= 5 else 2)
    k = integer("topology.k", k, 2, n - 1, allowed=f"an even integer in 2..{n - 1}")
    if k % 2:
        raise ConfigError("topology.k", k, "an even integer (k/2 ring neighbours on each side)")
    p = real("topology.p", params.get("p", 0.1), 0.0, 1.0, allowed="a rewiring probability in [0, 1]")
    try:
        g = nx.connected_watts_strogatz_graph(n, k, p, tries=_MAX_ATTEMPTS, seed=seed)
    except nx.NetworkXError as exc:
        raise TopologyError(
            "topology.p", p, f"no connected small-world graph in {_MAX_ATTEMPTS} tries ({exc})"
        ) from exc
    return Topology("small-world", n, tuple(g.edges()))


_GENERATORS: dict[str, Callable[[int | None, int, Mapping[str, Any]], Topology]] = {
    "ring": _ring,
    "line": _line,
    "star": _star,
    "full": _full,
    "torus": _torus,
    "random-regular": _random_regular,
    "erdos-renyi": _erdos_renyi,
    "small-world": _small_world,
}


def _canonical_name(spec: str) -> str | None:
    key = spec.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    return key if key in _GENERATORS else None


def _check_seed(seed: Any) -> int:
    return integer("seed", seed, 0, None, allowed="a non-negative integer")


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


def build_topology(
    spec: str | os.PathLike[str], n: int | None = None, *, seed: int = 0, **params: Any
) -> Topology:
    """Build a topology from a built-in name or a TOML file.

    Parameters
    ----------
    spec
        A name from :data:`TOPOLOGIES` (case-insensitive, ``_`` accepted for ``-``,
        ``"complete"`` for ``"full"``) or a path to a TOML file: a path object, a string
        ending in ``.toml`` or containing a path separator, or an existing file. A plain
        built-in name always means the generator, even if a file of that name exists. A
        path that does not exist here but names a shipped file (``topologies/torus.toml``,
        ``example-edges.toml``) means that file (:mod:`p2pfl.resources`).
    n
        Number of nodes. Optional when a file gives ``nodes`` (then both must agree) or
        for a torus with both ``rows`` and ``cols``.
    seed
        Seed of the random generators (random-regular, erdos-renyi, small-world); equal
        seeds give equal graphs.
    **params
        Generator parameters: ``rows``/``cols`` (torus), ``degree`` (random-regular),
        ``p`` (erdos-renyi), ``k``/``p`` (small-world). They override a file's
        ``[params]``.

    Raises
    ------
    ConfigError
        Unknown name, missing node count or invalid parameter (the field is
        ``topology.<param>``).
    TopologyError
        The resulting graph is unusable, or a file's ``nodes`` disagrees with ``n``.
    """
    seed = _check_seed(seed)
    if not isinstance(spec, str):
        if isinstance(spec, os.PathLike):
            return from_file(spec, n, seed=seed, **params)
        raise ConfigError("topology", spec, _NAMES_ALLOWED)
    name = _canonical_name(spec)
    if name is not None:
        return _GENERATORS[name](n, seed, params)
    if looks_like_path(spec) or Path(spec).is_file():
        return from_file(locate(spec, TOPOLOGIES_DIR) or spec, n, seed=seed, **params)
    raise ConfigError("topology", spec, _NAMES_ALLOWED)


def from_file(
    path: str | os.PathLike[str], n: int | None = None, *, seed: int = 0, **params: Any
) -> Topology:
    """Read a topology TOML file (a generator reference or an explicit edge list).

    See the module docstring for the format and :func:`build_topology` for the
    arguments. Unknown keys are rejected so that typos fail loudly.
    """
    seed = _check_seed(seed)
    path = Path(path)
    doc = read_toml(path, "topology", "an existing .toml file or " + _NAMES_ALLOWED)

    where = f"topology file {path}"
    for key in doc:
        if key not in _FILE_KEYS:
            raise ConfigError(f"{where}: {key}", doc[key], "allowed keys: " + ", ".join(_FILE_KEYS))
    file_n = doc.get("nodes")
    if file_n is not None:
        file_n = integer(f"{where}: nodes", file_n, 2, None, allowed="an integer >= 2")
        if n is not None and n != file_n:
            raise TopologyError(
                "nodes", n, f"{path} says nodes = {file_n} but {n} nodes were requested"
            )
    n = file_n if file_n is not None else n
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name", name, "a non-empty string")

    has_kind, has_edges = "kind" in doc, "edges" in doc
    if has_kind == has_edges:
        raise ConfigError(
            where, str(path), 'exactly one of kind = "<generator>" or edges = [[i, j], ...]'
        )
    if has_edges:
        extra = dict(doc.get("params", {}), **params)
        if extra:
            key, value = next(iter(extra.items()))
            raise ConfigError(f"topology.{key}", value, "an explicit edge list takes no parameters")
        if n is None:
            raise ConfigError("nodes", None, f"set nodes = <count> in {path} or pass the count")
        return Topology(name, n, doc["edges"])

    kind = doc["kind"]
    canonical = _canonical_name(kind) if isinstance(kind, str) else None
    if canonical is None:
        raise ConfigError(f"{where}: kind", kind, "one of " + ", ".join(TOPOLOGIES))
    file_params = doc.get("params", {})
    if not isinstance(file_params, dict):
        raise ConfigError(f"{where}: params", file_params, "a table, e.g. [params]")
    topo = _GENERATORS[canonical](n, seed, {**file_params, **params})
    return Topology(name, topo.n, topo.edges) if "name" in doc else topo


# --------------------------------------------------------------------------------------
# Adversary placement
# --------------------------------------------------------------------------------------


def place_adversaries(
    topo: Topology, count: int, how: str = "random", *, seed: int = 0
) -> tuple[int, ...]:
    """Choose which nodes are malicious; sorted ids, a pure function of the arguments.

    Parameters
    ----------
    topo
        The graph.
    count
        Number of adversaries, ``0 <= count <= n - 1`` (at least one benign node must
        remain, or there is nobody to attack).
    how
        ``"random"``: a uniform sample. ``"central"``: highest degree first, ties broken
        by closeness centrality (smaller total hop distance to all others), then lowest id;
        ``seed`` is unused. ``"spread"``: greedy farthest-point: start at a node drawn
        from ``seed``, then repeatedly add the node farthest (in hops) from those chosen
        (lowest id on ties), so adversaries cover the graph. ``"clustered"``: a connected
        group, the first ``count`` nodes of a breadth-first search from a node drawn
        from ``seed`` (neighbours in id order); on a ring, two clustered adversaries are
        adjacent.
    seed
        Seed of the random choices.
    """
    n = topo.n
    count = integer("adversaries", count, 0, allowed="a non-negative integer")
    if count > n - 1:
        raise ConfigError(
            "adversaries",
            count,
            f"at most {n - 1} (the number of nodes, {n}, minus one: at least one benign node "
            "must remain)",
        )
    if how not in PLACEMENTS:
        raise ConfigError("placement", how, "one of " + ", ".join(PLACEMENTS))
    seed = _check_seed(seed)
    count = int(count)
    if count == 0:
        return ()
    rng = np.random.default_rng(seed)
    if how == "random":
        return tuple(sorted(int(i) for i in rng.choice(n, size=count, replace=False)))
    if how == "central":
        degrees = topo.degrees()
        # Closeness is (n-1)/sum of hop distances: compare the integer sums, exactly.
        total = [int(topo.hops([i]).sum()) for i in range(n)]
        order = heapq.nsmallest(count, range(n), key=lambda i: (-degrees[i], total[i], i))
        return tuple(sorted(order))
    start = int(rng.integers(n))
    if how == "spread":
        chosen = [start]
        nearest = topo.hops([start])
        while len(chosen) < count:
            best = int(np.argmax(nearest))  # argmax returns the lowest id on ties
            chosen.append(best)
            nearest = np.minimum(nearest, topo.hops([best]))
        return tuple(sorted(chosen))
    # clustered: a BFS ball around the start node
    order = [start]
    seen = {start}
    queue = deque([start])
    while queue and len(order) < count:
        for j in topo.neighbours(queue.popleft()):
            if j not in seen:
                seen.add(j)
                order.append(j)
                queue.append(j)
    return tuple(sorted(order[:count]))


# --------------------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------------------


def render_text(topo: Topology) -> str:
    """A short human-readable summary and adjacency list (first 64 nodes)."""
    d = topo.describe()
    rows = [
        ("name", d["name"]),
        ("nodes", str(d["n"])),
        ("edges", str(d["edges"])),
        ("degree", f"min {d['degree_min']}, mean {d['degree_mean']:.2f}, max {d['degree_max']}"),
        ("diameter", str(d["diameter"])),
        ("spectral gap", f"{d['spectral_gap']:.4f} (metropolis)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("adjacency:")
    id_width = len(str(topo.n - 1))
    shown = min(topo.n, 64)
    for i in range(shown):
        neighbours = " ".join(str(j) for j in topo.neighbours(i))
        lines.append(f"  {i:>{id_width}}: {neighbours}")
    if topo.n > shown:
        lines.append("  ...")
    return "\n".join(lines)


__all__ = [
    "ALIASES",
    "MIXING_RULES",
    "PLACEMENTS",
    "TOPOLOGIES",
    "Topology",
    "build_topology",
    "from_file",
    "place_adversaries",
    "render_text",
    "torus_edges",
    "torus_shape",
]
