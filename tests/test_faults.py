"""Network fault injection over real loopback sockets: loss, duplication, delay, reordering."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from p2pfl import wire
from p2pfl.config import RunConfig
from p2pfl.errors import ConfigError
from p2pfl.faults import FaultyTransport, LinkFaults
from p2pfl.launch import _transport
from p2pfl.transport import Transport

QUIET = 0.2  # seconds of silence after which nothing more is expected to arrive


def frames(kind: str = "delta", *, src: int = 0, dst: int = 1, round: int = 1, seq: int = 0,
           arr: np.ndarray | None = None) -> list:
    """Real wire frames: a delta carries ``arr`` (default: [seq] as float32), others no tensor."""
    if kind in ("delta", "snapshot"):
        arr = np.full(4, seq, dtype=np.float32) if arr is None else arr
        tensors = {"delta" if kind == "delta" else "model": arr}
        return wire.encode(wire.Message(kind=kind, exp="e", src=src, dst=dst, round=round, seq=seq,
                                        base=round - 1 if kind == "delta" else -1,
                                        checksum=wire.checksum(arr), tensors=tensors))
    return wire.encode(wire.Message(kind=kind, exp="e", src=src, dst=dst, round=round, seq=seq))


class Net:
    """Node 0 (faulty sender) linked to receivers 1..n on tcp://127.0.0.1, linger 0."""

    def __init__(self, ctx, faults: LinkFaults, receivers: int = 1, **kwargs) -> None:
        opts = dict(context=ctx, linger_ms=0, hwm=1000, heartbeat_ms=0)
        self.rx = {j: Transport(j, "tcp://127.0.0.1:0", **opts) for j in range(1, receivers + 1)}
        for tr in self.rx.values():
            tr.bind()
        self.tx = FaultyTransport(0, "tcp://127.0.0.1:0", faults=faults, **opts, **kwargs)
        self.tx.bind()
        self.tx.connect({j: tr.address for j, tr in self.rx.items()})

    async def receive(self, j: int = 1, count: int | None = None, quiet: float = QUIET) -> list[wire.Message]:
        """Messages at receiver j: ``count`` of them (then any extras until ``quiet``)."""
        got: list[wire.Message] = []
        while True:
            try:
                # Expected messages get a generous bound; after them only a short quiet period.
                wait = 10.0 if count is not None and len(got) < count else quiet
                inbound = await asyncio.wait_for(self.rx[j].recv(), wait)
            except TimeoutError:
                return got
            got.append(wire.decode(inbound.frames))

    async def close(self) -> None:
        await self.tx.aclose(linger_ms=0)
        for tr in self.rx.values():
            tr.close(linger_ms=0)


@pytest.fixture
def net(zmq_ctx):
    made: list[Net] = []

    def make(faults: LinkFaults, **kwargs) -> Net:
        made.append(Net(zmq_ctx, faults, **kwargs))
        return made[-1]

    yield make
    for n in made:
        n.tx.close(linger_ms=0)
        for tr in n.rx.values():
            tr.close(linger_ms=0)


async def test_loss_one_drops_everything_and_counts_it(net):
    n = net(LinkFaults(loss=1.0))
    results = [await n.tx.send(1, frames(seq=k)) for k in range(20)]
    assert all(results)  # a lost message looks sent, as on a real network
    assert await n.receive() == []
    assert n.tx.fault_counts["dropped"] == 20
    await n.close()


async def lossy_run(net, seed: int, count: int = 400) -> list[int]:
    n = net(LinkFaults(loss=0.5, seed=seed))
    for k in range(count):
        await n.tx.send(1, frames(seq=k))
    delivered = count - n.tx.fault_counts["dropped"]
    got = await n.receive(count=delivered)
    await n.close()
    assert len(got) == delivered
    return [m.seq for m in got]


async def test_half_loss_drops_about_half_and_is_reproducible(net):
    first = await lossy_run(net, seed=7)
    assert 150 <= 400 - len(first) <= 250
    assert first == sorted(first)  # loss alone keeps the order
    assert await lossy_run(net, seed=7) == first
    assert await lossy_run(net, seed=8) != first


async def test_links_are_seeded_independently_of_the_order_they_are_used_in(net):
    async def run(interleave: bool) -> dict[int, list[int]]:
        n = net(LinkFaults(loss=0.5, seed=3), receivers=2)
        order = [(j, k) for k in range(50) for j in (1, 2)] if interleave else \
                [(j, k) for j in (1, 2) for k in range(50)]
        for j, k in order:
            await n.tx.send(j, frames(dst=j, seq=k))
        dropped = n.tx.fault_counts["dropped"]
        got = {j: [m.seq for m in await n.receive(j, count=1)] for j in (1, 2)}
        await n.close()
        assert sum(map(len, got.values())) == 100 - dropped
        return got

    assert await run(interleave=False) == await run(interleave=True)


async def test_duplicates_carry_identical_bytes_even_when_the_sender_reuses_its_array(net):
    n = net(LinkFaults(duplicate=1.0))
    arr = np.zeros(100_000, dtype=np.float32)  # 400 kB: past pyzmq's copy threshold, sent zero-copy
    for k in range(5):
        arr[:] = k
        assert await n.tx.send(1, frames(seq=k, arr=arr))
        arr[:] = -1  # the sender moves on as soon as send returns
    got = await n.receive(count=10)
    assert [m.seq for m in got] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for m in got:
        assert np.array_equal(m.tensors["delta"], np.full(100_000, m.seq, dtype=np.float32))
    assert n.tx.fault_counts["duplicated"] == 5
    await n.close()


async def test_delay_delivers_later_and_keeps_the_link_in_order(net):
    # Deltas are delayed (with jitter); hellos are not faulted, so they overtake them.
    n = net(LinkFaults(delay_ms=150, jitter_ms=100, kinds=("delta",)))
    for k in range(10):
        await n.tx.send(1, frames(seq=k))
    await n.tx.send(1, frames("hello", seq=10))
    assert n.tx.pending == 10  # still on their way when send returned
    got = await n.receive(count=11)
    assert [m.kind for m in got] == ["hello"] + ["delta"] * 10
    assert [m.seq for m in got[1:]] == list(range(10))  # jitter alone never reorders a link
    assert n.tx.fault_counts["delayed"] == 10 and n.tx.pending == 0
    await n.close()


async def test_reorder_swaps_messages_on_a_link_and_loses_none(net):
    n = net(LinkFaults(reorder=0.5, seed=1))
    for k in range(60):
        await n.tx.send(1, frames(seq=k))
    got = [m.seq for m in await n.receive(count=60)]
    assert sorted(got) == list(range(60))  # nothing lost, nothing duplicated
    assert got != list(range(60))
    swapped = sum(1 for a, b in zip(got, got[1:], strict=False) if a > b)
    assert 0 < swapped <= n.tx.fault_counts["reordered"]
    await n.close()


async def test_a_held_message_without_successor_still_arrives(net):
    n = net(LinkFaults(reorder=1.0, hold_ms=50))
    await n.tx.send(1, frames(seq=0))
    got = await n.receive(count=1)
    assert [m.seq for m in got] == [0]
    assert n.tx.fault_counts["reordered"] == 1
    await n.close()


async def test_only_the_listed_kinds_are_faulted(net):
    n = net(LinkFaults(loss=1.0, kinds=("delta",)))
    for k in range(10):
        await n.tx.send(1, frames("hello", seq=2 * k))
        await n.tx.send(1, frames("delta", seq=2 * k + 1))
    got = await n.receive(count=10)
    assert [m.kind for m in got] == ["hello"] * 10
    assert n.tx.fault_counts["dropped"] == 10
    await n.close()


async def test_a_drop_hook_drops_exactly_the_targeted_messages(net):
    calls: list[tuple[int, int, str, int]] = []

    def ring_round_one(src: int, dst: int, kind: str, rnd: int) -> bool:
        calls.append((src, dst, kind, rnd))
        return kind == "delta" and rnd == 1 and dst == src + 1

    n = net(LinkFaults(drop=ring_round_one), receivers=2)
    seq = 0
    for rnd in range(3):
        for j in (1, 2):
            for kind in ("hello", "delta"):
                await n.tx.send(j, frames(kind, dst=j, round=rnd, seq=seq))
                seq += 1
    at1 = [(m.kind, m.round) for m in await n.receive(1, count=5)]
    at2 = [(m.kind, m.round) for m in await n.receive(2, count=6)]
    assert at1 == [("hello", 0), ("delta", 0), ("hello", 1), ("hello", 2), ("delta", 2)]
    assert at2 == [(k, r) for r in range(3) for k in ("hello", "delta")]
    assert n.tx.fault_counts["dropped"] == 1
    assert (0, 1, "delta", 1) in calls and len(calls) == 12
    await n.close()


def fault_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("p2pfl-faults-")]


async def test_aclose_with_pending_delayed_messages_returns_promptly_and_leaves_no_task(net):
    n = net(LinkFaults(delay_ms=60_000), receivers=2)
    for j in (1, 2):
        for k in range(3):
            await n.tx.send(j, frames(dst=j, seq=k))
    assert n.tx.pending == 6 and len(fault_tasks()) == 2  # one task per link, however many messages
    await asyncio.wait_for(n.tx.aclose(linger_ms=0), 5.0)
    assert fault_tasks() == [] and n.tx.pending == 0
    assert n.tx.fault_counts["discarded"] == 6
    await n.tx.aclose()  # idempotent
    n.tx.close()
    with pytest.raises(KeyError):
        await n.tx.send(1, frames())


async def test_sync_close_cancels_the_delay_line(net):
    n = net(LinkFaults(delay_ms=60_000))
    await n.tx.send(1, frames())
    tasks = fault_tasks()
    assert len(tasks) == 1
    n.tx.close()
    n.tx.close()  # idempotent
    await asyncio.sleep(0)
    assert all(t.done() for t in tasks) and n.tx.pending == 0


async def test_aclose_lets_waiting_messages_leave_within_linger(net):
    n = net(LinkFaults(delay_ms=50, reorder=0.5))
    for k in range(10):
        await n.tx.send(1, frames(seq=k))
    await n.tx.aclose(linger_ms=5000)
    assert n.tx.fault_counts["discarded"] == 0
    assert sorted(m.seq for m in await n.receive(count=10)) == list(range(10))


async def test_the_pending_bound_drops_and_counts_overflow(net):
    n = net(LinkFaults(delay_ms=60_000), max_pending=4)
    for k in range(6):
        assert await n.tx.send(1, frames(seq=k))
    assert n.tx.pending == 4 and n.tx.fault_counts["overflow"] == 2
    await n.close()


async def test_unparsable_frames_and_non_neighbours_are_not_faulted(net):
    n = net(LinkFaults(loss=1.0))
    assert await n.tx.send(1, [b"\xc1not msgpack"])  # sent as is: a fuzzer must still reach the peer
    inbound = await asyncio.wait_for(n.rx[1].recv(), 10.0)
    assert bytes(inbound.frames[0].buffer) == b"\xc1not msgpack"
    with pytest.raises(KeyError):
        await n.tx.send(7, frames(dst=7))
    await n.close()


# ---- settings ---------------------------------------------------------------------------------
def test_link_faults_validate_and_seed_each_link():
    with pytest.raises(ValueError, match="loss"):
        LinkFaults(loss=1.5)
    with pytest.raises(ValueError, match="kinds"):
        LinkFaults(kinds=("deltas",))
    with pytest.raises(ValueError, match="delay_ms"):
        LinkFaults(delay_ms=-1)
    f = LinkFaults(loss=0.1, seed=5)
    assert f.link_rng(0, 1).random() == f.link_rng(0, 1).random() != f.link_rng(1, 0).random()
    assert not LinkFaults().active and not LinkFaults(loss=1.0, kinds=()).active


def test_net_config_builds_faults_only_when_asked():
    assert RunConfig().net.faults(0) is None
    cfg = RunConfig(seed=9).with_overrides({"net.loss": 0.1, "net.jitter_ms": 5.0})
    f = cfg.net.faults(cfg.seed)
    assert f == LinkFaults(loss=0.1, jitter_ms=5.0, seed=9)
    assert cfg.with_overrides({"net.fault_seed": 3}).net.faults(cfg.seed).seed == 3


def test_launch_builds_a_faulty_transport_when_faults_are_set(zmq_ctx):
    def plan(**net):
        return SimpleNamespace(config=RunConfig().with_overrides({f"net.{k}": v for k, v in net.items()}),
                               max_message_bytes=lambda: 1 << 20)

    clean = _transport(plan(), 0, "tcp://127.0.0.1:0", zmq_ctx)
    assert type(clean) is Transport
    lossy = _transport(plan(loss=0.2), 0, "tcp://127.0.0.1:0", zmq_ctx)
    assert isinstance(lossy, FaultyTransport) and lossy.faults.loss == 0.2

    class Watching(Transport):
        pass

    both = _transport(plan(delay_ms=5.0), 0, "tcp://127.0.0.1:0", zmq_ctx, factory=Watching)
    assert isinstance(both, FaultyTransport) and isinstance(both, Watching)
    assert type(_transport(plan(), 0, "tcp://127.0.0.1:0", zmq_ctx, factory=Watching)) is Watching
    for tr in (clean, lossy, both):
        tr.close(linger_ms=0)


async def test_a_per_link_delay_slows_only_its_own_link(net):
    # Link 0 -> 1 has 300 ms of its own; 0 -> 2 has none. A message sent first on the slow
    # link arrives after one sent later on the fast link.
    n = net(LinkFaults(link_delay_ms=((0, 1, 300.0),)), receivers=2)
    arrivals: list[int] = []

    async def collect(j: int) -> None:
        await n.receive(j, count=1)
        arrivals.append(j)

    waiting = [asyncio.create_task(collect(j)) for j in (1, 2)]
    assert await n.tx.send(1, frames(dst=1, seq=1))
    assert await n.tx.send(2, frames(dst=2, seq=2))
    await asyncio.gather(*waiting)
    assert arrivals == [2, 1]
    assert n.tx.fault_counts["delayed"] == 1  # only the slow link's message waited
    assert n.tx.faults.link_delay(0, 1) == 300.0 and n.tx.faults.link_delay(1, 0) == 0.0
    await n.close()


def test_link_delays_from_config_name_links_and_directions():
    cfg = RunConfig(nodes=6, mode="async").with_overrides({"net.link_delay_ms": ["0-1:200", "3>4:50"]})
    faults = cfg.net.faults(0)
    assert faults is not None and faults.active
    assert (faults.link_delay(0, 1), faults.link_delay(1, 0)) == (200.0, 200.0)
    assert (faults.link_delay(3, 4), faults.link_delay(4, 3)) == (50.0, 0.0)
    # a comma-separated string (as --set net.link_delay_ms=0-1:200,3>4:50 gives) is the same setting
    same = RunConfig(nodes=6, mode="async").with_overrides({"net.link_delay_ms": "0-1:200, 3>4:50"})
    assert same.digest() == cfg.digest()
    assert RunConfig.from_mapping(cfg.to_mapping()) == cfg
    for bad in (["0-1"], ["0-0:5"], ["a-1:5"], ["0-1:-3"], ["0-1:5", "1-0:6"], 7):
        with pytest.raises(ConfigError, match="net.link_delay_ms"):
            RunConfig(nodes=6).with_overrides({"net.link_delay_ms": bad})
    with pytest.raises(ConfigError, match="net.link_delay_ms"):
        RunConfig(nodes=3).with_overrides({"net.link_delay_ms": ["0-5:10"]})  # no node 5
