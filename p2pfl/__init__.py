"""p2pfl: serverless gossip learning for studying model poisoning and local defences.

Nodes train locally (torch), gossip model deltas to their graph neighbours over ZeroMQ
(msgpack headers, raw tensor frames) and filter what they receive before merging it.
See docs/ for the protocol, threat model, filters and deployment, and README.md for a tour.
"""

from __future__ import annotations

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
