"""The sans-IO gossip protocol, without sockets: transitions, recovery and hostile input.

A small simulator (:class:`Net`) drives several :class:`GossipProtocol` instances through
synchronous rounds over a simulated network with seeded loss, duplication, reordering,
replays and restarts, every message going through the real codec; hypothesis draws the
faults.
"""

from __future__ import annotations

import heapq
import itertools
import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pfl import wire
from p2pfl.protocol import GossipProtocol, parse_flat_json

D = 16
EXP = "exp"
GRACE = 1.0


def make(node: int, neighbours, *, seq: int = 0, **kw) -> GossipProtocol:
    return GossipProtocol(node_id=node, exp_id=EXP, x0=np.zeros(D, np.float32), neighbours=neighbours,
                          gap_grace=GRACE, config_digest=EXP, seq=seq, **kw)


def greeted(*protocols: GossipProtocol) -> None:
    """As after the handshake: every neighbour has said hello (so ticks repeat no hello)."""
    for p in protocols:
        for peer in p.peers.values():
            peer.hello = True


def model(node: int, t: int) -> np.ndarray:
    return np.random.default_rng([node, t]).standard_normal(D).astype(np.float32)


def roundtrip(msg: wire.Message) -> wire.Message:
    return wire.decode([bytes(f) for f in wire.encode(msg)], dim=D)


# ---- single transitions ------------------------------------------------------------------------------
def test_a_delta_moves_the_copy_to_the_senders_public_copy():
    a, b = make(0, [1]), make(1, [0])
    b.begin_round(1, 0.0)
    a.begin_round(1, 0.0)
    (msg,) = a.announce(1, model(0, 1))
    assert b.receive(roundtrip(msg), None, 0.1) == []
    assert b.peers[0].round == 1
    assert np.array_equal(b.peers[0].copy, a.announced_to(1))
    assert b.rejected == {}


def test_a_silent_neighbour_is_asked_for_a_snapshot_after_the_grace_and_answered():
    # Arrange: b waits for a's round-1 delta, which is lost.
    a, b = make(0, [1]), make(1, [0])
    greeted(a, b)
    for p in (a, b):
        p.begin_round(1, 0.0)
    a.announce(1, model(0, 1))  # lost
    b.announce(1, model(1, 1))
    b.wait_since = 0.0
    # Act
    assert b.tick(0.5) == []  # within the grace: nothing
    (req,) = b.tick(1.1)
    (snap,) = a.receive(roundtrip(req), None, 1.2)
    b.receive(roundtrip(snap), None, 1.3)
    # Assert
    assert req.kind == "snapshot_req" and snap.kind == "snapshot"
    assert b.peers[0].round == 1 and np.array_equal(b.peers[0].copy, a.announced_to(1))
    assert not b.waiting_for(1)


def test_a_slow_neighbour_is_asked_but_sends_nothing_while_its_copy_is_current():
    a, b = make(0, [1]), make(1, [0])
    greeted(a, b)
    b.begin_round(1, 0.0)
    b.announce(1, model(1, 1))
    b.wait_since = 0.0
    (req,) = b.tick(1.5)
    assert a.receive(roundtrip(req), None, 1.6) == []  # a has not announced round 1 yet
    assert a.rejected == {}


def test_a_failed_send_is_repaired_by_a_snapshot_when_the_link_is_up():
    a, b = make(0, [1]), make(1, [0])
    greeted(a, b)
    for p in (a, b):
        p.begin_round(1, 0.0)
    (delta,) = a.announce(1, model(0, 1))
    a.send_failed(delta)
    assert a.tick(0.1, {1: 0.05}) == []  # link down: wait
    (snap,) = a.tick(0.2, {1: None})
    b.receive(roundtrip(snap), None, 0.3)
    assert b.peers[0].round == 1 and np.array_equal(b.peers[0].copy, a.announced_to(1))


def test_at_most_one_snapshot_in_flight_per_neighbour():
    a, b = make(0, [1]), make(1, [0])
    a.begin_round(1, 0.0)
    a.announce(1, model(0, 1))
    b.begin_round(1, 0.0)
    reqs = [b.snapshot_request(0, 1.0) for _ in range(5)]
    replies = [a.receive(roundtrip(r), None, 1.0) for r in reqs]
    assert [len(r) for r in replies] == [1, 0, 0, 0, 0]
    assert a.rejected == {"busy": 4}
    a.sent(replies[0][0])
    assert len(a.receive(roundtrip(b.snapshot_request(0, 2.0)), None, 2.0)) == 1


def test_forged_requests_with_huge_sequence_numbers_do_not_lock_the_real_neighbour_out():
    a, b = make(0, [1]), make(1, [0], seq=1000)
    for p in (a, b):
        p.begin_round(1, 0.0)
    forged = wire.Message(kind="snapshot_req", exp=EXP, src=1, dst=0, round=1, seq=2**62)
    for _ in range(3):
        a.receive(roundtrip(forged), None, 0.5)
    (delta,) = b.announce(1, model(1, 1))
    a.receive(roundtrip(delta), None, 0.6)
    assert a.peers[1].round == 1 and "replay" not in a.rejected


def test_an_unrequested_snapshot_from_the_future_is_refused():
    a = make(0, [1])
    a.begin_round(1, 0.0)
    big = np.full(D, 1e38, np.float32)
    forged = wire.Message(kind="snapshot", exp=EXP, src=1, dst=0, round=3, seq=5,
                          checksum=wire.checksum(big), tensors={"model": big})
    a.receive(roundtrip(forged), None, 0.1)
    assert a.rejected == {"unsolicited": 1} and a.peers[1].round == 0 and not a.peers[1].copy.any()


def test_a_requested_snapshot_beyond_the_magnitude_bound_is_refused():
    a = make(0, [1])
    a.begin_round(2, 0.0)
    a.snapshot_request(1, 0.0)
    big = np.full(D, 1e38, np.float32)
    forged = wire.Message(kind="snapshot", exp=EXP, src=1, dst=0, round=2, seq=5,
                          checksum=wire.checksum(big), tensors={"model": big})
    a.receive(roundtrip(forged), None, 0.1)
    assert a.rejected == {"magnitude": 1} and not a.peers[1].copy.any()


@pytest.mark.parametrize("settings_text", ["[]", "1", "null", "[" * 1700 + "]" * 1700, '{"a":' * 50 + "1" + "}" * 50,
                                           "not json"])
def test_hostile_hello_settings_are_a_named_handshake_rejection(settings_text):
    a = make(0, [1], settings={"seed": 0})
    hello = wire.Message(kind="hello", exp=EXP, src=1, dst=0, round=0, seq=1,
                         info={"config": "other", "x0": a.x0_sum, "settings": settings_text[:4000]})
    a.receive(roundtrip(hello), None, 0.0)
    assert a.rejected == {"handshake": 1}
    assert "settings differ" in a.peers[1].refused


def test_parse_flat_json_never_raises():
    for text in ["[]", "1", "", "{", "[" * 5000, '{"a": 1}', None, 3, b"x"]:
        out = parse_flat_json(text)
        assert out is None or isinstance(out, dict)


def test_data_identity_is_compared_at_the_handshake():
    ours = {"name": "fmnist", "source": "embedded"}
    theirs = {"name": "fmnist", "source": "full"}
    a = make(0, [1], data_identity=ours)
    b = make(1, [0], data_identity=theirs)
    (hello,) = b.hellos()
    a.receive(roundtrip(hello), None, 0.0)
    assert a.rejected == {"handshake": 1} and "data differs" in a.peers[1].refused
    c = make(1, [0], data_identity=dict(ours))
    a2 = make(0, [1], data_identity=ours)
    a2.receive(roundtrip(c.hellos()[0]), None, 0.0)
    assert a2.rejected == {} and a2.peers[1].hello
    assert json.loads(c.hello_info()["data"]) == ours


def test_pending_deltas_are_bounded_per_neighbour():
    a, b = make(0, [1], window=3), make(1, [0])
    a.begin_round(1, 0.0)
    msgs = []
    for t in range(1, 6):
        b.begin_round(t, 0.0)
        msgs += b.announce(t, model(1, t))
    for m in msgs[1:]:  # round 1 is lost: nothing can be applied
        a.receive(roundtrip(m), None, 0.1)
    assert len(a.peers[1].pending) <= a.window + 1


def test_a_neighbour_heard_after_its_link_went_down_is_dead_once_silent_for_dead_after():
    # Arrange: a's link to b goes down at 10; a message from b still arrives at 11 (it was in
    # flight), then b is gone for good and the link never comes back.
    a, b = make(0, [1], dead_after=3.0), make(1, [0])
    greeted(a, b)
    for p in (a, b):
        p.begin_round(1, 0.0)
    a.tick(10.0, {1: 10.0})
    (msg,) = b.announce(1, model(1, 1))
    a.receive(roundtrip(msg), None, 11.0)
    # Act / Assert: alive while the message is recent; down once nothing (no link, no message)
    # came for dead_after seconds. (It used to count as alive forever: a node finishing then
    # waited for its done until the round timeout.)
    a.tick(13.5, {1: 10.0})
    assert a.alive(1)
    a.tick(14.5, {1: 10.0})
    assert not a.alive(1) and a.peers[1].down


# ---- the simulator -------------------------------------------------------------------------------------
@dataclass
class Net:
    """Synchronous rounds of n protocol instances over a lossy simulated network."""

    edges: list[tuple[int, int]]
    rounds: int
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    replay: float = 0.0
    restart: float = 0.0
    seed: int = 0
    now: float = 0.0
    queue: list = field(default_factory=list)
    sent_log: list = field(default_factory=list)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.n = 1 + max(max(e) for e in self.edges)
        self.nbrs = {i: sorted({b for a, b in self.edges if a == i} | {a for a, b in self.edges if b == i})
                     for i in range(self.n)}
        self.nodes = {i: make(i, self.nbrs[i], seq=10**6 * (i + 1)) for i in range(self.n)}
        self.counter = itertools.count()
        self.restarts = 0

    def send(self, msgs) -> None:
        for m in msgs:
            self.nodes[m.src].sent(m)
            frames = [bytes(f) for f in wire.encode(m)]
            self.sent_log.append(frames)
            if self.rng.random() < self.loss:
                continue
            copies = 2 if self.rng.random() < self.dup else 1
            for _ in range(copies):
                delay = 0.01 + (self.rng.random() * 0.5 if self.rng.random() < self.reorder else 0.0)
                heapq.heappush(self.queue, (self.now + delay, next(self.counter), m.dst, frames))
        self.max_in_flight = max(self.max_in_flight, len(self.queue))

    def deliver_due(self) -> None:
        while self.queue and self.queue[0][0] <= self.now:
            _, _, dst, frames = heapq.heappop(self.queue)
            msg = wire.decode(frames, dim=D)
            self.send(self.nodes[dst].receive(msg, None, self.now))
        if self.sent_log and self.rng.random() < self.replay:  # an old message, again
            frames = self.sent_log[int(self.rng.integers(len(self.sent_log)))]
            msg = wire.decode(frames, dim=D)
            self.send(self.nodes[msg.dst].receive(msg, None, self.now))

    def step(self, dt: float = 0.1) -> None:
        self.now += dt
        self.deliver_due()
        for p in self.nodes.values():
            self.send(p.tick(self.now, {j: None for j in p.neighbours}))
            for peer in p.peers.values():
                assert len(peer.pending) <= p.window + 1

    def checkpoint(self, i: int) -> dict:
        p = self.nodes[i]
        return {"pub": p.pub_shared.copy(), "pub_round": p.pub_round, "round": p.round, "seq": p.seq,
                "peers": {j: (q.copy.copy(), q.round, q.last_seq) for j, q in p.peers.items()}}

    def restart_node(self, i: int) -> None:
        """Node i crashes and restarts from the checkpoint of the round before last: it has
        lost the announcement its neighbours hold (as after a crash before the checkpoint)."""
        state = self.ckpt[i][0]
        new = make(i, self.nbrs[i], seq=self.nodes[i].seq + 10**5)
        new.pub_shared, new.pub_round, new.round = state["pub"].copy(), state["pub_round"], state["round"]
        for j, (copy, rnd, last_seq) in state["peers"].items():
            new.peers[j].copy, new.peers[j].round, new.peers[j].last_seq = copy.copy(), rnd, last_seq
        self.nodes[i] = new
        self.restarts += 1
        self.send(new.hellos(self.now))

    def run_round(self, t: int, limit: float) -> float:
        start = self.now
        if not hasattr(self, "ckpt"):
            self.ckpt = {i: [self.checkpoint(i)] * 2 for i in self.nodes}
        for i in list(self.nodes):
            if t > 2 and self.rng.random() < self.restart:
                self.restart_node(i)
        for i in self.nodes:
            self.ckpt[i] = [self.ckpt[i][1], self.checkpoint(i)]
        for i, p in self.nodes.items():
            p.begin_round(t, self.now)
            self.send(p.announce(t, model(i, t)))
            p.wait_since = self.now
        while any(p.waiting_for(t) for p in self.nodes.values()):
            self.step()
            assert self.now - start < limit, f"round {t} waits on a message that will never come"
        return self.now - start

    def handshake(self, limit: float) -> None:
        start = self.now
        for p in self.nodes.values():
            self.send(p.hellos(self.now))
        while not all(q.hello for p in self.nodes.values() for q in p.peers.values()):
            self.step()
            assert self.now - start < limit, "a lost hello was never repeated"

    def finish(self, limit: float) -> None:
        start = self.now
        for p in self.nodes.values():
            p.finishing(self.now)
        while any(p.waiting_for(self.rounds) for p in self.nodes.values()) or self.queue:
            self.step()
            assert self.now - start < limit
        for p in self.nodes.values():
            self.send(p.done_messages(self.now))
        while not all(q.done for p in self.nodes.values() for q in p.peers.values()):
            self.step()
            assert self.now - start < limit, "a lost done was never repeated"

    def assert_copies_identical(self) -> None:
        for i, p in self.nodes.items():
            for j, peer in p.peers.items():
                sender = self.nodes[j]
                assert peer.round == sender.pub_round, (i, j)
                assert np.array_equal(peer.copy, sender.announced_to(i)), (i, j)


def _graph(n: int, extra: list[tuple[int, int]]) -> list[tuple[int, int]]:
    ring = [(i, (i + 1) % n) for i in range(n)]
    return sorted({tuple(sorted(e)) for e in ring + extra if e[0] != e[1]})


def test_lost_hellos_and_dones_are_repeated():
    a, b = make(0, [1]), make(1, [0])
    a.hellos(0.0), b.hellos(0.0)  # both lost
    (again,) = a.tick(1.0, {1: None})
    (reply,) = b.receive(roundtrip(again), None, 1.1)
    a.receive(roundtrip(reply), None, 1.2)
    assert a.peers[1].hello and b.peers[0].hello
    a.done_messages(2.0), b.done_messages(2.0)  # both lost
    assert a.tick(2.5, {1: None}) == []
    (done,) = a.tick(3.1, {1: None})
    (answer,) = b.receive(roundtrip(done), None, 3.2)  # b answers with its own done
    a.receive(roundtrip(answer), None, 3.3)
    assert a.peers[1].done and b.peers[0].done


def test_every_round_one_delta_lost_completes_within_three_grace_periods():
    # The 3-ring with every i -> i+1 round-1 delta dropped.
    net = Net(edges=_graph(3, []), rounds=2)
    net.handshake(limit=3 * GRACE)
    sent = net.send

    def drop_forward(msgs):
        keep = [m for m in msgs if not (m.kind == "delta" and m.round == 1 and m.dst == (m.src + 1) % 3)]
        sent(keep)

    net.send = drop_forward
    took = net.run_round(1, limit=3 * GRACE + 0.5)
    net.send = sent
    net.run_round(2, limit=3 * GRACE)
    net.finish(limit=10 * GRACE)
    net.assert_copies_identical()
    assert took <= 3 * GRACE


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 6), extra=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=4),
       loss=st.sampled_from([0.0, 0.1, 0.3]), dup=st.sampled_from([0.0, 0.2]),
       reorder=st.sampled_from([0.0, 0.3]), replay=st.sampled_from([0.0, 0.2]),
       restart=st.sampled_from([0.0, 0.15]), seed=st.integers(0, 2**16))
def test_random_faults_never_stall_a_round_and_copies_end_bit_identical(n, extra, loss, dup, reorder, replay,
                                                                         restart, seed):
    edges = _graph(n, [(a % n, b % n) for a, b in extra])
    net = Net(edges=edges, rounds=4, loss=loss, dup=dup, reorder=reorder, replay=replay, restart=restart,
              seed=seed)
    net.handshake(limit=60 * GRACE)
    for t in range(1, net.rounds + 1):
        net.run_round(t, limit=60 * GRACE)
    net.finish(limit=60 * GRACE)
    net.assert_copies_identical()
    assert net.max_in_flight < 50 * len(edges)
    assert all("internal" not in p.rejected for p in net.nodes.values())


def test_restarted_nodes_that_lost_an_announcement_are_resynced():
    net = Net(edges=_graph(5, [(0, 2)]), rounds=6, restart=0.3, loss=0.1, seed=3)
    for t in range(1, net.rounds + 1):
        net.run_round(t, limit=60 * GRACE)
    net.finish(limit=60 * GRACE)
    assert net.restarts >= 2
    net.assert_copies_identical()


def test_a_neighbour_that_left_after_its_done_was_lost_is_not_waited_for_forever():
    a, b = make(0, [1]), make(1, [0])
    greeted(a, b)
    b.done_messages(0.0)  # lost; b has everything it needs and leaves (nobody reads its socket)
    a.done_messages(0.0)
    sent = []
    now = 0.0
    while not a.peers[1].done:
        now += 0.25
        sent += a.tick(now, {1: None})
        assert now < 10 * GRACE
    assert 3 <= len(sent) <= 6 and all(m.kind == "done" for m in sent)


def test_a_neighbour_still_running_answers_a_done_and_is_waited_for():
    a, b = make(0, [1]), make(1, [0])
    greeted(a, b)
    a.done_messages(0.0)
    now = 0.0
    for _ in range(40):  # 10 s: b is a straggler, still training its last round
        now += 0.25
        for m in a.tick(now, {1: None}):
            for answer in b.receive(roundtrip(m), None, now):
                assert answer.kind == "done" and answer.info == {"finished": False}
                a.receive(roundtrip(answer), None, now)
    assert not a.peers[1].done
