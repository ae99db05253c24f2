"""Per-node settings: ``[[roles]]`` entries (attack, filter, speed; often from a profile) and ``[[churn]]``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..validate import integer, real

if TYPE_CHECKING:
    pass

from .sections import AttackConfig, DefenceConfig, _section
from .settings import read_toml


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
            real("roles.speed", self.speed, 0.0, 1.0, open_lo=True)
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


def load_role(entry: Mapping[str, Any], *, search: tuple[Path, ...] = ()) -> RoleConfig:
    """Build a role from a ``[[roles]]`` table; ``profile`` names a profile shipped with p2pfl
    (``boost``, see ``p2pfl/profiles/``) or a path to a profile file (a path that exists wins).

    Profile layout: ``role``, ``description``, ``[attack]`` (name + parameters), ``[defence]``
    (name + parameters). Tables given inline in the entry override the profile's. ``search``:
    folders where a bare profile name is looked up before the shipped profiles.
    """
    from ..resources import PROFILES_DIR, locate, shipped

    entry = dict(entry)
    unknown = set(entry) - {"nodes", "profile", "role", "attack", "defence", "description", "speed"}
    if unknown:
        raise ConfigError("roles", sorted(unknown), "keys nodes, profile, role, description, attack, defence, speed")
    merged: dict[str, Any] = {}
    profile = entry.pop("profile", None)
    if profile is not None:
        if not isinstance(profile, str) or not profile:
            raise ConfigError("roles.profile", profile, "a profile name or a path to a .toml file")
        found = next((d / f"{profile}.toml" for d in search if (d / f"{profile}.toml").is_file()), None)
        found = found or locate(profile, PROFILES_DIR)
        if found is None:
            raise ConfigError("roles.profile", profile,
                              "a profile name (" + ", ".join(shipped(PROFILES_DIR))
                              + ") or the path of an existing .toml file")
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
        integer("churn.leave", self.leave, 1)
        integer("churn.rejoin", self.rejoin, 0)
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
