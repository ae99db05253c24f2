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
``dataset``, ``partition``, ``max_train``, ``max_test``, ``tensorboard``, ... see :data:`ALIASES`),
whole sections as mappings (``train={"epochs": 1}``), ``attack="boost"`` or
``attack={"name": "boost", "lam": 10}``, and dotted keys (``**{"attack.lam": 10}``).

Your own model and data: ``model`` and ``dataset`` also take an import path
(``"package.module:factory"``, ``"package.module:loader"``) or a Python object: a model
factory or a :class:`torch.nn.Module`, a data loader, a :class:`~p2pfl.data.UserData` or a
tuple ``(x_train, y_train, x_test, y_test, classes)`` (see :mod:`p2pfl.models`,
:mod:`p2pfl.data`). A function that can be imported back by name (defined at the top level
of an importable module) is stored as its import path and works with ``processes=True``;
other objects (lambdas, closures, tensors, functions of ``__main__``) work in-process only.

:meth:`Experiment.run` calls :func:`p2pfl.launch.run`; besides the run folder, an in-process
run records the weight updates every node computes (:mod:`p2pfl.updates`): per round, each
node's update norm and its L2 distances to the benign nodes' updates (``updates.jsonl``),
and a fixed sample of coordinates of every node's update in a few rounds
(``updates/round-TTT.npz``). These feed the paper's weight-update views in :mod:`p2pfl.report`.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig
from .errors import ConfigError
from .imports import IMPORT_PATH_HELP, import_path_of, placeholder
from .launch import RunHook, RunResult, run
from .plan import Plan, search_dirs, validate
from .updates import RecordUpdates, UpdateRecorder, update_stats

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
    "tensorboard": "report.tensorboard",
}
#: Keywords that take Python objects as well as strings: keyword -> setting.
_OBJECT_SETTINGS = {"model": "train.model", "dataset": "data.dataset"}
_MERGED_SECTIONS = ("data", "train", "net", "topology_params")


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
        self.objects: dict[str, Any] = {}  # "model"/"dataset" -> a Python object only this process holds
        for key in _OBJECT_SETTINGS:
            value = settings.get(key)
            if value is None or isinstance(value, str):
                continue
            path = import_path_of(value) if callable(value) else None
            if path is not None:
                settings[key] = path  # importable by name: node processes can load it too
            else:
                self.objects[key] = value
                settings[key] = placeholder(value)
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
        """A copy with more settings applied (and the Python objects of this one)."""
        return Experiment(self.config, **{**self.objects, **settings})

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
        hooks: Sequence[RunHook] = (),
        tensorboard: str | Path | None = None,
        hosts: int | None = None,
    ) -> ExperimentResult:
        """Run on this machine (:func:`p2pfl.launch.run`); with ``out``, write the run folder
        (and its plots unless ``plots=False``). ``data_dir``: where data sets are looked up
        first (then the config's ``data.data_dir``, ``~/.cache/p2pfl``: library code reads no
        environment, so ``$P2PFL_DATA`` is the CLI's). ``updates``: record weight updates
        (in-process runs, :mod:`p2pfl.updates`). ``hooks``: your own
        :class:`~p2pfl.launch.RunHook` objects (given the plan, every node before it starts
        in in-process runs, and the result). ``tensorboard``: a folder for TensorBoard event
        files (default: the ``tensorboard`` setting). ``hosts=W``: run the nodes in W node
        hosts (OS processes, ``p2pfl run --workers W``) instead of this process.

        Raises
        ------
        ConfigError
            ``processes=True`` with a model or data set given as a Python object that node
            processes cannot import.
        """
        if (processes or hosts) and self.objects:
            keys = ", ".join(f"{k}={self.config.train.model if k == 'model' else self.config.data.dataset}"
                             for k in self.objects)
            raise ConfigError("processes", True, f"an in-process run: {keys} is a Python object that `p2pfl node` "
                                                 f"processes cannot load; give {IMPORT_PATH_HELP} (a function at the "
                                                 "top level of an importable module) to run with processes")
        search = search_dirs([data_dir] if data_dir else [], self.config)
        plan = None
        if self.objects:
            plan = Plan.build(self.config, search=search, model=self.objects.get("model"),
                              dataset=self.objects.get("dataset"))
        hooks = [*([RecordUpdates()] if updates else []), *hooks]
        result = run(self.config, out=out, search=search, progress=progress, overwrite=overwrite,
                     processes=processes, hooks=hooks, plan=plan, tensorboard=tensorboard,
                     hosts=hosts)
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
    "load_config",
    "rounds_to",
    "settings_to_overrides",
    "update_stats",
    "validate",
]
