"""Tests of p2pfl.topology (generators, files, validation, mixing weights, placement) and of
drawing a graph (p2pfl.report.graph)."""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.errors import ConfigError, TopologyError
from p2pfl.report.graph import draw
from p2pfl.topology import (
    MIXING_RULES,
    PLACEMENTS,
    TOPOLOGIES,
    Topology,
    build_topology,
    place_adversaries,
    render_text,
)

TOPOLOGY_DIR = Path(__file__).resolve().parent.parent / "p2pfl" / "topologies"
RANDOM_KINDS = ("random-regular", "erdos-renyi", "small-world")


@st.composite
def connected_graphs(draw_: st.DrawFn, max_nodes: int = 16) -> Topology:
    """A random spanning tree (so the graph is connected) plus random extra edges."""
    n = draw_(st.integers(2, max_nodes))
    edges = [(draw_(st.integers(0, i - 1)), i) for i in range(1, n)]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges += draw_(st.lists(st.sampled_from(pairs), max_size=3 * n))
    return Topology("random", n, tuple(edges))


# -- generators -------------------------------------------------------------------------


def test_ring_of_ten_has_degree_two_and_ten_edges() -> None:
    topo = build_topology("ring", 10)

    assert len(topo.edges) == 10
    assert all(topo.degree(i) == 2 for i in range(10))
    assert topo.neighbours(0) == (1, 9)
    assert topo.diameter() == 5


def test_line_has_two_ends() -> None:
    topo = build_topology("line", 6)

    assert len(topo.edges) == 5
    assert sorted(topo.degree(i) for i in range(6)) == [1, 1, 2, 2, 2, 2]
    assert topo.diameter() == 5


def test_star_centre_is_node_zero() -> None:
    topo = build_topology("star", 7)

    assert topo.degree(0) == 6
    assert all(topo.neighbours(i) == (0,) for i in range(1, 7))


@pytest.mark.parametrize("name", ["full", "complete", "FULL"])
@pytest.mark.parametrize("n", [2, 5, 10])
def test_full_graph_has_all_pairs(name: str, n: int) -> None:
    topo = build_topology(name, n)

    assert topo.name == "full"
    assert len(topo.edges) == n * (n - 1) // 2
    assert topo.diameter() == 1


def test_torus_four_by_four_is_four_regular() -> None:
    topo = build_topology("torus", 16)

    assert len(topo.edges) == 32
    assert all(topo.degree(i) == 4 for i in range(16))
    assert topo.neighbours(0) == (1, 3, 4, 12)


def test_torus_shape_from_params_and_default_factorisation() -> None:
    wide = build_topology("torus", rows=3, cols=5)
    default = build_topology("torus", 12)

    assert wide.n == 15
    assert wide.neighbours(0) == (1, 4, 5, 10)
    assert default.neighbours(0) == (1, 3, 4, 8)  # 3 x 4


def test_torus_without_factorisation_is_rejected() -> None:
    with pytest.raises(ConfigError, match="rows, cols >= 3") as info:
        build_topology("torus", 14)

    assert info.value.field == "nodes"


def test_random_regular_is_regular() -> None:
    topo = build_topology("random-regular", 12, degree=4)

    assert all(topo.degree(i) == 4 for i in range(12))
    assert len(topo.edges) == 24


def test_small_world_keeps_mean_degree_k() -> None:
    topo = build_topology("small-world", 20, k=4, p=0.2)

    assert len(topo.edges) == 40  # rewiring moves edges, it never adds or removes them


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_random_generators_are_deterministic_from_seed(kind: str) -> None:
    first = build_topology(kind, 20, seed=7)
    again = build_topology(kind, 20, seed=7)
    others = {build_topology(kind, 20, seed=s).edges for s in range(1, 6)}

    assert first == again
    assert len(others | {first.edges}) > 1


@pytest.mark.parametrize("kind", RANDOM_KINDS)
@pytest.mark.parametrize("seed", range(10))
def test_random_generators_are_connected(kind: str, seed: int) -> None:
    topo = build_topology(kind, 12, seed=seed)

    assert nx.is_connected(topo.graph())
    assert (topo.hops([0]) >= 0).all()


def test_sparse_random_regular_resamples_until_connected() -> None:
    # 2-regular graphs are unions of cycles: many samples are disconnected
    topos = [build_topology("random-regular", 12, seed=s, degree=2) for s in range(10)]

    assert all(nx.is_connected(t.graph()) for t in topos)


@pytest.mark.parametrize(
    ("kind", "n", "params", "field"),
    [
        ("ring", 2, {}, "nodes"),
        ("line", 1, {}, "nodes"),
        ("ring", 5, {"degree": 3}, "topology.degree"),
        ("random-regular", 7, {"degree": 3}, "topology.degree"),
        ("random-regular", 6, {"degree": 6}, "topology.degree"),
        ("erdos-renyi", 10, {"p": 1.5}, "topology.p"),
        ("erdos-renyi", 10, {"p": "high"}, "topology.p"),
        ("small-world", 10, {"k": 3}, "topology.k"),
        ("small-world", 10, {"p": -0.1}, "topology.p"),
        ("torus", 16, {"rows": 2}, "topology.rows"),
        ("torus", 16, {"rows": 3, "cols": 5}, "topology.rows"),
    ],
)
def test_bad_generator_params_name_the_field(
    kind: str, n: int, params: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_topology(kind, n, **params)

    assert info.value.field == field
    assert field in str(info.value)


def test_erdos_renyi_that_cannot_connect_raises_topology_error() -> None:
    with pytest.raises(TopologyError, match="no connected graph"):
        build_topology("erdos-renyi", 30, p=0.01)


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        build_topology("rnig", 10)

    assert info.value.field == "topology"
    assert "'rnig'" in str(info.value)
    assert all(name in str(info.value) for name in TOPOLOGIES)


def test_generator_without_node_count_asks_for_nodes() -> None:
    with pytest.raises(ConfigError) as info:
        build_topology("ring")

    assert info.value.field == "nodes"


# -- validation ---------------------------------------------------------------------------


def test_edges_are_normalised_and_deduplicated() -> None:
    topo = Topology("t", 3, ((1, 0), (0, 1), (2, 1), (1, 2)))

    assert topo.edges == ((0, 1), (1, 2))


def test_self_loop_is_rejected_with_its_node() -> None:
    with pytest.raises(TopologyError, match="self-loop") as info:
        Topology("t", 3, ((0, 1), (1, 2), (2, 2)))

    assert "2" in info.value.allowed


def test_unknown_node_ids_are_listed() -> None:
    with pytest.raises(TopologyError, match="unknown node ids 5, 7"):
        Topology("t", 3, ((0, 1), (1, 2), (2, 5), (0, 7)))


def test_disconnected_graph_names_components_and_smallest() -> None:
    with pytest.raises(TopologyError) as info:
        Topology("t", 6, ((0, 1), (1, 2), (2, 3), (4, 5)))

    message = str(info.value)
    assert "2 components" in message
    assert "4, 5" in message


def test_isolated_nodes_make_the_graph_disconnected() -> None:
    with pytest.raises(TopologyError, match="3 components"):
        Topology("t", 4, ((0, 1),))


def test_single_node_is_rejected() -> None:
    with pytest.raises(TopologyError, match="at least 2"):
        Topology("t", 1, ())


def test_malformed_edge_is_rejected() -> None:
    with pytest.raises(TopologyError, match="pair"):
        Topology("t", 3, ((0, 1, 2),))


def test_unknown_node_queries_are_rejected() -> None:
    topo = build_topology("ring", 5)

    with pytest.raises(TopologyError, match=r"0\.\.4"):
        topo.neighbours(5)
    with pytest.raises(TopologyError):
        topo.hops([9])


# -- files ------------------------------------------------------------------------------


def _topology_files() -> list[Path]:
    return sorted(TOPOLOGY_DIR.glob("*.toml"))


def test_topology_directory_has_the_documented_files() -> None:
    names = {p.stem for p in _topology_files()}

    assert {"ring", "line", "star", "full", "torus", "small-world"} <= names
    assert {"random-regular", "erdos-renyi", "example-edges"} <= names


@pytest.mark.parametrize("path", _topology_files(), ids=lambda p: p.name)
def test_every_topology_file_loads(path: Path) -> None:
    by_path = build_topology(path)
    by_string = build_topology(str(path))

    assert by_path == by_string
    assert nx.is_connected(by_path.graph())


def test_example_edges_is_two_cliques_and_a_bridge() -> None:
    topo = build_topology(TOPOLOGY_DIR / "example-edges.toml")

    assert topo.n == 8
    assert len(topo.edges) == 13
    assert topo.neighbours(3) == (0, 1, 2, 4)


def test_to_toml_round_trips(tmp_path: Path) -> None:
    for topo in (
        build_topology("torus", 12),
        build_topology("small-world", 15, seed=3),
        Topology('odd "name" \\ é', 2, ((0, 1),)),
    ):
        path = tmp_path / "t.toml"
        path.write_text(topo.to_toml(), encoding="utf-8")

        assert build_topology(path) == topo


def test_generator_reference_file_takes_caller_node_count(tmp_path: Path) -> None:
    path = tmp_path / "ref.toml"
    path.write_text('kind = "small-world"\n[params]\nk = 2\n')

    topo = build_topology(path, 9, seed=1)

    assert topo.n == 9
    assert len(topo.edges) == 9
    assert topo.name == "small-world"  # a generator reference keeps the kind as its name


def test_file_node_count_mismatch_names_both_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ring.toml"
    path.write_text('kind = "ring"\nnodes = 10\n')

    with pytest.raises(TopologyError, match="nodes = 10 but 12"):
        build_topology(path, 12)


def test_file_without_node_count_asks_for_nodes(tmp_path: Path) -> None:
    path = tmp_path / "edges.toml"
    path.write_text("edges = [[0, 1], [1, 2]]\n")

    with pytest.raises(ConfigError) as info:
        build_topology(path)

    assert info.value.field == "nodes"


def test_file_with_unknown_ids_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("nodes = 3\nedges = [[0, 1], [1, 2], [2, 3]]\n")

    with pytest.raises(TopologyError, match="unknown node ids 3"):
        build_topology(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('kind = "ring"\nnodes = 5\ncolour = "red"\n', "colour"),
        ('kind = "rnig"\nnodes = 5\n', "rnig"),
        ('kind = "ring"\nnodes = 5\nedges = [[0, 1]]\n', "exactly one"),
        ('kind = "ring"\nnodes = 5\n[params]\nk = 2\n', "topology.k"),
        ("nodes = = 5\n", "valid TOML"),
    ],
)
def test_bad_files_are_rejected(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=match):
        build_topology(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml"):
        build_topology(str(tmp_path / "nope.toml"))


# -- mixing weights ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(connected_graphs())
def test_metropolis_is_symmetric_doubly_stochastic(topo: Topology) -> None:
    w = topo.mixing("metropolis")

    assert w.shape == (topo.n, topo.n)
    assert w.dtype == np.float64
    np.testing.assert_allclose(w, w.T, atol=0)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert (w >= 0).all()
    assert (np.diag(w) > 0).all()


@settings(max_examples=60, deadline=None)
@given(connected_graphs())
def test_weights_are_zero_off_the_graph(topo: Topology) -> None:
    adjacency = nx.to_numpy_array(topo.graph(), nodelist=range(topo.n)) + np.eye(topo.n)

    for rule in MIXING_RULES:
        assert ((topo.mixing(rule) > 0) == (adjacency > 0)).all()


@settings(max_examples=60, deadline=None)
@given(connected_graphs())
def test_uniform_rows_sum_to_one(topo: Topology) -> None:
    w = topo.mixing("uniform")

    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    for i in range(topo.n):
        assert w[i, i] == pytest.approx(1.0 / (topo.degree(i) + 1))


@settings(max_examples=60, deadline=None)
@given(connected_graphs(), st.sampled_from(MIXING_RULES))
def test_spectral_gap_is_in_unit_interval_for_connected_graphs(topo: Topology, rule: str) -> None:
    gap = topo.spectral_gap(rule)

    assert 0.0 < gap <= 1.0


def test_metropolis_weights_on_a_star() -> None:
    w = build_topology("star", 4).mixing()

    assert w[0, 1] == pytest.approx(1 / 4)  # 1 / (1 + max(3, 1))
    assert w[1, 1] == pytest.approx(3 / 4)
    assert w[0, 0] == pytest.approx(1 / 4)


def test_full_metropolis_is_plain_average() -> None:
    w = build_topology("full", 10).mixing()

    np.testing.assert_allclose(w, np.full((10, 10), 0.1), atol=1e-15)


def test_mixing_returns_a_copy() -> None:
    topo = build_topology("ring", 5)

    topo.mixing()[0, 0] = 99.0

    assert topo.mixing()[0, 0] == pytest.approx(1 / 3)


def test_uniform_is_not_symmetric_on_irregular_graphs() -> None:
    w = build_topology("star", 5).mixing("uniform")

    assert w[0, 1] != w[1, 0]


def test_ring_mixes_slower_than_full_graph() -> None:
    ring = build_topology("ring", 10)
    full = build_topology("full", 10)

    assert ring.spectral_gap() < full.spectral_gap()
    assert full.spectral_gap() == pytest.approx(1.0)


def test_unknown_mixing_rule_is_rejected() -> None:
    topo = build_topology("ring", 5)

    with pytest.raises(ConfigError) as info:
        topo.mixing("average")

    assert info.value.field == "mixing"
    assert "metropolis" in str(info.value)


# -- distances and summaries ------------------------------------------------------------


def test_hops_on_a_ring() -> None:
    topo = build_topology("ring", 10)

    assert topo.hops([0]).tolist() == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1]
    assert topo.hops([0, 5]).tolist() == [0, 1, 2, 2, 1, 0, 1, 2, 2, 1]
    assert topo.hops([]).tolist() == [-1] * 10


def test_describe_and_render_text() -> None:
    topo = build_topology("torus", 16)

    summary = topo.describe()
    text = render_text(topo)

    assert summary["edges"] == 32
    assert summary["degree_min"] == summary["degree_max"] == 4
    assert summary["diameter"] == 4
    assert summary["spectral_gap"] == pytest.approx(topo.spectral_gap())
    assert "torus" in text
    assert "0: 1 3 4 12" in text


def test_render_text_truncates_big_graphs() -> None:
    text = render_text(build_topology("ring", 100))

    assert text.rstrip().endswith("...")
    assert "63: 62 64" in text
    assert "64: " not in text


# -- adversary placement ----------------------------------------------------------------


@pytest.mark.parametrize("how", PLACEMENTS)
def test_placement_is_reproducible_sorted_and_sized(how: str) -> None:
    topo = build_topology("small-world", 20, seed=1)

    first = place_adversaries(topo, 4, how, seed=3)
    again = place_adversaries(topo, 4, how, seed=3)

    assert first == again
    assert list(first) == sorted(set(first))
    assert len(first) == 4
    assert all(0 <= i < 20 for i in first)


def test_random_placement_depends_on_seed() -> None:
    topo = build_topology("ring", 30)

    picks = {place_adversaries(topo, 3, "random", seed=s) for s in range(5)}

    assert len(picks) > 1


@pytest.mark.parametrize("count", [-1, 10, 11])
def test_placement_count_bounds(count: int) -> None:
    topo = build_topology("ring", 10)

    with pytest.raises(ConfigError) as info:
        place_adversaries(topo, count)

    assert info.value.field == "adversaries"


def test_placement_allows_all_but_one_node_and_none() -> None:
    topo = build_topology("ring", 10)

    assert len(place_adversaries(topo, 9, "spread")) == 9
    assert place_adversaries(topo, 0, "clustered") == ()


def test_placement_too_many_says_a_benign_node_must_remain() -> None:
    with pytest.raises(ConfigError, match="benign"):
        place_adversaries(build_topology("ring", 4), 4)


def test_unknown_placement_is_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        place_adversaries(build_topology("ring", 4), 1, "corner")

    assert info.value.field == "placement"


@pytest.mark.parametrize("seed", range(5))
def test_clustered_on_ring_gives_adjacent_pair(seed: int) -> None:
    topo = build_topology("ring", 10)

    a, b = place_adversaries(topo, 2, "clustered", seed=seed)

    assert b in topo.neighbours(a)


@pytest.mark.parametrize("seed", range(5))
def test_clustered_group_is_connected(seed: int) -> None:
    topo = build_topology("erdos-renyi", 25, seed=seed)

    chosen = place_adversaries(topo, 5, "clustered", seed=seed)

    assert nx.is_connected(topo.graph().subgraph(chosen))


def test_central_on_star_is_the_hub() -> None:
    assert place_adversaries(build_topology("star", 8), 1, "central") == (0,)


def test_central_breaks_degree_ties_by_closeness() -> None:
    # line 0-1-2-3-4: nodes 1, 2, 3 have degree 2; 2 is the closest to all others
    assert place_adversaries(build_topology("line", 5), 1, "central") == (2,)


@pytest.mark.parametrize("seed", range(5))
def test_spread_on_ring_picks_opposite_nodes(seed: int) -> None:
    topo = build_topology("ring", 10)

    a, b = place_adversaries(topo, 2, "spread", seed=seed)

    assert topo.hops([a])[b] == 5


# -- drawing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topo",
    [
        build_topology("ring", 8),
        build_topology("star", 6),
        build_topology("torus", 9),
        build_topology("small-world", 12, seed=2),
    ],
    ids=lambda t: t.name,
)
def test_draw_writes_a_png(tmp_path: Path, topo: Topology) -> None:
    adversaries = place_adversaries(topo, 2, "spread")
    values = {i: i / topo.n for i in range(topo.n) if i not in adversaries}

    out = draw(topo, tmp_path / "g.png", adversaries=adversaries, values=values, title="t")

    data = out.read_bytes()
    assert out == tmp_path / "g.png"
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000


def test_draw_rejects_unknown_adversary(tmp_path: Path) -> None:
    with pytest.raises(TopologyError):
        draw(build_topology("ring", 4), tmp_path / "g.png", adversaries=[7])


def test_public_names() -> None:
    assert TOPOLOGIES == (
        "ring",
        "line",
        "star",
        "full",
        "torus",
        "random-regular",
        "erdos-renyi",
        "small-world",
    )
    assert MIXING_RULES == ("metropolis", "uniform")
    assert PLACEMENTS == ("random", "central", "spread", "clustered")
    assert math.isclose(build_topology("ring", 4).spectral_gap("uniform"), 1 - 1 / 3)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["ring", "star", "erdos-renyi", "small-world", "random-regular"]),
       n=st.integers(6, 30), seed=st.integers(0, 1000), rule=st.sampled_from(["metropolis", "uniform"]))
def test_mixing_row_is_the_dense_row_bit_for_bit(kind, n, seed, rule):
    params = {"random-regular": {"degree": 4 if n % 2 == 0 else 2}, "erdos-renyi": {"p": 0.4},
              "small-world": {"k": 4, "p": 0.2}}.get(kind, {})
    topo = build_topology(kind, n, seed=seed, **params)
    dense = topo.mixing(rule)
    for i in range(n):
        row = topo.mixing_row(i, rule)
        assert sorted(row) == list(topo.neighbours(i))
        assert all(row[j] == dense[i, j] for j in row), (i, row)
