"""Everything an experiment derives from its settings, deterministically from the seed.

Every node of a run, in one process or on many machines, builds the same :class:`Plan`
from the same :class:`~p2pfl.config.RunConfig`: the graph, the mixing weights, who is
adversarial, the data shards and the common initial model x^0. Nothing here touches the
network; :mod:`p2pfl.launch` and :mod:`p2pfl.node` put it to work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .attacks.backdoor import Backdoor, check_backdoor_params
from .config import AttackConfig, DefenceConfig, RoleConfig, RunConfig
from .data import (
    DatasetBundle,
    DataSource,
    TensorData,
    identity,
    load_dataset,
    partition,
    split_validation,
)
from .errors import ConfigError
from .models import (
    ModelSource,
    build_model,
    check_model_output,
    describe_model,
    is_user_model,
    num_params,
)
from .topology import Topology, build_topology, place_adversaries
from .train import ModelPool, Trainer, TrainSpec, get_flat

log = logging.getLogger(__name__)


def node_seed(seed: int, node: int, purpose: int = 0) -> int:
    """An independent 32-bit seed per (experiment seed, node, purpose)."""
    return int(np.random.SeedSequence([seed, node, purpose]).generate_state(1)[0])


def default_search_dirs(data_dir: str | None, env_value: str | None = None) -> list[Path]:
    """Where data sets are looked up: --data-dir, then $P2PFL_DATA (passed in), then ~/.cache/p2pfl."""
    dirs: list[Path] = []
    if data_dir:
        dirs.append(Path(data_dir).expanduser())
    if env_value:
        dirs.extend(Path(p).expanduser() for p in env_value.split(os.pathsep) if p)
    dirs.append(Path("~/.cache/p2pfl").expanduser())
    return dirs


def resolve_search_dirs(
    data_dirs: Sequence[str | os.PathLike] = (),
    *,
    config_dir: str | os.PathLike | None = None,
    env_value: str | None = None,
) -> list[Path]:
    """The one rule for the data search path, used by the CLI and the Python API alike.

    ``data_dirs`` (--data-dir, ``Experiment.run(data_dir=...)``) first, then the config's
    ``data.data_dir``, then ``env_value`` (``$P2PFL_DATA``: only the CLI reads the
    environment and passes it in), then ``~/.cache/p2pfl``; later duplicates are dropped.
    The list a :class:`Plan` used is :attr:`Plan.search`; processes started for a run get
    exactly that list (``p2pfl node --only-data-dirs``).
    """
    dirs = [Path(d).expanduser() for d in data_dirs if str(d)]
    dirs += default_search_dirs(str(config_dir) if config_dir else None, env_value)
    return list(dict.fromkeys(dirs))


def search_dirs(data_dirs: Sequence[str | os.PathLike] = (), config: RunConfig | None = None, *,
                env_value: str | None = None, only: bool = False) -> list[Path]:
    """The data search path of a run: :func:`resolve_search_dirs` with the config's
    ``data.data_dir``; with ``only``, exactly ``data_dirs`` (what ``run --processes`` hands
    to its node processes). ``env_value`` is ``$P2PFL_DATA``, which only the CLI reads."""
    if only:
        return [Path(d).expanduser() for d in data_dirs]
    return resolve_search_dirs(data_dirs, config_dir=config.data.data_dir if config is not None else None,
                               env_value=env_value)


def validate(config: RunConfig) -> None:
    """Check the names and parameters of the run's and every role's attack and filter before
    anything runs (a :class:`~p2pfl.errors.ConfigError` names the field and what is allowed)."""
    from .attacks import ATTACKS, check_params
    from .filters import build_filter

    build_filter(config.defence.name, dict(config.defence.params))
    if config.attack.name not in ATTACKS:
        raise ConfigError("attack.name", config.attack.name, "one of " + ", ".join(ATTACKS))
    check_params(config.attack.name, dict(config.attack.params))
    for role in config.roles:
        if role.defence is not None:
            build_filter(role.defence.name, dict(role.defence.params))
        if role.attack is not None:
            check_params(role.attack.name, dict(role.attack.params))


@dataclass
class Plan:
    """The resolved experiment: graph, roles, data and x^0."""

    config: RunConfig
    topology: Topology
    adversaries: tuple[int, ...]
    bundle: DatasetBundle
    shards: list[np.ndarray]
    x0: np.ndarray
    exp_id: str
    test: TensorData  # clean test set: the auxiliary examples are removed from it
    aux: TensorData | None = None  # the adversaries' targets: inputs with the labels they want
    aux_source: np.ndarray | None = None  # true labels of the aux examples
    backdoor: Backdoor | None = None  # what the adversaries train on and are measured on
    search: tuple[Path, ...] = ()  # the data search path the bundle was looked up in, in order
    data_identity: dict[str, str | int] = field(default_factory=dict)  # data.identity(bundle)
    model_source: ModelSource | None = None  # a Python model object given to build(); None: config.train.model

    #: One torch module per thread for every trainer of this plan (see :meth:`trainer`).
    models: ModelPool | None = field(default=None, repr=False, compare=False)
    _poolable: bool | None = field(default=None, repr=False, compare=False)  # the model has no buffers

    def __post_init__(self) -> None:
        if not self.data_identity:  # hashed once per plan; compared at handshake
            self.data_identity = identity(self.bundle)

    @classmethod
    def build(cls, config: RunConfig, *, search: Sequence[str | os.PathLike] = (),
              model: ModelSource | None = None, dataset: DataSource | None = None) -> Plan:
        """Resolve ``config``. ``model`` / ``dataset``: Python objects (a factory or module, a
        loader or tensors) that replace ``train.model`` / ``data.dataset`` in this process
        (the config then holds their placeholders, see :mod:`p2pfl.imports`)."""
        cfg = config
        topo = build_topology(cfg.topology, cfg.nodes, seed=cfg.seed, **dict(cfg.topology_params))
        adversaries = _adversaries(cfg, topo)
        dirs = [Path(d).expanduser() for d in search] or resolve_search_dirs(config_dir=cfg.data.data_dir)
        bundle = load_dataset(
            dataset if dataset is not None else cfg.data.dataset,
            search=dirs,
            download=cfg.data.download,
            cache_dir=Path("~/.cache/p2pfl").expanduser() if cfg.data.download else None,
            seed=cfg.seed,
            embedded_test_fraction=cfg.data.test_fraction,
            max_train=cfg.data.max_train,
            max_test=cfg.data.max_test,
        )
        shards = partition(bundle.train.y.numpy(), cfg.nodes, cfg.data.partition,
                           alpha=cfg.data.alpha, shards_per_node=cfg.data.shards_per_node, seed=cfg.seed)
        source = model if model is not None else cfg.train.model
        net = build_model(source, input_shape=bundle.input_shape, classes=bundle.train.classes, seed=cfg.seed)
        if is_user_model(source):  # fail before any node starts, naming train.model
            check_model_output(net, bundle.train.x[:2], bundle.train.classes, name=describe_model(source))
        x0 = get_flat(net)
        test, aux, aux_true, backdoor = bundle.test, None, None, None
        attacks = [cfg.attack] + [r.attack for r in cfg.roles if r.adversarial]
        active = next((a for a in attacks if a is not None and a.name != "none"), None)
        if active is not None:  # one backdoor (and auxiliary set), shared by colluding adversaries
            chosen = choose_backdoor(bundle, active.params, seed=cfg.seed)
            test, aux, aux_true, backdoor = chosen.test, chosen.aux, chosen.aux_source, chosen.backdoor
        plan = cls(config=cfg, topology=topo, adversaries=tuple(adversaries),
                   bundle=bundle, shards=shards, x0=x0, exp_id=cfg.digest(), test=test, aux=aux,
                   aux_source=aux_true, backdoor=backdoor, search=tuple(dirs), model_source=model)
        if backdoor is not None and backdoor.kind != "single":
            from .attacks import AUX_ONLY

            labels = bundle.train.y.numpy()
            for a in plan.adversaries:  # fail before anything runs, not in round 1
                if plan.attack_for(a).name in AUX_ONLY:
                    backdoor.check_holds(labels[shards[a]], a)
        return plan

    @property
    def dim(self) -> int:
        return int(self.x0.shape[0])

    def _role_config(self, node: int) -> RoleConfig | None:
        return next((r for r in self.config.roles if node in r.nodes), None)

    def attack_for(self, node: int) -> AttackConfig:
        """The attack node runs (``none`` for benign nodes)."""
        if node not in self.adversaries:
            return AttackConfig()
        rc = self._role_config(node)
        return rc.attack if rc is not None and rc.attack is not None else self.config.attack

    def defence_for(self, node: int) -> DefenceConfig:
        """The filter node applies: its role's, else the run's (adversaries apply none)."""
        if node in self.adversaries:
            return DefenceConfig()
        rc = self._role_config(node)
        return rc.defence if rc is not None and rc.defence is not None else self.config.defence

    def role(self, node: int) -> str:
        """``benign``, or the attack an adversarial node runs (``adversary`` if it runs none)."""
        if node not in self.adversaries:
            return "benign"
        attack = self.attack_for(node).name
        return attack if attack != "none" else "adversary"

    def needs_validation(self) -> bool:
        names = [self.config.defence.name] + [r.defence.name for r in self.config.roles if r.defence]
        return any("accuracy-check" in n for n in names)

    def node_data(self, node: int) -> tuple[TensorData, TensorData | None]:
        """The node's training shard and (if its filter needs one) a local validation split."""
        shard = self.bundle.train.subset(self.shards[node])
        if self.needs_validation() and self.config.data.validation_fraction > 0:
            train, val = split_validation(shard, self.config.data.validation_fraction,
                                          seed=node_seed(self.config.seed, node, 2))
            return train, val
        return shard, None

    def build_module(self) -> torch.nn.Module:
        """A fresh torch module of the run's model (initialised from the seed, like x^0)."""
        source = self.model_source if self.model_source is not None else self.config.train.model
        model = build_model(source, input_shape=self.bundle.input_shape,
                            classes=self.bundle.train.classes, seed=self.config.seed)
        if num_params(model) != self.dim:
            raise ConfigError("train.model", describe_model(source),
                              f"a factory that builds the same model every time; it built {self.dim} "
                              f"parameters for x0, then {num_params(model)}")
        return model

    def trainer(self, node: int) -> Trainer:
        """Node ``node``'s trainer. Without persistent optimizer state every trainer of the plan
        borrows one module per thread (:attr:`models`, a :class:`~p2pfl.train.ModelPool`), so a
        node costs its flat vectors, not a torch module; with it, the node owns a module."""
        cfg = self.config.train
        if self.models is None and not cfg.keep_optimizer_state and self._poolable is None:
            # a shared module is only bit-identical when the flat vector is the whole state
            self._poolable = not any(True for _ in self.build_module().buffers())
        if cfg.keep_optimizer_state or not self._poolable:
            model: torch.nn.Module | ModelPool = self.build_module()
        else:
            if self.models is None:
                self.models = ModelPool(self.build_module)
            model = self.models
        spec = TrainSpec(epochs=max(cfg.epochs, 1), batch_size=cfg.batch_size, lr=cfg.lr,
                         optimizer=cfg.optimizer, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return Trainer(model, spec, seed=node_seed(self.config.seed, node, 1),
                       keep_optimizer_state=cfg.keep_optimizer_state)

    @property
    def weights(self) -> np.ndarray:
        """The ``(n, n)`` mixing matrix, built on first use (read-only, cached by the topology).

        Nodes need only their row (:meth:`neighbour_weights`); at 10,000 nodes the matrix is
        800 MB, so plans do not build it unless asked.
        """
        return self.topology._mixing(self.config.mixing)

    def neighbour_weights(self, node: int) -> dict[int, float]:
        return self.topology.mixing_row(node, self.config.mixing)

    def max_message_bytes(self) -> int:
        mb = self.config.net.max_message_mb
        return int(mb * 2**20) if mb > 0 else self.dim * 8 + (1 << 16)

    def describe(self) -> dict[str, Any]:
        return {
            "topology": describe_topology(self.topology),
            "adversaries": list(self.adversaries),
            "data": self.bundle.source,
            "data_identity": dict(self.data_identity),
            "data_search": [str(d) for d in self.search],
            "aux": None if self.aux is None else {
                "size": len(self.aux), "target": self.aux.y.tolist(),
                "true": None if self.aux_source is None else self.aux_source.tolist()},
            **({"backdoor": self.backdoor.describe()} if self.backdoor is not None else {}),
            "params": self.dim,
            "shard_sizes": [int(len(s)) for s in self.shards],
        }


#: Largest graph whose diameter (all-pairs BFS) and spectral gap (a dense eigendecomposition,
#: O(n^3): 50 s at 2,000 nodes on this machine, hours at 10,000) go into plan.json.
DESCRIBE_EXACT_MAX = 1000


def describe_topology(topo: Topology) -> dict[str, Any]:
    """:meth:`Topology.describe`, without the diameter and spectral gap above
    :data:`DESCRIBE_EXACT_MAX` nodes (``None`` there, and a note saying why)."""
    if topo.n <= DESCRIBE_EXACT_MAX:
        return topo.describe()
    degrees = np.array([len(topo.neighbours(i)) for i in range(topo.n)])
    return {"name": topo.name, "n": topo.n, "edges": len(topo.edges), "degree_min": int(degrees.min()),
            "degree_mean": float(degrees.mean()), "degree_max": int(degrees.max()), "diameter": None,
            "spectral_gap": None,
            "note": f"diameter and spectral gap are computed up to {DESCRIBE_EXACT_MAX} nodes "
                    "(`p2pfl topology show` computes them for any size)"}


def _adversaries(cfg: RunConfig, topo: Topology) -> tuple[int, ...]:
    """Role-listed attackers, plus ``cfg.adversaries`` placed among the nodes no role lists."""
    listed = {i for r in cfg.roles for i in r.nodes}
    chosen = {i for r in cfg.roles if r.adversarial for i in r.nodes}
    if cfg.adversaries:
        if not listed:
            chosen.update(place_adversaries(topo, cfg.adversaries, cfg.placement, seed=cfg.seed))
        else:
            # Place over the whole graph with room to spare, then keep the unlisted ones.
            wanted = min(topo.n - 1, cfg.adversaries + len(listed))
            ranked = place_adversaries(topo, wanted, cfg.placement, seed=cfg.seed)
            chosen.update([i for i in ranked if i not in listed][: cfg.adversaries])
    return tuple(sorted(chosen))


@dataclass(frozen=True)
class _Chosen:
    backdoor: Backdoor
    test: TensorData
    aux: TensorData | None
    aux_source: np.ndarray | None


def choose_backdoor(bundle: DatasetBundle, params: Mapping[str, Any], *, seed: int) -> _Chosen:
    """The run's backdoor (:mod:`p2pfl.attacks.backdoor`) from the attack parameters.

    ``backdoor = "single"`` (default) is :func:`choose_aux` exactly as before backdoor kinds
    (same draws, the aux examples leave the clean test set); ``class`` and ``trigger`` keep
    the whole clean test set and measure success on a relabelled / stamped copy of part of it.
    """
    kind = check_backdoor_params(params)["backdoor"]
    if kind == "single":
        test, aux, aux_true = choose_aux(bundle.test, params, seed=seed)
        return _Chosen(Backdoor.single(aux), test, aux, aux_true)
    backdoor = Backdoor.build(params, test=bundle.test, train=bundle.train, aux=None, seed=seed)
    return _Chosen(backdoor, bundle.test, None, None)


def choose_aux(test: TensorData, params: Mapping[str, Any], *, seed: int
               ) -> tuple[TensorData, TensorData, np.ndarray]:
    """Pick the adversaries' auxiliary set from the test set and remove it from the clean test set.

    ``params["target"]``: ``"random"`` (the paper's default: r examples, each relabelled with
    a random wrong class) or ``"S:T"`` (r examples of class S, all relabelled T, e.g. 5:7,
    sandal -> sneaker). ``params["aux_size"]`` is r (default 1).
    """
    r = params.get("aux_size", 1)
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= len(test) // 2:
        raise ConfigError("attack.aux_size", r, f"an integer in 1..{len(test) // 2}")
    target = params.get("target", "random")
    rng = np.random.default_rng(node_seed(seed, 0, 3))
    labels = test.y.numpy()
    classes = test.classes
    if target == "random":
        idx = rng.choice(len(test), size=r, replace=False)
        shift = rng.integers(1, classes, size=r)
        wanted = (labels[idx] + shift) % classes
    else:
        parts = str(target).split(":")
        try:
            src, dst = int(parts[0]), int(parts[1])
            if len(parts) != 2 or not (0 <= src < classes and 0 <= dst < classes) or src == dst:
                raise ValueError
        except (ValueError, IndexError):
            raise ConfigError("attack.target", target,
                              f"'random' or 'S:T' with two different classes in 0..{classes - 1}") from None
        pool = np.flatnonzero(labels == src)
        if len(pool) < r:
            raise ConfigError("attack.aux_size", r, f"at most {len(pool)} (examples of class {src})")
        idx = rng.choice(pool, size=r, replace=False)
        wanted = np.full(r, dst)
    idx = np.sort(idx)
    keep = np.setdiff1d(np.arange(len(test)), idx)
    aux = TensorData(test.x[torch.as_tensor(idx)], torch.as_tensor(wanted, dtype=torch.int64), classes)
    return test.subset(keep), aux, labels[idx].copy()


def set_torch_threads(n: int = 1) -> None:
    """One intra-op thread per training thread: bit-reproducible and no oversubscription."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


__all__ = ["Plan", "choose_aux", "choose_backdoor", "default_search_dirs", "node_seed", "resolve_search_dirs",
           "search_dirs", "set_torch_threads", "validate"]
