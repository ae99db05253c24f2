"""The Python API: build a run from keywords, a :class:`RunConfig` or TOML, run it, read it.

::

    from p2pfl import Experiment

    result = Experiment(topology="ring", nodes=10, adversaries=2, attack="boost",
                        defence="topk-clip", rounds=5, epochs=1).run(out="runs/ring")
    result.accuracy          # benign mean accuracy by round
    result.attack_success    # benign mean attack success by round (None without an attack)
    result.rounds_to(0.9)    # first round the attack success reaches 0.9, or None
    print(result.table())    # the per-round table as markdown

Keywords are the top-level settings of :class:`~p2pfl.config.RunConfig` (``topology``,
``nodes``, ``rounds``, ``seed``, ``adversaries``, ``placement``, ``mixing``, ``name``), the
short names of common section keys (``epochs``, ``batch_size``, ``lr``, ``model``,
``dataset``, ``partition``, ``max_train``, ``max_test``, ... see :data:`ALIASES`), whole
sections as mappings (``train={"epochs": 1}``), ``attack="boost"`` or
``attack={"name": "boost", "lam": 10}``, and dotted keys (``**{"attack.lam": 10}``).

Besides the run folder of :func:`p2pfl.launch.run`, an in-process run records the weight
updates every node computes (:class:`UpdateRecorder`): per round, each node's update norm
and its L2 distances to the benign nodes' updates (``updates.jsonl``), and a fixed sample
of coordinates of every node's update in a few rounds (``updates/round-TTT.npz``). These
feed the paper's weight-update views in :mod:`p2pfl.report`.
"""

from __future__ import annotations

import json
import logging
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig
from .errors import ConfigError
from .launch import Progress, RunResult, prepare_out, run_inprocess
from .launch import run as launch_run
from .plan import Plan, node_seed, resolve_search_dirs, set_torch_threads

log = logging.getLogger(__name__)

#: Short keyword -> dotted setting, as the flags of ``p2pfl run``.
ALIASES: dict[str, str] = {
    "dataset": "data.dataset",
    "partition": "data.partition",
    "alpha": "data.alpha",
    "max_train": "data.max_train",
    "max_test": "data.max_test",
    "data_dir": "data.data_dir",
    "model": "train.model",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "optimizer": "train.optimizer",
    "transport": "net.transport",
    "round_timeout": "net.round_timeout",
    "compression": "net.compression",
}
_MERGED_SECTIONS = ("data", "train", "net", "topology_params")

UPDATES_FILE = "updates.jsonl"
UPDATES_DIR = "updates"
SAMPLE_SIZE = 10_000


# ---- settings ---------------------------------------------------------------------------------
def settings_to_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Turn Experiment keywords into the dotted overrides of :meth:`RunConfig.with_overrides`."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        key = ALIASES.get(key, key)
        if key in _MERGED_SECTIONS and isinstance(value, Mapping):
            for k, v in value.items():
                out[f"{key}.{k}"] = v
        elif key in ("attack", "defence") and isinstance(value, str):
            out[f"{key}.name"] = value
        elif key in ("attack", "defence") and isinstance(value, Mapping):
            out[key] = dict(value)  # a whole table replaces the base's (params belong to a name)
        else:
            out[key] = value
    return out


def default_name(config: RunConfig) -> str:
    """``ring-10n-2adv-boost-topk-clip``: what ``p2pfl run`` calls an unnamed run."""
    return (f"{Path(config.topology).stem}-{config.nodes}n-{config.adversaries}adv"
            f"-{config.attack.name}-{config.defence.name.replace(',', '+')}")


def load_config(source: RunConfig | str | Path | Mapping[str, Any] | None) -> RunConfig:
    """A RunConfig from a RunConfig, a TOML path, TOML text or a parsed mapping."""
    if source is None:
        return RunConfig()
    if isinstance(source, RunConfig):
        return source
    if isinstance(source, Mapping):
        return RunConfig.from_mapping(source)
    if isinstance(source, str) and ("\n" in source or ("=" in source and not Path(source).exists())):
        try:
            return RunConfig.from_mapping(tomllib.loads(source))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", source[:60], f"valid TOML ({exc})") from None
    if isinstance(source, str | Path):
        return RunConfig.from_toml(source)
    raise ConfigError("config", source, "a RunConfig, a TOML file path, TOML text or a mapping")


def validate(config: RunConfig) -> None:
    """Check the names and parameters of the attack and the defence before anything runs."""
    from .filters import build_filter

    build_filter(config.defence.name, dict(config.defence.params))
    try:
        from .attacks import ATTACKS, check_params
    except ImportError:  # before the attacks module exists, only honest adversaries
        if config.attack.name != "none":
            raise ConfigError("attack.name", config.attack.name, "none (no attacks are installed)") from None
        return
    if config.attack.name not in ATTACKS:
        raise ConfigError("attack.name", config.attack.name, "one of " + ", ".join(ATTACKS))
    check_params(config.attack.name, dict(config.attack.params))
    for role in getattr(config, "roles", ()):  # [[roles]]: nodes with their own attack or filter
        if role.defence is not None:
            build_filter(role.defence.name, dict(role.defence.params))
        if role.attack is not None:
            check_params(role.attack.name, dict(role.attack.params))


def search_dirs(data_dir: str | Path | None, config: RunConfig | None = None) -> list[Path]:
    """The data search path of ``Experiment.run(data_dir=...)``: ``data_dir``, the config's
    ``data.data_dir``, ``~/.cache/p2pfl`` (:func:`p2pfl.plan.resolve_search_dirs`; library code
    reads no environment, so ``$P2PFL_DATA`` is the CLI's). The plan records it and
    ``processes=True`` hands exactly this list to every node process."""
    return resolve_search_dirs([data_dir] if data_dir else [],
                               config_dir=config.data.data_dir if config is not None else None)


# ---- weight updates -----------------------------------------------------------------------------
class _Recording:
    """A behaviour that reports the update it produced (announced model - x) and delegates."""

    def __init__(self, inner: Any, recorder: UpdateRecorder, node: int) -> None:
        self._inner = inner
        self._recorder = recorder
        self._node = node
        self.name = getattr(inner, "name", "benign")

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    def craft(self, view: Any) -> Any:
        crafted = self._inner.craft(view)
        try:
            self._recorder.add(view.round, self._node, view.x, crafted.announce)
        except Exception:  # a measurement never breaks a run
            log.exception("node %d: could not record the update of round %d", self._node, view.round)
        return crafted


@dataclass
class UpdateRecorder:
    """Collects every node's weight update of each round (in-process runs).

    The update of node i in round t is ``a - x``: the model it announces (the mean over
    neighbours when it announces different models) minus its model at the start of the
    round; for a benign node that is its training update, for an adversary its crafted
    (e.g. boosted) update. When all nodes of a round are in, one line goes to
    ``updates.jsonl``: per node the role, the update's L2 norm and the min/max L2 distance
    to the *benign* nodes' updates (the paper's stealth view), and the min/max pairwise
    distance among benign updates. In ``sample_rounds`` a fixed random subset of
    ``sample_size`` coordinates of every update is saved to ``updates/round-TTT.npz``.
    """

    n: int
    roles: Mapping[int, str]
    out: Path | None = None
    sample_rounds: frozenset[int] = frozenset()
    sample_size: int = SAMPLE_SIZE
    seed: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    _pending: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    _index: np.ndarray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_plan(cls, plan: Plan, out: Path | None, *, sample_rounds: Iterable[int] | None = None,
                 sample_size: int = SAMPLE_SIZE) -> UpdateRecorder:
        rounds = plan.config.rounds
        if sample_rounds is None:
            sample_rounds = default_sample_rounds(rounds)
        return cls(n=plan.config.nodes, roles={i: plan.role(i) for i in range(plan.config.nodes)},
                   out=out, sample_rounds=frozenset(int(r) for r in sample_rounds if 1 <= r <= rounds),
                   sample_size=sample_size, seed=plan.config.seed)

    def attach(self, node: Any) -> None:
        """The ``configure`` hook of :func:`p2pfl.launch.run_inprocess`."""
        node.behaviour = _Recording(node.behaviour, self, node.id)

    def add(self, t: int, node: int, x: np.ndarray, announce: np.ndarray | Mapping[int, np.ndarray]) -> None:
        if isinstance(announce, Mapping):
            a = np.mean(np.stack([np.asarray(v, dtype=np.float32) for v in announce.values()]), axis=0)
        else:
            a = np.asarray(announce, dtype=np.float32)
        u = np.subtract(a, x, dtype=np.float32)
        with self._lock:
            pending = self._pending.setdefault(t, {})
            pending[node] = u
            if len(pending) == self.n:
                del self._pending[t]
            else:
                return
        self._complete(t, pending)

    def close(self) -> None:
        """Flush rounds that did not hear from every node (a node failed or was excluded)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for t in sorted(pending):
            self._complete(t, pending[t])

    def _complete(self, t: int, updates: Mapping[int, np.ndarray]) -> None:
        row = update_stats(t, updates, self.roles)
        samples = None
        if t in self.sample_rounds:
            dim = next(iter(updates.values())).shape[0]
            if self._index is None:
                rng = np.random.default_rng(node_seed(self.seed, 0, 7))
                k = min(dim, self.sample_size)
                self._index = np.sort(rng.choice(dim, size=k, replace=False))
            samples = {i: updates[i][self._index].copy() for i in sorted(updates)}
        with self._lock:
            self.rows.append(row)
            self.rows.sort(key=lambda r: r["round"])
            if samples is not None:
                self.samples[t] = samples
            if self.out is not None:
                with (self.out / UPDATES_FILE).open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, separators=(",", ":")) + "\n")
                if samples is not None:
                    folder = self.out / UPDATES_DIR
                    folder.mkdir(exist_ok=True)
                    np.savez_compressed(folder / f"round-{t:03d}.npz", index=self._index,
                                        **{f"node_{i}": v for i, v in samples.items()})


def default_sample_rounds(rounds: int) -> tuple[int, ...]:
    """Rounds whose update samples are kept: the first three and the last."""
    return tuple(sorted({r for r in (1, 2, 3, rounds) if 1 <= r <= rounds}))


def update_stats(t: int, updates: Mapping[int, np.ndarray], roles: Mapping[int, str]) -> dict[str, Any]:
    """Norms and L2 distances of one round's updates (see :class:`UpdateRecorder`)."""
    ids = sorted(updates)
    u = np.stack([updates[i] for i in ids]).astype(np.float64)
    sq = np.einsum("ij,ij->i", u, u)
    gram = u @ u.T
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0))
    benign = [k for k, i in enumerate(ids) if roles.get(i, "benign") == "benign"]
    nodes: dict[str, dict[str, Any]] = {}
    for k, i in enumerate(ids):
        entry: dict[str, Any] = {"role": roles.get(i, "benign"), "norm": round(float(np.sqrt(sq[k])), 6)}
        others = [b for b in benign if b != k]
        if others:
            entry["dist_min"] = round(float(dist[k, others].min()), 6)
            entry["dist_max"] = round(float(dist[k, others].max()), 6)
        nodes[str(i)] = entry
    row: dict[str, Any] = {"round": t, "nodes": nodes}
    if len(benign) > 1:
        pair = dist[np.ix_(benign, benign)][np.triu_indices(len(benign), 1)]
        row["benign_spread"] = {"min": round(float(pair.min()), 6), "max": round(float(pair.max()), 6),
                                "mean": round(float(pair.mean()), 6)}
    return row


# ---- running ------------------------------------------------------------------------------------
def execute(
    config: RunConfig,
    *,
    out: str | Path | None = None,
    search: Sequence[str | Path] = (),
    progress: Progress | None = None,
    overwrite: bool = False,
    processes: bool = False,
    workers: int | None = None,
    updates: bool = True,
    sample_rounds: Iterable[int] | None = None,
    sample_size: int = SAMPLE_SIZE,
    plan: Plan | None = None,
    hosts: int | None = None,
) -> RunResult:
    """Run ``config`` like :func:`p2pfl.launch.run`, recording weight updates in-process.

    Same arguments as :func:`p2pfl.launch.run` (so ``p2pfl run`` can call either); the
    update statistics land in ``result.extra["updates"]`` and ``updates.jsonl``, samples in
    ``updates/``. With ``processes=True`` or ``updates=False`` this is exactly
    :func:`p2pfl.launch.run` (so are ``hosts``, node hosts: :func:`p2pfl.host.run_hosts`).
    """
    if processes or hosts or not updates:
        return launch_run(config, out=out, processes=processes, search=search, progress=progress,
                          overwrite=overwrite, plan=plan, hosts=hosts)
    from .launch import _write_plan  # the run folder layout is launch's; share its writer

    set_torch_threads(1)
    plan = plan or Plan.build(config, search=search)  # fails fast, before anything is written
    out_path = prepare_out(out, overwrite=overwrite)
    if out_path is not None:
        _write_plan(out_path, plan)
    recorder = UpdateRecorder.for_plan(plan, out_path, sample_rounds=sample_rounds, sample_size=sample_size)
    try:
        result = run_inprocess(plan, out=out_path, progress=progress, configure=recorder.attach,
                               workers=workers)
    finally:
        recorder.close()
    result.extra["updates"] = recorder.rows
    result.extra["update_samples"] = recorder.samples
    return result


@dataclass
class ExperimentResult:
    """A finished experiment: settings, per-round metrics, records and final models."""

    run: RunResult

    @property
    def config(self) -> RunConfig:
        return self.run.config

    @property
    def out(self) -> Path | None:
        return self.run.out

    @property
    def rounds(self) -> list[dict[str, Any]]:
        """Per round: mean/min/max over benign nodes of accuracy, attack success, target confidence."""
        return list(self.run.summary.get("rounds", []))

    @property
    def final(self) -> dict[str, Any]:
        return dict(self.run.final)

    @property
    def records(self) -> list[dict[str, Any]]:
        """One record per node per round, as in ``metrics.jsonl``."""
        return self.run.records

    @property
    def adversaries(self) -> tuple[int, ...]:
        return self.run.adversaries

    @property
    def final_models(self) -> dict[int, np.ndarray]:
        return self.run.final_models

    @property
    def wall_time(self) -> float:
        return self.run.wall_time

    @property
    def updates(self) -> list[dict[str, Any]]:
        """Per-round weight-update statistics (empty when they were not recorded)."""
        return list(self.run.extra.get("updates", []))

    def series(self, key: str, stat: str = "mean") -> list[float] | None:
        """``key_stat`` by round, e.g. ``series("accuracy", "min")``; None if never measured."""
        name = f"{key}_{stat}"
        values = [row.get(name) for row in self.rounds]
        return None if all(v is None for v in values) else [float("nan") if v is None else v for v in values]

    @property
    def accuracy(self) -> list[float]:
        return self.series("accuracy") or []

    @property
    def attack_success(self) -> list[float] | None:
        return self.series("attack_success")

    @property
    def target_confidence(self) -> list[float] | None:
        return self.series("target_confidence")

    def rounds_to(self, threshold: float = 0.9, key: str = "attack_success") -> int | None:
        """The first round whose benign mean ``key`` reaches ``threshold``; None if none does."""
        return rounds_to(self.rounds, threshold, key)

    def table(self) -> str:
        """Per-round benign accuracy (and attack metrics) as a markdown table."""
        has_attack = self.attack_success is not None
        head = ["round", "accuracy mean", "accuracy min", "accuracy max"]
        if has_attack:
            head += ["attack success", "target confidence"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rounds:
            cells = [str(row["round"])] + [_fmt(row.get(f"accuracy_{s}")) for s in ("mean", "min", "max")]
            if has_attack:
                cells += [_fmt(row.get("attack_success_mean"), 2), _fmt(row.get("target_confidence_mean"), 3)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def plot(self, dest: str | Path | None = None) -> list[Path]:
        """Write the run's PNG plots (into ``dest``, default ``<run folder>/plots``)."""
        from .report import write_run_plots

        if self.out is None and dest is None:
            raise ConfigError("dest", None, "a folder for the plots (this run has no run folder)")
        return write_run_plots(self.out if self.out is not None else self.run, dest)


def rounds_to(rounds: Sequence[Mapping[str, Any]], threshold: float = 0.9,
              key: str = "attack_success") -> int | None:
    for row in rounds:
        value = row.get(f"{key}_mean")
        if value is not None and value >= threshold:
            return int(row["round"])
    return None


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


class Experiment:
    """One experiment, built from keywords, a :class:`RunConfig`, a TOML path or TOML text.

    ``Experiment("examples/paper_fmnist_cpu.toml", rounds=3)`` reads the file, then applies
    the keywords; see the module docstring for the keywords understood.
    """

    def __init__(self, config: RunConfig | str | Path | Mapping[str, Any] | None = None, /,
                 **settings: Any) -> None:
        base = load_config(config)
        overrides = settings_to_overrides(settings)
        cfg = base.with_overrides(overrides) if overrides else base
        if cfg.name == "run" and "name" not in overrides:
            cfg = cfg.replace(name=default_name(cfg))
        validate(cfg)
        self.config = cfg

    @classmethod
    def from_toml(cls, path: str | Path, **settings: Any) -> Experiment:
        return cls(Path(path), **settings)

    def with_settings(self, **settings: Any) -> Experiment:
        """A copy with more settings applied."""
        return Experiment(self.config, **settings)

    def __repr__(self) -> str:
        return f"Experiment({self.config.name!r}, digest={self.config.digest()})"

    def run(
        self,
        out: str | Path | None = None,
        *,
        overwrite: bool = False,
        progress: Callable[[Mapping[str, Any]], None] | None = None,
        processes: bool = False,
        data_dir: str | Path | None = None,
        updates: bool = True,
        plots: bool | None = None,
    ) -> ExperimentResult:
        """Run on this machine; with ``out``, write the run folder (and its plots unless
        ``plots=False``). ``data_dir``: where data sets are looked up first."""
        result = execute(self.config, out=out, search=search_dirs(data_dir, self.config), progress=progress,
                         overwrite=overwrite, processes=processes, updates=updates)
        wrapped = ExperimentResult(result)
        if result.out is not None and (plots is None or plots):
            wrapped.plot()
        return wrapped


__all__ = [
    "ALIASES",
    "Experiment",
    "ExperimentResult",
    "UpdateRecorder",
    "default_name",
    "execute",
    "load_config",
    "rounds_to",
    "settings_to_overrides",
    "update_stats",
    "validate",
]
