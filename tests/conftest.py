"""Shared fixtures: tiny, fast configurations and leak-free ZeroMQ sockets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from p2pfl.config import RunConfig
from p2pfl.plan import set_torch_threads

set_torch_threads(1)

# The full data sets (Fashion-MNIST, UCI Adult) live wherever $P2PFL_DATA points (the first
# folder of the list); tests that need them skip without it. The variable is then removed
# from this process (and so from every `p2pfl` subprocess a test starts): every other test
# runs on the embedded split, as it would on a machine without the data.
_FULL = os.environ.pop("P2PFL_DATA", "")
FULL_DATA: Path | None = Path(_FULL.split(os.pathsep)[0]).expanduser() if _FULL else None


def needs_full_data(relative: str, what: str) -> pytest.MarkDecorator:
    """Skip unless ``$P2PFL_DATA/<relative>`` exists; the reason says how to enable the test."""
    present = FULL_DATA is not None and (FULL_DATA / relative).is_file()
    where = f"$P2PFL_DATA={FULL_DATA}" if FULL_DATA is not None else "$P2PFL_DATA is not set"
    return pytest.mark.skipif(not present, reason=f"needs {what}: set P2PFL_DATA to a folder holding "
                                                  f"{relative} ({where})")


def tiny_config(**changes) -> RunConfig:
    """A run that takes seconds: few samples, one short epoch, short timeouts."""
    base = RunConfig(name="t", nodes=4, rounds=2, topology="ring")
    overrides = {
        "data.max_train": 800,
        "data.max_test": 200,
        "train.batch_size": 50,
        "net.round_timeout": 30.0,
        "net.connect_timeout": 20.0,
        "net.linger_ms": 0,
    }
    overrides.update(changes)
    return base.with_overrides(overrides)


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture
def zmq_ctx() -> Iterator[zmq.asyncio.Context]:
    """An asyncio context whose sockets are all closed with linger=0 at teardown."""
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)
