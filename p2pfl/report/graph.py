"""Drawing a topology: the graph as a PNG, adversaries highlighted, nodes coloured by a value.

Used by ``p2pfl topology show --png`` and the run plots (``topology.png``); the graph
itself is :mod:`p2pfl.topology`. matplotlib's object API on the Agg canvas (no pyplot
state, no display).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import networkx as nx
import numpy as np

from ..topology import Topology, torus_edges


def _cycle_order(topo: Topology, start: int) -> list[int]:
    """Nodes along a ring or a path starting at ``start``."""
    order = [start]
    prev, cur = -1, start
    while True:
        nxt = [j for j in topo.neighbours(cur) if j != prev and j != start]
        if not nxt or len(order) == topo.n:
            return order
        prev, cur = cur, nxt[0]
        order.append(cur)


def _circle(order: list[int]) -> dict[int, tuple[float, float]]:
    m = len(order)
    return {
        node: (
            math.cos(math.pi / 2 - 2 * math.pi * k / m),
            math.sin(math.pi / 2 - 2 * math.pi * k / m),
        )
        for k, node in enumerate(order)
    }


def _layout(topo: Topology) -> tuple[dict[int, tuple[float, float]], tuple[int, int] | None]:
    """Positions by structure (so a ring read from a file is drawn as a ring too).

    Returns the positions and, for a torus, its ``(rows, cols)`` (wrap edges are then
    drawn as stubs instead of lines across the grid).
    """
    n, m = topo.n, len(topo.edges)
    degrees = topo.degrees()
    if m == n * (n - 1) // 2:
        return _circle(list(range(n))), None
    if n > 2 and degrees.max() == n - 1 and m == n - 1:
        centre = int(np.argmax(degrees))
        pos = _circle([i for i in range(n) if i != centre])
        pos = {i: (0.8 * x, 0.8 * y) for i, (x, y) in pos.items()}
        pos[centre] = (0.0, 0.0)
        return pos, None
    if degrees.min() == degrees.max() == 2:
        return _circle(_cycle_order(topo, 0)), None
    if m == n - 1 and degrees.max() <= 2:
        return _circle(_cycle_order(topo, int(np.argmin(degrees)))), None
    for rows in range(3, n // 3 + 1):
        if n % rows == 0 and n // rows >= 3 and torus_edges(rows, n // rows) == topo.edges:
            cols = n // rows
            return {i: (float(i % cols), float(-(i // cols))) for i in range(n)}, (rows, cols)
    spring = nx.spring_layout(topo.graph(), k=2.0 / math.sqrt(n), iterations=200, seed=0)
    return {i: (float(x), float(y)) for i, (x, y) in spring.items()}, None


_BENIGN = "#9ecae1"


def draw(
    topo: Topology,
    path: str | os.PathLike[str],
    *,
    adversaries: Iterable[int] = (),
    values: Mapping[int, float] | None = None,
    title: str | None = None,
    value_label: str = "value",
) -> Path:
    """Write a PNG picture of the graph and return its path.

    Nodes are labelled with their ids; adversaries are red triangles. With ``values``
    (e.g. the final attack success per node), benign nodes are coloured on a scale with a
    colour bar labelled ``value_label``; nodes without a value are grey. Layout:
    circular for rings, lines and complete graphs, star with the centre in the middle,
    a grid for tori (wrap-around edges drawn as dashed stubs), a seeded spring layout
    otherwise. Uses matplotlib's object API with the Agg canvas, so no global pyplot
    state or display is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    bad = sorted({int(a) for a in adversaries})
    for a in bad:
        topo._check_node(a, "adversaries")
    adversary_set = set(bad)
    pos, grid = _layout(topo)
    n = topo.n

    side = min(14.0, max(5.0, 1.2 * math.sqrt(n)))
    fig = Figure(figsize=(side + (1.2 if values else 0.0), side), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.axis("off")

    straight, stubs = [], []
    for i, j in topo.edges:
        (xi, yi), (xj, yj) = pos[i], pos[j]
        if grid is not None and abs(xi - xj) + abs(yi - yj) > 1.5:
            # wrap-around edge of a torus: a short stub out of each end, pointing away
            dx = 0.0 if xi == xj else math.copysign(0.35, xi - xj)
            dy = 0.0 if yi == yj else math.copysign(0.35, yi - yj)
            stubs += [[(xi, yi), (xi + dx, yi + dy)], [(xj, yj), (xj - dx, yj - dy)]]
        else:
            straight.append([(xi, yi), (xj, yj)])
    edge_width = 1.2 if n <= 50 else 0.6
    ax.add_collection(LineCollection(straight, colors="0.55", linewidths=edge_width, zorder=1))
    if stubs:
        ax.add_collection(
            LineCollection(stubs, colors="0.55", linewidths=edge_width, linestyles="--", zorder=1)
        )

    size = 380 if n <= 30 else max(40, 380 * 30 / n)
    font = 9 if n <= 30 else max(5, int(9 * math.sqrt(30 / n)))
    benign = [i for i in range(n) if i not in adversary_set]
    handles = []
    label_colour = {i: "white" if i in adversary_set else "black" for i in range(n)}
    valued = [i for i in benign if values is not None and i in values]
    plain = [i for i in benign if i not in set(valued)]
    if plain:
        ax.scatter(
            [pos[i][0] for i in plain],
            [pos[i][1] for i in plain],
            s=size,
            c="0.85" if values is not None else _BENIGN,
            edgecolors="black",
            linewidths=0.8,
            zorder=2,
        )
        label = "benign (no value)" if values is not None else "benign"
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                ms=9,
                markeredgecolor="black",
                markerfacecolor="0.85" if values is not None else _BENIGN,
                label=label,
            )
        )
    if valued:
        assert values is not None
        data = [float(values[i]) for i in valued]
        vmin, vmax = min(data), max(data)
        if 0.0 <= vmin and vmax <= 1.0:
            vmin, vmax = 0.0, 1.0  # shares (accuracy, attack success) on their natural scale
        scatter = ax.scatter(
            [pos[i][0] for i in valued],
            [pos[i][1] for i in valued],
            s=size,
            c=data,
            cmap="viridis",
            vmin=vmin,
            vmax=vmax if vmax > vmin else vmin + 1.0,
            edgecolors="black",
            linewidths=0.8,
            zorder=2,
        )
        fig.colorbar(scatter, ax=ax, fraction=0.046, pad=0.04, label=value_label)
        for i, rgba in zip(valued, scatter.to_rgba(np.asarray(data)), strict=True):
            # white ids on dark fills (relative luminance, ITU-R BT.709 weights)
            dark = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2] < 0.45
            label_colour[i] = "white" if dark else "black"
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                ms=9,
                markeredgecolor="black",
                markerfacecolor="tab:green",
                label=f"benign (colour: {value_label})",
            )
        )
    if bad:
        ax.scatter(
            [pos[i][0] for i in bad],
            [pos[i][1] for i in bad],
            s=size * 1.3,
            c="tab:red",
            marker="^",
            edgecolors="black",
            linewidths=0.8,
            zorder=3,
        )
        handles.append(
            Line2D(
                [],
                [],
                marker="^",
                ls="",
                ms=10,
                markeredgecolor="black",
                markerfacecolor="tab:red",
                label="adversary",
            )
        )
    for i in range(n):
        ax.annotate(
            str(i), pos[i], ha="center", va="center", fontsize=font, color=label_colour[i], zorder=4
        )

    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    pad = 0.6 if grid is not None else 0.15
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_title(title if title is not None else f"{topo.name}: {n} nodes, {len(topo.edges)} edges")
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.0, -0.01),
        ncol=3,
        frameon=False,
        fontsize=8,
    )
    out = Path(path)
    fig.savefig(out, format="png", bbox_inches="tight")
    return out


__all__ = ["draw"]
