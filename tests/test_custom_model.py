"""Your own model and data: import paths, Python objects, errors, and the example, in-process and in processes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from torch import nn

from p2pfl import Experiment
from p2pfl.config import RunConfig
from p2pfl.data import TensorData, UserData, identity, identity_difference, load_dataset
from p2pfl.errors import ConfigError, DataError
from p2pfl.imports import import_object, import_roots, is_import_path
from p2pfl.models import SeededDropout, build_model
from p2pfl.plan import Plan

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_model.py"

# A user's module: a model factory and a loader of three Gaussian blobs in 6-D.
USER_MODULE = '''
import numpy as np
import torch
from torch import nn


def build(input_shape, classes, seed):
    features = int(np.prod(input_shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 16), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(16, classes))


def load(seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 2.0, size=(3, 6))

    def draw(n):
        y = rng.integers(0, 3, size=n)
        x = centers[y] + rng.normal(0.0, 1.0, size=(n, 6))
        return torch.tensor(x, dtype=torch.float32), torch.from_numpy(y)

    x_train, y_train = draw(240)
    x_test, y_test = draw(90)
    return x_train, y_train, x_test, y_test, 3


def not_a_model(input_shape, classes):
    return "a string"


def wrong_width(input_shape, classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(6, classes + 1))


def needs_more(input_shape, classes, hidden):
    return nn.Linear(6, classes)


def nan_data():
    x = torch.zeros(20, 6)
    x[3, 2] = float("nan")
    return x, torch.zeros(20, dtype=torch.int64), torch.zeros(10, 6), torch.zeros(10, dtype=torch.int64), 2


def float_labels():
    return torch.zeros(20, 6), torch.zeros(20), torch.zeros(10, 6), torch.zeros(10, dtype=torch.int64), 2


def labels_out_of_range():
    y = torch.full((20,), 5, dtype=torch.int64)
    return torch.zeros(20, 6), y, torch.zeros(10, 6), torch.zeros(10, dtype=torch.int64), 2


def four_things():
    return torch.zeros(20, 6), torch.zeros(20, dtype=torch.int64), torch.zeros(10, 6), 2


def other_test_shape():
    return torch.zeros(20, 6), torch.zeros(20, dtype=torch.int64), torch.zeros(10, 5), torch.zeros(10, dtype=torch.int64), 2
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The name of a fresh module, outside the p2pfl package, on sys.path (not on PYTHONPATH)."""
    name = f"byo_user_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / f"{name}.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield name
    sys.modules.pop(name, None)


def user_config(mod: str, **changes) -> RunConfig:
    settings = {"topology": "ring", "nodes": 3, "rounds": 2, "adversaries": 1, "attack.name": "boost",
                "defence.name": "topk-clip", "train.model": f"{mod}:build", "data.dataset": f"{mod}:load",
                "train.epochs": 2, "train.batch_size": 16, "train.lr": 0.02, "data.max_train": None, "data.max_test": None}
    settings.update(changes)
    return tiny_config(**settings)


# ---- import paths in settings ----------------------------------------------------------------------
def test_import_paths_are_accepted_by_config_and_bad_names_are_refused():
    cfg = RunConfig.from_mapping({"train": {"model": "pkg.mod:factory"}, "data": {"dataset": "pkg.mod:Cls.load"}})
    assert (cfg.train.model, cfg.data.dataset) == ("pkg.mod:factory", "pkg.mod:Cls.load")
    for field, value in (("train.model", "resnet"), ("train.model", "pkg.mod:"), ("data.dataset", "mnist"),
                         ("data.dataset", "a/b.py:load")):
        with pytest.raises(ConfigError, match=field) as info:
            RunConfig().with_overrides({field: value})
        assert "import path 'package.module:name'" in str(info.value)
    assert is_import_path("a.b:c.d") and not is_import_path("a.b") and not is_import_path(":c")


def test_a_run_trains_a_model_and_data_from_a_module_outside_the_package(user_module, tmp_path):
    # Arrange
    cfg = user_config(user_module)

    # Act
    result = Experiment(cfg).run(out=tmp_path / "run", plots=True)

    # Assert: every node evaluated, the attack measured, the filter ran, plots drawn
    assert len(result.records) == 3 * 2
    assert all("accuracy" in r and "attack_success" in r for r in result.records)
    assert any("filter" in r for r in result.records if r["role"] == "benign")
    assert result.final["accuracy_mean"] > 0.5  # three well separated blobs
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["data_identity"]["dataset"] == "custom" and plan["data_identity"]["source"] == "user"
    assert plan["params"] == 6 * 16 + 16 + 16 * 3 + 3
    assert "user data" in plan["data"]
    assert (tmp_path / "run" / "plots" / "rounds.png").is_file()
    assert f"{user_module}:build" in (tmp_path / "run" / "config.toml").read_text()


def test_partitions_and_backdoors_work_with_user_data(user_module):
    for changes in ({"data.partition": "dirichlet", "data.alpha": 0.3},
                    {"data.partition": "shards", "data.shards_per_node": 2},
                    {"attack.backdoor": "class", "attack.target": "0:1"}):
        plan = Plan.build(user_config(user_module, **changes))
        assert sum(len(s) for s in plan.shards) == 240
        assert plan.backdoor is not None and len(plan.backdoor.success_set) > 0
    with pytest.raises(ConfigError, match="tabular"):  # a pixel trigger needs images, as for Adult
        Plan.build(user_config(user_module, **{"attack.backdoor": "trigger"}))


def test_user_model_is_a_pure_function_of_the_seed_and_leaves_the_global_rng_alone(user_module):
    state = torch.random.get_rng_state()
    a = build_model(f"{user_module}:build", input_shape=(6,), classes=3, seed=7)
    b = build_model(f"{user_module}:build", input_shape=(6,), classes=3, seed=7)
    c = build_model(f"{user_module}:build", input_shape=(6,), classes=3, seed=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    flat = [torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in (a, b, c)]
    assert torch.equal(flat[0], flat[1]) and not torch.equal(flat[0], flat[2])
    # nn.Dropout became the seeded dropout (masks from the node's generator, same maths)
    assert [type(m) for m in a.modules()].count(SeededDropout) == 1
    assert not any(type(m) is nn.Dropout for m in a.modules())


def test_data_identity_hashes_user_tensors(user_module):
    a = load_dataset(f"{user_module}:load", seed=0)
    b = load_dataset(f"{user_module}:load", seed=0)
    c = load_dataset(f"{user_module}:load", seed=1)
    assert identity(a) == identity(b)
    assert identity(a)["source"] == "user" and identity(a)["classes"] == 3
    assert "hash" in identity_difference(identity(c), identity(a), 1)
    small = load_dataset(f"{user_module}:load", seed=0, max_train=60, max_test=30)
    assert (len(small.train), len(small.test)) == (60, 30)


# ---- errors name the field and what was expected ---------------------------------------------------
@pytest.mark.parametrize("attr, match", [
    ("nope", "has no attribute 'nope'"),
    ("not_a_model", "it returned a str"),
    ("needs_more", "requires 'hidden'"),
])
def test_bad_model_factories_are_config_errors(user_module, attr, match):
    with pytest.raises(ConfigError, match="train.model") as info:
        build_model(f"{user_module}:{attr}", input_shape=(6,), classes=3, seed=0)
    assert match in str(info.value)


def test_a_model_that_does_not_fit_the_data_fails_at_plan_time(user_module):
    with pytest.raises(ConfigError, match=r"train.model.*logits of shape \(2, 3\); it returned \(2, 4\)"):
        Plan.build(user_config(user_module, **{"train.model": f"{user_module}:wrong_width"}))


def test_missing_modules_say_where_they_were_looked_for():
    with pytest.raises(ConfigError, match="no module named 'no_such_pkg_xyz.models'") as info:
        build_model("no_such_pkg_xyz.models:net", input_shape=(6,), classes=3, seed=0)
    assert "train.model" in str(info.value) and "PYTHONPATH" in str(info.value)
    with pytest.raises(ConfigError, match="data.dataset"):
        load_dataset("no_such_pkg_xyz:load")


@pytest.mark.parametrize("attr, match", [
    ("nan_data", "x_train has 1 non-finite"),
    ("float_labels", "y_train has dtype float32; expected integer"),
    ("labels_out_of_range", r"labels 5..5; expected labels in 0..1"),
    ("four_things", "a 4-tuple"),
    ("other_test_shape", "expected the same input shape"),
])
def test_bad_loader_results_are_data_errors(user_module, attr, match):
    with pytest.raises(DataError, match="data.dataset") as info:
        load_dataset(f"{user_module}:{attr}")
    assert re.search(match, str(info.value))


def test_a_module_in_the_current_directory_is_found(tmp_path, monkeypatch):
    name = f"byo_cwd_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        factory = import_object(f"{name}:build", "train.model", "a model factory")
        assert callable(factory)
        assert import_roots([f"{name}:build", "cnn"]) == [str(tmp_path.resolve())]
    finally:
        sys.modules.pop(name, None)


# ---- Python objects -----------------------------------------------------------------------------------
def test_python_objects_run_in_process_and_are_refused_for_processes(tmp_path):
    # Arrange: a closure and plain tensors, which no node process could import
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    width = 8
    exp = Experiment(tiny_config(nodes=3, rounds=1, **{"data.max_train": None, "data.max_test": None}),
                     model=lambda input_shape, classes: nn.Sequential(nn.Linear(input_shape[0], width), nn.ReLU(),
                                                                      nn.Linear(width, classes)),
                     dataset=UserData(x[:150], y[:150], x[150:], y[150:], classes=2))

    # Act
    result = exp.run(plots=False)

    # Assert
    assert exp.config.train.model.startswith("<python: ") and exp.config.data.dataset == "<python: tensors>"
    assert len(result.records) == 3 and result.final["accuracy_mean"] > 0
    with pytest.raises(ConfigError, match="processes.*Python object"):
        exp.run(out=tmp_path / "procs", processes=True)
    with pytest.raises(ConfigError, match="train.model.*Python object itself"):  # a config alone cannot load it
        Plan.build(exp.config, dataset=UserData(x[:150], y[:150], x[150:], y[150:], classes=2))


def test_importable_functions_are_stored_as_import_paths(user_module):
    module = sys.modules.get(user_module) or __import__(user_module)
    exp = Experiment(tiny_config(), model=module.build, dataset=module.load)
    assert exp.config.train.model == f"{user_module}:build"
    assert exp.config.data.dataset == f"{user_module}:load"
    assert not exp.objects
    module_instance = nn.Linear(6, 3)
    exp2 = Experiment(tiny_config(), model=module_instance, dataset=module.load)
    assert exp2.objects == {"model": module_instance} and exp2.config.train.model == "<python: Linear>"
    assert exp2.with_settings(rounds=1).objects == {"model": module_instance}


def test_a_module_instance_is_copied_for_every_node(user_module):
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    plan = Plan.build(user_config(user_module, **{"adversaries": 0, "attack.name": "none"}), model=net)
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()
    assert np.array_equal(plan.x0, flat)
    trainer = plan.trainer(0)
    assert trainer.model is not net
    assert isinstance(plan.test, TensorData)


# ---- the example ------------------------------------------------------------------------------------------
def _example():
    spec = importlib.util.spec_from_file_location("custom_model_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_runs_in_process(tmp_path, capsys):
    models = _example().main(["--only", "inprocess", "--nodes", "3", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert set(models) == {"inprocess"} and len(models["inprocess"]) == 3
    assert "model custom.model:build, data custom.data:load" in out
    assert "benign accuracy" in out and "attack success" in out


@pytest.mark.slow
def test_the_example_gives_the_same_models_in_process_and_in_processes(tmp_path, capsys):
    # The example's model and data live in examples/custom/, outside the package and not on
    # PYTHONPATH: the node processes find them through the folders the parent imported them from.
    models = _example().main(["--nodes", "3", "--out", str(tmp_path)])
    assert set(models) == {"inprocess", "processes"}
    for i in range(3):
        assert np.array_equal(models["inprocess"][i], models["processes"][i]), i
    assert "bit-identical final models" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_runs_user_code_in_processes_with_tensorboard(user_module, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from p2pfl.cli import main

    main(["run", "--model", f"{user_module}:build", "--dataset", f"{user_module}:load", "--topology", "ring",
          "--nodes", "3", "--rounds", "2", "--adversaries", "1", "--defence", "topk-clip", "--epochs", "1",
          "--processes", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb"), "-q",
          "--set", "net.linger_ms=0"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["benign"] == 2 and "attack_success_mean" in summary["final"]
    assert (tmp_path / "run" / "checkpoints").is_dir()  # node processes checkpoint every round
    acc = EventAccumulator(str(tmp_path / "tb" / "node-0"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("accuracy")] == [1, 2]


def test_children_get_the_module_folders_after_the_inherited_pythonpath():
    from p2pfl.imports import merged_pythonpath

    assert merged_pythonpath(["/user/code"], {"PYTHONPATH": "/dev/tree"}) == f"/dev/tree{os.pathsep}/user/code"
    assert merged_pythonpath([], {}) is None
