"""Tests of p2pfl.filters: the per-round guarantees (property tests) and hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from p2pfl.errors import ConfigError
from p2pfl.filters import (
    FILTERS,
    Chain,
    FilterContext,
    Proposals,
    TopKClipFilter,
    build_filter,
    row_norms,
    topk_indices,
)

# --------------------------------------------------------------------------- helpers


def ctx_for(
    d: int,
    own_update: np.ndarray | None = None,
    *,
    own: np.ndarray | None = None,
    evaluate=None,
    round_: int = 1,
    rounds: int = 10,
) -> FilterContext:
    return FilterContext(
        node=0,
        round=round_,
        rounds=rounds,
        own=np.zeros(d, np.float32) if own is None else np.asarray(own, np.float32),
        own_update=None if own_update is None else np.asarray(own_update, np.float32),
        evaluate=evaluate,
    )


def props(rows, w, ids=None) -> Proposals:
    u = np.asarray(rows, dtype=np.float32)
    ids = tuple(range(1, len(u) + 1)) if ids is None else tuple(ids)
    return Proposals(ids, u, np.asarray(w, dtype=np.float64))


def contribution_norms(p: Proposals, update: np.ndarray, tau: float) -> dict[int, float]:
    """||mask ⊙ W_j clip(u_j, τ)|| computed independently, in float64."""
    mask = update != 0
    out = {}
    for j, row, wj in zip(p.ids, p.u, p.w, strict=True):
        r = row.astype(np.float64)
        n = float(np.sqrt(np.sum(r * r)))
        s = 1.0 if n <= tau else tau / n
        out[j] = float(np.linalg.norm(wj * s * r * mask))
    return out


# elements: zeros, ordinary values, sparse huge spikes up to ±1e30
_BIG = float(np.float32(1e30))
_BIG_NEG = -_BIG
_elem = st.one_of(
    st.just(0.0),
    st.floats(-10, 10, width=32),
    st.floats(_BIG_NEG, _BIG, width=32),
    st.sampled_from([1e30, -1e30, 1e-30, 3.0]),
)


@st.composite
def proposal_sets(draw, min_m: int = 1, max_m: int = 5, max_d: int = 40):
    m = draw(st.integers(min_m, max_m))
    d = draw(st.integers(1, max_d))
    u = draw(hnp.arrays(np.float32, (m, d), elements=_elem))
    raw = np.array(draw(st.lists(st.floats(0, 1), min_size=m, max_size=m)), dtype=np.float64)
    total = draw(st.floats(0, 1))
    w = raw / raw.sum() * total if raw.sum() > 0 else raw
    ids = draw(st.permutations(list(range(1, m + 1))))
    own = draw(st.one_of(st.none(), hnp.arrays(np.float32, (d,), elements=_elem)))
    return Proposals(tuple(ids), u, w), own


tau_values = st.one_of(st.just("auto"), st.floats(1e-3, 1e3))
rules = st.sampled_from(["median-with-own", "own", "median"])


# --------------------------------------------------------------------------- topk-clip guarantee


@settings(max_examples=150, deadline=None)
@given(data=proposal_sets(), tau=tau_values, rule=rules, kappa=st.floats(0.01, 1.0))
def test_topk_clip_bounds_every_contribution_and_the_changed_coordinates(data, tau, rule, kappa):
    # Arrange
    p, own = data
    filt = build_filter("topk-clip", {"tau": tau, "tau_rule": rule, "kappa": kappa})
    d = p.u.shape[1]
    k = max(1, round(kappa * d))
    # Act
    res = filt(p, ctx_for(d, own))
    # Assert
    assert res.update.dtype == np.float32 and res.update.shape == (d,)
    assert np.all(np.isfinite(res.update))
    assert np.count_nonzero(res.update) <= k
    assert res.kept_coords == np.count_nonzero(res.update)
    w = dict(zip(p.ids, p.w, strict=True))
    independent = contribution_norms(p, res.update, res.tau)
    for j in p.ids:
        bound = w[j] * res.tau * (1 + 1e-5) + 1e-30
        assert res.norm_out[j] <= bound
        assert independent[j] <= bound
        assert 0.0 <= res.survived[j] <= 1.0


@settings(max_examples=100, deadline=None)
@given(data=proposal_sets(), tau=tau_values, kappa=st.floats(0.01, 1.0), seed=st.integers(0, 99))
def test_topk_clip_is_invariant_to_the_order_of_neighbours(data, tau, kappa, seed):
    # Arrange
    p, own = data
    perm = np.random.default_rng(seed).permutation(len(p.ids))
    q = Proposals(tuple(p.ids[k] for k in perm), p.u[perm], p.w[perm])
    params = {"tau": tau, "kappa": kappa}
    d = p.u.shape[1]
    # Act
    a = build_filter("topk-clip", params)(p, ctx_for(d, own))
    b = build_filter("topk-clip", params)(q, ctx_for(d, own))
    # Assert
    assert np.array_equal(a.update, b.update)
    assert a.norm_out == b.norm_out


@settings(max_examples=60, deadline=None)
@given(data=proposal_sets(), tau=tau_values, kappa=st.floats(0.01, 1.0))
def test_topk_clip_per_proposal_mode_bounds_norms_and_m_times_k_coordinates(data, tau, kappa):
    # Arrange
    p, own = data
    filt = build_filter("topk-clip", {"tau": tau, "kappa": kappa, "mode": "per-proposal"})
    d, m = p.u.shape
    # Act
    res = filt(p, ctx_for(d, own))
    # Assert
    assert np.all(np.isfinite(res.update))
    assert np.count_nonzero(res.update) <= m * max(1, round(kappa * d))
    for j, wj in zip(p.ids, p.w, strict=True):
        assert res.norm_out[j] <= wj * res.tau * (1 + 1e-5) + 1e-30


@pytest.mark.parametrize("name", ["topk-clip", "clip", "clipped-gossip", "none", "median"])
def test_zero_proposals_give_the_identity(name):
    # Arrange
    p = props(np.zeros((3, 7)), [0.25, 0.25, 0.25])
    # Act
    res = build_filter(name)(p, ctx_for(7, np.ones(7)))
    # Assert
    assert not np.any(res.update)
    assert res.kept_coords == 0
    assert all(v == 1.0 for v in res.survived.values())


def test_no_proposals_give_the_identity():
    res = build_filter("topk-clip")(props(np.zeros((0, 5)), []), ctx_for(5, np.ones(5)))
    assert res.update.shape == (5,) and not np.any(res.update)


# --------------------------------------------------------------------------- clip guarantee


@settings(max_examples=150, deadline=None)
@given(data=proposal_sets(), tau=tau_values, rule=rules)
def test_clip_bounds_every_contribution(data, tau, rule):
    # Arrange
    p, own = data
    d = p.u.shape[1]
    # Act
    res = build_filter("clip", {"tau": tau, "tau_rule": rule})(p, ctx_for(d, own))
    # Assert
    assert np.all(np.isfinite(res.update))
    for j, row, wj in zip(p.ids, p.u, p.w, strict=True):
        assert res.norm_out[j] <= wj * res.tau * (1 + 1e-5) + 1e-30
        n = float(np.linalg.norm(row.astype(np.float64)))
        assert res.norm_in[j] == pytest.approx(n, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(data=proposal_sets(max_d=12), tau=st.floats(1e-3, 1e3))
def test_clip_equals_the_weighted_sum_of_clipped_proposals(data, tau):
    # Arrange
    p, own = data
    d = p.u.shape[1]
    expected = np.zeros(d)
    for row, wj in zip(p.u.astype(np.float64), p.w, strict=True):
        n = np.linalg.norm(row)
        expected += wj * row * (1.0 if n <= tau else tau / n)
    # Act
    res = build_filter("clip", {"tau": tau})(p, ctx_for(d, own))
    # Assert
    np.testing.assert_allclose(res.update, expected, rtol=1e-4, atol=1e-6 * tau)


# --------------------------------------------------------------------------- τ anchoring


def test_own_update_anchors_auto_tau_where_a_neighbour_median_does_not():
    # Arrange: a ring node: one honest neighbour (norm 1), one attacker (norm 1e6), own norm 1
    p = props([[1.0, 0.0], [0.0, 1e6]], [1 / 3, 1 / 3])
    ctx = ctx_for(2, [0.0, 1.0])
    # Act
    anchored = build_filter("clip", {"tau_rule": "median-with-own"})(p, ctx)
    own_only = build_filter("clip", {"tau_rule": "own", "tau_scale": 2.0})(p, ctx)
    neighbours_only = build_filter("clip", {"tau_rule": "median"})(p, ctx)
    # Assert
    assert anchored.tau == pytest.approx(1.0)
    assert own_only.tau == pytest.approx(2.0)
    assert neighbours_only.tau == pytest.approx(5e5, rel=1e-5)  # the ring weakness
    assert anchored.norm_out[2] == pytest.approx(1 / 3)
    assert neighbours_only.norm_out[2] == pytest.approx(5e5 / 3, rel=1e-5)


def test_auto_tau_falls_back_to_its_history_when_the_node_did_not_train():
    # Arrange
    filt = build_filter("topk-clip", {"tau_rule": "own", "kappa": 1.0})
    p = props([[1.0, 0.0], [0.0, 1e6]], [1 / 3, 1 / 3])
    filt(p, ctx_for(2, [0.0, 2.0]))
    filt(p, ctx_for(2, [0.0, 4.0]))
    # Act
    no_train = filt(p, ctx_for(2, None))
    zero_update = filt(p, ctx_for(2, np.zeros(2)))
    fresh = build_filter("topk-clip", {"tau_rule": "own"})(p, ctx_for(2, None))
    # Assert
    assert no_train.tau == pytest.approx(3.0)  # median of the remembered 2 and 4
    assert zero_update.tau == pytest.approx(3.0)
    assert fresh.tau == pytest.approx((1 + 1e6) / 2)  # no history yet: incoming median


# --------------------------------------------------------------------------- hand-computed cases


def test_none_is_the_weighted_sum():
    res = build_filter("none")(props([[1, 2], [3, 4]], [0.25, 0.25]), ctx_for(2))
    np.testing.assert_allclose(res.update, [1.0, 1.5])
    assert res.survived == {1: 1.0, 2: 1.0}


def test_clip_by_hand():
    # row 1 has norm 5 -> clipped to [0.6, 0.8]; 0.5*[0.6, 0.8] + 0.25*[0, 0.5]
    p = props([[3, 4], [0, 0.5]], [0.5, 0.25])
    res = build_filter("clip", {"tau": 1.0})(p, ctx_for(2))
    np.testing.assert_allclose(res.update, [0.3, 0.525], rtol=1e-6)
    assert res.survived[1] == pytest.approx(0.2)
    assert res.survived[2] == pytest.approx(1.0)


def test_topk_clip_by_hand():
    # a = 0.5*[4, 0, 0, -1] + 0.5*[0, 3, 0, 0] = [2, 1.5, 0, -0.5]; k = 2 keeps [2, 1.5]
    p = props([[4, 0, 0, -1], [0, 3, 0, 0]], [0.5, 0.5])
    res = build_filter("topk-clip", {"tau": 10.0, "kappa": 0.5})(p, ctx_for(4))
    np.testing.assert_allclose(res.update, [2.0, 1.5, 0.0, 0.0])
    assert res.kept_coords == 2
    assert res.norm_out[1] == pytest.approx(2.0)  # its -1 coordinate was cut
    assert res.survived[1] == pytest.approx(4 / math.sqrt(17))


def test_median_by_hand():
    # with self (0): coord 0 med{0, 1, 3} = 1, coord 1 med{0, -2, 4} = 0; times ΣW = 2/3
    p = props([[1, -2], [3, 4]], [1 / 3, 1 / 3])
    res = build_filter("median")(p, ctx_for(2))
    np.testing.assert_allclose(res.update, [2 / 3, 0.0], rtol=1e-6)
    assert res.norm_out[1] == pytest.approx(2 / 3)
    assert res.norm_out[2] == 0.0


def test_trimmed_mean_by_hand():
    # with self: coord 0 {0,1,2,3} -> mean(1,2) = 1.5; coord 1 {0,10,-10,0} -> 0; ΣW = 0.75
    p = props([[1, 10], [2, -10], [3, 0]], [0.25, 0.25, 0.25])
    res = build_filter("trimmed-mean", {"b": 1})(p, ctx_for(2))
    np.testing.assert_allclose(res.update, [1.125, 0.0], rtol=1e-6)


def test_krum_by_hand():
    # candidates 0 (self), 1, 1.1, 0.9, 100 on a line; n=5, f=1: 2 nearest.
    # scores: self 0.81+1=1.81, "1" 0.01+0.01=0.02, "1.1" 0.05, "0.9" 0.05, "100" huge
    p = props([[1, 0], [1.1, 0], [0.9, 0], [100, 0]], [0.2] * 4)
    res = build_filter("krum", {"f": 1})(p, ctx_for(2))
    np.testing.assert_allclose(res.update, [0.8, 0.0], rtol=1e-6)
    assert res.dropped == (2, 3, 4)


def test_multi_krum_by_hand():
    # default multi = n - f = 4: "1", "1.1", "0.9", self -> mean 0.75, times ΣW = 0.8
    p = props([[1, 0], [1.1, 0], [0.9, 0], [100, 0]], [0.2] * 4)
    res = build_filter("multi-krum", {"f": 1})(p, ctx_for(2))
    np.testing.assert_allclose(res.update, [0.6, 0.0], rtol=1e-6)
    assert res.dropped == (4,)


def test_krum_picks_the_node_itself_when_neighbours_disagree_with_it():
    # self at 0, neighbours spread far apart; self has the smallest score
    p = props([[10, 0], [-10, 0], [0, 10], [0, -10]], [0.2] * 4)
    res = build_filter("krum", {"f": 1})(p, ctx_for(2))
    assert not np.any(res.update)
    assert res.dropped == (1, 2, 3, 4)


def test_clipped_gossip_by_hand():
    # norms {1, 2, 10} and own 1.5: clip the largest, τ = second largest = 2
    p = props([[1, 0], [0, 2], [10, 0]], [0.25] * 3)
    res = build_filter("clipped-gossip")(p, ctx_for(2, [1.5, 0]))
    assert res.tau == pytest.approx(2.0)
    np.testing.assert_allclose(res.update, [0.75, 0.5], rtol=1e-6)


def test_clipped_gossip_weighted_quantile_rule():
    # weights .25 each, own weight .25 (norm 1.5); delta 0.3 clips at most weight .3:
    # the largest (10) fits, the next (2) does not -> τ = 2
    p = props([[1, 0], [0, 2], [10, 0]], [0.25] * 3)
    res = build_filter("clipped-gossip", {"delta": 0.3})(p, ctx_for(2, [1.5, 0]))
    assert res.tau == pytest.approx(2.0)
    res = build_filter("clipped-gossip", {"delta": 0.6})(p, ctx_for(2, [1.5, 0]))
    assert res.tau == pytest.approx(1.5)


def _krum_reference(u: np.ndarray, f: int, how_many: int) -> list[int]:
    """Brute-force Krum selection in float64 from direct differences (0: self, r+1: row r)."""
    x = np.vstack([np.zeros((1, u.shape[1])), u.astype(np.float64)])
    n = len(x)
    d2 = np.array([[float(np.sum((x[i] - x[j]) ** 2)) for j in range(n)] for i in range(n)])
    q = n - f - 2
    scores = [sum(sorted(np.delete(d2[i], i))[:q]) for i in range(n)]
    return sorted(np.argsort(scores, kind="stable")[:how_many].tolist())


@pytest.mark.parametrize("name", ["krum", "multi-krum"])
def test_krum_selects_like_a_float64_reference_on_large_close_proposals(name):
    # Regression: distances as ||a||² + ||b||² − 2a·b cancel on proposals at ||x|| ≈ 1e6·√d
    # that are 0.1 apart per coordinate; the selection then differed from the exact one
    # for most seeds. Scores must match the direct-difference reference.
    m, d, f = 8, 1000, 1
    multi = 3 if name == "multi-krum" else 1
    for seed in range(20):
        rng = np.random.default_rng(seed)
        centre = rng.normal(size=d) * 1e6
        u = (centre + 0.1 * rng.normal(size=(m, d))).astype(np.float32)
        p = props(u, [1 / (m + 1)] * m)
        params = {"f": f} if name == "krum" else {"f": f, "multi": multi}
        res = build_filter(name, params)(p, ctx_for(d))
        chosen = [r for r in _krum_reference(u, f, multi) if r > 0]
        assert sorted(res.dropped) == [j for j in p.ids if j not in chosen], seed


def test_clipped_gossip_clips_exactly_k_when_delta_is_k_over_m():
    # Regression: with delta = k/m and m equal weights, the clipped weight (k summed
    # values of 1/m) landed just above delta·Σw in floating point and only k − 1
    # proposals were clipped. Every (m, k) with m <= 30, with and without an own update.
    wrong = []
    for own in (False, True):
        for m in range(2, 31):
            n = m + 1 if own else m  # own update takes the self weight 1 − Σw = 1/n
            rows = np.zeros((m, 2), np.float32)
            rows[:, 0] = np.arange(2, m + 2)  # distinct norms, all above the own one (0.5)
            p = props(rows, [1.0 / n] * m)
            for k in range(1, m):
                filt = build_filter("clipped-gossip", {"delta": k / n})
                res = filt(p, ctx_for(2, [0.5, 0] if own else None))
                if filt.counters["clipped"] != k or res.tau != pytest.approx(m + 1 - k):
                    wrong.append((own, m, k, filt.counters["clipped"]))
    assert wrong == []


def test_balance_by_hand():
    # threshold = 0.5 * exp(-1 * 1/1) * ||[3, 4]|| = 0.9197: keeps norm 0.5, drops norm 2
    p = props([[0.5, 0], [0, 2]], [0.25, 0.25])
    ctx = ctx_for(2, own=[3, 4], round_=1, rounds=1)
    res = build_filter("balance", {"gamma": 0.5, "kappa_b": 1.0})(p, ctx)
    np.testing.assert_allclose(res.update, [0.125, 0.0])
    assert res.dropped == (2,)
    assert res.survived[2] == 0.0


def _accuracy(v: np.ndarray) -> float:
    return 0.9 if v[1] < 5 else 0.5


def test_accuracy_check_drops_a_proposal_that_costs_validation_accuracy():
    p = props([[1, 0], [0, 10]], [0.25, 0.25])
    filt = build_filter("accuracy-check", {"threshold": 0.1})
    res = filt(p, ctx_for(2, evaluate=_accuracy))
    np.testing.assert_allclose(res.update, [0.25, 0.0])
    assert res.dropped == (2,)
    assert filt.last_accuracy == {"own": 0.9, 1: 0.9, 2: 0.5}


def test_accuracy_check_without_a_validation_split_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        build_filter("accuracy-check")(props([[1, 0]], [0.5]), ctx_for(2))
    assert err.value.field == "defence"


# --------------------------------------------------------------------------- chains


def test_chain_accuracy_check_then_topk_clip_drops_the_bad_and_clips_the_rest():
    # Arrange
    p = props([[2, 0], [0, 10]], [0.25, 0.25])
    filt = build_filter("accuracy-check,topk-clip", {"tau": 0.5, "kappa": 1.0, "threshold": 0.1})
    # Act
    res = filt(p, ctx_for(2, evaluate=_accuracy))
    # Assert
    assert isinstance(filt, Chain) and filt.spec == "accuracy-check,topk-clip"
    np.testing.assert_allclose(res.update, [0.125, 0.0])
    assert res.dropped == (2,)
    assert res.survived[1] == pytest.approx(0.25)
    assert filt.counters["dropped"] == 1
    assert filt.counters["clipped"] == 1
    assert filt.counters["accuracy-check.dropped"] == 1
    assert filt.counters["topk-clip.clipped"] == 1


def test_chain_clip_then_median_clips_before_the_median():
    # clip to 1: [3,4] -> [.6,.8], [0,-5] -> [0,-1]; med with self: [0, 0]·, third row [.5, .5]
    p = props([[3, 4], [0, -5], [0.5, 0.5]], [0.25] * 3)
    res = build_filter(["clip", "median"], {"tau": 1.0})(p, ctx_for(2))
    # coord 0 {0, .6, 0, .5} -> (0 + .5)/2 = .25; coord 1 {0, .8, -1, .5} -> (0 + .5)/2 = .25
    np.testing.assert_allclose(res.update, [0.1875, 0.1875], rtol=1e-6)


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("spec", "params", "field"),
    [
        ("topk-clp", {}, "defence"),
        ("median,topk-clip", {}, "defence"),
        ("", {}, "defence"),
        ("topk-clip", {"kapa": 0.1}, "defence.kapa"),
        ("median", {"kappa": 0.1}, "defence.kappa"),
        ("topk-clip", {"kappa": 0.0}, "defence.kappa"),
        ("topk-clip", {"kappa": 1.5}, "defence.kappa"),
        ("topk-clip", {"tau": -1}, "defence.tau"),
        ("topk-clip", {"tau": "big"}, "defence.tau"),
        ("clip", {"tau_rule": "mean"}, "defence.tau_rule"),
        ("topk-clip", {"mode": "both"}, "defence.mode"),
        ("trimmed-mean", {"b": 1.5}, "defence.b"),
        ("krum", {"f": -1}, "defence.f"),
        ("balance", {"gamma": 0}, "defence.gamma"),
        ("accuracy-check", {"threshold": 2}, "defence.threshold"),
        ("clipped-gossip", {"delta": 1.0}, "defence.delta"),
    ],
)
def test_build_filter_errors_name_the_field(spec, params, field):
    with pytest.raises(ConfigError) as err:
        build_filter(spec, params)
    assert err.value.field == field


def test_build_filter_accepts_every_registered_name_and_cli_strings():
    for name in FILTERS:
        assert build_filter(name).spec == name
    filt = build_filter("topk-clip", {"tau": "0.5", "kappa": "0.2"})
    assert isinstance(filt, TopKClipFilter) and filt.tau == 0.5 and filt.kappa == 0.2


@pytest.mark.parametrize(
    ("spec", "params", "degree", "field"),
    [
        ("krum", {"f": 1}, 2, "defence.f"),
        ("multi-krum", {"f": 2}, 3, "defence.f"),
        ("multi-krum", {"f": 1, "multi": 5}, 3, "defence.multi"),
        ("trimmed-mean", {"b": 1}, 1, "defence.b"),
        ("accuracy-check,trimmed-mean", {"b": 2}, 3, "defence.b"),
    ],
)
def test_check_rejects_too_few_neighbours(spec, params, degree, field):
    filt = build_filter(spec, params)
    with pytest.raises(ConfigError) as err:
        filt.check(degree)
    assert err.value.field == field
    assert f"{degree} neighbours" in str(err.value)


def test_krum_still_aggregates_when_a_screen_leaves_too_few_proposals():
    # accuracy-check drops one of three; krum with f=1 then has n=3 < f+3 candidates
    p = props([[1, 0], [1.2, 0], [0, 10]], [0.25] * 3)
    filt = build_filter("accuracy-check,krum", {"f": 1})
    filt.check(3)
    res = filt(p, ctx_for(2, evaluate=_accuracy))
    assert 3 in res.dropped
    assert np.all(np.isfinite(res.update))


def test_check_accepts_enough_neighbours():
    build_filter("krum", {"f": 1}).check(3)
    build_filter("trimmed-mean", {"b": 1}).check(2)


# --------------------------------------------------------------------------- robustness, state


def test_non_finite_proposals_are_dropped_and_counted():
    p = props([[np.nan, 0], [1, 0]], [0.25, 0.25])
    filt = build_filter("topk-clip", {"tau": 10.0, "kappa": 1.0})
    res = filt(p, ctx_for(2, [1, 0]))
    assert res.dropped == (1,) and res.norm_in[1] == math.inf
    np.testing.assert_allclose(res.update, [0.25, 0.0])
    assert filt.counters["nonfinite"] == 1 and filt.counters["dropped"] == 1


def test_row_norms_do_not_overflow_on_huge_values():
    u = np.full((2, 1000), 1e30, dtype=np.float32)
    u[1] = np.finfo(np.float32).max
    n = row_norms(u)
    assert np.all(np.isfinite(n))
    assert n[0] == pytest.approx(float(np.float32(1e30)) * math.sqrt(1000), rel=1e-12)


def test_topk_indices_handles_ties_zeros_and_large_vectors():
    assert sorted(topk_indices(np.array([1, 3, 3, 3, 0], np.float32), 2)) == [1, 2]
    assert sorted(topk_indices(np.array([0, 2, 0, 0], np.float32), 3)) == [1]
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(300_000)).astype(np.float32)
    idx = topk_indices(x, 3000)
    assert idx.size == 3000
    assert x[idx].min() >= np.sort(x)[-3000]


def test_counters_and_state_dict_round_trip():
    # Arrange: three rounds with an own update, then a checkpoint
    p = props([[3, 4], [0, 0.5], [10, 0]], [0.25, 0.25, 0.25])
    filt = build_filter("accuracy-check,topk-clip", {"kappa": 0.5})
    for r, s in enumerate((1.0, 2.0, 3.0), start=1):
        filt(p, ctx_for(2, [s, 0], evaluate=lambda v: 1.0, round_=r))
    state = filt.state_dict()
    # Act
    restored = build_filter("accuracy-check,topk-clip", {"kappa": 0.5})
    restored.load_state_dict(json.loads(json.dumps(state)))
    a = filt(p, ctx_for(2, None, evaluate=lambda v: 1.0))
    b = restored(p, ctx_for(2, None, evaluate=lambda v: 1.0))
    # Assert
    assert state["counters"]["proposals"] == 9 and state["counters"]["calls"] == 3
    assert state["counters"]["coords_kept"] == 3
    assert a.tau == b.tau
    assert np.array_equal(a.update, b.update)
    assert filt.counters == restored.counters


def test_load_state_dict_rejects_another_filters_state():
    with pytest.raises(ConfigError):
        build_filter("clip").load_state_dict(build_filter("median").state_dict())


# --------------------------------------------------------------------------- package shape


def test_a_clipping_rule_must_say_how_it_picks_its_radius():
    from p2pfl.filters.clip import _ClipBase

    class NoRadius(_ClipBase):
        name = "no-radius"

    with pytest.raises(TypeError, match="_resolve_tau"):
        NoRadius()


@pytest.mark.parametrize(
    ("spec", "params", "field", "allowed"),
    [
        ("topk-clip", {"kappa": 2}, "defence.kappa", "(0, 1]"),
        ("topk-clip", {"tau": "big"}, "defence.tau", '"auto"'),
        ("krum", {"f": 1.5}, "defence.f", "integer"),
        ("clip", {"tau_rule": "mean"}, "defence.tau_rule", "median-with-own"),
        ("median", {"kappa": 0.1}, "defence.kappa", "median takes no parameters"),
    ],
)
def test_parameter_errors_say_what_is_allowed(spec, params, field, allowed):
    with pytest.raises(ConfigError) as err:
        build_filter(spec, params)
    assert err.value.field == field and allowed in str(err.value)
