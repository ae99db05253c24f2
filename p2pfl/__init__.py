"""p2pfl: serverless gossip learning for studying model poisoning and local defences.

Nodes train locally (torch), gossip model deltas to their graph neighbours over ZeroMQ
(msgpack headers, raw tensor frames) and filter what they receive before merging it.
See docs/ for the protocol, threat model, filters and deployment, and README.md for a tour.

The names below are imported on first use (PEP 562), so that importing one layer of the
package (``p2pfl.filters``, ``p2pfl.attacks``, ...) does not pull in the layers above it
(tests/test_layering.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import AttackConfig, DataConfig, DefenceConfig, NetConfig, RunConfig, TrainConfig
    from .errors import (
        ConfigError,
        DataError,
        DecodeError,
        P2PFLError,
        ProtocolError,
        TopologyError,
        TransportError,
    )
    from .experiment import Experiment, ExperimentResult

__version__ = "0.1.0"

_LAZY = {
    "AttackConfig": "config",
    "DataConfig": "config",
    "DefenceConfig": "config",
    "NetConfig": "config",
    "RunConfig": "config",
    "TrainConfig": "config",
    "ConfigError": "errors",
    "DataError": "errors",
    "DecodeError": "errors",
    "P2PFLError": "errors",
    "ProtocolError": "errors",
    "TopologyError": "errors",
    "TransportError": "errors",
    "Experiment": "experiment",
    "ExperimentResult": "experiment",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'p2pfl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AttackConfig",
    "ConfigError",
    "DataConfig",
    "DataError",
    "DecodeError",
    "DefenceConfig",
    "Experiment",
    "ExperimentResult",
    "NetConfig",
    "P2PFLError",
    "ProtocolError",
    "RunConfig",
    "TopologyError",
    "TrainConfig",
    "TransportError",
    "__version__",
]
