"""Plots of run folders and sweep folders (``p2pfl report``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_config

from p2pfl.cli import cli
from p2pfl.errors import ConfigError
from p2pfl.launch import Deployment, run
from p2pfl.metrics import read_records
from p2pfl.report import (
    RunData,
    assemble,
    plot_distances,
    report,
    write_run_plots,
    write_sweep_plots,
)
from p2pfl.sweep import Sweep, run_sweep
from p2pfl.updates import RecordUpdates

PNG = b"\x89PNG\r\n\x1a\n"
ATTACK = "boost"


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000, path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One small finished run with an adversary (boost when the attacks are installed)."""
    out = tmp_path_factory.mktemp("report") / "run"
    cfg = tiny_config(rounds=3, adversaries=1, **{"attack.name": ATTACK})
    run(cfg, out=out, hooks=[RecordUpdates()])
    return out


def test_run_folder_gets_every_plot(run_dir, tmp_path):
    written = write_run_plots(run_dir, tmp_path / "plots")
    names = {p.name for p in written}
    assert {"rounds.png", "topology.png", "updates.png", "distances.png"} <= names
    assert "hops.png" in names
    for path in written:
        assert_png(path)


def test_default_destination_is_the_plots_folder_and_report_dispatches(run_dir):
    written = report(run_dir)
    assert written and all(p.parent == run_dir / "plots" for p in written)


def test_run_data_from_a_result_without_a_folder(tmp_path):
    result = run(tiny_config(rounds=2), out=None, hooks=[RecordUpdates()])
    data = RunData.from_result(result)
    assert data.folder is None and len(data.updates) == 2 and data.samples
    written = write_run_plots(result, tmp_path)
    assert {p.name for p in written} >= {"rounds.png", "updates.png", "topology.png"}
    with pytest.raises(ConfigError):
        write_run_plots(result)  # no folder and no destination


def test_distance_plot_falls_back_to_the_attacks_stealth_statistics(run_dir, tmp_path):
    data = RunData.load(run_dir)
    data.updates = []
    has_info = any("prev_dist_min" in (r.get("attack") or {}) for r in data.records)
    path = plot_distances(data, tmp_path / "d.png")
    assert (path is not None) == has_info
    if has_info:
        assert_png(path)


def test_plots_without_attack_metrics_skip_the_attack_panels(tmp_path):
    out = tmp_path / "benign"
    run(tiny_config(rounds=2), out=out)
    names = {p.name for p in write_run_plots(out)}
    assert names == {"rounds.png", "topology.png"}


def test_sweep_folder_gets_one_comparison_plot_per_axis(tmp_path):
    sw = Sweep(base=tiny_config(rounds=1), axes={"defence.name": ["none", "clip"], "seed": [0, 1], "nodes": [4]})
    run_sweep(sw, tmp_path / "sw", plots=False)
    written = write_sweep_plots(tmp_path / "sw")
    assert sorted(p.name for p in written) == ["compare-defence-name.png", "compare-seed.png"]  # not 1-value axes
    for path in written:
        assert_png(path)
    with_runs = report(tmp_path / "sw", runs=True)
    assert sum(p.name == "rounds.png" for p in with_runs) == 4


def test_node_outputs_from_several_machines_are_assembled(run_dir, tmp_path):
    folder = tmp_path / "cluster"
    (folder / "nodes").mkdir(parents=True)
    records = read_records(run_dir / "metrics.jsonl")
    for node in {r["node"] for r in records}:
        lines = [json.dumps(r) for r in records if r["node"] == node]
        (folder / "nodes" / f"node-{node}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = tiny_config(rounds=3, adversaries=1, **{"attack.name": ATTACK})
    dep = Deployment(config=cfg, addresses={i: f"tcp://127.0.0.1:{7000 + i}" for i in range(cfg.nodes)})
    (folder / "deployment.toml").write_text(dep.to_toml(), encoding="utf-8")
    written = report(folder)
    original = json.loads((run_dir / "summary.json").read_text())
    assembled = json.loads((folder / "summary.json").read_text())
    assert assembled["rounds"] == original["rounds"]
    assert assembled["adversaries"] == original["adversaries"]
    assert (folder / "config.toml").is_file() and (folder / "metrics.jsonl").is_file()
    assert "rounds.png" in {p.name for p in written}
    assert assemble(folder) is False  # done once


def test_update_histograms_show_sampled_rounds(run_dir):
    data = RunData.load(run_dir)
    assert sorted(data.samples) == [1, 2, 3]
    sizes = {v.shape for per in data.samples.values() for v in per.values()}
    assert len(sizes) == 1
    assert all(np.isfinite(v).all() for per in data.samples.values() for v in per.values())


def test_cli_report_writes_and_lists_pngs(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    res = CliRunner().invoke(cli, ["report", str(copy)])
    assert res.exit_code == 0, res.output
    assert res.output.count("wrote ") >= 4 and (copy / "plots" / "rounds.png").is_file()


def test_report_on_something_else_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="existing run or sweep folder"):
        report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="summary.json"):
        report(tmp_path / "empty")
