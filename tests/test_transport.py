"""Transport over real loopback sockets: inbound messages are bounded frame by frame, and
closing never holds up the event loop."""

from __future__ import annotations

import asyncio
import gc
import weakref

import numpy as np
import pytest
import zmq
import zmq.asyncio

from p2pfl import wire
from p2pfl.security import key_paths, keygen, load_curve_keys, start_authenticator
from p2pfl.transport import Transport

DIM = 64
LIMIT = 64 * 1024  # max_message_bytes of the receiver: per frame (libzmq) and in total (recv)


def delta(seq: int) -> list:
    vec = np.full(DIM, seq, np.float32)
    return wire.encode(wire.Message(kind="delta", exp="e", src=1, dst=0, round=1, seq=seq, base=0,
                                    checksum=wire.checksum(vec), tensors={"delta": vec}))


async def recv(tr: Transport):
    async with asyncio.timeout(20):  # a guard against hanging, not a measurement
        return await tr.recv()


@pytest.fixture
async def link(zmq_ctx):
    """(receiving transport, a raw PUSH socket connected to it)."""
    tr = Transport(0, "tcp://127.0.0.1:0", context=zmq_ctx, linger_ms=0, max_message_bytes=LIMIT)
    address = tr.bind()
    push = zmq_ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(address)
    yield tr, push
    push.close(linger=0)
    tr.close(linger_ms=0)


def spy_on_frames(tr: Transport, monkeypatch) -> list[weakref.ref]:
    """Weak references to every frame the transport reads from its socket."""
    refs: list[weakref.ref] = []
    original = tr._pull.recv

    async def recv_frame(*args, **kwargs):
        frame = await original(*args, **kwargs)
        refs.append(weakref.ref(frame))
        return frame

    monkeypatch.setattr(tr._pull, "recv", recv_frame)
    return refs


async def test_a_normal_message_arrives_whole(link):
    tr, push = link
    await push.send_multipart(delta(1))
    inbound = await recv(tr)
    assert inbound.error is None and inbound.user_id is None
    assert len(inbound.frames) == 2 and inbound.nbytes == sum(len(bytes(f)) for f in delta(1))
    msg = wire.decode(inbound.frames, dim=DIM)
    assert msg.seq == 1 and np.array_equal(msg.tensors["delta"], np.ones(DIM, np.float32))


async def test_a_flood_of_frames_is_refused_without_being_kept(link, monkeypatch):
    # 1,000 frames, each far under the per-frame limit (which is all libzmq checks).
    tr, push = link
    refs = spy_on_frames(tr, monkeypatch)
    await push.send_multipart([b"h" * 10] + [b"\x01" * 100] * 999)
    inbound = await recv(tr)
    assert inbound.error is not None and inbound.error[0] == "frames"
    assert "1000 frames" in inbound.error[1]
    assert inbound.frames == [] and inbound.nbytes == 0
    assert tr.recv_refused == 1
    gc.collect()
    # None of the 999 frames after the first was kept (the first, one bounded frame, can
    # live on in asyncio's wake-up callback until the loop turns).
    assert len(refs) == 1000 and sum(r() is not None for r in refs[1:]) == 0


async def test_an_oversized_total_is_refused(link):
    # Three frames under LIMIT each whose sum is over it.
    tr, push = link
    part = b"\x00" * (LIMIT // 2)
    await push.send_multipart([b"h", part, part, part])
    inbound = await recv(tr)
    assert inbound.error is not None and inbound.error[0] == "oversized"
    assert inbound.frames == []
    assert f"{1 + 3 * len(part)} bytes" in inbound.error[1]


async def test_max_frames_is_inclusive(zmq_ctx):
    tr = Transport(0, "tcp://127.0.0.1:0", context=zmq_ctx, linger_ms=0, max_frames=3)
    push = zmq_ctx.socket(zmq.PUSH)
    push.connect(tr.bind())
    try:
        await push.send_multipart([b"a", b"b", b"c"])
        await push.send_multipart([b"a", b"b", b"c", b"d"])
        ok, refused = await recv(tr), await recv(tr)
        assert ok.error is None and [bytes(f) for f in ok.frames] == [b"a", b"b", b"c"]
        assert refused.error[0] == "frames" and refused.frames == []
    finally:
        push.close(linger=0)
        tr.close(linger_ms=0)
    with pytest.raises(ValueError, match="max_frames"):
        Transport(0, "tcp://127.0.0.1:0", context=zmq_ctx, max_frames=0)


async def test_receiving_goes_on_after_refused_messages(link):
    # Refused and good messages interleaved: each refused one is drained to its end, so
    # the next message starts at its own first frame.
    tr, push = link
    big = b"\x00" * (LIMIT - 100)
    for seq in range(1, 4):
        await push.send_multipart([b"x"] * 50)
        await push.send_multipart(delta(seq))
        await push.send_multipart([b"h", big, big])
    got = [await recv(tr) for _ in range(9)]
    assert [i.error[0] if i.error else "ok" for i in got] == ["frames", "ok", "oversized"] * 3
    seqs = [wire.decode(i.frames, dim=DIM).seq for i in got if i.error is None]
    assert seqs == [1, 2, 3]
    assert tr.recv_refused == 6


async def test_a_refused_message_keeps_its_authenticated_sender(tmp_path):
    # With CURVE the sender's id is the ZAP User-Id of the first frame; a refused message
    # still names it (the node counts and logs by authenticated id).
    keygen(tmp_path, 2)
    keys = load_curve_keys(tmp_path, 0, [1])
    ctx = zmq.asyncio.Context()
    auth = start_authenticator(ctx, keys, [1])
    tr = Transport(0, "tcp://127.0.0.1:0", context=ctx, curve=keys, linger_ms=0, max_message_bytes=LIMIT)
    try:
        address = tr.bind()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.curve_serverkey = keys.public
        push.curve_publickey, push.curve_secretkey = zmq.auth.load_certificate(key_paths(tmp_path, 1)[1])
        push.connect(address)
        await push.send_multipart([b"h"] * 20)
        await push.send_multipart(delta(5))
        refused, ok = await recv(tr), await recv(tr)
        assert refused.error[0] == "frames" and refused.user_id == "1"
        assert ok.error is None and ok.user_id == "1" and wire.decode(ok.frames).seq == 5
    finally:
        tr.close(linger_ms=0)
        auth.stop()
        ctx.destroy(linger=0)


# ---- closing ---------------------------------------------------------------------------------------
async def test_close_with_a_private_context_and_linger_does_not_block_the_loop():
    # A message queued to a neighbour that never answers holds ctx.term() for the linger.
    tr = Transport(0, "tcp://127.0.0.1:0", linger_ms=1000, send_timeout=1.0)
    tr.bind()
    tr.connect({1: "tcp://127.0.0.1:1"})  # nobody listens there: the message stays queued
    assert await tr.send(1, delta(1))
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.get_running_loop().create_task(ticker())
    try:
        tr.close()  # returns while the context waits for the linger in a thread
        assert tr._term_thread is not None
        before = ticks
        await tr.aclose()  # idempotent; waits for the termination off the loop
        assert ticks > before  # the loop kept running while the context lingered
        assert not tr._term_thread.is_alive() and tr._ctx.closed
    finally:
        task.cancel()


async def test_close_without_linger_ends_a_private_context_at_once():
    async with Transport(0, "tcp://127.0.0.1:0", linger_ms=0) as tr:
        tr.connect({1: "tcp://127.0.0.1:1"})
    assert tr._ctx.closed and tr._term_thread is None
    tr.close()  # idempotent
    await tr.aclose()


async def test_close_leaves_a_shared_context_to_its_owner(zmq_ctx):
    tr = Transport(0, "tcp://127.0.0.1:0", context=zmq_ctx, linger_ms=1000)
    tr.bind()
    await tr.aclose()
    assert not zmq_ctx.closed and tr._term_thread is None
    with pytest.raises(Exception, match="recv before bind"):
        await tr.recv()


async def test_a_receiver_that_stops_reading_keeps_its_connections_and_loses_nothing(zmq_ctx):
    # Arrange: a receiver with a short heartbeat and a small high-water mark; a sender queues
    # far more messages than the pipe holds while the receiver reads nothing for several
    # heartbeat timeouts. (A ZMTP heartbeat on the receiving side cannot see the peer's
    # traffic while backpressure has stopped its input, so it would drop the connection and
    # everything in flight; libzmq can even abort on the reconnect.)
    tr = Transport(0, "tcp://127.0.0.1:0", context=zmq_ctx, linger_ms=0, hwm=4, heartbeat_ms=100)
    address = tr.bind()
    push = zmq_ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDHWM, 4)
    push.connect(address)
    sent = 0
    try:
        async def flood() -> None:
            nonlocal sent
            for seq in range(1, 201):
                await push.send_multipart(delta(seq))
                sent = seq

        sender = asyncio.create_task(flood())
        await asyncio.sleep(1.5)  # > 3 heartbeat timeouts (300 ms) with the pipe full
        # Act
        got = [wire.decode((await recv(tr)).frames, dim=DIM).seq for _ in range(200)]
        await sender
    finally:
        push.close(linger=0)
        tr.close(linger_ms=0)
    # Assert: every message, in order, none lost to a dropped connection.
    assert sent == 200 and got == list(range(1, 201))
