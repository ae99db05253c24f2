"""The Python API: building runs from keywords/RunConfig/TOML, running them, reading results."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from p2pfl.config import RunConfig
from p2pfl.errors import ConfigError
from p2pfl.experiment import (
    Experiment,
    ExperimentResult,
    UpdateRecorder,
    load_config,
    rounds_to,
    settings_to_overrides,
    update_stats,
)
from p2pfl.launch import RunHook

README = Path(__file__).resolve().parents[1] / "README.md"

# The README's "Python API" snippet; test_readme_snippet runs the README's copy when it has one.
SNIPPET = '''\
from p2pfl import Experiment

experiment = Experiment(topology="ring", nodes=6, adversaries=1, attack="boost",
                        defence="topk-clip", rounds=3, epochs=1, max_train=1200, max_test=300)
result = experiment.run()  # .run(out="runs/api") also writes a run folder with plots
for row in result.rounds:
    print(row["round"], f"accuracy {row['accuracy_mean']:.3f}",
          f"attack success {row['attack_success_mean']:.2f}")
print(result.table())
print("rounds to 0.9 attack success:", result.rounds_to(0.9))
'''

FAST = {"net.linger_ms": 0, "net.round_timeout": 30.0, "net.connect_timeout": 20.0, "train.batch_size": 50}


def readme_snippet() -> str | None:
    """The first ```python block after a '## Python API' heading of README.md, if any."""
    if not README.is_file():
        return None
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Python API\b.*?```python\n(.*?)```", text, flags=re.S | re.M)
    return match.group(1) if match else None


# ---- building --------------------------------------------------------------------------------
def test_keywords_aliases_sections_and_dotted_keys_build_the_config():
    exp = Experiment(topology="torus", nodes=9, adversaries=2, attack="none", defence="topk-clip",
                     epochs=3, max_train=500, train={"batch_size": 20}, **{"defence.kappa": 0.05})
    cfg = exp.config
    assert (cfg.topology, cfg.nodes, cfg.adversaries) == ("torus", 9, 2)
    assert cfg.defence.name == "topk-clip" and cfg.defence.params["kappa"] == 0.05
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.data.max_train) == (3, 20, 500)
    assert cfg.name == "torus-9n-2adv-none-topk-clip"


def test_a_runconfig_a_toml_path_and_toml_text_are_accepted(tmp_path):
    base = RunConfig(name="x", nodes=5, rounds=4)
    path = tmp_path / "run.toml"
    path.write_text(base.to_toml(), encoding="utf-8")
    for source in (base, path, str(path), base.to_toml()):
        exp = Experiment(source, rounds=2)
        assert (exp.config.nodes, exp.config.rounds, exp.config.name) == (5, 2, "x")
    assert load_config({"nodes": 3}).nodes == 3


def test_attack_table_replaces_and_string_sets_only_the_name():
    out = settings_to_overrides({"attack": {"name": "boost", "lam": 4}, "defence": "median", "epochs": 2})
    assert out == {"attack": {"name": "boost", "lam": 4}, "defence.name": "median", "train.epochs": 2}


@pytest.mark.parametrize(("settings", "field"), [
    ({"nodez": 3}, "nodez"),
    ({"defence": "nope"}, "defence"),
    ({"attack": "nope"}, "attack.name"),
    ({"epochs": -1}, "train.epochs"),
    ({"nodes": 3, "adversaries": 3}, "adversaries"),
])
def test_bad_settings_fail_fast_naming_the_field(settings, field):
    with pytest.raises(ConfigError) as info:
        Experiment(**settings)
    assert info.value.field == field


def test_missing_toml_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="existing TOML file"):
        Experiment(tmp_path / "missing.toml")


# ---- update statistics ------------------------------------------------------------------------
def test_update_stats_distances_are_to_benign_updates_only():
    updates = {0: np.array([0.0, 0.0], np.float32), 1: np.array([3.0, 4.0], np.float32),
               2: np.array([30.0, 40.0], np.float32)}
    row = update_stats(5, updates, {0: "benign", 1: "benign", 2: "boost"})
    assert row["round"] == 5
    assert row["benign_spread"] == {"min": 5.0, "max": 5.0, "mean": 5.0}
    assert row["nodes"]["2"]["role"] == "boost" and row["nodes"]["2"]["norm"] == 50.0
    assert (row["nodes"]["2"]["dist_min"], row["nodes"]["2"]["dist_max"]) == (45.0, 50.0)
    assert row["nodes"]["0"]["dist_min"] == row["nodes"]["0"]["dist_max"] == 5.0  # not to the adversary


def test_recorder_waits_for_every_node_and_averages_per_neighbour_announcements(tmp_path):
    rec = UpdateRecorder(n=2, roles={0: "benign", 1: "boost"}, out=tmp_path, sample_rounds=frozenset({1}),
                         sample_size=2)
    x = np.zeros(3, np.float32)
    rec.add(1, 0, x, np.array([1.0, 1.0, 1.0], np.float32))
    assert rec.rows == []
    rec.add(1, 1, x, {5: np.array([2.0, 0.0, 0.0], np.float32), 6: np.array([0.0, 0.0, 0.0], np.float32)})
    assert len(rec.rows) == 1 and rec.rows[0]["nodes"]["1"]["norm"] == 1.0  # mean announce (1, 0, 0)
    assert (tmp_path / "updates.jsonl").read_text().count("\n") == 1
    with np.load(tmp_path / "updates" / "round-001.npz") as z:
        assert sorted(z.files) == ["index", "node_0", "node_1"] and z["node_0"].shape == (2,)
    rec.add(2, 0, x, x)  # a round that never completes is flushed by close()
    rec.close()
    assert [r["round"] for r in rec.rows] == [1, 2]


def test_rounds_to_finds_the_first_round_at_the_threshold():
    rows = [{"round": 1, "attack_success_mean": 0.2}, {"round": 2, "attack_success_mean": 0.9},
            {"round": 3, "attack_success_mean": 1.0}]
    assert rounds_to(rows, 0.9) == 2
    assert rounds_to(rows, 1.5) is None
    assert rounds_to([{"round": 1}], 0.9) is None


# ---- running ---------------------------------------------------------------------------------
def test_run_returns_per_round_metrics_updates_and_a_run_folder_with_plots(tmp_path):
    exp = Experiment(tiny_config(rounds=2), adversaries=1, attack="boost", name="api")
    seen: list[str] = []

    class Watch(RunHook):
        def start(self, plan, out):
            seen.append(f"start {plan.config.nodes} {out.name}")

        def attach(self, node):
            seen.append(f"attach {node.id}")

        def finish(self, result):
            seen.append(f"finish {len(result.records)}")

    result = exp.run(out=tmp_path / "run", hooks=[Watch()])
    assert seen == ["start 4 run", *(f"attach {i}" for i in range(4)), "finish 8"]
    assert isinstance(result, ExperimentResult)
    assert [r["round"] for r in result.rounds] == [1, 2]
    assert len(result.accuracy) == 2 and all(0.0 <= a <= 1.0 for a in result.accuracy)
    assert len(result.records) == 2 * exp.config.nodes
    assert len(result.adversaries) == 1 and set(result.final_models) == set(range(exp.config.nodes))
    assert [u["round"] for u in result.updates] == [1, 2]
    assert set(result.updates[0]["nodes"]) == {str(i) for i in range(exp.config.nodes)}
    assert result.attack_success is not None and len(result.attack_success) == 2
    assert "attack success" in result.table()
    folder = tmp_path / "run"
    for name in ("config.toml", "plan.json", "metrics.jsonl", "summary.json", "updates.jsonl"):
        assert (folder / name).is_file(), name
    assert (folder / "plots" / "rounds.png").is_file()
    assert result.table().count("\n") == 1 + len(result.rounds)


def test_readme_snippet_runs(capsys):
    snippet = readme_snippet() or SNIPPET
    if readme_snippet() is not None:
        assert snippet == SNIPPET, "README's Python API snippet differs from tests/test_experiment.py SNIPPET"
    exec(compile(snippet, "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert out.count("attack success") >= 3
    assert "| round |" in out and "rounds to 0.9 attack success:" in out
