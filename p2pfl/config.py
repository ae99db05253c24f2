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
    [attack]   name = "boost", and that attack's parameters
    [defence]  name = "topk-clip", and that filter's parameters
    [net]      transport, host, round_timeout, compression, ...
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .faults import LinkFaults

Scalar = str | int | float | bool


def read_toml(path: str | Path, field: str, what: str = "an existing TOML file") -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is a ConfigError naming ``field``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(field, str(path), what) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(field, str(path), f"valid TOML ({exc})") from None


def flat_settings(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (lists stay lists)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_settings(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _freeze(params: Mapping[str, Any] | None, section: str) -> Mapping[str, Any]:
    """Validate a free-form parameter table (scalars or lists of scalars) and make it read-only."""
    out: dict[str, Any] = {}
    for key, value in dict(params or {}).items():
        if not isinstance(key, str):
            raise ConfigError(section, key, "parameter names must be strings")
        if isinstance(value, list | tuple):
            if not all(isinstance(v, Scalar) for v in value):
                raise ConfigError(f"{section}.{key}", value, "lists may hold only scalars")
            value = tuple(value)
        elif not isinstance(value, Scalar):
            raise ConfigError(f"{section}.{key}", value, "a string, number, boolean or list")
        out[key] = value
    return MappingProxyType(dict(sorted(out.items())))


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, value, "one of " + ", ".join(allowed))


def _check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, value, "an integer")
    if lo is not None and value < lo:
        raise ConfigError(name, value, f"at least {lo}")
    if hi is not None and value > hi:
        raise ConfigError(name, value, f"at most {hi}")


def _check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                 *, open_lo: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(name, value, "a finite number")
    if lo is not None and (value < lo or (open_lo and value == lo)):
        raise ConfigError(name, value, f"{'greater than' if open_lo else 'at least'} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(name, value, f"at most {hi}")


DATASETS = ("fmnist", "adult")
PARTITIONS = ("iid", "dirichlet", "shards")
MODELS = ("cnn", "paper-cnn", "mlp", "linear")  # p2pfl.models.MODELS
OPTIMIZERS = ("adam", "sgd")
MIXING_RULES = ("metropolis", "uniform")
PLACEMENTS = ("random", "central", "spread", "clustered")
TRANSPORTS = ("tcp", "ipc")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which data set, how it is split among nodes, and where it is looked up."""

    dataset: str = "fmnist"
    partition: str = "iid"
    alpha: float = 0.5
    shards_per_node: int = 2
    max_train: int | None = None
    max_test: int | None = None
    test_fraction: float = 0.2
    data_dir: str | None = None
    download: bool = False
    validation_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_choice("data.dataset", self.dataset, DATASETS)
        _check_choice("data.partition", self.partition, PARTITIONS)
        _check_float("data.alpha", self.alpha, 0.0, open_lo=True)
        _check_int("data.shards_per_node", self.shards_per_node, 1)
        for name in ("max_train", "max_test"):
            if getattr(self, name) is not None:
                _check_int(f"data.{name}", getattr(self, name), 10)
        _check_float("data.test_fraction", self.test_fraction, 0.01, 0.9)
        _check_float("data.validation_fraction", self.validation_fraction, 0.0, 0.5)
        if not isinstance(self.download, bool):
            raise ConfigError("data.download", self.download, "true or false")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Local training of every node: model, optimiser, epochs per round."""

    model: str = "cnn"
    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    keep_optimizer_state: bool = False

    def __post_init__(self) -> None:
        _check_choice("train.model", self.model, MODELS)
        _check_int("train.epochs", self.epochs, 0, 1000)
        _check_int("train.batch_size", self.batch_size, 1)
        _check_float("train.lr", self.lr, 0.0, open_lo=True)
        _check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _check_float("train.momentum", self.momentum, 0.0, 1.0)
        if self.momentum and self.optimizer != "sgd":
            raise ConfigError("train.momentum", self.momentum, "0 unless train.optimizer = 'sgd'")
        _check_float("train.weight_decay", self.weight_decay, 0.0)
        if not isinstance(self.keep_optimizer_state, bool):
            raise ConfigError("train.keep_optimizer_state", self.keep_optimizer_state, "true or false")


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """What adversarial nodes do. ``name = "none"`` makes adversaries behave honestly."""

    name: str = "none"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("attack.name", self.name, "an attack name")
        object.__setattr__(self, "params", _freeze(self.params, "attack"))


@dataclass(frozen=True, kw_only=True)
class DefenceConfig:
    """The local filter every benign node applies to what it receives."""

    name: str = "none"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("defence.name", self.name, "a filter name or comma-separated chain")
        object.__setattr__(self, "params", _freeze(self.params, "defence"))


@dataclass(frozen=True, kw_only=True)
class NetConfig:
    """Transport settings: addresses, timeouts, limits."""

    transport: str = "tcp"
    host: str = "127.0.0.1"
    round_timeout: float = 120.0
    connect_timeout: float = 60.0
    send_timeout: float = 30.0
    linger_ms: int = 1000
    hwm: int = 16
    max_message_mb: float = 0.0  # 0: derived from the model size
    compression: float = 0.0  # fraction of coordinates announced (top-k with error feedback); 0 = dense
    window: int = 4  # how many rounds ahead of the current one a message is buffered
    gap_grace: float = 1.0  # seconds a gap or a silent neighbour is tolerated before a snapshot request
    dead_after: float = 3.0  # seconds a link must be down, with nothing heard, before the neighbour is skipped
    max_abs: float = 1e6  # largest magnitude accepted in a received model (beyond: rejected as "magnitude")
    send_queue: int = 8  # messages queued per neighbour before further ones are dropped (and repaired)
    # Fault injection (p2pfl.faults), per directed link and seeded: all zero = a perfect network.
    loss: float = 0.0  # probability a message is dropped
    duplicate: float = 0.0  # probability a message is delivered twice
    reorder: float = 0.0  # probability a message is held back behind the next one on its link
    delay_ms: float = 0.0  # fixed one-way delay
    jitter_ms: float = 0.0  # uniform extra delay in [0, jitter_ms)
    fault_seed: int | None = None  # None: the run's seed
    # Asynchronous mode (mode = "async"; ignored in sync mode).
    fanout: int = 0  # neighbours a node announces to per tick, chosen at random (seeded per node); 0 = all
    staleness: float = 0.0  # a >= 0: weight W_ij * (1 + age_j)^-a, age_j in own ticks since j's copy changed
    tick_period: float = 0.0  # minimum seconds per tick (a node wakes at most this often); 0 = no pause

    def __post_init__(self) -> None:
        _check_choice("net.transport", self.transport, TRANSPORTS)
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("net.host", self.host, "a host name or IP address")
        _check_float("net.round_timeout", self.round_timeout, 0.0, open_lo=True)
        _check_float("net.connect_timeout", self.connect_timeout, 0.0, open_lo=True)
        _check_float("net.send_timeout", self.send_timeout, 0.0, open_lo=True)
        _check_int("net.linger_ms", self.linger_ms, 0)
        _check_int("net.hwm", self.hwm, 1)
        _check_float("net.max_message_mb", self.max_message_mb, 0.0)
        _check_float("net.compression", self.compression, 0.0, 1.0)
        _check_int("net.window", self.window, 1, 1000)
        _check_float("net.gap_grace", self.gap_grace, 0.0, open_lo=True)
        _check_float("net.dead_after", self.dead_after, 0.0, open_lo=True)
        _check_float("net.max_abs", self.max_abs, 0.0, open_lo=True)
        _check_int("net.send_queue", self.send_queue, 1, 100_000)
        for name in ("loss", "duplicate", "reorder"):
            _check_float(f"net.{name}", getattr(self, name), 0.0, 1.0)
        _check_float("net.delay_ms", self.delay_ms, 0.0, 3_600_000.0)
        _check_float("net.jitter_ms", self.jitter_ms, 0.0, 3_600_000.0)
        if self.fault_seed is not None:
            _check_int("net.fault_seed", self.fault_seed, 0, 2**32 - 1)
        _check_int("net.fanout", self.fanout, 0, 100_000)
        _check_float("net.staleness", self.staleness, 0.0, 100.0)
        _check_float("net.tick_period", self.tick_period, 0.0, 3600.0)

    def faults(self, seed: int) -> LinkFaults | None:
        """The network faults of these settings (links seeded by ``fault_seed``, else ``seed``).

        ``None`` when every fault setting is zero: the network is left alone.
        """
        from .faults import LinkFaults

        faults = LinkFaults(loss=self.loss, duplicate=self.duplicate, reorder=self.reorder,
                            delay_ms=self.delay_ms, jitter_ms=self.jitter_ms,
                            seed=seed if self.fault_seed is None else self.fault_seed)
        return faults if faults.active else None


@dataclass(frozen=True, kw_only=True)
class RoleConfig:
    """Nodes with their own attack and/or filter (a ``[[roles]]`` entry, often from a profile).

    A listed node whose attack is not ``none`` is an adversary running that attack; a listed
    node with attack ``none`` is benign and never chosen by placement. ``defence`` replaces
    the run's filter on those nodes. ``None`` means "the run's setting".
    """

    nodes: tuple[int, ...]
    role: str = ""
    attack: AttackConfig | None = None
    defence: DefenceConfig | None = None
    speed: float | None = None  # compute speed of these nodes (None: the run's ``speed``)

    def __post_init__(self) -> None:
        if self.speed is not None:
            _check_float("roles.speed", self.speed, 0.0, 1.0, open_lo=True)
        nodes = tuple(self.nodes) if isinstance(self.nodes, list | tuple) else self.nodes
        if not isinstance(nodes, tuple) or not nodes or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in nodes
        ):
            raise ConfigError("roles.nodes", self.nodes, "a non-empty list of node ids")
        object.__setattr__(self, "nodes", tuple(sorted(set(nodes))))
        if not isinstance(self.role, str):
            raise ConfigError("roles.role", self.role, "a string")
        if not self.role:
            label = self.attack.name if self.attack is not None and self.attack.name != "none" else "benign"
            object.__setattr__(self, "role", label)

    @property
    def adversarial(self) -> bool:
        return self.attack is not None and self.attack.name != "none"


def load_role(entry: Mapping[str, Any], *, search: tuple[Path, ...] = (Path("nodes"),)) -> RoleConfig:
    """Build a role from a ``[[roles]]`` table; ``profile`` names a file (or ``nodes/<name>.toml``).

    Profile layout: ``role``, ``description``, ``[attack]`` (name + parameters), ``[defence]``
    (name + parameters). Tables given inline in the entry override the profile's.
    """
    entry = dict(entry)
    unknown = set(entry) - {"nodes", "profile", "role", "attack", "defence", "description", "speed"}
    if unknown:
        raise ConfigError("roles", sorted(unknown), "keys nodes, profile, role, description, attack, defence, speed")
    merged: dict[str, Any] = {}
    profile = entry.pop("profile", None)
    if profile is not None:
        if not isinstance(profile, str) or not profile:
            raise ConfigError("roles.profile", profile, "a profile name in nodes/ or a path to a .toml file")
        path = Path(profile)
        candidates = [path] if path.suffix == ".toml" else [d / f"{profile}.toml" for d in search]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError("roles.profile", profile,
                              "a profile name in nodes/ or a path to a .toml file (looked in "
                              + ", ".join(str(c) for c in candidates) + ")")
        raw = read_toml(found, "roles.profile")
        bad = set(raw) - {"role", "description", "attack", "defence", "speed"}
        if bad:
            raise ConfigError(f"roles.profile {found}", sorted(bad), "keys role, description, speed, [attack], [defence]")
        merged.update(raw)
        merged.setdefault("role", found.stem)
    merged.update({k: v for k, v in entry.items() if k != "nodes"})
    merged.pop("description", None)
    return RoleConfig(
        nodes=entry.get("nodes", ()),
        role=merged.get("role", ""),
        attack=_section("attack", merged["attack"]) if "attack" in merged else None,
        defence=_section("defence", merged["defence"]) if "defence" in merged else None,
        speed=merged.get("speed"),
    )


@dataclass(frozen=True, kw_only=True)
class ChurnConfig:
    """A ``[[churn]]`` entry (async mode): ``nodes`` leave at tick ``leave`` and rejoin at ``rejoin``.

    A leaving node skips ticks ``leave .. rejoin - 1``: it stops training, announcing and
    answering, and drops what arrives; at tick ``rejoin`` it says hello again, asks its
    neighbours for snapshots and restarts from their models. ``rejoin = 0``: it never comes back.
    """

    nodes: tuple[int, ...]
    leave: int
    rejoin: int = 0

    def __post_init__(self) -> None:
        nodes = tuple(self.nodes) if isinstance(self.nodes, list | tuple) else self.nodes
        if not isinstance(nodes, tuple) or not nodes or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in nodes
        ):
            raise ConfigError("churn.nodes", self.nodes, "a non-empty list of node ids")
        object.__setattr__(self, "nodes", tuple(sorted(set(nodes))))
        _check_int("churn.leave", self.leave, 1)
        _check_int("churn.rejoin", self.rejoin, 0)
        if self.rejoin and self.rejoin <= self.leave:
            raise ConfigError("churn.rejoin", self.rejoin, f"a tick after leave ({self.leave}), or 0 (never)")


def _churn(entry: Any) -> ChurnConfig:
    if isinstance(entry, ChurnConfig):
        return entry
    if not isinstance(entry, Mapping):
        raise ConfigError("churn", entry, "a list of [[churn]] tables (nodes, leave, rejoin)")
    unknown = set(entry) - {"nodes", "leave", "rejoin"}
    if unknown or "nodes" not in entry or "leave" not in entry:
        raise ConfigError("churn", dict(entry), "tables with keys nodes, leave and (optionally) rejoin")
    return ChurnConfig(**dict(entry))


MODES = ("sync", "async")

_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "train": TrainConfig,
    "attack": AttackConfig,
    "defence": DefenceConfig,
    "net": NetConfig,
}


def _disjoint_nodes(field: str, groups: list[tuple[int, ...]], n: int, entry: str) -> set[int]:
    """Check that node-id groups lie in 0..n-1 and do not overlap; returns their union."""
    seen: set[int] = set()
    for nodes in groups:
        outside = [i for i in nodes if i >= n]
        if outside:
            raise ConfigError(field, outside, f"node ids in 0..{n - 1}")
        twice = seen.intersection(nodes)
        if twice:
            raise ConfigError(field, sorted(twice), f"each node in at most {entry}")
        seen.update(nodes)
    return seen


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything that defines an experiment. Build with :meth:`from_mapping` or keywords."""

    name: str = "run"
    topology: str = "ring"
    topology_params: Mapping[str, Any] = field(default_factory=dict)
    nodes: int = 10
    rounds: int = 10
    seed: int = 0
    mixing: str = "metropolis"
    adversaries: int = 0
    placement: str = "random"
    eval_every: int = 1  # evaluate every k rounds (and always the last); 1 = every round
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    defence: DefenceConfig = field(default_factory=DefenceConfig)
    net: NetConfig = field(default_factory=NetConfig)
    roles: tuple[RoleConfig, ...] = ()
    # "sync": lock-step rounds (DESIGN.md section 2). "async": every node runs ``rounds`` ticks
    # on its own clock, without a round barrier (section 8).
    mode: str = "sync"
    speed: float = 1.0  # compute speed of every node (a [[roles]] entry's speed wins); 1 = full speed
    churn: tuple[ChurnConfig, ...] = ()  # [[churn]] entries (async mode only)
    time_budget: float = 0.0  # async: a node stops ticking after this many seconds (0 = run all `rounds` ticks)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", self.name, "a non-empty string")
        if not isinstance(self.topology, str) or not self.topology:
            raise ConfigError("topology", self.topology, "a topology name or a path to a .toml file")
        object.__setattr__(self, "topology_params", _freeze(self.topology_params, "topology_params"))
        _check_int("nodes", self.nodes, 2, 100_000)
        _check_int("rounds", self.rounds, 1, 1_000_000)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_choice("mixing", self.mixing, MIXING_RULES)
        _check_int("adversaries", self.adversaries, 0)
        if self.adversaries >= self.nodes:
            raise ConfigError("adversaries", self.adversaries,
                              f"at most {self.nodes - 1} (fewer than the {self.nodes} nodes)")
        _check_choice("placement", self.placement, PLACEMENTS)
        _check_int("eval_every", self.eval_every, 1)
        for key, cls in _SECTIONS.items():
            if not isinstance(getattr(self, key), cls):
                raise ConfigError(key, getattr(self, key), f"a {cls.__name__}")
        roles = tuple(load_role(r) if isinstance(r, Mapping) else r for r in self.roles)
        if not all(isinstance(r, RoleConfig) for r in roles):
            raise ConfigError("roles", self.roles, "a list of [[roles]] tables")
        object.__setattr__(self, "roles", roles)
        seen = _disjoint_nodes("roles.nodes", [r.nodes for r in roles], self.nodes, "one role")
        listed_adv = sum(len(r.nodes) for r in roles if r.adversarial)
        free = self.nodes - len(seen)
        if self.adversaries > free:
            raise ConfigError("adversaries", self.adversaries,
                              f"at most {free} (the nodes not listed in [[roles]])")
        if listed_adv + self.adversaries >= self.nodes:
            raise ConfigError("roles", listed_adv + self.adversaries,
                              f"fewer adversaries than the {self.nodes} nodes (at least one benign)")
        _check_choice("mode", self.mode, MODES)
        _check_float("speed", self.speed, 0.0, 1.0, open_lo=True)
        _check_float("time_budget", self.time_budget, 0.0)
        if self.time_budget and self.mode != "async":
            raise ConfigError("time_budget", self.time_budget, "0 unless mode = 'async' (sync rounds run them all)")
        if not isinstance(self.churn, list | tuple):
            raise ConfigError("churn", self.churn, "a list of [[churn]] tables (nodes, leave, rejoin)")
        churn = tuple(_churn(c) for c in self.churn)
        object.__setattr__(self, "churn", churn)
        if churn and self.mode != "async":
            raise ConfigError("churn", [dict(nodes=list(c.nodes), leave=c.leave, rejoin=c.rejoin) for c in churn],
                              "empty unless mode = 'async' (sync rounds would wait for departed nodes)")
        _disjoint_nodes("churn.nodes", [c.nodes for c in churn], self.nodes, "one [[churn]] entry")

    def speed_of(self, node: int) -> float:
        """Node's compute speed: its role's ``speed``, else the run's."""
        role = next((r for r in self.roles if node in r.nodes), None)
        return role.speed if role is not None and role.speed is not None else self.speed

    def churn_of(self, node: int) -> ChurnConfig | None:
        """Node's [[churn]] entry, if it has one."""
        return next((c for c in self.churn if node in c.nodes), None)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RunConfig:
        """Build from a nested mapping (parsed TOML); unknown keys are errors, not ignored."""
        data = dict(data)
        kwargs: dict[str, Any] = {}
        top = {f.name for f in fields(cls)}
        for key, value in data.items():
            if key not in top:
                raise ConfigError(key, value, "unknown setting; known: " + ", ".join(sorted(top)))
            if key in _SECTIONS:
                kwargs[key] = _section(key, value)
            elif key == "roles":
                if not isinstance(value, list):
                    raise ConfigError("roles", value, "a list of [[roles]] tables")
                kwargs[key] = tuple(load_role(r) if isinstance(r, Mapping) else r for r in value)
            elif key == "churn":
                if not isinstance(value, list | tuple):
                    raise ConfigError("churn", value, "a list of [[churn]] tables (nodes, leave, rejoin)")
                kwargs[key] = tuple(_churn(c) for c in value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read a TOML file; syntax errors name the file and line."""
        return cls.from_mapping(read_toml(path, "config"))

    def with_overrides(self, overrides: Mapping[str, Any]) -> RunConfig:
        """Return a copy with dotted keys replaced, e.g. ``{"train.epochs": 2, "nodes": 5}``.

        ``attack.X`` / ``defence.X`` for any X other than ``name`` set that parameter.
        """
        tree = self.to_mapping()
        for dotted, value in overrides.items():
            parts = dotted.split(".")
            if len(parts) == 1:
                tree[parts[0]] = value
            elif len(parts) == 2 and parts[0] in _SECTIONS:
                # to_mapping() flattens attack/defence params into their tables, so a
                # parameter override goes there too (a nested "params" entry would lose
                # to the flattened value already present)
                tree.setdefault(parts[0], {})[parts[1]] = value
            elif len(parts) == 2 and parts[0] == "topology_params":
                tree.setdefault("topology_params", {})[parts[1]] = value
            else:
                raise ConfigError(dotted, value, "a key such as nodes, train.epochs or attack.lam")
        return RunConfig.from_mapping(tree)

    def replace(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)

    # ---- serialisation ------------------------------------------------------------------
    def to_mapping(self) -> dict[str, Any]:
        """A plain nested dict (attack/defence params flattened into their tables)."""

        def plain(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            return value

        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "roles":
                out["roles"] = [_role_mapping(r, plain) for r in value]
                continue
            if f.name == "churn":
                out["churn"] = [{"nodes": list(c.nodes), "leave": c.leave, "rejoin": c.rejoin} for c in value]
                continue
            if dataclasses.is_dataclass(value):
                out[f.name] = {sf.name: plain(getattr(value, sf.name)) for sf in fields(value)}
            else:
                out[f.name] = plain(value)
        for key in ("attack", "defence"):
            params = out[key].pop("params", {})
            out[key].update(params)
        if not out["roles"]:
            del out["roles"]
        # Settings added with async mode are left out at their defaults, so that every run
        # from before them keeps its settings digest (and its checkpoints stay valid).
        for key, default in _NEW_DEFAULTS.items():
            if out.get(key) == default:
                del out[key]
        for key, default in _NEW_NET_DEFAULTS.items():
            if out["net"].get(key) == default:
                del out["net"][key]
        return out

    def to_toml(self) -> str:
        import tomli_w

        def drop_none(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: drop_none(v) for k, v in value.items() if v is not None}
            return value

        return tomli_w.dumps(drop_none(self.to_mapping()))

    def digest(self) -> str:
        """A stable hash of every setting that must agree across nodes (hex, 16 chars)."""
        tree = self.to_mapping()
        tree.pop("name", None)
        tree.get("data", {}).pop("data_dir", None)  # where files live may differ per machine
        tree.get("data", {}).pop("download", None)
        blob = json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


_NEW_DEFAULTS: dict[str, Any] = {"mode": "sync", "speed": 1.0, "churn": [], "time_budget": 0.0}
_NEW_NET_DEFAULTS: dict[str, Any] = {"fanout": 0, "staleness": 0.0, "tick_period": 0.0}


def _role_mapping(role: RoleConfig, plain: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": list(role.nodes), "role": role.role}
    if role.speed is not None:
        out["speed"] = role.speed
    for key in ("attack", "defence"):
        sec = getattr(role, key)
        if sec is not None:
            out[key] = {"name": sec.name, **plain(sec.params)}
    return out


def _section(key: str, value: Any) -> Any:
    cls = _SECTIONS[key]
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and key in ("attack", "defence"):
        return cls(name=value)
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a table")
    value = dict(value)
    known = {f.name for f in fields(cls)}
    if key in ("attack", "defence"):
        params = dict(value.pop("params", {}) or {})
        name = value.pop("name", "none")
        params.update(value)  # every other key in [attack]/[defence] is a parameter
        return cls(name=name, params=params)
    for k, v in value.items():
        if k not in known:
            raise ConfigError(f"{key}.{k}", v, "unknown setting; known: " + ", ".join(sorted(known)))
    return cls(**value)


__all__ = [
    "flat_settings",
    "read_toml",
    "AttackConfig",
    "ChurnConfig",
    "RoleConfig",
    "load_role",
    "DataConfig",
    "DefenceConfig",
    "NetConfig",
    "RunConfig",
    "TrainConfig",
]
