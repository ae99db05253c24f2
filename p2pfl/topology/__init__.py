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

The graph class is in :mod:`p2pfl.topology.graph`, the generators in
:mod:`p2pfl.topology.generators`; this module reads names and files, places adversaries and
describes a graph. Drawing is the report's (:mod:`p2pfl.report.graph`).
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from ..config import read_toml
from ..errors import ConfigError, TopologyError
from ..resources import TOPOLOGIES_DIR, locate, looks_like_path
from ..validate import integer
from .generators import (
    ALIASES,
    GENERATORS,
    TOPOLOGIES,
    canonical_name,
    check_seed,
    torus_edges,
    torus_shape,
)
from .graph import MIXING_RULES, Topology

PLACEMENTS: tuple[str, ...] = ("random", "central", "spread", "clustered")

_FILE_KEYS = ("name", "kind", "nodes", "params", "edges")

_NAMES_ALLOWED = (
    "one of "
    + ", ".join(f"{t} (alias complete)" if t == "full" else t for t in TOPOLOGIES)
    + " or a path to a .toml file"
)


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
    seed = check_seed(seed)
    if not isinstance(spec, str):
        if isinstance(spec, os.PathLike):
            return from_file(spec, n, seed=seed, **params)
        raise ConfigError("topology", spec, _NAMES_ALLOWED)
    name = canonical_name(spec)
    if name is not None:
        return GENERATORS[name](n, seed, params)
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
    seed = check_seed(seed)
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
    canonical = canonical_name(kind) if isinstance(kind, str) else None
    if canonical is None:
        raise ConfigError(f"{where}: kind", kind, "one of " + ", ".join(TOPOLOGIES))
    file_params = doc.get("params", {})
    if not isinstance(file_params, dict):
        raise ConfigError(f"{where}: params", file_params, "a table, e.g. [params]")
    topo = GENERATORS[canonical](n, seed, {**file_params, **params})
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
    seed = check_seed(seed)
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
