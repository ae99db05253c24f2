"""The plan's data: its search path, its data identity, and the same data in every node process."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_config
from test_data import _write_fake_fmnist

from p2pfl.data import identity_difference
from p2pfl.plan import Plan, resolve_search_dirs

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
