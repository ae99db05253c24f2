"""The protocol invariants of docs/protocol.md, on real nodes over loopback sockets."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
import zmq

from p2pfl import wire
from p2pfl.behaviour import Crafted, Honest, NodeView
from p2pfl.launch import run, run_inprocess_async
from p2pfl.node import Node
from p2pfl.plan import Plan
from p2pfl.transport import Transport


class Recording:
    """Honest behaviour that remembers x (before training) and z (after) per round."""

    name = "benign"

    def __init__(self) -> None:
        self.x: dict[int, np.ndarray] = {}
        self.z: dict[int, np.ndarray] = {}

    def craft(self, view: NodeView) -> Crafted:
        out = Honest().craft(view)
        self.x[view.round] = view.x.copy()
        self.z[view.round] = out.own.copy()
        return out


def recorder_hook(store: dict[int, Recording]):
    def configure(node: Node) -> None:
        store[node.id] = node.behaviour = Recording()
    return configure


async def test_complete_graph_without_filter_is_fedavg(make_config):
    # Arrange: complete graph, Metropolis weights = 1/n, no attack, no filter.
    cfg = make_config(topology="full", nodes=4, rounds=2)
    plan = Plan.build(cfg)
    rec: dict[int, Recording] = {}
    # Act
    result = await run_inprocess_async(plan, configure=recorder_hook(rec))
    # Assert: every node ends each round with the mean of all trained models.
    for t in (1, 2):
        mean = np.mean([rec[i].z[t] for i in range(4)], axis=0)
        after = [rec[i].x[t + 1] for i in range(4)] if t < 2 else [result.final_models[i] for i in range(4)]
        for x in after:
            np.testing.assert_allclose(x, mean, rtol=0, atol=2e-6)
    assert np.allclose(plan.weights[np.triu_indices(4, 1)], 0.25)


async def test_ring_reaches_consensus_without_training(make_config):
    # Arrange: training off, different starting models on a ring of 6.
    cfg = make_config(topology="ring", nodes=6, rounds=6, **{"train.epochs": 0})
    plan = Plan.build(cfg)
    rng = np.random.default_rng(0)
    init = {i: plan.x0 + rng.standard_normal(plan.dim).astype(np.float32) for i in range(6)}
    rec: dict[int, Recording] = {}
    # Act
    result = await run_inprocess_async(plan, x_init=init, configure=recorder_hook(rec))
    # Assert: the spread max_ij ||x_i - x_j|| shrinks every round.
    def spread(models):
        return max(np.linalg.norm(a - b) for a in models for b in models)
    spreads = [spread([rec[i].x[t] for i in range(6)]) for t in range(1, 7)]
    spreads.append(spread(list(result.final_models.values())))
    assert all(b < a for a, b in zip(spreads, spreads[1:], strict=False)), spreads
    # The average is preserved (Metropolis-Hastings weights are doubly stochastic).
    np.testing.assert_allclose(np.mean(list(result.final_models.values()), axis=0),
                               np.mean(list(init.values()), axis=0), atol=1e-5)


class LossyTransport(Transport):
    """Drops or delays (reorders) a share of delta messages, deterministically per node."""

    drop = 0.2
    delay = 0.2

    def __init__(self, node_id, *args, **kwargs):
        super().__init__(node_id, *args, **kwargs)
        self._rng = random.Random(node_id)
        self.dropped = 0
        self.delayed = 0
        self._later: set[asyncio.Task] = set()

    async def send(self, dst, frames):
        kind = wire.decode(frames).kind
        if kind == "delta":
            p = self._rng.random()
            if p < self.drop:
                self.dropped += 1
                return False
            if p < self.drop + self.delay:
                self.delayed += 1
                task = asyncio.get_running_loop().create_task(self._send_later(dst, frames))
                self._later.add(task)
                task.add_done_callback(self._later.discard)
                return True
        return await super().send(dst, frames)

    async def _send_later(self, dst, frames):
        await asyncio.sleep(0.3)
        if not self._closed:
            await super().send(dst, frames)


async def test_public_copies_stay_bit_identical_with_lost_and_reordered_messages(make_config):
    # Arrange: a ring where 20% of deltas are lost and 20% arrive late (out of order).
    cfg = make_config(topology="ring", nodes=5, rounds=6, **{"net.round_timeout": 1.5})
    plan = Plan.build(cfg)
    nodes: list[Node] = []

    def configure(node: Node) -> None:
        node.gap_grace = 0.2

    # Act
    await run_inprocess_async(plan, transport_factory=LossyTransport, keep_nodes=nodes, configure=configure)
    # Assert: something was actually lost, and every copy equals the sender's, bit for bit.
    assert sum(n.transport.dropped for n in nodes) > 0
    assert sum(n.transport.delayed for n in nodes) > 0
    by_id = {n.id: n for n in nodes}
    for node in nodes:
        for j, peer in node.peers.items():
            sender = by_id[j]
            assert peer.round == sender.pub_round == cfg.rounds
            assert wire.checksum(peer.copy) == wire.checksum(sender.announced_to(node.id))
            assert np.array_equal(peer.copy, sender.announced_to(node.id))


async def test_sparse_announcements_keep_copies_identical(make_config):
    cfg = make_config(topology="ring", nodes=4, rounds=3, **{"net.compression": 0.05})
    plan = Plan.build(cfg)
    nodes: list[Node] = []
    await run_inprocess_async(plan, keep_nodes=nodes)
    by_id = {n.id: n for n in nodes}
    for node in nodes:
        for j, peer in node.peers.items():
            assert np.array_equal(peer.copy, by_id[j].announced_to(node.id))
            # Only ~5% of coordinates per round moved away from x0 in the public copy.
            assert np.count_nonzero(peer.copy != plan.x0) <= 3 * int(0.05 * plan.dim) + 3


async def test_ring_carries_no_message_between_non_neighbours(make_config):
    cfg = make_config(topology="ring", nodes=6, rounds=1)
    plan = Plan.build(cfg)
    seen: list[tuple[int, int]] = []

    class Watching(Transport):
        async def send(self, dst, frames):
            seen.append((self.node_id, dst))
            return await super().send(dst, frames)

    nodes: list[Node] = []
    await run_inprocess_async(plan, transport_factory=Watching, keep_nodes=nodes)
    edges = {frozenset(e) for e in plan.topology.edges}
    assert seen and all(frozenset(pair) in edges for pair in seen)
    for node in nodes:
        assert node.transport.neighbours == plan.topology.neighbours(node.id)
        assert node.rejected == {}
    with pytest.raises(KeyError):
        await nodes[0].transport.send(3, [b"x"])


async def test_silent_neighbour_is_skipped_and_the_run_goes_on(make_config):
    # Arrange: node 2 of a 3-ring never starts; its address is bound by nobody.
    cfg = make_config(topology="ring", nodes=3, rounds=2,
                      **{"net.round_timeout": 0.8, "net.connect_timeout": 0.5, "train.epochs": 0})
    plan = Plan.build(cfg)
    ctx = zmq.asyncio.Context()
    try:
        trs = {i: Transport(i, "tcp://127.0.0.1:0", context=ctx, linger_ms=0) for i in range(3)}
        addrs = {i: tr.bind() for i, tr in trs.items()}
        trs[2].close()  # nobody listens there any more
        nodes = []
        from p2pfl.launch import make_node
        for i in (0, 1):
            trs[i].connect({j: addrs[j] for j in plan.topology.neighbours(i)})
            nodes.append(make_node(plan, i, trs[i]))
        # Act
        await asyncio.gather(*(n.run() for n in nodes))
    finally:
        for tr in trs.values():
            tr.close()
        ctx.destroy(linger=0)
    # Assert: both rounds ran; node 2 was skipped every round; 0 and 1 still merged.
    for n in nodes:
        assert [r["round"] for r in n.history] == [1, 2]
        assert all(r["skipped"] == [2] and r["heard"] == 1 for r in n.history)


async def test_garbage_at_a_live_node_is_counted_and_never_merged(make_config, zmq_ctx):
    cfg = make_config(topology="ring", nodes=3, rounds=2, **{"train.epochs": 0, "net.round_timeout": 5.0})
    plan = Plan.build(cfg)
    nodes: list[Node] = []
    attacker_msgs = []
    nan = np.full(plan.dim, np.nan, dtype=np.float32)
    wrong = np.zeros(plan.dim + 1, dtype=np.float32)

    def forged(kind="delta", **kw):
        base = dict(kind=kind, exp=plan.exp_id, src=1, dst=0, round=1, seq=1, base=0,
                    checksum=wire.checksum(plan.x0), tensors={"delta": np.zeros(plan.dim, np.float32)})
        base.update(kw)
        return wire.encode(wire.Message(**base))

    attacker_msgs += [
        [b"not msgpack"],
        forged(tensors={"delta": nan}),
        forged(tensors={"delta": wrong}),
        forged(exp="other-experiment"),
        forged(dst=2),
        forged(src=7, seq=2**62),  # no node 7 in this graph
    ]

    class SlowFirstRound(Honest):
        def craft(self, view):
            if view.round == 1:
                import time
                time.sleep(1.0)  # give the forged messages time to arrive mid-run
            return super().craft(view)

    def configure(node: Node) -> None:
        if node.id == 0:
            node.behaviour = SlowFirstRound()
            push = zmq_ctx.socket(zmq.PUSH)
            push.connect(node.transport.address)
            for frames in attacker_msgs:
                push.send_multipart(frames)  # queued; delivered once connected

    await run_inprocess_async(plan, keep_nodes=nodes, configure=configure)
    rejected = nodes[0].rejected
    for reason in ("malformed", "nonfinite", "shape", "experiment", "misrouted", "not-neighbour"):
        assert rejected.get(reason, 0) >= 1, (reason, rejected)
    assert all(np.isfinite(n.x).all() for n in nodes)
    assert [r["round"] for r in nodes[0].history] == [1, 2]


def test_ipc_transport_runs(make_config, tmp_path):
    cfg = make_config(topology="line", nodes=3, rounds=1, **{"net.transport": "ipc"})
    result = run(cfg, out=tmp_path / "run")
    assert result.final["accuracy_mean"] > 0
    assert (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("launch_as", [{"processes": True}, {"hosts": 2}, {"hosts": 3}],
                         ids=["processes", "workers2", "workers3"])
def test_inprocess_and_processes_give_identical_models(make_config, tmp_path, launch_as):
    cfg = make_config(topology="ring", nodes=4, rounds=2)
    a = run(cfg, out=tmp_path / "inproc")
    b = run(cfg, out=tmp_path / "procs", **launch_as)
    for i in range(4):
        assert np.array_equal(a.final_models[i], b.final_models[i]), i
    assert [r["accuracy"] for r in a.records] == [r["accuracy"] for r in b.records]


def test_roles_give_nodes_their_own_attack_and_filter(make_config):
    # Arrange: node 0 runs sign flipping (from an inline role), node 2 filters with clip,
    # one more adversary is placed among the unlisted nodes and runs the run's attack.
    cfg = make_config(topology="ring", nodes=5, rounds=1, adversaries=1, placement="random",
                      **{"attack.name": "gaussian", "train.epochs": 0}).replace(roles=(
        {"nodes": [0], "attack": {"name": "signflip"}},
        {"nodes": [2], "defence": {"name": "clip", "tau": 1.0}},
    ))
    plan = Plan.build(cfg)
    # Act
    nodes: list[Node] = []
    asyncio.run(run_inprocess_async(plan, keep_nodes=nodes))
    # Assert
    assert 0 in plan.adversaries and len(plan.adversaries) == 2 and 2 not in plan.adversaries
    other = next(i for i in plan.adversaries if i != 0)
    by_id = {n.id: n for n in nodes}
    assert by_id[0].role == "signflip" and by_id[other].role == "gaussian"
    assert by_id[2].filter.name == "clip"
    assert all(by_id[i].filter is None for i in by_id if i != 2)


def test_eval_every_skips_evaluation_but_never_the_last_round(make_config):
    cfg = make_config(topology="ring", nodes=3, rounds=3, eval_every=2, **{"train.epochs": 0})
    result = run(cfg)
    evaluated = sorted({r["round"] for r in result.records if "accuracy" in r})
    assert evaluated == [2, 3]
    assert [r["round"] for r in result.summary["rounds"] if "accuracy_mean" in r] == [2, 3]


def test_only_attackers_keep_their_neighbours_last_deltas(make_config):
    # Arrange: one gaussian attacker on a ring; honest nodes never read last_deltas
    cfg = make_config(topology="ring", nodes=4, rounds=2, adversaries=1, **{"attack.name": "gaussian",
                                                                              "train.epochs": 0})
    plan = Plan.build(cfg)
    nodes: list[Node] = []
    # Act
    asyncio.run(run_inprocess_async(plan, keep_nodes=nodes))
    # Assert: a model size per neighbour saved on every honest node, kept on the attacker
    for node in nodes:
        kept = [p.last_delta is not None for p in node.peers.values()]
        assert all(kept) if node.id in plan.adversaries else not any(kept), (node.id, kept)
