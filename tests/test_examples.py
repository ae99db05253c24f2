"""examples/: every file parses and validates; each runs as written at reduced size (slow)."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest
from conftest import FULL_DATA, needs_full_data

from p2pfl.config import RunConfig
from p2pfl.experiment import Experiment, validate
from p2pfl.sweep import Sweep, run_sweep

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHARED = FULL_DATA or Path("P2PFL_DATA-is-not-set")
TOMLS = sorted(EXAMPLES.glob("*.toml"))

needs_adult = needs_full_data("adult/adult.data.gz", "UCI Adult")

# Small everywhere: the shapes of the examples, a fraction of their cost.
SMALL = {"rounds": 1, "data.max_train": 600, "data.max_test": 200, "train.epochs": 1,
         "net.linger_ms": 0, "data.download": False}


def is_sweep_file(path: Path) -> bool:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    return "sweep" in raw or "base" in raw


def test_the_expected_examples_exist():
    names = {p.name for p in EXAMPLES.iterdir()}
    assert {"paper_fmnist.toml", "paper_fmnist_cpu.toml", "paper_fmnist_cpu_sweep.toml", "estimation_table.toml",
            "estimation_table.py", "topology_sweep.toml", "adult.toml"} <= names


@pytest.mark.parametrize("path", TOMLS, ids=[p.name for p in TOMLS])
def test_every_example_file_validates(path):
    if is_sweep_file(path):
        cells = Sweep.from_toml(path).validate()
        assert cells
    else:
        validate(RunConfig.from_toml(path))


def test_paper_files_hold_the_papers_setting():
    exact = RunConfig.from_toml(EXAMPLES / "paper_fmnist.toml")
    cpu = RunConfig.from_toml(EXAMPLES / "paper_fmnist_cpu.toml")
    for cfg in (exact, cpu):
        assert (cfg.topology, cfg.nodes, cfg.adversaries) == ("full", 10, 1)
        assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.optimizer, cfg.train.lr) == (5, 100, "adam", 1e-3)
        assert cfg.attack.name == "boost" and cfg.attack.params["lam"] == 10 and cfg.attack.params["aux_size"] == 1
    assert exact.train.model == "paper-cnn" and cpu.train.model == "cnn"
    topo = Sweep.from_toml(EXAMPLES / "topology_sweep.toml")
    assert topo.base.nodes == 16
    assert topo.axes == {"topology": ["ring", "torus", "small-world", "random-regular", "full"],
                         "adversaries": [0, 1, 2, 4], "attack.name": ["boost", "altmin"],
                         "defence.name": ["none", "topk-clip"]}
    assert len({c.key for c in topo.cells()}) == 70


# ---- each example run as written, at reduced size --------------------------------------------------
def small(path: Path, **more):
    return Experiment(RunConfig.from_toml(path).with_overrides({**SMALL, **more}))


@pytest.mark.slow
def test_paper_fmnist_runs_reduced(tmp_path):
    result = small(EXAMPLES / "paper_fmnist.toml", **{"data.max_train": 300, "data.max_test": 100}).run(
        out=tmp_path / "paper", plots=False)
    assert result.config.train.model == "paper-cnn"
    assert len(result.rounds) == 1 and result.attack_success is not None


@pytest.mark.slow
def test_paper_fmnist_cpu_runs_reduced(tmp_path):
    result = small(EXAMPLES / "paper_fmnist_cpu.toml", rounds=2).run(out=tmp_path / "cpu")
    assert len(result.rounds) == 2 and result.attack_success is not None
    assert (tmp_path / "cpu" / "plots" / "rounds.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["paper_fmnist_cpu_sweep.toml", "topology_sweep.toml"])
def test_sweep_examples_run_reduced(tmp_path, name):
    overrides = dict(SMALL)
    if name == "topology_sweep.toml":  # every graph; 2 adversaries; boost; both defences
        overrides.update({"adversaries": [2], "attack.name": ["boost"], "data.max_train": 800})
    sweep = Sweep.from_toml(EXAMPLES / name, overrides)
    result = run_sweep(sweep, tmp_path / "sw", jobs=1)
    assert result.failed == 0 and result.ran == len({c.key for c in sweep.cells()})
    assert (tmp_path / "sw" / "results.md").is_file() and result.plots


@pytest.mark.slow
def test_estimation_table_script_runs_reduced(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("estimation_table", EXAMPLES / "estimation_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sets = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in SMALL.items() if k != "rounds"]
    table = module.main(["--out", str(tmp_path / "est"), "--set", "rounds=2", *sum((["--set", s] for s in sets), [])])
    lines = table.splitlines()
    assert lines[0].startswith("| t | boosting, no estimation")
    assert lines[2].startswith("| 1 | ") and "(" not in lines[2]  # the paper has no round 1
    assert lines[3].startswith("| 2 | ") and "(0.63)" in lines[3]  # ours, then the paper's
    assert "| 3 | - (0.93)" in lines[4]  # only 2 rounds ran
    assert lines[6].startswith("| 5 | - | - |")
    assert (tmp_path / "est" / "estimation_table.md").read_text().startswith("| t |")


@pytest.mark.slow
@needs_adult
def test_adult_runs_reduced(tmp_path):
    result = small(EXAMPLES / "adult.toml", rounds=2, **{"data.max_train": 2000, "data.max_test": 500}).run(
        out=tmp_path / "adult", data_dir=SHARED, plots=False)
    assert result.config.data.dataset == "adult" and result.config.train.model == "mlp"
    assert len(result.rounds) == 2 and result.attack_success is not None
    assert "UCI Adult" in result.run.data_source
