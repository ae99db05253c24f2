"""Checkpoints: complete, atomic, pickle-free, and restorable into a fresh node."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from p2pfl.checkpoint import Checkpointer, NodeState, PeerState, capture, restore
from p2pfl.errors import ConfigError
from p2pfl.filters import build_filter
from p2pfl.launch import make_node, run_inprocess_async
from p2pfl.node import Node
from p2pfl.plan import Plan
from p2pfl.transport import Transport


def _state(round: int = 3, dim: int = 10, **kw) -> NodeState:
    rng = np.random.default_rng(round)
    vec = lambda: rng.standard_normal(dim).astype(np.float32)  # noqa: E731
    fields = dict(
        node=1, exp_id="e1", round=round, seq=2**62 + round, x=vec(), pub_shared=vec(), pub_round=round,
        pub_private={2: vec()}, pub_rounds={0: round, 2: round - 1},
        peers={0: PeerState(copy=vec(), round=round, last_seq=17, last_delta=vec()),
               2: PeerState(copy=vec(), round=round - 1, last_seq=2**63 - 1)},
        trainer={"generator": torch.arange(5, dtype=torch.uint8),
                 "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2)}},
                               "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]}},
        filter={"name": "clip", "counters": {"seen": 4}, "tau_history": [0.5, 0.25]},
        behaviour=None, rejected={"replay": 2, "checksum": 1},
    )
    fields.update(kw)
    return NodeState(**fields)


def _assert_same(a: NodeState, b: NodeState, *, seq: bool = True) -> None:
    names = ("node", "exp_id", "round", "pub_round", "pub_rounds", "rejected", "finished", "filter", "behaviour")
    for name in (*names, "seq") if seq else names:
        assert getattr(a, name) == getattr(b, name), name
    for name in ("x", "pub_shared"):
        assert np.array_equal(getattr(a, name), getattr(b, name)) and getattr(b, name).dtype == np.float32
    assert a.pub_private.keys() == b.pub_private.keys()
    assert all(np.array_equal(a.pub_private[j], b.pub_private[j]) for j in a.pub_private)
    assert a.peers.keys() == b.peers.keys()
    for j in a.peers:
        pa, pb = a.peers[j], b.peers[j]
        assert (pa.round, pa.last_seq) == (pb.round, pb.last_seq)
        assert np.array_equal(pa.copy, pb.copy)
        assert (pa.last_delta is None) == (pb.last_delta is None)
        if pa.last_delta is not None:
            assert np.array_equal(pa.last_delta, pb.last_delta)


def test_save_and_load_round_trip_everything(tmp_path):
    # Arrange
    state = _state()
    ck = Checkpointer(tmp_path, 1)
    # Act
    ck.save(state)
    back = ck.load()
    # Assert
    _assert_same(state, back)
    assert torch.equal(back.trainer["generator"], state.trainer["generator"])
    opt = back.trainer["optimizer"]
    assert opt["param_groups"][0]["betas"] == (0.9, 0.999)  # tuples survive
    assert torch.equal(opt["state"][0]["exp_avg"], torch.ones(2, 2)) and 0 in opt["state"]  # int keys survive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-1.json", "node-1.r000003.npz"]


def test_files_are_plain_json_and_pickle_free_npz(tmp_path):
    Checkpointer(tmp_path, 1).save(_state())
    meta = json.loads((tmp_path / "node-1.json").read_text())
    assert meta["round"] == 3 and meta["arrays"] == "node-1.r000003.npz"
    with np.load(tmp_path / "node-1.r000003.npz", allow_pickle=False) as npz:  # raises on object arrays
        assert all(npz[k].dtype != object for k in npz.files)


def test_only_the_latest_round_is_kept(tmp_path):
    ck = Checkpointer(tmp_path, 1)
    for r in (1, 2, 3):
        ck.save(_state(round=r))
    assert ck.load().round == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-1.json", "node-1.r000003.npz"]


def test_a_crash_before_the_commit_point_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    # Arrange: round 2 is committed; the write of round 3 dies just before its JSON is replaced.
    ck = Checkpointer(tmp_path, 1)
    ck.save(_state(round=2))
    real_replace = os.replace

    def dying_replace(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    # Act
    with pytest.raises(OSError, match="killed"):
        ck.save(_state(round=3))
    monkeypatch.undo()
    # Assert: the committed round 2 loads, whole; the orphan of round 3 is not used.
    back = ck.load()
    _assert_same(_state(round=2), back)
    assert (tmp_path / "node-1.r000002.npz").exists()


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    ck = Checkpointer(tmp_path, 1)
    ck.save(_state())
    (tmp_path / "node-1.r000003.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="delete it to start this node afresh"):
        ck.load()


def test_no_checkpoint_is_none(tmp_path):
    assert Checkpointer(tmp_path / "absent", 0).load() is None


def _node(plan: Plan, i: int, ctx) -> Node:
    tr = Transport(i, "tcp://127.0.0.1:0", context=ctx, linger_ms=0)
    tr.bind()
    return make_node(plan, i, tr)


def test_capture_and_restore_into_a_fresh_node(make_config, zmq_ctx):
    # Arrange: a node with a kept optimizer and a filter with memory, after some state changes.
    cfg = make_config(topology="ring", nodes=3, **{"train.keep_optimizer_state": True,
                                                   "defence.name": "clip", "defence.tau_history": 3})
    plan = Plan.build(cfg)
    a = _node(plan, 0, zmq_ctx)
    a.x = a.x + 1
    a.trainer.train(a.x, a.data, steps=2)
    a.filter.load_state_dict({**a.filter.state_dict(), "tau_history": [0.5, 0.7]})
    a.peers[1].copy += 2
    a.peers[1].round, a.peers[1].last_seq = 3, 99
    a.round, a.pub_round, a.rejected = 3, 3, {"replay": 4}
    state = capture(a)
    # Act
    b = _node(plan, 0, zmq_ctx)
    restore(b, state)
    # Assert
    _assert_same(state, capture(b), seq=False)
    assert b.protocol.seq > state.seq  # a restarted node never reuses a sequence number
    assert b.trainer.state_dict()["optimizer"]["state"]
    assert b.filter.state_dict()["tau_history"] == [0.5, 0.7]
    assert b.trainer.generator.get_state().equal(a.trainer.generator.get_state())


def test_restore_refuses_another_experiment_or_node(make_config, zmq_ctx):
    plan = Plan.build(make_config(topology="ring", nodes=3))
    node = _node(plan, 0, zmq_ctx)
    good = capture(node)
    with pytest.raises(ConfigError, match="another experiment|other settings"):
        restore(node, _state(node=0, exp_id="other", x=good.x, peers=good.peers))
    with pytest.raises(ConfigError, match="checkpoint of node 0"):
        restore(node, _state(node=2))


async def test_nodes_checkpoint_every_round_and_mark_the_end(make_config, tmp_path):
    # Arrange: an in-process run whose nodes checkpoint like `p2pfl node --out` does.
    cfg = make_config(topology="ring", nodes=3, rounds=2, **{"train.epochs": 0})
    plan = Plan.build(cfg)
    seen: list[tuple[int, int, bool]] = []

    def configure(node: Node) -> None:
        ck = Checkpointer(tmp_path, node.id)

        def checkpointer(n: Node, finished: bool):
            snap = capture(n, finished=finished)
            seen.append((n.id, snap.round, finished))
            return lambda: ck.save(snap)

        node.checkpointer = checkpointer

    nodes: list[Node] = []
    # Act
    await run_inprocess_async(plan, configure=configure, keep_nodes=nodes)
    # Assert: rounds 1, 2 and the end, for every node; the last one is the final state.
    for i in range(3):
        assert [(r, f) for n, r, f in seen if n == i] == [(1, False), (2, False), (2, True)]
        state = Checkpointer(tmp_path, i).load()
        assert state.finished and state.round == 2
        assert np.array_equal(state.x, nodes[i].x)
        for j, p in nodes[i].peers.items():
            assert np.array_equal(state.peers[j].copy, p.copy) and state.peers[j].round == 2


def test_filter_state_round_trips_through_a_checkpoint(tmp_path):
    filt = build_filter("clip", {"tau_history": 3})
    filt.load_state_dict({**filt.state_dict(), "tau_history": [1.5, 2.5]})
    ck = Checkpointer(tmp_path, 0)
    ck.save(_state(filter=filt.state_dict()))
    other = build_filter("clip", {"tau_history": 3})
    other.load_state_dict(ck.load().filter)
    assert other.state_dict() == filt.state_dict()
