"""Tests of p2pfl.attacks: each attack's math on a tiny model, parameters, profiles, one real run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from p2pfl.attacks import (
    ATTACKS,
    PARAMS,
    AltMin,
    Boost,
    Collusion,
    Stealth,
    alie_update,
    alie_z,
    boost,
    build_attack,
    check_params,
    distance_gradient,
    distance_penalty,
    ipm_update,
    neighbour_updates,
)
from p2pfl.attacks import base as attack_base
from p2pfl.behaviour import Honest, NodeView
from p2pfl.config import load_role
from p2pfl.data import TensorData
from p2pfl.errors import ConfigError
from p2pfl.models import build_model
from p2pfl.topology import build_topology
from p2pfl.train import Trainer, TrainSpec, get_flat, set_flat

NODES_DIR = Path(__file__).resolve().parent.parent / "p2pfl" / "profiles"

# --------------------------------------------------------------------------- tiny world
# Node 0 is the adversary on a 4-node graph; a 3-class problem on 4 features, an MLP of
# 515 parameters, 30 training rows in batches of 5 (6 steps per epoch).


def tiny_data(n: int = 30, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).to(torch.int64) + (x[:, 1] > 0.5).to(torch.int64)
    return TensorData(x, y, 3)


def tiny_trainer(seed: int = 0) -> Trainer:
    model = build_model("mlp", input_shape=(4,), classes=3, seed=0)
    return Trainer(model, TrainSpec(epochs=1, batch_size=5, lr=1e-2), seed=seed)


def tiny_plan(topology: str = "full", n: int = 4, adversaries: tuple[int, ...] = (0,)) -> SimpleNamespace:
    aux = TensorData(tiny_data(2, seed=7).x, torch.tensor([2, 2]), 3)
    return SimpleNamespace(topology=build_topology(topology, n), adversaries=adversaries, aux=aux,
                           test=tiny_data(40, seed=3), exp_id="tiny")


def view_for(trainer: Trainer, x: np.ndarray, *, round_: int = 1, weights: dict[int, float] | None = None,
             public: dict[int, np.ndarray] | None = None, public_round: dict[int, int] | None = None,
             last_deltas: dict[int, np.ndarray] | None = None, epochs: int = 1) -> NodeView:
    weights = weights or {1: 0.25, 2: 0.25, 3: 0.25}
    nbrs = tuple(sorted(weights))
    pub = np.array(x, dtype=np.float32, copy=True)  # what the neighbours hold as node 0's model
    return NodeView(
        node=0, round=round_, rounds=10, x=np.asarray(x, dtype=np.float32), trainer=trainer,
        data=tiny_data(), neighbours=nbrs, weights=weights,
        public=public or {j: np.asarray(x, np.float32) for j in nbrs},
        public_round=public_round or {j: round_ - 1 for j in nbrs},
        last_deltas=last_deltas or {}, announced={j: pub for j in nbrs}, seed=0, epochs=epochs,
    )


def _flat() -> np.ndarray:
    return get_flat(build_model("mlp", input_shape=(4,), classes=3, seed=0))


@pytest.fixture
def x0() -> np.ndarray:
    return _flat()


def fixed_optimise(w_of_start):
    """An optimise() replacement: records its start point and returns w_of_start(start)."""
    seen: list[np.ndarray] = []

    def optimise(self, view, start):
        seen.append(start.copy())
        return w_of_start(start), {}

    return optimise, seen


# --------------------------------------------------------------------------- pure helpers


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, 16, elements=st.floats(-10, 10, width=32)),
       hnp.arrays(np.float32, 16, elements=st.floats(-10, 10, width=32)),
       st.floats(0.1, 50))
def test_boost_helper_is_base_plus_lambda_times_update(base, w, lam):
    out = boost(base, w, lam)
    assert out.dtype == np.float32
    expected = base.astype(np.float64) + lam * (w.astype(np.float64) - base)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)


def test_distance_term_gradient_points_away_from_reference_and_a_step_pulls_towards_it():
    rng = np.random.default_rng(0)
    w, ref = rng.normal(size=50), rng.normal(size=50)
    g = distance_gradient(w, ref, 0.5)
    np.testing.assert_allclose(g, 0.5 * (w - ref))
    stepped = w - 0.1 * g
    assert np.linalg.norm(stepped - ref) < np.linalg.norm(w - ref)
    assert distance_penalty(stepped, ref, 0.5) < distance_penalty(w, ref, 0.5)
    assert distance_penalty(ref, ref, 0.5) == 0.0


def test_alie_and_ipm_formulas_on_a_hand_made_case():
    rows = np.array([[1.0, 0.0], [3.0, 2.0]])  # mean (2, 1), population std (1, 1)
    np.testing.assert_allclose(alie_update(rows, 1.5), [0.5, -0.5])
    np.testing.assert_allclose(ipm_update(rows, 0.1), [-0.2, -0.1])
    assert alie_z(50, 12) == pytest.approx(0.5828, abs=1e-3)  # Baruch et al.: n = 50, f = 12
    assert alie_z(10, 1) == 0.0


def test_neighbour_updates_skip_colluders_and_stale_copies():
    prev = np.zeros(3, np.float32)
    public = {1: np.ones(3, np.float32), 2: np.full(3, 2, np.float32), 3: np.full(3, 5, np.float32)}
    ups = neighbour_updates(public, {1: 4, 2: 3, 3: 4}, prev, 4, exclude=frozenset({3}))
    assert set(ups) == {1}
    np.testing.assert_array_equal(ups[1], np.ones(3))


def test_collusion_board_pools_posts_of_the_same_round_by_count():
    board = Collusion()
    board.share(5, 0, np.array([1.0, 1.0], np.float32), 1)
    pooled = board.share(5, 1, np.array([4.0, 0.0], np.float32), 3)
    np.testing.assert_allclose(pooled, [3.25, 0.25])
    alone = board.share(6, 0, np.array([2.0, 2.0], np.float32), 1)
    np.testing.assert_allclose(alone, [2.0, 2.0])


# --------------------------------------------------------------------------- boost


def test_boost_announces_x_plus_lambda_times_update_exactly(monkeypatch, x0):
    w = x0 + np.float32(0.01) * np.arange(x0.size, dtype=np.float32) / x0.size
    optimise, _ = fixed_optimise(lambda start: w)
    monkeypatch.setattr(Boost, "optimise", optimise)
    atk = build_attack("boost", {"lam": 7.0}, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0))
    assert isinstance(out.announce, np.ndarray)
    np.testing.assert_allclose(out.announce - x0, 7.0 * (w - x0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out.own, out.announce)
    assert out.info["lam"] == 7.0
    assert out.info["delta_norm"] == pytest.approx(float(np.linalg.norm(out.announce - x0)), rel=1e-6)


def test_boost_lambda_defaults_to_degree_plus_one():
    assert build_attack("boost", {}, plan=tiny_plan("full", 4), node=0).lam == 4.0
    assert build_attack("boost", {}, plan=tiny_plan("ring", 6), node=0).lam == 3.0


def test_boost_trains_on_the_aux_set_until_its_loss_is_tiny(x0):
    plan = tiny_plan()
    atk = build_attack("boost", {"tol": 0.05, "mal_epochs": 3}, plan=plan, node=0)
    trainer = tiny_trainer()
    out = atk.craft(view_for(trainer, x0))
    w = x0 + (out.announce - x0) / atk.lam
    assert trainer.evaluate(w, plan.aux).loss <= 0.05 + 1e-4
    assert out.info["mal_steps"] >= 3 and out.info["mal_steps"] == len(atk.trace)
    assert trainer.evaluate(x0, plan.aux).loss > 0.05


# --------------------------------------------------------------------------- altmin and stealth


def test_altmin_alternates_ls_benign_steps_with_one_malicious_step(x0):
    atk = build_attack("altmin", {"ls": 3, "mal_epochs": 1, "rho": 0.0}, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0))
    assert "".join(atk.trace) == "bbbmbbbm"  # 6 benign steps per epoch, ls = 3
    assert out.info["mal_steps"] == 2 and out.info["benign_steps"] == 6


def test_malicious_steps_can_use_their_own_optimiser(x0):
    plan = tiny_plan()
    atk = build_attack("boost", {"mal_optimizer": "sgd", "mal_lr": 0.5, "tol": 0.0, "max_steps": 1},
                       plan=plan, node=0)
    out = atk.craft(view_for(tiny_trainer(), x0))
    w = x0 + (out.announce - x0) / atk.lam
    # The same step by hand: a fresh trainer's generator draws the batch order, then the dropout masks.
    ref = tiny_trainer()
    set_flat(ref.model, x0)
    ref.model.train()
    perm = torch.randperm(len(plan.aux), generator=ref.generator)
    torch.nn.functional.cross_entropy(ref.model(plan.aux.x[perm]), plan.aux.y[perm]).backward()
    grad = torch.cat([p.grad.reshape(-1) for p in ref.model.parameters()]).numpy()
    np.testing.assert_allclose(w - x0, -0.5 * grad, rtol=1e-3, atol=1e-6)  # one plain SGD step


def test_altmin_skips_the_malicious_step_once_the_aux_loss_is_under_tol(x0):
    atk = build_attack("altmin", {"ls": 2, "mal_epochs": 1, "tol": 1e9}, plan=tiny_plan(), node=0)
    atk.craft(view_for(tiny_trainer(), x0))
    assert "".join(atk.trace) == "bbbbbb"


def test_stealth_takes_one_benign_and_one_malicious_step_per_batch(x0):
    atk = build_attack("stealth", {"mal_epochs": 1, "rho": 0.0}, plan=tiny_plan(), node=0)
    atk.craft(view_for(tiny_trainer(), x0))
    assert "".join(atk.trace) == "bm" * 6


@pytest.mark.parametrize("name", ["stealth", "altmin"])
def test_distance_term_pulls_the_crafted_model_towards_the_benign_update(name, x0):
    def crafted(rho: float) -> float:
        params = {"rho": rho, "mal_epochs": 2, "lam": 3.0, **({"ls": 2} if name == "altmin" else {})}
        atk = build_attack(name, params, plan=tiny_plan(), node=0)
        return atk.craft(view_for(tiny_trainer(), x0)).info["ref_dist"]

    assert crafted(5.0) < 0.8 * crafted(0.0)


def test_constrain_neighbours_uses_their_mean_update_and_no_term_before_an_estimate(x0):
    atk = build_attack("altmin", {"constrain": "neighbours", "mal_epochs": 1}, plan=tiny_plan(), node=0)
    first = atk.craft(view_for(tiny_trainer(), x0, round_=1))
    assert first.info["rho"] == 0.0
    shift = np.full_like(x0, 0.01)
    second = atk.craft(view_for(tiny_trainer(), x0, round_=2, public={j: x0 + shift for j in (1, 2, 3)}))
    assert second.info["rho"] == pytest.approx(1e-4)
    ref, rho = atk.reference(view_for(tiny_trainer(), x0, round_=2))
    assert rho == 0.0  # memory now points at round 2; a round-2 view has no fresh estimate


# --------------------------------------------------------------------------- estimation


def estimation_setup(monkeypatch, estimate: str, source: str = "updates"):
    """Round 2 after a round 1 at x_prev; neighbours moved by known updates d_j."""
    optimise, seen = fixed_optimise(lambda start: start + np.float32(0.5))
    monkeypatch.setattr(Boost, "optimise", optimise)
    atk = build_attack("boost", {"lam": 2.0, "estimate": estimate, "source": source}, plan=tiny_plan(), node=0)
    dim = _flat().size
    x_prev = np.zeros(dim, np.float32)
    atk.craft(view_for(tiny_trainer(), x_prev, round_=1))  # remembers x_prev at round 1
    seen.clear()
    d = {1: np.full(dim, 0.1, np.float32), 2: np.full(dim, 0.2, np.float32), 3: np.full(dim, 0.3, np.float32)}
    x = np.full(dim, 0.05, np.float32)
    view = view_for(tiny_trainer(), x, round_=2, public={j: x_prev + d[j] for j in d},
                    last_deltas={j: 10 * d[j] for j in d})
    out = atk.craft(view)
    return x, out, seen[0]


def test_estimate_none_starts_from_x_and_boosts_the_plain_update(monkeypatch):
    x, out, start = estimation_setup(monkeypatch, "none")
    np.testing.assert_array_equal(start, x)
    np.testing.assert_allclose(out.announce - x, 2.0 * 0.5, rtol=1e-5)


def test_estimate_pre_starts_from_x_plus_the_others_update(monkeypatch):
    x, out, start = estimation_setup(monkeypatch, "pre")
    b = 0.25 * (0.1 + 0.2 + 0.3)  # sum_j W_j d_j
    np.testing.assert_allclose(start, x + b, rtol=1e-5)
    np.testing.assert_allclose(out.announce - x, 2.0 * 0.5, rtol=1e-4)  # w - s, boosted
    assert out.info["est_norm"] == pytest.approx(b * np.sqrt(x.size), rel=1e-4)


def test_estimate_post_subtracts_the_others_update_before_boosting(monkeypatch):
    x, out, start = estimation_setup(monkeypatch, "post")
    b = 0.25 * (0.1 + 0.2 + 0.3)
    np.testing.assert_array_equal(start, x)
    np.testing.assert_allclose(out.announce - x, 2.0 * (0.5 - b), rtol=1e-4)


def test_estimate_from_deltas_uses_the_last_deltas(monkeypatch):
    x, out, _ = estimation_setup(monkeypatch, "post", source="deltas")
    b = 0.25 * 10 * (0.1 + 0.2 + 0.3)
    np.testing.assert_allclose(out.announce - x, 2.0 * (0.5 - b), rtol=1e-4)


def test_first_round_has_no_estimate(monkeypatch, x0):
    optimise, seen = fixed_optimise(lambda start: start)
    monkeypatch.setattr(Boost, "optimise", optimise)
    atk = build_attack("boost", {"estimate": "pre"}, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0, round_=1))
    np.testing.assert_array_equal(seen[0], x0)
    assert out.info["est_norm"] == 0.0


# --------------------------------------------------------------------------- equivocation


def test_equivocation_sends_each_neighbour_its_own_share(monkeypatch, x0):
    w = x0 + np.float32(0.01)
    optimise, _ = fixed_optimise(lambda start: w)
    monkeypatch.setattr(Boost, "optimise", optimise)
    weights = {1: 0.5, 2: 0.25, 3: 0.125}
    atk = build_attack("boost", {"equivocate": True}, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0, weights=weights))
    assert isinstance(out.announce, dict) and set(out.announce) == {1, 2, 3}
    for j, wj in weights.items():  # lam_j = 1 / W_mj with the default lam = deg + 1
        np.testing.assert_allclose(out.announce[j] - x0, (w - x0) / wj, rtol=1e-4)
    assert not np.allclose(out.announce[1], out.announce[3])


def test_gaussian_equivocation_draws_independent_noise(x0):
    atk = build_attack("gaussian", {"sigma": 0.5, "equivocate": True}, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0))
    deltas = [out.announce[j] - x0 for j in (1, 2, 3)]
    assert all(abs(float(d.std()) - 0.5) < 0.1 for d in deltas)
    assert not np.allclose(deltas[0], deltas[1])
    again = build_attack("gaussian", {"sigma": 0.5, "equivocate": True}, plan=tiny_plan(), node=0)
    np.testing.assert_array_equal(again.craft(view_for(tiny_trainer(), x0)).announce[2], out.announce[2])


# --------------------------------------------------------------------------- baselines


def test_signflip_announces_the_reversed_honest_update(monkeypatch, x0):
    z = x0 + np.float32(0.2)
    monkeypatch.setattr(attack_base, "honest_model", lambda view: z)
    out = build_attack("signflip", {"lam": 3.0}, plan=tiny_plan(), node=0).craft(view_for(tiny_trainer(), x0))
    np.testing.assert_allclose(out.announce - x0, -0.6, rtol=1e-5)


def test_alie_and_ipm_use_own_and_neighbour_updates(monkeypatch):
    dim = _flat().size
    x = np.zeros(dim, np.float32)
    monkeypatch.setattr(attack_base, "honest_model", lambda view: view.x + np.float32(1.0))
    for name, params, expected in (("alie", {"z": 2.0}, 2.0 - 2.0 * 1.0), ("ipm", {"eps": 0.5}, -1.0)):
        atk = build_attack(name, params, plan=tiny_plan(), node=0)
        atk.craft(view_for(tiny_trainer(), x, round_=1))
        # round 2: own update 1, neighbours' updates 1, 3, 3 -> mean 2, population std 1
        pub = {1: x + np.float32(1.0), 2: x + np.float32(3.0), 3: x + np.float32(3.0)}
        out = atk.craft(view_for(tiny_trainer(), x, round_=2, public=pub))
        np.testing.assert_allclose(out.announce - x, expected, atol=1e-5)


def test_labelflip_trains_on_reversed_labels(monkeypatch, x0):
    trainer = tiny_trainer()
    seen = {}

    def train(x, data, epochs=None, **kw):
        seen["y"] = data.y.clone()
        return x + np.float32(0.1)

    monkeypatch.setattr(trainer, "train", train)
    view = view_for(trainer, x0)
    out = build_attack("labelflip", {"lam": 2.0}, plan=tiny_plan(), node=0).craft(view)
    torch.testing.assert_close(seen["y"], 2 - view.data.y)
    np.testing.assert_allclose(out.announce - x0, 0.2, rtol=1e-5)


@pytest.mark.parametrize("name", ["replace", "labelflip", "signflip"])
def test_scaling_attacks_are_linear_in_lambda(name, x0):
    one = build_attack(name, {"lam": 1.0}, plan=tiny_plan(), node=0).craft(view_for(tiny_trainer(), x0))
    three = build_attack(name, {"lam": 3.0}, plan=tiny_plan(), node=0).craft(view_for(tiny_trainer(), x0))
    assert np.linalg.norm(one.announce - x0) > 0
    np.testing.assert_allclose(three.announce - x0, 3 * (one.announce - x0), rtol=1e-4, atol=1e-6)


def test_replace_lowers_the_aux_loss(x0):
    plan = tiny_plan()
    trainer = tiny_trainer()
    out = build_attack("replace", {"lam": 1.0, "mal_epochs": 5}, plan=plan, node=0).craft(view_for(trainer, x0))
    assert trainer.evaluate(out.announce, plan.aux).loss < trainer.evaluate(x0, plan.aux).loss


# --------------------------------------------------------------------------- delay and statistics


def test_delay_behaves_honestly_until_the_attack_round(x0):
    atk = build_attack("boost", {"delay": 2}, plan=tiny_plan(), node=0)
    honest = Honest().craft(view_for(tiny_trainer(), x0, round_=2))
    out = atk.craft(view_for(tiny_trainer(), x0, round_=2))
    np.testing.assert_array_equal(out.announce, honest.announce)
    assert out.info["active"] == 0.0
    assert atk.craft(view_for(tiny_trainer(), x0, round_=3)).info["active"] == 1.0


def test_stealth_statistics_compare_with_benign_deltas(monkeypatch, x0):
    optimise, _ = fixed_optimise(lambda start: start + np.float32(0.01))
    monkeypatch.setattr(Boost, "optimise", optimise)
    atk = build_attack("boost", {"lam": 1.0}, plan=tiny_plan(adversaries=(0, 3)), node=0)
    last = {1: np.zeros_like(x0), 2: np.full_like(x0, 0.03), 3: np.full_like(x0, 9.0)}
    out = atk.craft(view_for(tiny_trainer(), x0, round_=2, last_deltas=last))
    root = np.sqrt(x0.size)
    assert out.info["delta_norm"] == pytest.approx(0.01 * root, rel=1e-4)
    assert out.info["dist_min"] == pytest.approx(0.01 * root, rel=1e-4)  # neighbour 3 colludes: ignored
    assert out.info["dist_max"] == pytest.approx(0.02 * root, rel=1e-4)
    assert out.info["benign_min"] == out.info["benign_max"] == pytest.approx(0.03 * root, rel=1e-4)
    assert 0.0 <= out.info["announced_acc"] <= 1.0
    assert all(isinstance(v, float) for v in out.info.values())


def test_update_statistics_compare_last_rounds_updates_relative_to_the_same_model(monkeypatch, x0):
    optimise, _ = fixed_optimise(lambda start: start + np.float32(0.01))
    monkeypatch.setattr(Boost, "optimise", optimise)
    atk = build_attack("boost", {"lam": 1.0}, plan=tiny_plan(adversaries=(0, 3)), node=0)
    first = atk.craft(view_for(tiny_trainer(), x0, round_=1))
    root = np.sqrt(x0.size)
    assert first.info["update_norm"] == pytest.approx(0.01 * root, rel=1e-4)
    assert "prev_update_dist_min" not in first.info
    public = {1: x0.copy(), 2: x0 + np.float32(0.03), 3: x0 + np.float32(5.0)}  # 3 colludes: ignored
    out = atk.craft(view_for(tiny_trainer(), x0 + np.float32(1.0), round_=2, public=public))
    assert out.info["prev_update_dist_min"] == pytest.approx(0.01 * root, rel=1e-3)
    assert out.info["prev_update_dist_max"] == pytest.approx(0.02 * root, rel=1e-3)
    assert out.info["update_benign_max"] == pytest.approx(0.03 * root, rel=1e-3)
    assert out.info["prev_update_within"] == 1.0  # 0.02 <= 0.03: inside the benign spread


def test_an_update_farther_than_the_benign_spread_fails_the_distance_test(monkeypatch, x0):
    optimise, _ = fixed_optimise(lambda start: start + np.float32(0.01))
    monkeypatch.setattr(Boost, "optimise", optimise)
    atk = build_attack("boost", {"lam": 1.0}, plan=tiny_plan(), node=0)
    atk.craft(view_for(tiny_trainer(), x0, round_=1))
    public = {1: x0.copy(), 2: x0 + np.float32(0.005), 3: x0.copy()}  # benign spread 0.005; ours 0.01
    last = {1: np.zeros_like(x0), 2: np.full_like(x0, 0.005), 3: np.zeros_like(x0)}
    out = atk.craft(view_for(tiny_trainer(), x0, round_=2, public=public, last_deltas=last))
    assert out.info["prev_update_within"] == 0.0
    assert out.info["prev_within"] == 0.0


# --------------------------------------------------------------------------- parameters and profiles


def test_attack_names_and_parameter_tables_agree():
    assert ATTACKS[0] == "none" and set(ATTACKS) == set(PARAMS)
    assert {"boost", "stealth", "altmin", "signflip", "gaussian", "labelflip", "alie", "ipm",
            "replace"} <= set(ATTACKS)
    assert isinstance(build_attack("none", {}, plan=tiny_plan(), node=0), Honest)
    assert isinstance(build_attack("altmin", {}, plan=tiny_plan(), node=0), AltMin)
    assert isinstance(build_attack("stealth", {}, plan=tiny_plan(), node=0), Stealth)


@pytest.mark.parametrize(("name", "params", "field"), [
    ("bost", {}, "attack"),
    ("boost", {"ls": 3}, "attack.ls"),
    ("boost", {"lam": -1.0}, "attack.lam"),
    ("boost", {"lam": float("nan")}, "attack.lam"),
    ("boost", {"estimate": "maybe"}, "attack.estimate"),
    ("altmin", {"ls": 0}, "attack.ls"),
    ("altmin", {"constrain": "others"}, "attack.constrain"),
    ("stealth", {"rho": -1e-4}, "attack.rho"),
    ("boost", {"equivocate": "yes"}, "attack.equivocate"),
    ("boost", {"delay": 1.5}, "attack.delay"),
    ("gaussian", {"sigma": 0}, "attack.sigma"),
    ("ipm", {"eps": True}, "attack.eps"),
    ("altmin", {"mal_optimizer": "rmsprop"}, "attack.mal_optimizer"),
    ("boost", {"mal_lr": 0.0}, "attack.mal_lr"),
    ("signflip", {"mal_lr": 0.1}, "attack.mal_lr"),
])
def test_invalid_attacks_and_parameters_name_the_field(name, params, field):
    with pytest.raises(ConfigError) as err:
        build_attack(name, params, plan=tiny_plan(), node=0)
    assert err.value.field == field


def test_plan_parameters_are_accepted_and_ignored():
    assert check_params("boost", {"target": "5:7", "aux_size": 3, "lam": 2}) == {"lam": 2.0}


def test_targeted_attacks_need_an_aux_set():
    plan = tiny_plan()
    plan.aux = None
    with pytest.raises(ConfigError):
        build_attack("boost", {}, plan=plan, node=0)
    build_attack("signflip", {}, plan=plan, node=0)


@pytest.mark.parametrize("path", sorted(NODES_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_role_profiles_are_valid(path):
    if path.stem.startswith("cluster"):
        pytest.skip("deployment file, not a role profile")
    role = load_role({"nodes": [0], "profile": str(path)})
    assert role.role == path.stem
    attack = role.attack.name if role.attack else "none"
    assert attack in ATTACKS
    check_params(attack, dict(role.attack.params) if role.attack else {})


def test_profiles_load_by_name_and_reject_bad_parameters(tmp_path):
    assert load_role({"nodes": [0], "profile": "boost"}, search=(NODES_DIR,)).attack.name == "boost"
    bad = tmp_path / "bad.toml"
    bad.write_text('[attack]\nname = "boost"\nls = 3\n', encoding="utf-8")
    role = load_role({"nodes": [0], "profile": str(bad)})
    with pytest.raises(ConfigError) as err:
        check_params(role.attack.name, dict(role.attack.params))
    assert err.value.field == "attack.ls"
    with pytest.raises(ConfigError):
        load_role({"nodes": [0], "profile": "no-such-role"}, search=(tmp_path,))


# --------------------------------------------------------------------------- end to end


def test_boost_adversary_plants_the_target_in_a_real_run(make_config):
    """Complete graph of 4, 3 rounds, 1000 images: about 15 s on 2 cores."""
    from p2pfl.launch import run

    def success(params: dict) -> float:
        cfg = make_config(**{"topology": "full", "nodes": 4, "rounds": 3, "adversaries": 1,
                             "data.max_train": 1000, "data.max_test": 300, "attack.name": "boost",
                             **params})
        return run(cfg).summary["final"]["attack_success_mean"]

    clean = success({"attack.delay": 3})  # the same aux set, but the adversary stays honest
    attacked = success({"attack.tol": 0.01})
    assert attacked > clean
    assert attacked >= 0.9


# --------------------------------------------------------------------------- backdoor = single is unchanged
# Fingerprints of each aux attack's output (two rounds of one adversary) measured on the commit
# before backdoor kinds existed (3410c1c); the sums match to float rounding, the paths bit for bit.

_FINGERPRINTS = [
    ("boost", {"tol": 0.05, "mal_epochs": 3}, -12.539740854874253, 6.769624710083008),
    ("stealth", {"mal_epochs": 1}, -7.660141707630828, 3.1491568088531494),
    ("altmin", {"ls": 2, "mal_epochs": 1}, -7.232962204143405, 1.9838480949401855),
    ("replace", {"mal_epochs": 2}, -5.510891418904066, 5.978686332702637),
]


def _two_rounds(name: str, params: dict, plan) -> tuple[np.ndarray, np.ndarray]:
    x0 = _flat()
    atk = build_attack(name, params, plan=plan, node=0)
    trainer = tiny_trainer()
    out = atk.craft(view_for(trainer, x0))
    out2 = atk.craft(view_for(trainer, x0 + np.float32(0.01), round_=2))
    return out.own, out2.announce


@pytest.mark.parametrize(("name", "params", "total", "dist"), _FINGERPRINTS, ids=[f[0] for f in _FINGERPRINTS])
def test_single_backdoor_leaves_the_papers_attacks_as_they_were(name, params, total, dist):
    from p2pfl.attacks.backdoor import Backdoor

    plain = tiny_plan()  # no backdoor attribute: the attack builds the single one from plan.aux
    own, ann = _two_rounds(name, params, plain)
    assert float(np.float64(ann).sum()) == pytest.approx(total, rel=1e-6)
    assert float(np.linalg.norm(ann - _flat())) == pytest.approx(dist, rel=1e-6)
    explicit = tiny_plan()
    explicit.backdoor = Backdoor.single(explicit.aux)  # what Plan.build gives for backdoor = "single"
    own2, ann2 = _two_rounds(name, {**params, "backdoor": "single"}, explicit)
    np.testing.assert_array_equal(own, own2)
    np.testing.assert_array_equal(ann, ann2)


# --------------------------------------------------------------------------- pgd, neurotoxin, scale


def recording_projections(monkeypatch, cls):
    """Wrap cls.project: after every projection record ||w - ref|| (L2 and Linf), measured here."""
    seen: list[tuple[float, float]] = []
    original = cls.project

    def project(self, loop, ref, eps, norm):
        original(self, loop, ref, eps, norm)
        w = torch.cat([p.detach().reshape(-1) for p in loop.params]).double()
        r = torch.cat([t.reshape(-1) for t in ref]).double()
        seen.append((float(torch.linalg.vector_norm(w - r)), float((w - r).abs().max())))

    monkeypatch.setattr(cls, "project", project)
    return seen


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("ref", ["start", "benign"])
@pytest.mark.parametrize("every", [1, 4])
def test_pgd_projection_bound_holds_after_every_projection(monkeypatch, x0, norm, ref, every):
    from p2pfl.attacks.constrained import PGD

    seen = recording_projections(monkeypatch, PGD)
    eps = 0.05 if norm == "l2" else 0.002  # small enough that the projection binds
    atk = build_attack("pgd", {"eps": eps, "norm": norm, "ref": ref, "project_every": every, "mal_epochs": 2},
                       plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0))
    steps = 12  # 2 epochs x 6 batches
    assert len(seen) == steps // every + (steps % every != 0)
    assert atk.trace.count("p") == len(seen) and atk.trace.count("m") == steps
    k = 0 if norm == "l2" else 1
    assert all(s[k] <= eps * (1 + 1e-5) for s in seen)
    assert max(s[k] for s in seen) >= 0.99 * eps  # it did bind
    assert out.info["eps"] == eps and out.info["ref_dist"] <= eps * (1 + 1e-5)
    if ref == "start":
        d = np.subtract(out.announce, x0, dtype=np.float64)
        assert (np.linalg.norm(d) if norm == "l2" else np.abs(d).max()) <= eps * (1 + 1e-4)


def test_pgd_eps_rel_defaults_to_the_own_benign_update_norm(monkeypatch, x0):
    from p2pfl.attacks.constrained import PGD

    seen = recording_projections(monkeypatch, PGD)
    atk = build_attack("pgd", {}, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0))
    honest = Honest().craft(view_for(tiny_trainer(), x0)).own  # the same honest training, same seed
    bnorm = float(np.linalg.norm(np.subtract(honest, x0, dtype=np.float64)))
    assert out.info["benign_update_norm"] == pytest.approx(bnorm, rel=1e-6)
    assert out.info["eps"] == pytest.approx(bnorm, rel=1e-6)
    assert all(s[0] <= bnorm * (1 + 1e-5) for s in seen)
    assert out.info["norm_ratio"] <= 1 + 1e-4
    assert out.info["norm_ratio"] == pytest.approx(out.info["update_norm"] / bnorm, rel=1e-4)
    twice = build_attack("pgd", {"eps_rel": 2.0, "eps": 0.01}, plan=tiny_plan(), node=0)  # eps wins
    assert twice.craft(view_for(tiny_trainer(), x0)).info["eps"] == 0.01


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_eps_from_spread_is_the_distance_tests_margin_of_the_last_honest_update(monkeypatch, x0, norm):
    from p2pfl.attacks import distances, pairwise
    from p2pfl.attacks.constrained import PGD

    seen = recording_projections(monkeypatch, PGD)
    atk = build_attack("pgd", {"eps_from": "spread", "ref": "benign", "norm": norm, "mal_epochs": 2},
                       plan=tiny_plan(), node=0)
    first = atk.craft(view_for(tiny_trainer(), x0))
    # round 1: no neighbour update seen yet, so no margin: the ball is the point x + b, the honest model
    assert first.info["eps"] == 0.0 and all(s[0] == 0.0 for s in seen)
    b1 = atk._last_benign[1]
    assert atk._last_benign[0] == 1 and float(np.linalg.norm(b1)) > 0
    np.testing.assert_allclose(np.subtract(first.announce, x0, dtype=np.float64), b1, atol=1e-6)
    # round 2: the benign neighbours' round-1 updates d_j around b1, at distances 0.5..1.5 x ||b1|| / 10
    rng = np.random.default_rng(0)
    scale = float(np.linalg.norm(b1)) / 10
    d = {j: (b1 + scale * (0.5 + 0.5 * (j - 1)) * rng.standard_normal(b1.shape) / np.sqrt(b1.size)).astype(np.float32)
         for j in (1, 2, 3)}
    margin = max(pairwise(list(d.values()))) - max(distances([b1], list(d.values())))
    assert margin > 0
    seen.clear()
    x1 = np.asarray(first.own, dtype=np.float32)
    second = atk.craft(view_for(tiny_trainer(), x1, round_=2, public={j: x0 + d[j] for j in d}))
    eps = margin if norm == "l2" else margin / np.sqrt(b1.size)
    assert second.info["eps"] == pytest.approx(eps, rel=1e-6)
    k = 0 if norm == "l2" else 1
    assert seen and all(s[k] <= eps * (1 + 1e-5) for s in seen)
    b2 = atk._last_benign[1]
    u = np.subtract(second.announce, x1, dtype=np.float64)
    assert float(np.linalg.norm(u - b2)) <= margin * (1 + 1e-4)  # ||u - b|| <= m: the triangle bound
    # fewer than two benign updates: no spread, no margin
    lone = build_attack("pgd", {"eps_from": "spread", "ref": "benign"}, plan=tiny_plan(), node=0)
    lone.craft(view_for(tiny_trainer(), x0, weights={1: 0.5}))
    assert lone.craft(view_for(tiny_trainer(), x0, round_=2, weights={1: 0.5}, public={1: x0 + d[1]})).info["eps"] == 0.0
    with pytest.raises(ConfigError, match="eps_from"):
        build_attack("pgd", {"eps_from": "median"}, plan=tiny_plan(), node=0)


def test_pgd_trains_the_backdoor_into_the_model(x0):
    plan = tiny_plan()
    trainer = tiny_trainer()
    out = build_attack("pgd", {"eps_rel": 3.0, "mal_epochs": 5}, plan=plan, node=0).craft(view_for(trainer, x0))
    assert trainer.evaluate(out.announce, plan.aux).loss < trainer.evaluate(x0, plan.aux).loss


@pytest.mark.parametrize("mask_from", ["own", "neighbours"])
@pytest.mark.parametrize("ref", ["start", "benign"])
def test_neurotoxin_leaves_the_top_benign_coordinates_untouched(monkeypatch, x0, mask_from, ref):
    from p2pfl.attacks.constrained import Neurotoxin, top_mask

    masks: list[np.ndarray] = []
    original = Neurotoxin.mask

    def mask(self, view, b):
        m = original(self, view, b)
        masks.append(m)
        return m

    monkeypatch.setattr(Neurotoxin, "mask", mask)
    seen = recording_projections(monkeypatch, Neurotoxin)
    def decaying() -> Trainer:  # weight decay moves every coordinate unless the mask resets it
        return Trainer(build_model("mlp", input_shape=(4,), classes=3, seed=0),
                       TrainSpec(epochs=1, batch_size=5, lr=1e-2, weight_decay=1e-2), seed=0)

    trainer = decaying()
    atk = build_attack("neurotoxin", {"ratio": 0.2, "eps_rel": 2.0, "mask_from": mask_from, "ref": ref},
                       plan=tiny_plan(), node=0)
    atk.craft(view_for(trainer, x0, round_=1))
    own = np.subtract(Honest().craft(view_for(decaying(), x0)).own, x0)  # round 1: the same honest training
    np.testing.assert_array_equal(masks[0], top_mask(own, 0.2))  # round 1 has no neighbour updates
    seen.clear()
    public = {j: x0 + np.float32(0.01 * j) * np.sign(np.arange(x0.size) % 3 - 1).astype(np.float32)
              for j in (1, 2, 3)}
    out = atk.craft(view_for(trainer, x0, round_=2, public=public))
    m = masks[-1]
    top = m == 0
    assert int(top.sum()) == int(np.ceil(0.2 * x0.size)) == out.info["masked"]
    d = np.subtract(out.announce, x0, dtype=np.float32)
    assert np.all(d[top] == 0.0)  # exactly unchanged
    assert np.count_nonzero(d[~top]) > 0.9 * (~top).sum()
    assert all(s[0] <= out.info["eps"] * (1 + 1e-5) for s in seen)
    assert out.info["norm_ratio"] <= 2.0 + 1e-4
    if mask_from == "neighbours":  # round 2: the neighbours' updates change the mask
        assert not np.array_equal(masks[1], masks[0])


def test_top_mask_freezes_the_largest_magnitudes():
    from p2pfl.attacks.constrained import top_mask

    m = top_mask(np.array([0.1, -5.0, 0.2, 3.0, -0.05], np.float32), 0.4)
    np.testing.assert_array_equal(m, [1, 0, 1, 0, 1])


def test_scale_sends_each_receiver_the_update_over_its_weight(x0):
    weights = {1: 0.5, 2: 0.25, 3: 0.125}
    atk = build_attack("scale", {"alpha": 0.9}, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0, weights=weights))
    assert isinstance(out.announce, dict) and set(out.announce) == set(weights)
    d = np.subtract(out.own, x0, dtype=np.float64)
    assert np.linalg.norm(d) > 0
    for j, wj in weights.items():  # gamma_j = 1 / W_jm = 1 / W_mj (symmetric weights)
        np.testing.assert_allclose(out.announce[j] - x0, d / wj, rtol=1e-4, atol=1e-6)
    assert out.info["gamma_min"] == pytest.approx(2.0) and out.info["gamma_max"] == pytest.approx(8.0)
    assert out.info["norm_ratio"] == pytest.approx(8.0 * np.linalg.norm(d) / out.info["benign_update_norm"], rel=1e-4)
    fixed = build_attack("scale", {"alpha": 0.9, "gamma": 3.0}, plan=tiny_plan(), node=0)
    out3 = fixed.craft(view_for(tiny_trainer(), x0, weights=weights))
    for j in weights:
        np.testing.assert_allclose(out3.announce[j] - x0, 3.0 * d, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("params", [{"budget": 1.5}, {"clip_to": 0.3}, {"clip_to": 0.3, "budget": 100.0},
                                    {"clip_to": "auto"}])
def test_scale_caps_every_announced_update(x0, params):
    weights = {1: 0.5, 2: 0.25, 3: 0.125}
    atk = build_attack("scale", params, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0, weights=weights))
    bnorm = out.info["benign_update_norm"]
    caps = [params["budget"] * bnorm] if "budget" in params else []
    if isinstance(params.get("clip_to"), float):
        caps.append(params["clip_to"])
    if params.get("clip_to") == "auto":  # round 1: no neighbour updates yet, tau-hat = own norm
        assert out.info["tau_hat"] == pytest.approx(bnorm)
        caps.append(bnorm)
    cap = min(caps)
    assert out.info["cap"] == pytest.approx(cap)
    for j in weights:
        assert np.linalg.norm(np.subtract(out.announce[j], x0, dtype=np.float64)) <= cap * (1 + 1e-5)
    d = np.subtract(out.own, x0, dtype=np.float64)
    for j, wj in weights.items():  # gamma_j = min(1/W, cap/||d||)
        g = min(1 / wj, cap / np.linalg.norm(d))
        np.testing.assert_allclose(out.announce[j] - x0, g * d, rtol=1e-4, atol=1e-6)


def test_scale_auto_clip_estimate_is_the_median_of_neighbour_and_own_norms(x0):
    atk = build_attack("scale", {"clip_to": "auto"}, plan=tiny_plan(), node=0)
    atk.craft(view_for(tiny_trainer(), x0, round_=1))
    public = {j: x0 + np.float32(s) for j, s in ((1, 0.001), (2, 0.002), (3, 0.1))}
    out = atk.craft(view_for(tiny_trainer(), x0, round_=2, public=public))
    root = np.sqrt(x0.size)
    norms = sorted([0.001 * root, 0.002 * root, 0.1 * root, out.info["benign_update_norm"]])
    assert out.info["tau_hat"] == pytest.approx((norms[1] + norms[2]) / 2, rel=1e-4)


@pytest.mark.parametrize("name", ["pgd", "neurotoxin", "scale"])
@pytest.mark.parametrize("kind", ["class", "trigger"])
def test_constrained_attacks_poison_their_batches_with_the_backdoor(monkeypatch, x0, name, kind):
    from p2pfl.attacks.backdoor import Backdoor

    imgs = TensorData(torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5,
                      torch.arange(30, dtype=torch.int64) % 3, 3)
    plan = tiny_plan()
    plan.test = imgs
    plan.backdoor = Backdoor.build({"backdoor": kind, "target": "1:2"}, test=imgs, train=imgs, aux=None, seed=0)
    calls: list[torch.Tensor] = []
    original = Backdoor.poison

    def poison(self, x, y, generator=None):
        out = original(self, x, y, generator)
        calls.append(out[1])
        return out

    monkeypatch.setattr(Backdoor, "poison", poison)
    trainer = Trainer(build_model("mlp", input_shape=(1, 4, 4), classes=3, seed=0),
                      TrainSpec(epochs=1, batch_size=5, lr=1e-2), seed=0)
    x = get_flat(trainer.model)
    view = view_for(trainer, x)
    view = NodeView(**{**view.__dict__, "data": imgs})
    out = build_attack(name, {}, plan=plan, node=0).craft(view)
    assert len(calls) == 6 and all(bool((y == 2).any()) for y in calls)
    assert {"norm_ratio", "update_norm", "benign_update_norm", "mal_loss", "delta_norm"} <= set(out.info)


@pytest.mark.parametrize(("name", "params", "field"), [
    ("pgd", {"norm": "l1"}, "attack.norm"),
    ("pgd", {"ref": "end"}, "attack.ref"),
    ("pgd", {"eps_rel": 0}, "attack.eps_rel"),
    ("pgd", {"project_every": 0}, "attack.project_every"),
    ("pgd", {"ratio": 0.1}, "attack.ratio"),
    ("neurotoxin", {"ratio": 1.0}, "attack.ratio"),
    ("neurotoxin", {"ratio": 0}, "attack.ratio"),
    ("neurotoxin", {"mask_from": "all"}, "attack.mask_from"),
    ("scale", {"alpha": 0}, "attack.alpha"),
    ("scale", {"alpha": 1.2}, "attack.alpha"),
    ("scale", {"clip_to": "median"}, "attack.clip_to"),
    ("scale", {"budget": -1}, "attack.budget"),
    ("scale", {"gamma": 0}, "attack.gamma"),
    ("scale", {"eps": 1.0}, "attack.eps"),
])
def test_invalid_constrained_parameters_name_the_field(name, params, field):
    with pytest.raises(ConfigError) as err:
        build_attack(name, params, plan=tiny_plan(), node=0)
    assert err.value.field == field


def test_pgd_with_a_trigger_backdoor_in_a_real_run(make_config):
    """Ring of 5, 2 rounds, 800 images: a few seconds. Success is measured on stamped images."""
    from p2pfl.launch import run
    from p2pfl.plan import Plan

    cfg = make_config(**{"topology": "ring", "nodes": 5, "rounds": 2, "adversaries": 1, "attack.name": "pgd",
                         "attack.backdoor": "trigger", "attack.target": "0:7", "attack.eps_rel": 2.0})
    plan = Plan.build(cfg)
    clean = plan.test.x.clone()
    result = run(cfg, plan=plan)
    torch.testing.assert_close(plan.test.x, clean, rtol=0, atol=0)  # accuracy was measured unstamped
    benign = [r for r in result.records if r["role"] == "benign"]
    assert benign and all("attack_success" in r and "target_confidence" in r for r in benign)
    final = result.summary["final"]
    assert 0.0 <= final["attack_success_mean"] <= 1.0 and "attack_success_by_hops" in final
    adv = [r for r in result.records if r["role"] == "pgd"]
    assert adv and all(r["attack"]["norm_ratio"] <= 2.0 + 1e-3 for r in adv)
# --------------------------------------------------------------------------- norm ratio (stealth)


def test_norm_ratio_uses_the_own_honest_update_when_the_attack_trains_it(x0):
    atk = build_attack("signflip", {"lam": 2.0}, plan=tiny_plan(), node=0)
    out = atk.craft(view_for(tiny_trainer(), x0))
    assert out.info["benign_norm_own"] == 1.0
    assert out.info["norm_ratio"] == pytest.approx(2.0, rel=1e-5)  # -2 (z - x) against z - x
    assert out.info["benign_update_norm"] == pytest.approx(out.info["update_norm"] / 2, rel=1e-5)


def test_norm_ratio_is_one_in_delayed_rounds(x0):
    out = build_attack("boost", {"delay": 3}, plan=tiny_plan(), node=0).craft(view_for(tiny_trainer(), x0))
    assert out.info["active"] == 0.0 and out.info["benign_norm_own"] == 1.0
    assert out.info["norm_ratio"] == pytest.approx(1.0, rel=1e-6)


def test_norm_ratio_falls_back_to_the_weighted_mean_of_the_neighbours_updates(monkeypatch, x0):
    optimise, _ = fixed_optimise(lambda start: start + np.float32(0.04))
    monkeypatch.setattr(Boost, "optimise", optimise)
    atk = build_attack("boost", {"lam": 1.0}, plan=tiny_plan(), node=0)
    first = atk.craft(view_for(tiny_trainer(), x0, round_=1))
    assert "norm_ratio" not in first.info  # no neighbour update yet and no honest training
    weights = {1: 0.5, 2: 0.25, 3: 0.25}
    public = {1: x0 + np.float32(0.01), 2: x0 + np.float32(0.02), 3: x0 + np.float32(0.02)}
    out = atk.craft(view_for(tiny_trainer(), x0, round_=2, public=public, weights=weights))
    root = np.sqrt(x0.size)
    assert out.info["benign_norm_own"] == 0.0
    assert out.info["benign_update_norm"] == pytest.approx(0.015 * root, rel=1e-3)  # 0.5*0.01 + 0.5*0.02
    assert out.info["norm_ratio"] == pytest.approx(0.04 / 0.015, rel=1e-3)


def test_announced_accuracy_of_an_equivocating_attack_covers_each_distinct_model(monkeypatch, x0):
    optimise, _ = fixed_optimise(lambda start: start + np.float32(0.5))
    monkeypatch.setattr(Boost, "optimise", optimise)
    plan = tiny_plan()
    weights = {1: 0.25, 2: 0.25, 3: 0.25}  # equal weights: the same model to everybody
    same = build_attack("boost", {"lam": 1.0, "equivocate": True}, plan=plan, node=0)
    out = same.craft(view_for(tiny_trainer(), x0, weights=weights))
    assert "announced_acc_min" not in out.info
    assert out.info["announced_acc"] == pytest.approx(tiny_trainer().evaluate(out.announce[1], plan.test).accuracy)
    unequal = {1: 0.5, 2: 0.25, 3: 0.05}
    out = build_attack("boost", {"lam": 1.0, "equivocate": True}, plan=plan, node=0).craft(
        view_for(tiny_trainer(), x0, weights=unequal))
    accs = [tiny_trainer().evaluate(out.announce[j], plan.test).accuracy for j in (1, 2, 3)]
    assert out.info["announced_acc"] == pytest.approx(np.mean(accs))
    assert out.info["announced_acc_min"] == pytest.approx(min(accs))


# --------------------------------------------------------------------------- stealth statistics (pure)


def test_delta_spread_passes_the_test_only_inside_the_benign_spread():
    from p2pfl.attacks.stealth import delta_spread

    benign = [np.array([0.0, 0.0]), np.array([3.0, 4.0])]  # spread 5
    inside = delta_spread([np.array([1.0, 0.0])], benign, prev=[np.array([0.0, 4.0])])
    outside = delta_spread([np.array([1.0, 0.0])], benign, prev=[np.array([0.0, 6.0])])
    assert inside["benign_max"] == pytest.approx(5.0) and inside["dist_min"] == pytest.approx(1.0)
    assert inside["prev_within"] == 1.0 and outside["prev_within"] == 0.0
    assert delta_spread([np.zeros(2)], [], prev=None) == {}
    assert "prev_within" not in delta_spread([np.zeros(2)], benign[:1], prev=[np.zeros(2)])


def test_norm_ratio_prefers_the_own_honest_update_then_the_weighted_neighbours():
    from p2pfl.attacks.stealth import norm_ratio

    ups = {1: np.array([3.0, 4.0]), 2: np.array([0.0, 1.0])}
    own = norm_ratio(10.0, 2.0, ups, {1: 0.5, 2: 0.5})
    assert own == {"benign_update_norm": 2.0, "benign_norm_own": 1.0, "norm_ratio": 5.0}
    mean = norm_ratio(6.0, None, ups, {1: 0.25, 2: 0.75})  # (0.25*5 + 0.75*1) / 1 = 2
    assert mean == {"benign_update_norm": 2.0, "benign_norm_own": 0.0, "norm_ratio": 3.0}
    assert norm_ratio(1.0, None, {}, {}) == {}
