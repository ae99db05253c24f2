"""Tests of p2pfl.attacks.adaptive: dissensus, min-max / min-sum and the adaptive attacker against topk-clip."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from p2pfl.attacks import ATTACKS, build_attack, check_params
from p2pfl.attacks.adaptive import (
    Adaptive,
    Dissensus,
    MinMax,
    MinSum,
    dissensus_model,
    fit_norm,
    gamma_search,
    minmax_update,
    minsum_update,
    shape_update,
)
from p2pfl.behaviour import NodeView
from p2pfl.data import TensorData
from p2pfl.errors import ConfigError
from p2pfl.models import build_model
from p2pfl.topology import build_topology
from p2pfl.train import Trainer, TrainSpec, get_flat

# --------------------------------------------------------------------------- tiny world
# A 3-class problem on 4 features and an MLP of 515 parameters (as tests/test_attacks.py).


def tiny_data(n: int = 30, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).to(torch.int64) + (x[:, 1] > 0.5).to(torch.int64)
    return TensorData(x, y, 3)


def tiny_trainer() -> Trainer:
    return Trainer(build_model("mlp", input_shape=(4,), classes=3, seed=0),
                   TrainSpec(epochs=1, batch_size=5, lr=1e-2), seed=0)


class Graph:
    """A hand-built undirected graph with the one method the attacks use."""

    def __init__(self, n: int, edges: list[tuple[int, int]]) -> None:
        self.adj = {i: tuple(sorted({b for a, b in edges if a == i} | {a for a, b in edges if b == i}))
                    for i in range(n)}

    def neighbours(self, i: int) -> tuple[int, ...]:
        return self.adj[i]


def plan_for(topology, weights: np.ndarray | None = None, adversaries: tuple[int, ...] = (0,)) -> SimpleNamespace:
    aux = TensorData(tiny_data(2, seed=7).x, torch.tensor([2, 2]), 3)
    if weights is None:
        weights = topology.mixing()
    return SimpleNamespace(topology=topology, weights=weights, adversaries=adversaries, aux=aux,
                           test=tiny_data(40, seed=3), exp_id="tiny")


def view(x: np.ndarray, plan: SimpleNamespace, *, node: int = 0, round_: int = 1,
         public: dict[int, np.ndarray] | None = None) -> NodeView:
    nbrs = tuple(plan.topology.neighbours(node))
    x = np.asarray(x, dtype=np.float32)
    return NodeView(
        node=node, round=round_, rounds=10, x=x, trainer=tiny_trainer(), data=tiny_data(), neighbours=nbrs,
        weights={j: float(plan.weights[node, j]) for j in nbrs},
        public=public or {j: x.copy() for j in nbrs}, public_round={j: round_ - 1 for j in nbrs},
        last_deltas={}, announced={j: x.copy() for j in nbrs}, seed=0, epochs=1,
    )


@pytest.fixture
def x0() -> np.ndarray:
    return get_flat(build_model("mlp", input_shape=(4,), classes=3, seed=0))


# --------------------------------------------------------------------------- dissensus


def test_dissensus_formula_on_a_hand_made_case():
    out = dissensus_model(np.array([1.0, 1.0]), {2: np.array([3.0, 1.0]), 3: np.array([1.0, 5.0])},
                          {2: 0.25, 3: 0.25}, 0.5, 1.0)
    np.testing.assert_allclose(out, [0.0, -1.0])  # 1 - (0.25 (2, 0) + 0.25 (0, 4)) / 0.5


def test_dissensus_with_eps_one_cancels_the_benign_pull_of_the_target():
    rng = np.random.default_rng(0)
    xi, xk = rng.normal(size=5), {2: rng.normal(size=5), 3: rng.normal(size=5)}
    w = {2: 0.2, 3: 0.3}
    a = dissensus_model(xi, xk, w, 0.25, 1.0).astype(np.float64)
    merged = xi + 0.25 * (a - xi) + sum(w[k] * (xk[k] - xi) for k in xk)
    np.testing.assert_allclose(merged, xi, atol=1e-6)


def test_dissensus_attack_matches_its_formula_on_a_four_node_graph(x0):
    # 0 (adversary) - 1, 0 - 2, 1 - 2, 1 - 3, 2 - 3: node 3 is a neighbour of 1 and 2 that 0 cannot see
    g = Graph(4, [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)])
    w = np.array([[0.5, 0.25, 0.25, 0.0], [0.25, 0.35, 0.2, 0.2], [0.25, 0.2, 0.25, 0.3], [0.0, 0.2, 0.3, 0.5]])
    rng = np.random.default_rng(1)
    public = {1: x0 + rng.normal(0, 0.1, x0.size).astype(np.float32),
              2: x0 + rng.normal(0, 0.1, x0.size).astype(np.float32)}
    atk = build_attack("dissensus", {"eps": 1.5}, plan=plan_for(g, w), node=0)
    assert isinstance(atk, Dissensus)
    out = atk.craft(view(x0, plan_for(g, w), round_=2, public=public))
    x1, x2 = public[1].astype(np.float64), public[2].astype(np.float64)
    xm = x0.astype(np.float64)  # the adversary's own model stands in for the unseen node 3
    want1 = x1 - 1.5 * (0.2 * (x2 - x1) + 0.2 * (xm - x1)) / 0.25
    want2 = x2 - 1.5 * (0.2 * (x1 - x2) + 0.3 * (xm - x2)) / 0.25
    np.testing.assert_allclose(out.announce[1], want1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.announce[2], want2, rtol=1e-5, atol=1e-6)
    assert out.info["eps"] == 1.5 and out.info["seen"] == 2 and out.info["unseen"] == 2
    assert out.info["benign_norm_own"] == 1.0 and "norm_ratio" in out.info  # own model: the honest z


def test_dissensus_divides_by_the_weight_of_all_adversaries_next_to_the_target(x0):
    g = Graph(4, [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)])
    w = np.array([[0.5, 0.25, 0.25, 0.0], [0.25, 0.35, 0.2, 0.2], [0.25, 0.2, 0.25, 0.3], [0.0, 0.2, 0.3, 0.5]])
    plan = plan_for(g, w, adversaries=(0, 3))
    public = {1: x0 + np.float32(0.1), 2: x0 - np.float32(0.1)}
    out = build_attack("dissensus", {}, plan=plan, node=0).craft(view(x0, plan, round_=2, public=public))
    x1, x2 = public[1].astype(np.float64), public[2].astype(np.float64)
    np.testing.assert_allclose(out.announce[1], x1 - 0.2 * (x2 - x1) / (0.25 + 0.2), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- min-max / min-sum

rows_strategy = st.integers(2, 6).flatmap(lambda k: st.integers(1, 8).flatmap(
    lambda d: hnp.arrays(np.float32, (k, d), elements=st.floats(-10, 10, width=32))))


def _sq(a: np.ndarray, b: np.ndarray) -> float:
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(diff @ diff)


@settings(max_examples=80, deadline=None)
@given(rows_strategy, st.sampled_from(["unit", "sign", "std"]), st.floats(0.1, 50))
def test_minmax_keeps_the_max_distance_within_the_benign_max(rows, perturb, gamma_init):
    mal, gamma = minmax_update(rows, perturb, gamma_init)
    k = len(rows)
    benign = max(np.sqrt(_sq(rows[i], rows[j])) for i in range(k) for j in range(k))
    worst = max(np.sqrt(_sq(mal, r)) for r in rows)
    assert gamma >= 0 and mal.dtype == np.float32
    assert worst <= benign + 1e-4 * (1 + benign)
    mu = rows.astype(np.float64).mean(axis=0)
    if 0 < gamma < 1.4 * gamma_init:  # the search ended inside its range: gamma is (nearly) the largest
        p = (mu - mal) / gamma
        beyond = mu - (gamma + 1e-3 * (1 + gamma)) * p
        assert max(np.sqrt(_sq(beyond, r)) for r in rows) > benign


@settings(max_examples=80, deadline=None)
@given(rows_strategy, st.sampled_from(["unit", "sign", "std"]), st.floats(0.1, 50))
def test_minsum_keeps_the_sum_of_squared_distances_within_the_benign_max(rows, perturb, gamma_init):
    mal, gamma = minsum_update(rows, perturb, gamma_init)
    k = len(rows)
    benign = max(sum(_sq(rows[i], rows[j]) for j in range(k)) for i in range(k))
    total = sum(_sq(mal, r) for r in rows)
    assert gamma >= 0
    assert total <= benign + 1e-4 * (1 + benign)


def test_minmax_perturbations_on_a_hand_made_case():
    rows = np.array([[0.0, 0.0], [2.0, 0.0]])  # mu (1, 0), max pairwise distance 2
    for perturb in ("unit", "sign", "std"):  # p = (1, 0) for all three here
        mal, gamma = minmax_update(rows, perturb)
        # ||(1 - gamma, 0) - (2, 0)|| = 1 + gamma <= 2: gamma = 1
        assert gamma == pytest.approx(1.0, abs=1e-4)
        np.testing.assert_allclose(mal, [0.0, 0.0], atol=1e-4)
    mal, gamma = minsum_update(rows, "unit")
    # (1 - g)^2 + (1 + g)^2 = 2 + 2 g^2 <= 4: gamma = 1
    assert gamma == pytest.approx(1.0, abs=1e-4)


def test_gamma_search_returns_zero_when_nothing_qualifies_and_stops():
    calls = []

    def never(g: float) -> bool:
        calls.append(g)
        return False

    assert gamma_search(never, 10.0) == 0.0 and len(calls) < 40
    assert gamma_search(lambda g: g <= 3.0, 10.0) == pytest.approx(3.0, abs=1e-4)


def test_minmax_and_minsum_attacks_use_own_and_neighbour_updates(x0):
    topo = build_topology("full", 4)
    plan = plan_for(topo)
    for name, cls in (("minmax", MinMax), ("minsum", MinSum)):
        atk = build_attack(name, {"perturb": "unit"}, plan=plan, node=0)
        assert isinstance(atk, cls)
        atk.craft(view(x0, plan, round_=1))
        public = {1: x0 + np.float32(0.01), 2: x0 - np.float32(0.01), 3: x0.copy()}
        out = atk.craft(view(x0, plan, round_=2, public=public))
        assert out.info["rows"] == 4.0 and out.info["gamma"] > 0
        assert out.info["benign_norm_own"] == 1.0 and out.info["norm_ratio"] > 0


# --------------------------------------------------------------------------- adaptive


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, 40, elements=st.floats(-1, 1, allow_subnormal=False)),
       hnp.arrays(np.float64, 40, elements=st.floats(-1, 1, allow_subnormal=False)),
       st.floats(0.0, 1.0), st.floats(1e-3, 10), st.integers(1, 40), st.integers(1, 40))
def test_shape_update_spends_the_radius_on_at_most_s_coordinates_of_the_expected_top_k(mal, agg, w, radius, k, s):
    u, keep = shape_update(mal, agg, w, radius, k, s)
    assert np.count_nonzero(u) <= min(s, k)
    assert set(np.flatnonzero(u)) <= set(keep.tolist())
    if np.count_nonzero(u):
        assert np.linalg.norm(u) == pytest.approx(radius, rel=1e-9)
        np.testing.assert_array_equal(np.sign(u[keep]), np.sign(mal[keep]))  # the malicious direction, rescaled
        unit = mal / np.abs(mal).max()  # as shape_update does: tiny values' squares underflow
        v = unit * radius / np.linalg.norm(unit)
        score = np.abs(agg + w * v)
        assert score[keep].min() >= np.sort(score)[-k] - 1e-12  # every kept coordinate is in the top k


def test_fit_norm_holds_the_bound_after_float32_rounding():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 5, 1000).astype(np.float32)
    u = np.zeros(1000)
    u[:30] = rng.normal(size=30)
    u *= 1e-4 / np.linalg.norm(u)  # tiny next to x: rounding matters
    a = fit_norm(x, u, 1e-4)
    assert np.linalg.norm(a.astype(np.float64) - x) <= 1e-4
    assert np.count_nonzero(a != x) <= 30


def test_tau_hat_is_the_median_of_the_votes_the_receiver_counts():
    plan = plan_for(build_topology("full", 4))
    atk = build_attack("adaptive", {}, plan=plan, node=0)
    ups = {1: np.full(4, 0.5), 2: np.full(4, 1.0), 3: np.full(4, 2.0)}  # norms 1, 2, 4
    # receiver 1 counts 0 (own = 3), 2 (2), 3 (4) and its own update (3): median of 3, 3, 2, 4
    assert atk.estimate_tau(1, ups, 3.0) == 3.0
    ring = plan_for(build_topology("ring", 6))
    atk = build_attack("adaptive", {}, plan=ring, node=0)
    # receiver 1's other neighbour 2 is unseen: it votes like 1 (||d_1|| = 1); 0 and 1 vote 3
    assert atk.estimate_tau(1, {1: np.full(4, 0.5), 5: np.full(4, 2.0)}, 3.0) == 3.0
    assert build_attack("adaptive", {"tau": 0.2}, plan=ring, node=0).estimate_tau(1, {}, 3.0) == 0.2


def test_estimated_aggregate_is_the_consensus_pull_of_the_receivers_neighbours():
    plan = plan_for(build_topology("full", 4))
    atk = build_attack("adaptive", {}, plan=plan, node=0)
    rng = np.random.default_rng(0)
    ups = {j: rng.normal(size=6) for j in (1, 2, 3)}
    g = rng.normal(size=6).astype(np.float32)
    w = plan.weights
    want = w[1, 0] * g + w[1, 2] * ups[2] + w[1, 3] * ups[3] - (w[1, 0] + w[1, 2] + w[1, 3]) * ups[1]
    np.testing.assert_allclose(atk.estimate_aggregate(1, ups, g), want, rtol=1e-6)
    assert not atk.estimate_aggregate(1, {}, g).any()  # round 1: nothing to estimate from


@pytest.mark.parametrize(("topology", "n", "params"), [
    ("full", 4, {}),
    ("full", 4, {"budget": 2.0, "support": 0.02, "kappa": 0.05}),
    ("ring", 6, {"tau": 0.05, "budget": 0.5}),
    ("ring", 6, {"kappa": 0.5, "support": 0.3}),
])
def test_adaptive_announces_within_tau_hat_and_its_coordinate_budget(x0, topology, n, params):
    plan = plan_for(build_topology(topology, n))
    atk = build_attack("adaptive", params, plan=plan, node=0)
    assert isinstance(atk, Adaptive)
    budget, support = params.get("budget", 1.0), params.get("support", params.get("kappa", 0.1))
    coords = atk.coordinates(support, x0.size)
    nbrs = plan.topology.neighbours(0)
    rng = np.random.default_rng(2)
    for rnd in (1, 2):
        public = {j: x0 + rng.normal(0, 0.02, x0.size).astype(np.float32) for j in nbrs}
        out = atk.craft(view(x0, plan, round_=rnd, public=public))
        assert set(out.announce) == set(nbrs)
        for j, a in out.announce.items():
            update = a.astype(np.float64) - x0
            assert np.linalg.norm(update) <= atk.tau_hat[j] * budget * (1 + 1e-6)
            assert 0 < np.count_nonzero(update) <= coords
        if "tau" in params:
            assert all(t == params["tau"] for t in atk.tau_hat.values())
        assert out.info["support"] <= coords / x0.size
        assert out.info["tau_hat"] > 0 and out.info["coords"] == coords and 0 < out.info["kept"] <= 1
        assert out.info["benign_norm_own"] == 1.0 and out.info["norm_ratio"] > 0
    np.testing.assert_array_equal(out.own, atk.honest(view(x0, plan, round_=2)))  # it keeps the honest z
    accs = [tiny_trainer().evaluate(a, plan.test).accuracy for a in out.announce.values()]
    assert out.info["announced_acc"] == pytest.approx(np.mean(accs))  # the announced models, not its own


def test_adaptive_trains_the_backdoor_in_one_method(x0, monkeypatch):
    plan = plan_for(build_topology("full", 4))
    atk = build_attack("adaptive", {"support": 0.01}, plan=plan, node=0)
    target = x0.copy()
    target[:5] += np.float32(1.0)  # the "backdoor" lives on coordinates 0..4
    monkeypatch.setattr(Adaptive, "poisoned_model", lambda self, v: target.copy())
    out = atk.craft(view(x0, plan, round_=1))
    for a in out.announce.values():
        assert 0 < np.count_nonzero(a != x0) and set(np.flatnonzero(a != x0)) <= set(range(5))


# --------------------------------------------------------------------------- parameters


def test_the_attacks_are_registered_with_their_parameters():
    assert {"dissensus", "minmax", "minsum", "adaptive"} <= set(ATTACKS)
    assert check_params("adaptive", {"tau": "auto", "kappa": 0.05, "budget": 2, "support": 0.01}) == \
        {"tau": "auto", "kappa": 0.05, "budget": 2.0, "support": 0.01}
    assert check_params("minmax", {"perturb": "sign", "gamma_init": 5}) == {"perturb": "sign", "gamma_init": 5.0}


@pytest.mark.parametrize(("name", "params", "field", "allowed"), [
    ("minmax", {"perturb": "gauss"}, "attack.perturb", "unit, sign, std"),
    ("minsum", {"gamma_init": 0}, "attack.gamma_init", "> 0"),
    ("minsum", {"lam": 2.0}, "attack.lam", "known"),
    ("dissensus", {"eps": 0.0}, "attack.eps", "> 0"),
    ("dissensus", {"equivocate": True}, "attack.equivocate", "known"),
    ("adaptive", {"kappa": 0}, "attack.kappa", "a number in (0, 1]"),
    ("adaptive", {"kappa": 1.5}, "attack.kappa", "a number in (0, 1]"),
    ("adaptive", {"support": True}, "attack.support", "a number in (0, 1]"),
    ("adaptive", {"tau": "median"}, "attack.tau", '"auto"'),
    ("adaptive", {"tau": -1.0}, "attack.tau", '"auto"'),
    ("adaptive", {"budget": float("inf")}, "attack.budget", "> 0"),
])
def test_invalid_parameters_name_the_field_and_what_is_allowed(name, params, field, allowed):
    with pytest.raises(ConfigError) as err:
        build_attack(name, params, plan=plan_for(build_topology("full", 4)), node=0)
    assert err.value.field == field
    assert allowed in str(err.value)


def test_adaptive_needs_an_aux_set():
    plan = plan_for(build_topology("full", 4))
    plan.aux = None
    with pytest.raises(ConfigError):
        build_attack("adaptive", {}, plan=plan, node=0)
    build_attack("minmax", {}, plan=plan, node=0)


# --------------------------------------------------------------------------- a real run


def test_adaptive_against_topk_clip_in_a_real_ring_run(make_config):
    """Ring of 6, one adaptive adversary, topk-clip, 2 rounds on tiny data."""
    from p2pfl.launch import run

    cfg = make_config(**{"topology": "ring", "nodes": 6, "rounds": 2, "adversaries": 1,
                         "attack.name": "adaptive", "defence.name": "topk-clip"})
    result = run(cfg)
    adv = [r for r in result.records if r.get("role", "benign") != "benign"]
    assert len(adv) == 2 and all(r["attack"]["active"] == 1.0 for r in adv)
    for r in adv:
        a = r["attack"]
        assert a["tau_hat"] > 0 and 0 < a["support"] <= 0.1 + 1e-9 and a["norm_ratio"] > 0
        assert a["update_norm"] <= a["tau_hat_max"] * (1 + 1e-6)  # budget 1
    assert "norm_ratio_mean" in result.summary["stealth"]
    assert 0.0 < result.summary["final"]["accuracy_mean"] <= 1.0
