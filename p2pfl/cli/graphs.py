"""``p2pfl topology show``: a graph's degrees, diameter and spectral gap, and a drawing."""

from __future__ import annotations

import click

from ..config import parse_assignments
from ..report.graph import draw
from ..topology import build_topology, place_adversaries, render_text


@click.group()
def topology() -> None:
    """Inspect topologies."""


@topology.command("show")
@click.argument("name")
@click.option("--nodes", type=int, default=None)
@click.option("--seed", type=int, default=0)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Generator parameter, e.g. k=4.")
@click.option("--adversaries", type=int, default=0)
@click.option("--placement", default="random")
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="Also draw the graph to this PNG.")
def topology_show(name: str, nodes: int | None, seed: int, sets: tuple[str, ...], adversaries: int,
                  placement: str, png: str | None) -> None:
    """Print a topology (degrees, diameter, spectral gap) and optionally draw it."""
    params = parse_assignments(sets, example="k=4 or p=0.2")
    topo = build_topology(name, nodes, seed=seed, **params)
    advs = place_adversaries(topo, adversaries, placement, seed=seed) if adversaries else ()
    click.echo(render_text(topo))
    if advs:
        click.echo(f"adversaries ({placement}): {', '.join(map(str, advs))}")
    if png:
        path = draw(topo, png, adversaries=advs, title=f"{topo.name} ({topo.n} nodes)")
        click.echo(f"wrote {path}")


__all__ = ["topology"]
