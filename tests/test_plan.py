"""The plan's data: its search path, its data identity, and the same data in every node process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from test_data import _write_fake_fmnist

from p2pfl import cli, launch
from p2pfl.data import identity_difference
from p2pfl.experiment import Experiment
from p2pfl.plan import Plan, resolve_search_dirs, search_dirs

CACHE = Path("~/.cache/p2pfl").expanduser()


def test_resolve_search_dirs_order_and_duplicates(tmp_path: Path) -> None:
    env = f"{tmp_path / 'e1'}:{tmp_path / 'a'}"

    dirs = resolve_search_dirs([tmp_path / "a", str(tmp_path / "b")], config_dir=tmp_path / "c", env_value=env)

    assert dirs == [tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path / "e1", CACHE]
    assert resolve_search_dirs() == [CACHE]


def test_plan_records_its_search_path_and_data_identity(tmp_path: Path) -> None:
    cfg = tiny_config(**{"data.data_dir": str(tmp_path / "d")})

    plan = Plan.build(cfg)
    again = Plan.build(cfg, search=[tmp_path / "d", CACHE])
    described = json.loads(json.dumps(plan.describe()))

    assert plan.search == (tmp_path / "d", CACHE)
    assert plan.data_identity == again.data_identity
    assert identity_difference(again.data_identity, plan.data_identity, 1) == ""
    assert described["data_identity"] == plan.data_identity
    assert described["data_search"] == [str(tmp_path / "d"), str(CACHE)]


def test_plans_with_different_data_name_the_difference(tmp_path: Path) -> None:
    _write_fake_fmnist(tmp_path / "full", 40, 20)
    embedded = Plan.build(tiny_config(), search=[tmp_path / "empty"])
    full = Plan.build(tiny_config(), search=[tmp_path / "full"])
    fewer = Plan.build(tiny_config(**{"data.max_train": 400}), search=[tmp_path / "empty"])

    assert identity_difference(embedded.data_identity, full.data_identity, 1) == (
        "data differs: embedded split at node 1, full Fashion-MNIST here"
    )
    assert identity_difference(fewer.data_identity, embedded.data_identity, 2) == (
        "data differs: 400 training examples at node 2, 800 here"
    )


def test_experiment_data_dir_comes_before_the_config_data_dir(tmp_path: Path) -> None:
    cfg = tiny_config(**{"data.data_dir": str(tmp_path / "cfg")})

    assert search_dirs([tmp_path / "arg"], cfg) == [tmp_path / "arg", tmp_path / "cfg", CACHE]
    assert search_dirs([], cfg) == [tmp_path / "cfg", CACHE]


def test_cli_search_path_includes_the_config_data_dir_and_env(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PFL_DATA", str(tmp_path / "env"))
    cfg = tiny_config(**{"data.data_dir": str(tmp_path / "cfg")})

    dirs = cli.search_path((str(tmp_path / "flag"),), cfg)
    only = cli.search_path((str(tmp_path / "flag"),), cfg, only=True)

    assert dirs == [tmp_path / "flag", tmp_path / "cfg", tmp_path / "env", CACHE]
    assert only == [tmp_path / "flag"]


class _Captured(Exception):
    pass


def _child_command(plan: Plan, out: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command line run_processes starts node 0 with (nothing is started)."""
    seen: list[list[str]] = []

    def fake_popen(cmd, **_kwargs):
        seen.append(list(cmd))
        raise _Captured

    monkeypatch.setattr(launch.subprocess, "Popen", fake_popen)
    with pytest.raises(_Captured):
        launch.run_processes(plan, out=out)
    return seen[0]


def test_processes_children_search_exactly_the_parents_path(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: the parent's plan finds a full set through data.data_dir; the children's
    # environment points $P2PFL_DATA at another full set, which they must not use.
    _write_fake_fmnist(tmp_path / "mine", 40, 20, fill=3)
    _write_fake_fmnist(tmp_path / "other", 40, 20, fill=200)
    monkeypatch.setenv("P2PFL_DATA", str(tmp_path / "other"))
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(nodes=2, topology="line", **{"data.data_dir": "mine"})  # relative: children get it absolute
    plan = Plan.build(cfg, search=search_dirs([], cfg))
    (tmp_path / "run").mkdir()

    # Act: the command line of a child, parsed by the CLI as the child parses it
    cmd = _child_command(plan, tmp_path / "run", monkeypatch)
    args = cmd[cmd.index("node") + 1:]
    ctx = cli.node.make_context("node", args)
    child_search = cli.search_path(ctx.params["data_dirs"], cfg, only=ctx.params["only_data_dirs"])
    child_plan = Plan.build(cfg, search=child_search)

    # Assert
    assert ctx.params["only_data_dirs"]
    assert child_search == [Path(d).absolute() for d in plan.search]
    assert child_plan.data_identity == plan.data_identity
    assert child_plan.data_identity["source"] == "full"


@pytest.mark.slow
def test_processes_run_uses_the_parents_data_in_every_node(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: data only through the config's data_dir; $P2PFL_DATA (inherited by the
    # children) holds other data of the same sizes.
    _write_fake_fmnist(tmp_path / "mine", 40, 20, fill=3)
    _write_fake_fmnist(tmp_path / "other", 40, 20, fill=200)
    monkeypatch.setenv("P2PFL_DATA", str(tmp_path / "other"))
    exp = Experiment(tiny_config(nodes=2, rounds=1, topology="line"), data_dir=str(tmp_path / "mine"))

    # Act
    inproc = exp.run(out=tmp_path / "inproc", updates=False, plots=False)
    procs = exp.run(out=tmp_path / "procs", processes=True, plots=False)

    # Assert: the same models as in-process, so every node trained and tested on "mine"
    for i in range(2):
        assert np.array_equal(inproc.run.final_models[i], procs.run.final_models[i]), i
        log = (tmp_path / "procs" / "nodes" / f"node-{i}.log").read_text()
        assert "embedded" not in log
    plan = json.loads((tmp_path / "procs" / "plan.json").read_text())
    assert plan["data_identity"]["source"] == "full"


def test_trainers_share_one_module_per_thread_unless_optimizer_state_is_kept(make_config) -> None:
    plan = Plan.build(make_config(nodes=4))
    trainers = [plan.trainer(i) for i in range(4)]
    assert plan.models is not None and all(t.model is trainers[0].model for t in trainers)
    kept = Plan.build(make_config(nodes=4, **{"train.keep_optimizer_state": True}))
    a, b = kept.trainer(0), kept.trainer(1)
    assert kept.models is None and a.model is not b.model


def test_large_plans_describe_their_graph_without_the_cubic_quantities() -> None:
    from p2pfl.plan import DESCRIBE_EXACT_MAX, describe_topology
    from p2pfl.topology import build_topology

    small, large = build_topology("ring", 10, seed=0), build_topology("ring", DESCRIBE_EXACT_MAX + 1, seed=0)
    assert describe_topology(small) == small.describe()
    desc = describe_topology(large)
    assert desc["spectral_gap"] is None and desc["diameter"] is None and "note" in desc
    assert (desc["n"], desc["edges"], desc["degree_min"], desc["degree_max"]) == (DESCRIBE_EXACT_MAX + 1,) * 2 + (2, 2)


def test_a_plan_and_its_nodes_never_build_the_dense_mixing_matrix(make_config) -> None:
    # Nodes take their row of W (O(degree)); the (n, n) matrix (800 MB at 10,000 nodes) is
    # built only when somebody asks for plan.weights.
    plan = Plan.build(make_config(topology="ring", nodes=6, rounds=1))
    rows = {i: plan.neighbour_weights(i) for i in range(6)}
    assert plan.topology.__dict__.get("_mixing_cache", {}) == {}
    assert all(rows[i][j] == plan.weights[i, j] for i in rows for j in rows[i])
    assert "metropolis" in plan.topology.__dict__["_mixing_cache"]
