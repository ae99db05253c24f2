"""CurveZMQ: key files, the ZAP allow-list, fail-closed start-up, and identity = key."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.asyncio
from click.testing import CliRunner

from p2pfl import wire
from p2pfl.cli import cli
from p2pfl.errors import ConfigError, TransportError
from p2pfl.node import Node
from p2pfl.security import (
    Authenticator,
    ZapPolicy,
    key_paths,
    keygen,
    load_curve_keys,
    start_authenticator,
)
from p2pfl.transport import Transport

DIM = 64
EXP = "exp-under-test"


# ---- a live node with CURVE, driven by test clients (also used by test_fuzz) --------------------------------
@dataclass
class Live:
    node: Node
    address: str
    keys_dir: Path
    server_key: bytes
    auth: Authenticator
    ctx: zmq.asyncio.Context
    task: asyncio.Task

    def client(self, as_node: int | None, *, curve: bool = True) -> zmq.asyncio.Socket:
        """A PUSH socket holding node ``as_node``'s key (None: a fresh key nobody knows)."""
        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        if curve:
            if as_node is None:
                public, secret = zmq.curve_keypair()
            else:
                public, secret = zmq.auth.load_certificate(key_paths(self.keys_dir, as_node)[1])
            sock.curve_serverkey = self.server_key
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(self.address)
        return sock

    async def settle(self, total: int, timeout: float = 60.0) -> None:
        """Wait until ``total`` rejections were counted (or raise)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while sum(self.node.rejected.values()) < total:
            assert not self.task.done(), self.task.exception()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {sum(self.node.rejected.values())} of {total} counted: {self.node.rejected}")
            await asyncio.sleep(0.02)


def message(kind: str = "delta", **kw) -> wire.Message:
    fields = dict(kind=kind, exp=EXP, src=1, dst=0, round=1, seq=1, base=0 if kind == "delta" else -1)
    if kind == "delta":
        delta = kw.pop("delta", np.full(DIM, 0.5, np.float32))
        fields.update(tensors={"delta": delta}, checksum=wire.checksum(np.zeros(DIM, np.float32) + delta))
    elif kind == "snapshot":
        model = kw.pop("model", np.ones(DIM, np.float32))
        fields.update(tensors={"model": model}, checksum=wire.checksum(model))
    elif kind == "hello":
        fields.update(info={"config": EXP, "x0": wire.checksum(np.zeros(DIM, np.float32)), "reply": True})
    fields.update(kw)
    return wire.Message(**fields)


@contextlib.asynccontextmanager
async def live_node(tmp_path: Path, *, round: int = 2) -> AsyncIterator[Live]:
    """Node 0 of a 3-ring (neighbours 1, 2) with CURVE, its receiver running, at ``round``.

    Its own model is tiny (DIM values) and it never trains: only what arrives is under test.
    Its replies (hello, snapshots) go to addresses where nobody listens.
    """
    keys_dir = tmp_path / "keys"
    keygen(keys_dir, 3)
    keys = load_curve_keys(keys_dir, 0, [1, 2])
    ctx = zmq.asyncio.Context()
    auth = start_authenticator(ctx, keys, [1, 2])
    tr = Transport(0, "tcp://127.0.0.1:0", context=ctx, curve=keys, linger_ms=0, send_timeout=0.2,
                   max_message_bytes=1 << 20)
    address = tr.bind()
    tr.connect({1: "tcp://127.0.0.1:1", 2: "tcp://127.0.0.1:1"})
    node = Node(node_id=0, exp_id=EXP, x0=np.zeros(DIM, np.float32), neighbours=(1, 2),
                weights={1: 1 / 3, 2: 1 / 3}, rounds=10, transport=tr, trainer=None, data=None,
                config_digest=EXP, settings={"seed": 0, "nodes": 3}, max_message_bytes=DIM * 8 + 4096)
    node.round = round
    task = asyncio.ensure_future(node._receive_loop())
    try:
        yield Live(node=node, address=address, keys_dir=keys_dir, server_key=keys.public, auth=auth, ctx=ctx,
                   task=task)
    finally:
        task.cancel()
        await asyncio.sleep(0)
        tr.close(linger_ms=0)
        auth.stop()
        ctx.destroy(linger=0)


# ---- key files ------------------------------------------------------------------------------------------------
def test_keygen_writes_one_pair_per_node_with_private_secrets(tmp_path):
    keygen(tmp_path / "k", 4)
    for i in range(4):
        pub, sec = key_paths(tmp_path / "k", i)
        assert stat.S_IMODE(sec.stat().st_mode) == 0o600
        assert stat.S_IMODE(pub.stat().st_mode) == 0o644
        public, secret = zmq.auth.load_certificate(sec)
        assert zmq.curve_public(secret) == public
        assert zmq.auth.load_certificate(pub) == (public, None)
    publics = {zmq.auth.load_certificate(key_paths(tmp_path / "k", i)[0])[0] for i in range(4)}
    assert len(publics) == 4


def test_keygen_refuses_to_replace_keys(tmp_path):
    keygen(tmp_path, 2)
    with pytest.raises(ConfigError, match="overwrite"):
        keygen(tmp_path, 2)
    keygen(tmp_path, 2, overwrite=True)


def test_keygen_command(tmp_path):
    res = CliRunner().invoke(cli, ["keygen", str(tmp_path / "keys"), "--nodes", "3"])
    assert res.exit_code == 0, res.output
    assert "3 key pairs" in res.output
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        "node-0.key", "node-0.key_secret", "node-1.key", "node-1.key_secret", "node-2.key", "node-2.key_secret"]


def test_load_curve_keys_returns_own_pair_and_neighbour_publics(tmp_path):
    keygen(tmp_path, 3)
    keys = load_curve_keys(tmp_path, 1, [0, 2])
    assert sorted(keys.peers) == [0, 2]
    assert keys.peers[2] == zmq.auth.load_certificate(key_paths(tmp_path, 2)[0])[0]
    assert zmq.curve_public(keys.secret) == keys.public


@pytest.mark.parametrize("breakage, match", [
    ("no-dir", "does not exist"),
    ("no-secret", "node-0.key_secret does not exist"),
    ("no-peer", "node-2.key does not exist"),
    ("readable-secret", "readable by others"),
    ("wrong-secret", "does not match"),
    ("garbage", "z85|unreadable|40"),
])
def test_load_curve_keys_fails_closed(tmp_path, breakage, match):
    keygen(tmp_path / "k", 3)
    d = tmp_path / "k"
    if breakage == "no-dir":
        d = tmp_path / "missing"
    elif breakage == "no-secret":
        key_paths(d, 0)[1].unlink()
    elif breakage == "no-peer":
        key_paths(d, 2)[0].unlink()
    elif breakage == "readable-secret":
        key_paths(d, 0)[1].chmod(0o644)
    elif breakage == "wrong-secret":
        text = key_paths(d, 0)[1].read_text()
        other = key_paths(d, 1)[1].read_text()
        key_paths(d, 0)[1].write_text(text.split("secret-key")[0] + "secret-key" + other.split("secret-key")[1])
    elif breakage == "garbage":
        key_paths(d, 2)[0].write_text('metadata\ncurve\n    public-key = "not a key"\n')
    with pytest.raises(TransportError, match=match):
        load_curve_keys(d, 0, [1, 2])


def test_deployment_public_keys_take_precedence_and_are_checked(tmp_path):
    keygen(tmp_path, 3)
    pub2 = zmq.auth.load_certificate(key_paths(tmp_path, 2)[0])[0]
    key_paths(tmp_path, 2)[0].unlink()  # this machine has only the deployment's copy
    keys = load_curve_keys(tmp_path, 0, [1, 2], public_keys={2: pub2.decode()})
    assert keys.peers[2] == pub2
    with pytest.raises(TransportError, match="another public key for node 0"):
        load_curve_keys(tmp_path, 0, [1, 2], public_keys={0: pub2.decode(), 2: pub2.decode()})


# ---- the ZAP policy (pure) --------------------------------------------------------------------------------------
def _zap(key: bytes, *, domain=b"p2pfl", mechanism=b"CURVE", version=b"1.0") -> list[bytes]:
    return [version, b"req-7", domain, b"10.0.0.9", b"", mechanism, key]


def test_zap_policy_admits_neighbour_keys_as_their_node_id():
    (pub1, _), (pub2, _), (stranger, _) = zmq.curve_keypair(), zmq.curve_keypair(), zmq.curve_keypair()
    policy = ZapPolicy({1: pub1, 2: pub2})
    assert policy.reply(_zap(zmq.utils.z85.decode(pub2))) == [b"1.0", b"req-7", b"200", b"OK", b"2", b""]
    denied = policy.reply(_zap(zmq.utils.z85.decode(stranger)))
    assert denied[2] == b"400" and denied[4] == b""
    assert policy.reply(_zap(zmq.utils.z85.decode(pub1), domain=b"other"))[2] == b"400"
    assert policy.reply(_zap(b"", mechanism=b"NULL")[:6])[2] == b"400"
    assert policy.reply(_zap(zmq.utils.z85.decode(pub1), version=b"9.9"))[2] == b"400"
    assert policy.reply([b"1.0"]) is None
    assert policy.denied == {"unknown-key": 1, "domain": 1, "mechanism": 1, "malformed": 2}
    assert policy.accepted == {"2": 1}


# ---- sockets -----------------------------------------------------------------------------------------------------
def test_curve_server_without_zap_handler_refuses_to_bind(tmp_path):
    keygen(tmp_path, 2)
    keys = load_curve_keys(tmp_path, 0, [1])
    ctx = zmq.asyncio.Context()
    try:
        tr = Transport(0, "tcp://127.0.0.1:0", context=ctx, curve=keys, linger_ms=0)
        with pytest.raises(TransportError, match="no ZAP handler"):
            tr.bind()
        tr.close()
        with start_authenticator(ctx, keys, [1]):
            tr = Transport(0, "tcp://127.0.0.1:0", context=ctx, curve=keys, linger_ms=0)
            assert tr.bind().startswith("tcp://127.0.0.1:")
            tr.close()
    finally:
        ctx.destroy(linger=0)


def test_second_authenticator_in_one_context_fails(tmp_path):
    keygen(tmp_path, 2)
    keys = load_curve_keys(tmp_path, 0, [1])
    ctx = zmq.asyncio.Context()
    try:
        with start_authenticator(ctx, keys, [1]), pytest.raises(TransportError, match="another one"):
            start_authenticator(ctx, keys, [1])
    finally:
        ctx.destroy(linger=0)


async def test_neighbour_key_is_delivered_with_its_node_id(tmp_path):
    async with live_node(tmp_path) as live:
        sock = live.client(2)
        await sock.send_multipart(wire.encode(message(src=2, seq=10)))
        for _ in range(200):
            if live.node.peers[2].round == 1:
                break
            await asyncio.sleep(0.02)
        # Assert: merged into the public copy of 2; nothing rejected.
        assert live.node.peers[2].round == 1 and live.node.rejected == {}
        assert live.auth.policy.accepted.get("2", 0) >= 1


async def test_unknown_key_cannot_deliver_a_single_message(tmp_path):
    async with live_node(tmp_path) as live:
        # Arrange: perfectly valid messages, claiming to be node 1, from a key nobody listed,
        # and from a client without CURVE at all.
        stranger, plain = live.client(None), live.client(None, curve=False)
        for seq in range(1, 51):
            for sock in (stranger, plain):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await sock.send_multipart(wire.encode(message(seq=seq)))
        await asyncio.sleep(1.0)
        # Assert: not one arrived (nothing counted, nothing merged); ZAP denied the key.
        assert live.node.rejected == {}
        assert live.node.peers[1].round == 0 and not live.node.peers[1].copy.any()
        assert live.auth.policy.denied.get("unknown-key", 0) >= 1
        assert live.auth.policy.accepted == {}


async def test_valid_key_claiming_another_node_is_rejected_as_identity(tmp_path):
    async with live_node(tmp_path) as live:
        sock = live.client(1)  # node 1's key ...
        await sock.send_multipart(wire.encode(message(src=2, seq=10)))  # ... claims to be node 2
        await live.settle(1)
        assert live.node.rejected == {"identity": 1}
        assert live.node.peers[2].round == 0 and not live.node.peers[2].copy.any()
