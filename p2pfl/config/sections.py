"""The sections of a run: ``[data]``, ``[train]``, ``[report]``, ``[attack]``, ``[defence]``, ``[net]``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .. import validate
from ..errors import ConfigError
from ..imports import IMPORT_PATH_HELP, is_import_path, is_placeholder
from ..validate import choice, flag, integer, real

if TYPE_CHECKING:
    from ..faults import LinkFaults

from .settings import _freeze


def _check_source(name: str, value: Any, builtin: tuple[str, ...], what: str) -> None:
    """A built-in name, an import path ``package.module:name``, or the placeholder of a Python object."""
    if value in builtin or is_import_path(value) or is_placeholder(value):
        return
    raise ConfigError(name, value, f"one of {', '.join(builtin)}, or {IMPORT_PATH_HELP} of {what}")


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
        _check_source("data.dataset", self.dataset, DATASETS, "a data loader")
        choice("data.partition", self.partition, PARTITIONS)
        real("data.alpha", self.alpha, 0.0, open_lo=True)
        integer("data.shards_per_node", self.shards_per_node, 1)
        for name in ("max_train", "max_test"):
            if getattr(self, name) is not None:
                integer(f"data.{name}", getattr(self, name), 10)
        real("data.test_fraction", self.test_fraction, 0.01, 0.9)
        real("data.validation_fraction", self.validation_fraction, 0.0, 0.5)
        flag("data.download", self.download)


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
        _check_source("train.model", self.model, MODELS, "a model factory")
        integer("train.epochs", self.epochs, 0, 1000)
        integer("train.batch_size", self.batch_size, 1)
        real("train.lr", self.lr, 0.0, open_lo=True)
        choice("train.optimizer", self.optimizer, OPTIMIZERS)
        real("train.momentum", self.momentum, 0.0, 1.0)
        if self.momentum and self.optimizer != "sgd":
            raise ConfigError("train.momentum", self.momentum, "0 unless train.optimizer = 'sgd'")
        real("train.weight_decay", self.weight_decay, 0.0)
        flag("train.keep_optimizer_state", self.keep_optimizer_state)


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    """Outputs of a run besides its run folder; per machine, so not part of the digest."""

    tensorboard: str | None = None  # folder for TensorBoard event files (p2pfl[tensorboard])

    def __post_init__(self) -> None:
        if self.tensorboard is not None and (not isinstance(self.tensorboard, str) or not self.tensorboard):
            raise ConfigError("report.tensorboard", self.tensorboard, "a folder path (a non-empty string)")


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


MERGE_ORDERS = ("train-first", "merge-first")


def parse_link_delays(value: Any) -> dict[tuple[int, int, bool], float]:
    """``net.link_delay_ms``: a list of ``"i-j:ms"`` / ``"i>j:ms"`` strings (or one comma-separated
    string) -> {(i, j, one_way): ms}. A link named twice is an error."""
    field_name = "net.link_delay_ms"
    allowed = 'a list of "i-j:ms" (both directions) or "i>j:ms" (i to j) entries, e.g. ["0-1:200", "3>4:50"]'
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(",")) if v]
    if not isinstance(value, list | tuple):
        raise ConfigError(field_name, value, allowed)
    out: dict[tuple[int, int, bool], float] = {}
    for entry in value:
        if not isinstance(entry, str) or ":" not in entry:
            raise ConfigError(field_name, entry, allowed)
        link, _, ms_text = entry.replace(" ", "").partition(":")
        one = ">" in link
        a_text, sep, b_text = link.partition(">" if one else "-")
        try:
            a, b, ms = int(a_text), int(b_text), float(ms_text)
        except ValueError:
            raise ConfigError(field_name, entry, allowed) from None
        if not sep or a < 0 or b < 0 or a == b:
            raise ConfigError(field_name, entry, allowed + " between two different node ids >= 0")
        validate.real(f"{field_name} ({entry})", ms, 0.0, 3_600_000.0)
        key = (a, b, one) if one else (min(a, b), max(a, b), False)
        if key in out:
            raise ConfigError(field_name, entry, "each link at most once")
        out[key] = ms
    return out


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
    # after announcing, wait up to merge_wait seconds for merge_quorum of the live neighbours to
    # have announced this tick (or a later one) before merging; 0 = merge at once
    merge_wait: float = 0.0
    merge_quorum: float = 1.0
    merge_order: str = "train-first"  # or "merge-first": merge the latest copies, then train and announce
    # per-link one-way delay, added to delay_ms: "i-j:ms" (both directions) or "i>j:ms" (i to j only)
    link_delay_ms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        choice("net.transport", self.transport, TRANSPORTS)
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("net.host", self.host, "a host name or IP address")
        real("net.round_timeout", self.round_timeout, 0.0, open_lo=True)
        real("net.connect_timeout", self.connect_timeout, 0.0, open_lo=True)
        real("net.send_timeout", self.send_timeout, 0.0, open_lo=True)
        integer("net.linger_ms", self.linger_ms, 0)
        integer("net.hwm", self.hwm, 1)
        real("net.max_message_mb", self.max_message_mb, 0.0)
        real("net.compression", self.compression, 0.0, 1.0)
        integer("net.window", self.window, 1, 1000)
        real("net.gap_grace", self.gap_grace, 0.0, open_lo=True)
        real("net.dead_after", self.dead_after, 0.0, open_lo=True)
        real("net.max_abs", self.max_abs, 0.0, open_lo=True)
        integer("net.send_queue", self.send_queue, 1, 100_000)
        for name in ("loss", "duplicate", "reorder"):
            real(f"net.{name}", getattr(self, name), 0.0, 1.0)
        real("net.delay_ms", self.delay_ms, 0.0, 3_600_000.0)
        real("net.jitter_ms", self.jitter_ms, 0.0, 3_600_000.0)
        if self.fault_seed is not None:
            integer("net.fault_seed", self.fault_seed, 0, 2**32 - 1)
        integer("net.fanout", self.fanout, 0, 100_000)
        real("net.staleness", self.staleness, 0.0, 100.0)
        real("net.tick_period", self.tick_period, 0.0, 3600.0)
        validate.real("net.merge_wait", self.merge_wait, 0.0, 3600.0)
        validate.fraction("net.merge_quorum", self.merge_quorum)
        validate.choice("net.merge_order", self.merge_order, MERGE_ORDERS)
        object.__setattr__(self, "link_delay_ms", tuple(f"{a}{'>' if one else '-'}{b}:{ms:g}" for (a, b, one), ms
                                                       in parse_link_delays(self.link_delay_ms).items()))

    def faults(self, seed: int) -> LinkFaults | None:
        """The network faults of these settings (links seeded by ``fault_seed``, else ``seed``).

        ``None`` when every fault setting is zero: the network is left alone.
        """
        from ..faults import LinkFaults

        links: dict[tuple[int, int], float] = {}
        for (a, b, one), ms in parse_link_delays(self.link_delay_ms).items():
            for src, dst in ((a, b),) if one else ((a, b), (b, a)):
                links[(src, dst)] = links.get((src, dst), 0.0) + ms
        faults = LinkFaults(loss=self.loss, duplicate=self.duplicate, reorder=self.reorder,
                            delay_ms=self.delay_ms, jitter_ms=self.jitter_ms,
                            link_delay_ms=tuple((s, d, ms) for (s, d), ms in sorted(links.items())),
                            seed=seed if self.fault_seed is None else self.fault_seed)
        return faults if faults.active else None


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "train": TrainConfig,
    "attack": AttackConfig,
    "defence": DefenceConfig,
    "net": NetConfig,
    "report": ReportConfig,
}


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
