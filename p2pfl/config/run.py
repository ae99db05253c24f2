"""The whole run: :class:`RunConfig`, its digest and its TOML form."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..validate import choice, integer, real

if TYPE_CHECKING:
    pass

from .roles import ChurnConfig, RoleConfig, _churn, load_role
from .sections import (
    _SECTIONS,
    MIXING_RULES,
    PLACEMENTS,
    AttackConfig,
    DataConfig,
    DefenceConfig,
    NetConfig,
    ReportConfig,
    TrainConfig,
    _section,
    parse_link_delays,
)
from .settings import _freeze, read_toml

MODES = ("sync", "async")
DEFAULT_NODES = 10


def topology_file_nodes(topology: Any) -> tuple[Path, int] | None:
    """``(file, nodes)`` when ``topology`` names a topology file (a ``*.toml`` path, or a
    shipped one, see :mod:`p2pfl.resources`) that sets ``nodes``; None otherwise (a generator
    name, a file without ``nodes``, a file not found here: building the graph reports that)."""
    from ..resources import TOPOLOGIES_DIR, locate, looks_like_path

    if not isinstance(topology, str) or not looks_like_path(topology):
        return None
    found = locate(topology, TOPOLOGIES_DIR)
    if found is None:
        return None
    n = read_toml(found, "topology").get("nodes")
    return (found, n) if isinstance(n, int) and not isinstance(n, bool) else None



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
    nodes: int = None  # type: ignore[assignment]  # not given: the topology file's ``nodes``, else 10
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
    report: ReportConfig = field(default_factory=ReportConfig)
    roles: tuple[RoleConfig, ...] = ()
    # "sync": lock-step rounds. "async": every node runs ``rounds`` ticks on its own clock,
    # without a round barrier (docs/protocol.md, "Rounds and ticks").
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
        declared = topology_file_nodes(self.topology)
        if self.nodes is None:
            object.__setattr__(self, "nodes", declared[1] if declared is not None else DEFAULT_NODES)
        integer("nodes", self.nodes, 2, 100_000)
        if declared is not None and declared[1] != self.nodes:
            raise ConfigError("nodes", self.nodes, f"{declared[1]}, the nodes = {declared[1]} of topology file "
                              f"{declared[0]} (leave the node count out to use the file's)")
        integer("rounds", self.rounds, 1, 1_000_000)
        integer("seed", self.seed, 0, 2**32 - 1)
        choice("mixing", self.mixing, MIXING_RULES)
        integer("adversaries", self.adversaries, 0)
        if self.adversaries >= self.nodes:
            raise ConfigError("adversaries", self.adversaries,
                              f"at most {self.nodes - 1} (fewer than the {self.nodes} nodes)")
        choice("placement", self.placement, PLACEMENTS)
        integer("eval_every", self.eval_every, 1)
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
        choice("mode", self.mode, MODES)
        real("speed", self.speed, 0.0, 1.0, open_lo=True)
        real("time_budget", self.time_budget, 0.0)
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
        for a, b, _one in parse_link_delays(self.net.link_delay_ms):
            if max(a, b) >= self.nodes:
                raise ConfigError("net.link_delay_ms", list(self.net.link_delay_ms), f"node ids in 0..{self.nodes - 1}")

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
        if "topology" in overrides and "nodes" not in overrides and topology_file_nodes(overrides["topology"]):
            del tree["nodes"]  # a new topology file brings its own node count
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
        if out["report"] == {"tensorboard": None}:
            del out["report"]
        return out

    def to_toml(self) -> str:
        import tomli_w

        def drop_none(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: drop_none(v) for k, v in value.items() if v is not None}
            return value

        return tomli_w.dumps(drop_none(self.to_mapping()))

    def shared_mapping(self) -> dict[str, Any]:
        """:meth:`to_mapping` without what may differ per machine: the settings nodes compare."""
        tree = self.to_mapping()
        tree.pop("name", None)
        tree.get("data", {}).pop("data_dir", None)  # where files live may differ per machine
        tree.get("data", {}).pop("download", None)
        tree.pop("report", None)  # where outputs go
        return tree

    def digest(self) -> str:
        """A stable hash of every setting that must agree across nodes (hex, 16 chars)."""
        tree = self.shared_mapping()
        blob = json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


_NEW_DEFAULTS: dict[str, Any] = {"mode": "sync", "speed": 1.0, "churn": [], "time_budget": 0.0}
_NEW_NET_DEFAULTS: dict[str, Any] = {"fanout": 0, "staleness": 0.0, "tick_period": 0.0, "merge_wait": 0.0,
                                     "merge_quorum": 1.0, "merge_order": "train-first", "link_delay_ms": []}


def _role_mapping(role: RoleConfig, plain: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": list(role.nodes), "role": role.role}
    if role.speed is not None:
        out["speed"] = role.speed
    for key in ("attack", "defence"):
        sec = getattr(role, key)
        if sec is not None:
            out[key] = {"name": sec.name, **plain(sec.params)}
    return out


