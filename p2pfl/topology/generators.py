"""The built-in graph generators: ring, line, star, full, torus, random-regular,
Erdős–Rényi and small-world (see :func:`p2pfl.topology.build_topology`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import networkx as nx
import numpy as np

from ..errors import ConfigError, TopologyError
from ..validate import integer, known_keys, real
from .graph import Topology

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

_MAX_ATTEMPTS = 100
"""Resampling bound of the random generators before giving up on connectivity."""


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


GENERATORS: dict[str, Callable[[int | None, int, Mapping[str, Any]], Topology]] = {
    "ring": _ring,
    "line": _line,
    "star": _star,
    "full": _full,
    "torus": _torus,
    "random-regular": _random_regular,
    "erdos-renyi": _erdos_renyi,
    "small-world": _small_world,
}


def canonical_name(spec: str) -> str | None:
    key = spec.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    return key if key in GENERATORS else None


def check_seed(seed: Any) -> int:
    return integer("seed", seed, 0, None, allowed="a non-negative integer")


__all__ = ["ALIASES", "GENERATORS", "TOPOLOGIES", "canonical_name", "check_seed", "torus_edges", "torus_shape"]
