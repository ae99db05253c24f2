"""Typed, validated settings of a run, from TOML, the CLI or Python.

A :class:`RunConfig` is frozen and fully resolved: every node of an experiment (in one
process or on many machines) builds the same one, and its :meth:`RunConfig.digest` is
compared at handshake. Every check fails fast with a :class:`~p2pfl.errors.ConfigError`
that names the field (``section.key``), the value and what is allowed.

TOML layout (every table and key optional)::

    name = "ring-boost"
    topology = "ring"          # a built-in name or a path to a topology TOML file
    nodes = 10
    rounds = 10
    seed = 0
    mixing = "metropolis"      # or "uniform"
    adversaries = 0
    placement = "random"

    [topology_params]          # generator parameters, e.g. k = 4, p = 0.1
    [data]     dataset, partition, alpha, shards_per_node, max_train, max_test, data_dir, ...
    [train]    model, epochs, batch_size, lr, optimizer, momentum, weight_decay, ...
    [report]   tensorboard (a folder for TensorBoard event files; not part of the digest)
    [attack]   name = "boost", and that attack's parameters
    [defence]  name = "topk-clip", and that filter's parameters
    [net]      transport, host, round_timeout, compression, ...

The package: :mod:`~p2pfl.config.settings` (TOML and ``--set`` plumbing),
:mod:`~p2pfl.config.sections` (one frozen dataclass per section),
:mod:`~p2pfl.config.roles` (``[[roles]]``, ``[[churn]]``) and :mod:`~p2pfl.config.run`
(:class:`RunConfig`).
"""

from .roles import ChurnConfig, RoleConfig, load_role
from .run import DEFAULT_NODES, MODES, RunConfig, topology_file_nodes
from .sections import (
    DATASETS,
    MERGE_ORDERS,
    MIXING_RULES,
    MODELS,
    OPTIMIZERS,
    PARTITIONS,
    PLACEMENTS,
    TRANSPORTS,
    AttackConfig,
    DataConfig,
    DefenceConfig,
    NetConfig,
    ReportConfig,
    TrainConfig,
    parse_link_delays,
)
from .settings import Scalar, flat_settings, parse_assignments, parse_value, read_toml

__all__ = [
    "DATASETS",
    "DEFAULT_NODES",
    "MERGE_ORDERS",
    "MIXING_RULES",
    "MODELS",
    "MODES",
    "OPTIMIZERS",
    "PARTITIONS",
    "PLACEMENTS",
    "TRANSPORTS",
    "Scalar",
    "parse_link_delays",
    "flat_settings",
    "parse_assignments",
    "parse_value",
    "read_toml",
    "topology_file_nodes",
    "AttackConfig",
    "ChurnConfig",
    "ReportConfig",
    "RoleConfig",
    "load_role",
    "DataConfig",
    "DefenceConfig",
    "NetConfig",
    "RunConfig",
    "TrainConfig",
]
