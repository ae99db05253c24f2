"""Asynchronous mode (docs/protocol.md, "Rounds and ticks") on real in-process nodes over loopback sockets.

Training is off in most tests (models only mix) and ``net.tick_period`` paces the ticks,
so every test takes seconds. No assertion depends on timings beyond orderings.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl import wire
from p2pfl.behaviour import Crafted, Honest, NodeView
from p2pfl.cli import build_config
from p2pfl.config import RunConfig
from p2pfl.errors import ConfigError
from p2pfl.launch import run, run_inprocess_async
from p2pfl.node import Node
from p2pfl.plan import Plan
from p2pfl.transport import Transport


class Recording:
    """Honest behaviour that remembers x at the start of every tick."""

    name = "benign"

    def __init__(self) -> None:
        self.x: dict[int, np.ndarray] = {}

    def craft(self, view: NodeView) -> Crafted:
        self.x[view.round] = view.x.copy()
        return Honest().craft(view)


def spread(models) -> float:
    models = list(models)
    return max(float(np.linalg.norm(a - b)) for a in models for b in models)


def different_starts(plan: Plan, n: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i: plan.x0 + rng.standard_normal(plan.dim).astype(np.float32) for i in range(n)}


def async_config(make_config, **changes):
    base = {"mode": "async", "train.epochs": 0, "net.tick_period": 0.1, "net.round_timeout": 20.0}
    base.update(changes)
    return make_config(**base)


def assert_copies_exact(nodes: list[Node]) -> None:
    by_id = {n.id: n for n in nodes}
    for node in nodes:
        for j, peer in node.peers.items():
            assert wire.checksum(peer.copy) == wire.checksum(by_id[j].announced_to(node.id)), (node.id, j)
            assert peer.round == by_id[j].protocol.announced_round(node.id), (node.id, j)


# ---- configuration --------------------------------------------------------------------------------
def test_mode_and_churn_are_validated_and_default_configs_keep_their_digest():
    with pytest.raises(ConfigError) as err:
        RunConfig(mode="lockstep")
    assert err.value.args and "mode" in str(err.value)
    with pytest.raises(ConfigError, match="churn"):
        RunConfig(churn=({"nodes": [1], "leave": 2, "rejoin": 4},))  # sync mode: no churn
    with pytest.raises(ConfigError, match="churn.rejoin"):
        RunConfig(mode="async", churn=({"nodes": [1], "leave": 4, "rejoin": 2},))
    with pytest.raises(ConfigError, match="speed"):
        RunConfig(speed=0.0)
    # New settings at their defaults do not enter the mapping: old runs keep their digest.
    assert "mode" not in RunConfig().to_mapping() and "fanout" not in RunConfig().to_mapping()["net"]
    cfg = build_config(None, {"mode": "async", "fanout": 1}, ("speed=0.5", "net.staleness=0.5"))
    assert (cfg.mode, cfg.net.fanout, cfg.speed, cfg.net.staleness) == ("async", 1, 0.5, 0.5)
    assert cfg.digest() != RunConfig().digest()
    role = cfg.replace(roles=({"nodes": [2], "speed": 0.2},))
    assert role.speed_of(2) == 0.2 and role.speed_of(1) == 0.5
    assert RunConfig.from_mapping(role.to_mapping()) == role


# ---- consensus ------------------------------------------------------------------------------------
async def test_async_complete_graph_reaches_consensus(make_config):
    cfg = async_config(make_config, topology="full", nodes=4, rounds=6)
    plan = Plan.build(cfg)
    init = different_starts(plan, 4)
    rec: dict[int, Recording] = {}
    nodes: list[Node] = []

    def configure(node: Node) -> None:
        rec[node.id] = node.behaviour = Recording()

    result = await run_inprocess_async(plan, x_init=init, keep_nodes=nodes, configure=configure)
    first = spread(init.values())
    last = spread(result.final_models.values())
    assert last < 0.1 * first, (first, last)
    # every node ran every tick, records carry wall time and tick
    for n in nodes:
        assert [r["tick"] for r in n.history] == list(range(1, 7))
        walls = [r["wall"] for r in n.history]
        assert walls == sorted(walls)
    assert_copies_exact(nodes)


async def test_fanout_one_push_gossip_shrinks_the_spread_on_the_complete_graph_of_20(make_config):
    # The classic push gossip. Every node pushes to one random
    # neighbour per tick and merges with the latest copies it holds; training is off.
    n, ticks = 20, 12
    cfg = async_config(make_config, topology="full", nodes=n, rounds=ticks, **{"net.fanout": 1})
    plan = Plan.build(cfg)
    init = different_starts(plan, n)
    rec: dict[int, Recording] = {}
    nodes: list[Node] = []

    def configure(node: Node) -> None:
        rec[node.id] = node.behaviour = Recording()
        node.eval_every = ticks  # only the models matter here

    result = await run_inprocess_async(plan, x_init=init, keep_nodes=nodes, configure=configure)
    models = [[rec[i].x[t] for i in range(n)] for t in range(1, ticks + 1)] + [list(result.final_models.values())]

    def variance(ms) -> float:  # mean squared distance to the mean model
        mean = np.mean(ms, axis=0)
        return float(np.mean([np.sum((m - mean) ** 2) for m in ms]))

    spreads = [spread(ms) for ms in models]
    variances = [variance(ms) for ms in models]
    # every merge is a convex combination of models held, so the spread never grows, and
    # the disagreement shrinks from every tick to the next
    assert all(b <= a * (1 + 1e-6) for a, b in zip(spreads, spreads[1:], strict=False)), spreads
    assert all(b < a for a, b in zip(variances, variances[1:], strict=False)), variances
    assert spreads[-1] < 0.5 * spreads[0] and variances[-1] < 0.25 * variances[0], (spreads, variances)
    for node in nodes:  # one neighbour per tick, chosen per node
        assert all(len(r["announced_to"]) == 1 for r in node.history)
        assert len({r["announced_to"][0] for r in node.history}) > 1
    # per-neighbour public copies stay bit-identical with the sender's (deltas and checksums exact)
    assert_copies_exact(nodes)
    assert all(node.rejected.get("checksum", 0) == 0 for node in nodes)


# ---- an adversary announcing 10x as often ---------------------------------------------------------
class Noisy:
    """Announces a fresh random model every tick (training off)."""

    name = "noisy"

    def craft(self, view: NodeView) -> Crafted:
        rng = np.random.default_rng(view.round)
        z = view.x + rng.standard_normal(view.x.shape[0]).astype(np.float32)
        return Crafted(own=z, announce=z)


async def test_a_fast_announcer_gets_no_more_merge_weight(make_config):
    # Node 3 ticks ten times as often as the others (speed 1 vs 0.1) and runs ten times as
    # many ticks; on the complete graph of 4 every W_ij is 1/4.
    cfg = async_config(make_config, topology="full", nodes=4, rounds=4, speed=0.1,
                       **{"net.tick_period": 0.04}).replace(roles=({"nodes": [3], "speed": 1.0},))
    plan = Plan.build(cfg)
    nodes: list[Node] = []

    def configure(node: Node) -> None:
        if node.id == 3:
            node.behaviour = Noisy()
            node.rounds = 40
            node.eval_every = 1000  # its ticks are paced by the tick period, not by evaluations

    await run_inprocess_async(plan, keep_nodes=nodes, configure=configure)
    by_id = {n.id: n for n in nodes}
    assert len(by_id[3].history) == 40
    for i in (0, 1, 2):
        seen_fast = 0
        for r in by_id[i].history:
            w = r["weights"]
            if "3" in w:
                benign = [w[str(j)] for j in (0, 1, 2) if str(j) in w]
                assert all(w["3"] <= b + 1e-12 for b in benign), w
                assert w["3"] == pytest.approx(0.25)
                seen_fast = max(seen_fast, r["peer_rounds"]["3"])
        # it did announce far more often than the benign nodes (its copy's tick is far ahead)
        assert seen_fast > 2 * len(by_id[i].history)


async def test_a_10x_announcer_gets_no_more_merge_weight_than_one_at_the_benign_pace(make_config):
    # Announcing more often buys no weight, through the attack's own knob (attack.announce_every): the
    # same adversary once at the benign nodes' pace, once ten times as often. At every merge of
    # every receiver it weighs W_ij = 1/4 in both runs; only its copy is fresher.
    period = 0.5

    async def run_with(every: float, **net) -> dict[int, Node]:
        cfg = async_config(make_config, topology="full", nodes=4, rounds=4,
                           **{"net.tick_period": period, **net}).replace(
            roles=({"nodes": [3], "attack": {"name": "signflip", "announce_every": every}},))
        nodes: list[Node] = []

        def configure(node: Node) -> None:
            node.eval_every = 100  # only the merges matter here
            if node.id == 3:
                node.behaviour = Noisy()

        await run_inprocess_async(Plan.build(cfg), keep_nodes=nodes, configure=configure)
        return {n.id: n for n in nodes}

    paced, fast = await run_with(period), await run_with(period / 10)
    assert fast[3].timing is not None and fast[3].timing.every == pytest.approx(period / 10)
    assert len(fast[3].history) > 3 * len(paced[3].history)  # it did announce far more often
    for by_id in (paced, fast):
        for i in (0, 1, 2):
            merges = [r for r in by_id[i].history if "3" in r["weights"]]
            assert merges
            assert all(r["weights"]["3"] == pytest.approx(0.25) for r in merges)
    # the fast one's copy at a receiver is many of its ticks ahead of the receiver's tick
    assert max(r["peer_rounds"]["3"] for r in fast[0].history) > 3 * fast[0].history[-1]["tick"]
    # with staleness discounting, a fast announcer is always fresh: it gets W_ij, never more
    stale = await run_with(period / 10, **{"net.staleness": 1.0})
    assert all(r["weights"].get("3", 0.0) <= 0.25 + 1e-12 for i in (0, 1, 2) for r in stale[i].history)


async def test_a_before_merge_adversary_lands_right_before_its_receivers_merge(make_config):
    # Benign nodes tick at different paces (periods 0.3, 0.375, 0.5 s), so their copies reach
    # each other at drifting phases. The adversary predicts each one's next merge from its
    # announcements and sends its delta just before it: at the receivers' merges its copy is
    # fresher than the benign neighbours' copies.
    cfg = async_config(make_config, topology="full", nodes=4, rounds=10, **{"net.tick_period": 0.3}).replace(
        roles=({"nodes": [1], "speed": 0.8}, {"nodes": [2], "speed": 0.6},
               {"nodes": [3], "attack": {"name": "signflip", "announce": "before-merge", "announce_lead": 0.08}}))
    nodes: list[Node] = []

    def configure(node: Node) -> None:
        node.eval_every = 100
        if node.id == 3:
            node.behaviour = Noisy()

    await run_inprocess_async(Plan.build(cfg), keep_nodes=nodes, configure=configure)
    by_id = {n.id: n for n in nodes}
    merges = [r for i in (0, 1, 2) for r in by_id[i].history[4:]]
    adversary = np.median([r["fresh"]["3"] for r in merges if "3" in r["fresh"]])
    benign = np.median([v for r in merges for j, v in r["fresh"].items() if j != "3"])
    assert adversary < benign, (adversary, benign)
    # it aimed: most of its announcements went to the one or two neighbours about to merge
    assert sum(len(r["announced_to"]) < 3 for r in by_id[3].history) > len(by_id[3].history) / 2
    assert_copies_exact(nodes)


def test_announcement_timing_is_validated_and_reaches_the_node(make_config):
    from p2pfl.attacks import check_params
    from p2pfl.launch import make_node
    from p2pfl.timing import AnnounceTiming

    for key, bad in (("announce", "late"), ("announce_every", -1), ("announce_lead", "x")):
        with pytest.raises(ConfigError, match=f"attack.{key}"):
            check_params("signflip", {key: bad})
    assert check_params("signflip", {"announce": "before-merge", "announce_every": 0.5}) == {}
    cfg = build_config(None, {"mode": "async"}, ("attack.name=signflip", "attack.announce=before-merge",
                                                  "adversaries=1", "nodes=4"))
    plan = Plan.build(cfg)
    (adv,) = plan.adversaries
    node = make_node(plan, adv, Transport(adv, "tcp://127.0.0.1:0"))
    assert node.timing == AnnounceTiming(mode="before-merge")
    node.transport.close(linger_ms=0)
    # role profiles carry it too; sync mode refuses it (rounds announce once per round)
    role = cfg.replace(adversaries=0, roles=({"nodes": [1], "attack": {"name": "signflip", "announce_every": 0.1}},))
    node = make_node(Plan.build(role), 1, Transport(1, "tcp://127.0.0.1:0"))
    assert node.timing == AnnounceTiming(every=0.1)
    node.transport.close(linger_ms=0)
    with pytest.raises(ConfigError, match="attack.announce"):
        make_node(Plan.build(cfg.replace(mode="sync")), adv, Transport(adv, "tcp://127.0.0.1:0"))


def test_merge_clock_predicts_and_serves_each_merge_once():
    from p2pfl.timing import MergeClock

    clock = MergeClock()
    for k in range(4):  # neighbour 5 announces every 1.0 s, neighbour 6 every 2 ticks of 0.5 s
        clock.observe(5, k + 1, 10.0 + k)
        clock.observe(6, 2 * k + 1, 10.2 + k)
    assert clock.period(5) == pytest.approx(1.0) and clock.period(6) == pytest.approx(0.5)
    at, merges = clock.due([5, 6], 13.3, lead=0.1)
    assert merges == {6: pytest.approx(13.7)} and at == pytest.approx(13.6)
    clock.served(6, merges[6])
    at, merges = clock.due([5, 6], 13.65, lead=0.1)  # 13.7 was served: next come 14.0 (5) and 14.2 (6)
    assert merges == {5: pytest.approx(14.0)} and at == pytest.approx(13.9)
    assert clock.due([7], 13.0, 0.1) == (None, {})  # never heard: no prediction


async def test_staleness_discounts_old_copies(make_config):
    cfg = async_config(make_config, topology="full", nodes=3, rounds=4, **{"net.staleness": 1.0})
    plan = Plan.build(cfg)
    nodes: list[Node] = []

    def configure(node: Node) -> None:
        if node.id == 2:
            node.rounds = 1  # announces once, then only waits: its copy ages at the others

    await run_inprocess_async(plan, keep_nodes=nodes, configure=configure)
    node0 = next(n for n in nodes if n.id == 0)
    last = node0.history[-1]
    age = last["ages"]["2"]
    assert age >= 1
    assert last["weights"]["2"] == pytest.approx(node0.weights[2] / (1 + age), rel=1e-5)


# ---- a straggler ----------------------------------------------------------------------------------
async def test_a_straggler_does_not_hold_the_others_back(make_config):
    cfg = async_config(make_config, topology="full", nodes=4, rounds=5).replace(
        roles=({"nodes": [0], "speed": 0.2},))
    plan = Plan.build(cfg)
    nodes: list[Node] = []
    await run_inprocess_async(plan, keep_nodes=nodes)
    last = {n.id: n.history[-1]["wall"] for n in nodes}
    assert all(last[i] < last[0] for i in (1, 2, 3)), last
    # the fast nodes were done with all their ticks before the slow one reached its third
    slow_third = nodes[0].history[2]["wall"]
    assert all(last[i] < slow_third for i in (1, 2, 3)), (last, slow_third)


# ---- churn ----------------------------------------------------------------------------------------
async def test_churn_nodes_leave_and_rejoin(make_config):
    cfg = async_config(make_config, topology="ring", nodes=6, rounds=6).replace(
        churn=({"nodes": [1, 4], "leave": 2, "rejoin": 4},))
    plan = Plan.build(cfg)
    init = different_starts(plan, 6)
    nodes: list[Node] = []
    addresses: dict[int, tuple[Transport, str]] = {}

    def configure(node: Node) -> None:
        addresses[node.id] = (node.transport, node.transport.address)

    result = await run_inprocess_async(plan, x_init=init, keep_nodes=nodes, configure=configure)
    by_id = {n.id: n for n in nodes}
    for i in (1, 4):
        assert [r["tick"] for r in by_id[i].history] == [1, 4, 5, 6]
        assert by_id[i].left_at is not None
        # it really closed its sockets and bound the same address again when it came back
        assert by_id[i].transport is not addresses[i][0] and by_id[i].transport.address == addresses[i][1]
    for i in (0, 2, 3, 5):
        assert [r["tick"] for r in by_id[i].history] == list(range(1, 7))
    # nobody waited for the departed: the others ticked while they were away
    away_from = max(by_id[i].left_at for i in (1, 4))
    back_at = min(by_id[i].history[1]["wall"] for i in (1, 4))
    assert any(away_from < r["wall"] < back_at for i in (0, 2, 3, 5) for r in by_id[i].history)
    # and every node finished because all neighbours said done (not because a timeout passed)
    assert all(n.finish_complete for n in nodes)
    assert spread(result.final_models.values()) < spread(init.values())


async def test_a_node_that_leaves_for_good_is_skipped_by_liveness(make_config):
    cfg = async_config(make_config, topology="ring", nodes=4, rounds=4,
                       **{"net.dead_after": 0.5, "net.gap_grace": 0.2}).replace(
        churn=({"nodes": [2], "leave": 2, "rejoin": 0},))
    plan = Plan.build(cfg)
    nodes: list[Node] = []
    await run_inprocess_async(plan, keep_nodes=nodes)
    by_id = {n.id: n for n in nodes}
    assert [r["tick"] for r in by_id[2].history] == [1]
    for i in (1, 3):  # its neighbours finished because liveness marked it down, not by timeout
        assert by_id[i].finish_complete and by_id[i].peers[2].down


# ---- the sans-IO protocol in async mode ---------------------------------------------------------------
D = 16


def proto(node: int, neighbours, **kw):
    from p2pfl.protocol import GossipProtocol

    p = GossipProtocol(node_id=node, exp_id="exp", x0=np.zeros(D, np.float32), neighbours=neighbours,
                       gap_grace=1.0, config_digest="exp", window=2, **kw)
    for peer in p.peers.values():
        peer.hello = True
    return p


def vec(node: int, t: int) -> np.ndarray:
    return np.random.default_rng([node, t]).standard_normal(D).astype(np.float32)


def rt(msg: wire.Message) -> wire.Message:
    return wire.decode([bytes(f) for f in wire.encode(msg)], dim=D)


def test_async_protocol_accepts_a_neighbour_far_ahead_and_never_asks_a_slow_one():
    a, b = proto(0, [1], asynchronous=True), proto(1, [0], asynchronous=True)
    b.begin_round(1, 0.0)  # b is slow: still at its tick 1
    for t in range(1, 21):  # a announces 20 ticks (window is 2)
        (msg,) = a.announce(t, vec(0, t))
        b.receive(rt(msg), None, 0.01 * t)
    assert b.rejected == {}
    assert b.peers[0].round == 20 and np.array_equal(b.peers[0].copy, a.announced_to(1))
    # b heard nothing from a for a long time: a slow neighbour is not a gap in async mode
    c = proto(1, [0], asynchronous=True)
    c.begin_round(5, 0.0)
    assert c.tick(100.0) == []
    # the same in sync mode rejects the far delta as "future"
    s = proto(1, [0])
    s.begin_round(1, 0.0)
    a3 = proto(0, [1])
    for t in range(1, 6):
        (msg,) = a3.announce(t, vec(0, t))
        s.receive(rt(msg), None, 0.0)
    assert s.rejected.get("future", 0) >= 1


def test_async_fanout_keeps_per_neighbour_copies_exact_and_repairs_gaps():
    a = proto(0, [1, 2], asynchronous=True)
    b, c = proto(1, [0], asynchronous=True), proto(2, [0], asynchronous=True)
    peers = {1: b, 2: c}
    lost = None
    for t, targets in enumerate([[1], [2], [1], [1], [2], [1, 2]], start=1):
        for msg in a.announce(t, vec(0, t), targets):
            if t == 3:  # a's tick-3 delta to b is lost: b's chain breaks
                lost = msg
                continue
            peers[msg.dst].receive(rt(msg), None, float(t))
    assert lost is not None
    assert a.announced_round(1) == 6 and a.announced_round(2) == 6
    assert np.array_equal(c.peers[0].copy, a.announced_to(2)) and c.peers[0].round == 6
    # b holds deltas it cannot apply: a gap, repaired by a snapshot request after the grace
    assert b.peers[0].round == 1 and b.peers[0].gap_since is not None
    assert b.tick(b.peers[0].gap_since + 0.5) == []
    (req,) = b.tick(b.peers[0].gap_since + 1.1)
    (snap,) = a.receive(rt(req), None, 10.0)
    b.receive(rt(snap), None, 10.1)
    assert b.peers[0].round == 6 and np.array_equal(b.peers[0].copy, a.announced_to(1))
    assert b.rejected.get("checksum", 0) == 0


# ---- wall-clock metrics and plots -----------------------------------------------------------------
def test_async_run_writes_wall_time_metrics_and_plot(make_config, tmp_path):
    from p2pfl.launch import run
    from p2pfl.report import write_run_plots

    cfg = make_config(topology="ring", nodes=4, rounds=2, mode="async", **{"net.round_timeout": 20.0})
    result = run(cfg, out=tmp_path / "run")
    assert all("wall" in r and r["tick"] == r["round"] for r in result.records)
    rows = result.summary["rounds"]
    assert [r["round"] for r in rows] == [1, 2] and all("wall_mean" in r for r in rows)
    assert result.final["accuracy_mean"] > 0
    names = {p.name for p in write_run_plots(tmp_path / "run")}
    assert "wall.png" in names and (tmp_path / "run" / "plots" / "wall.png").stat().st_size > 10_000


def test_a_sweep_over_mode_plots_both_against_wall_time(make_config, tmp_path):
    from p2pfl.report import write_sweep_plots
    from p2pfl.sweep import Sweep, run_sweep

    base = make_config(topology="ring", nodes=3, rounds=2, **{"net.round_timeout": 20.0, "train.epochs": 1})
    run_sweep(Sweep(base=base, axes={"mode": ["sync", "async"]}), tmp_path / "sw", plots=False)
    names = sorted(p.name for p in write_sweep_plots(tmp_path / "sw"))
    assert names == ["compare-mode.png", "wall-mode.png"]


# ---- filters per merge ----------------------------------------------------------------------------
class Loud:
    """Announces its model plus a large random vector, as often as it can."""

    name = "loud"

    def craft(self, view: NodeView) -> Crafted:
        rng = np.random.default_rng(view.round)
        z = view.x + 50.0 * rng.standard_normal(view.x.shape[0]).astype(np.float32)
        return Crafted(own=view.x.copy(), announce=z)


async def test_topk_clip_bound_holds_per_async_merge(make_config):
    tau, kappa = 0.5, 0.05
    cfg = async_config(make_config, topology="full", nodes=4, rounds=4, speed=0.25,
                       **{"defence.name": "topk-clip", "defence.tau": tau, "defence.kappa": kappa,
                          "net.tick_period": 0.04}).replace(roles=({"nodes": [3], "speed": 1.0},))
    plan = Plan.build(cfg)
    merges: list[tuple[int, object, object]] = []
    nodes: list[Node] = []

    def configure(node: Node) -> None:
        if node.id == 3:
            node.behaviour, node.filter, node.rounds = Loud(), None, 16
            return
        real = node.filter

        def recording(props, ctx, real=real, i=node.id):
            result = real(props, ctx)
            merges.append((i, props, result))
            return result

        recording.name = real.name
        node.filter = recording

    await run_inprocess_async(plan, keep_nodes=nodes, configure=configure)
    k = min(plan.dim, max(1, round(kappa * plan.dim)))
    assert 0 < len(merges) <= 3 * 4  # a tick that has heard from nobody yet has no proposals to filter
    loud_seen = 0
    for _i, props, result in merges:
        assert np.count_nonzero(result.update) <= k
        for j, w in zip(props.ids, props.w, strict=True):
            assert w == pytest.approx(0.25)  # W_ij, never more for announcing more often
            assert result.norm_out[j] <= w * tau * (1 + 1e-5) + 1e-7, (j, result.norm_out[j])
        loud_seen += 3 in props.ids
    assert loud_seen > 0


@pytest.mark.slow
def test_churn_with_one_process_per_node_exits_and_resumes(make_config, tmp_path):
    # Churn with `p2pfl node` processes, small: a ring of 6 trains for 9
    # ticks; nodes 1 and 4 leave at tick 3 (their processes exit) and rejoin at tick 6 (the
    # launcher starts them again; they resume from their checkpoints and adopt their
    # neighbours' models). Node 2 is slow.
    cfg = make_config(topology="ring", nodes=6, rounds=9, mode="async",
                      **{"train.epochs": 1, "data.max_train": 1200, "data.max_test": 400,
                         "net.tick_period": 1.0, "net.dead_after": 1.0, "net.gap_grace": 0.3}).replace(
        roles=({"nodes": [2], "speed": 0.5},), churn=({"nodes": [1, 4], "leave": 3, "rejoin": 6},))
    result = run(cfg, out=tmp_path / "procs", processes=True)
    ticks = {i: [r["tick"] for r in result.records if r["node"] == i] for i in range(6)}
    for i in range(6):
        assert sorted(ticks[i]) == ([1, 2, 6, 7, 8, 9] if i in (1, 4) else list(range(1, 10))), (i, ticks[i])
    assert result.extra["restarts"] == {1: 1, 4: 1}  # their processes ended and were started again
    by = {(r["node"], r["tick"]): r for r in result.records}
    for i in (1, 4):
        assert not (tmp_path / "procs" / "nodes" / f"node-{i}.away").exists()
        # wall time goes on across the restart, and the others ticked while they were away
        assert by[(i, 6)]["wall"] > by[(i, 2)]["wall"]
        assert any(by[(i, 2)]["wall"] < by[(j, t)]["wall"] < by[(i, 6)]["wall"]
                   for j in (0, 3, 5) for t in range(3, 10))
        # back on the resume path, it got its neighbours' copies from after it left
        assert max(by[(i, 8)]["peer_rounds"].values()) > 3
    # two ticks after rejoining, their models are about as good as the others' (tiny test set)
    others = np.mean([by[(j, 8)]["accuracy"] for j in (0, 2, 3, 5)])
    for i in (1, 4):
        assert abs(by[(i, 8)]["accuracy"] - others) <= 0.05, (i, by[(i, 8)]["accuracy"], others)


async def test_a_time_budget_ends_the_ticks(make_config):
    cfg = async_config(make_config, topology="ring", nodes=3, rounds=100, time_budget=1.0,
                       **{"net.tick_period": 0.2})
    nodes: list[Node] = []
    result = await run_inprocess_async(Plan.build(cfg), keep_nodes=nodes)
    for n in nodes:
        assert 1 <= len(n.history) < 100
    assert all(n.finish_complete for n in nodes)
    # the summary's final row is every node's last evaluation, whatever tick it ended at
    assert result.final["benign"] == 3 and "accuracy_mean" in result.final
    assert result.final["round"] == max(len(n.history) for n in nodes)
    with pytest.raises(ConfigError, match="time_budget"):
        RunConfig(time_budget=5.0)  # sync mode runs every round


async def test_async_with_lost_and_reordered_messages_repairs_gaps(make_config):
    cfg = async_config(make_config, topology="full", nodes=4, rounds=8,
                       **{"net.loss": 0.25, "net.reorder": 0.2, "net.gap_grace": 0.15, "net.fanout": 2,
                          "net.round_timeout": 3.0})  # a lost last "done" costs the round timeout
    plan = Plan.build(cfg)
    init = different_starts(plan, 4)
    nodes: list[Node] = []
    kinds: list[str] = []

    class Counting(Transport):
        async def send(self, dst, frames):
            kinds.append(wire.decode(frames).kind)
            return await super().send(dst, frames)

    result = await run_inprocess_async(plan, x_init=init, keep_nodes=nodes, transport_factory=Counting)
    assert spread(result.final_models.values()) < 0.5 * spread(init.values())
    assert all(len(n.history) == 8 for n in nodes)
    assert sum(n.transport.fault_counts["dropped"] for n in nodes) > 0
    # deltas after a lost one were held, then a snapshot repaired the chain: every applied
    # delta gave the sender's copy (no checksum errors), and snapshots were asked for
    assert all(n.rejected.get("checksum", 0) == 0 for n in nodes)
    assert kinds.count("snapshot_req") > 0 and kinds.count("snapshot") > 0


async def test_a_departed_node_is_seen_down_and_resyncs_exactly_on_return(make_config, caplog):
    # Node 1 is away for 4 ticks of 0.2 s, longer than dead_after: its neighbours' liveness
    # sees the closed link and skips it; when it is back, every copy is repaired exactly.
    cfg = async_config(make_config, topology="ring", nodes=6, rounds=12,
                       **{"net.tick_period": 0.2, "net.dead_after": 0.3, "net.gap_grace": 0.2}).replace(
        churn=({"nodes": [1], "leave": 2, "rejoin": 6},))
    nodes: list[Node] = []
    with caplog.at_level("WARNING", logger="p2pfl.node"):
        await run_inprocess_async(Plan.build(cfg), keep_nodes=nodes)
    assert "neighbour 1 is down" in caplog.text
    by_id = {n.id: n for n in nodes}
    assert [r["tick"] for r in by_id[1].history] == [1, *range(6, 13)]
    assert_copies_exact(nodes)
    assert all(n.finish_complete for n in nodes)
    # refused at most: deltas queued before a snapshot overtook them (stale) and a request
    # while the snapshot pushed on reconnect was in flight (busy); nothing else
    assert all(set(n.rejected) <= {"stale", "busy"} for n in nodes), [n.rejected for n in nodes]
    assert not by_id[0].peers[1].down and not by_id[2].peers[1].down


# ---- the filter bound per async merge, as a property -----------------------------------------------
@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 5), d=st.integers(1, 30), a=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
       kappa=st.floats(0.05, 1.0), tau=st.floats(1e-2, 1e2))
def test_topk_clip_bound_holds_per_merge_whatever_announces_when(data, n, d, a, kappa, tau):
    # A receiver with n neighbours runs async merges through topk-clip (staleness a). Between
    # two merges each neighbour announces 0..10 times (a 10x announcer among them); whatever
    # the pattern, at every merge a neighbour weighs at most W_ij, exactly W_ij discounted by
    # the age of its copy, its contribution has norm <= w_ij * tau <= W_ij * tau, and at most
    # k coordinates change.
    from p2pfl.config import NetConfig
    from p2pfl.filters import build_filter

    raw = np.array(data.draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n)))
    w_row = raw / raw.sum() * data.draw(st.floats(0.1, 0.99))
    nbrs = tuple(range(1, n + 1))
    node = Node(node_id=0, exp_id="e", x0=np.zeros(d, np.float32), neighbours=nbrs,
                weights=dict(zip(nbrs, w_row, strict=True)), rounds=8, transport=None, trainer=None, data=None,
                filter=build_filter("topk-clip", {"tau": tau, "kappa": kappa}), net=NetConfig(staleness=a),
                mode="async")
    k = max(1, round(kappa * d))
    changed_at: dict[int, int] = {}
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    for t in range(1, 6):
        for j in nbrs:
            for _ in range(data.draw(st.integers(0, 10))):  # each announcement replaces the copy
                node.peers[j].copy = (rng.standard_normal(d) * data.draw(st.sampled_from([0.1, 10.0, 1e6]))
                                      ).astype(np.float32)
                node.peers[j].round += 1
                changed_at[j] = t
        z = (node.x + rng.standard_normal(d)).astype(np.float32)
        included = [j for j in nbrs if node.peers[j].round >= 1]
        weights, ages = node._async_weights(t, included)
        copies = {j: node.peers[j].copy for j in included}
        x, stats, dropped = node._merge(t, z, included, copies, weights)
        assert not dropped
        assert np.count_nonzero(x - z) <= k
        for j in included:
            assert ages[j] == t - changed_at[j]
            assert weights[j] == pytest.approx(node.weights[j] * (1 + ages[j]) ** -a if a else node.weights[j])
            assert weights[j] <= node.weights[j] + 1e-15
            assert stats["norm_out"][str(j)] <= weights[j] * tau * (1 + 1e-4) + 1e-6
        node.x = x


# ---- speed, merge wait and merge order --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_slow_node_stretches_its_whole_tick(make_config, mode):
    # speed 0.25: before announcing, node 0 sleeps 3x its work of the tick (this craft plus the
    # previous tick's merge and evaluation), so a tick takes 4x as long as its work.
    cfg = make_config(topology="ring", nodes=3, rounds=3, mode=mode, **{"train.epochs": 1}).replace(
        roles=({"nodes": [0], "speed": 0.25},))
    nodes: list[Node] = []
    await run_inprocess_async(Plan.build(cfg), keep_nodes=nodes)
    slow = next(n for n in nodes if n.id == 0).history
    for prev, rec in zip(slow, slow[1:], strict=False):
        after = prev["time"]["merge"] + prev["time"]["eval"]
        assert rec["time"]["slow"] >= 3 * (rec["time"]["train"] + after) * 0.98 - 0.003, (prev["time"], rec["time"])
    assert all(r["time"]["slow"] == 0 for n in nodes if n.id != 0 for r in n.history)


async def test_a_merge_wait_with_quorum_one_merges_only_fresh_copies(make_config):
    # Node 0 ticks at half the others' pace. Merging at once, the others would often hold its
    # copy of an older tick; waiting (bounded) for every live neighbour's tick, never.
    cfg = async_config(make_config, topology="full", nodes=4, rounds=4,
                       **{"net.merge_wait": 10.0, "net.merge_quorum": 1.0}).replace(
        roles=({"nodes": [0], "speed": 0.5},))
    nodes: list[Node] = []
    await run_inprocess_async(Plan.build(cfg), keep_nodes=nodes)
    for node in nodes:
        for r in node.history:
            assert all(t >= r["tick"] for t in r["peer_rounds"].values()), (node.id, r["tick"], r["peer_rounds"])
    waited = [r["time"]["wait"] for n in nodes if n.id != 0 for r in n.history]
    assert max(waited) > 0  # the fast nodes did wait for the slow one


async def test_merge_first_merges_the_latest_copies_before_training(make_config):
    cfg = async_config(make_config, topology="full", nodes=4, rounds=5, **{"net.merge_order": "merge-first"})
    plan = Plan.build(cfg)
    init = different_starts(plan, 4)
    rec: dict[int, Recording] = {}

    def configure(node: Node) -> None:
        rec[node.id] = node.behaviour = Recording()

    nodes: list[Node] = []
    await run_inprocess_async(plan, x_init=init, keep_nodes=nodes, configure=configure)
    for node in nodes:
        merged = [r for r in node.history if r["weights"]]
        assert merged and all(r["heard"] == 0 for r in node.history)  # no merge after training
        # what it trained from at tick t was already merged: it moved from its own start
        assert not np.array_equal(rec[node.id].x[node.history[-1]["tick"]], init[node.id])
    assert spread(rec[i].x[5] for i in range(4)) < 0.5 * spread(init.values())
