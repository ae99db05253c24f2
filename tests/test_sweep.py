"""Experiment files and sweeps: parsing, validation, resumability, results tables, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import tiny_config

from p2pfl import sweep as sweep_mod
from p2pfl.cli import cli
from p2pfl.config import RunConfig
from p2pfl.errors import ConfigError
from p2pfl.sweep import Sweep, cell_key, is_complete, load_sweep, run_sweep

TINY = tiny_config().to_toml()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


class FakeRunner:
    """Stands in for one real run: writes config.toml and a summary; counts calls."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, mapping: dict[str, Any], run_dir: str, search: list[str], workers: int | None) -> dict:
        cfg = RunConfig.from_mapping(mapping)
        name = Path(run_dir).name
        self.calls.append(name)
        if name in self.fail:
            return {"ok": False, "error": "RuntimeError: boom"}
        folder = Path(run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.toml").write_text(cfg.to_toml(), encoding="utf-8")
        rounds = []
        for t in range(1, cfg.rounds + 1):
            row = {"round": t, "accuracy_mean": 0.8, "accuracy_min": 0.7, "accuracy_max": 0.9}
            if cfg.adversaries:
                row.update(attack_success_mean=min(1.0, 0.5 * t), target_confidence_mean=0.4 * t)
            rounds.append(row)
        summary = {"rounds": rounds, "final": rounds[-1], "wall_time": 1.5, "adversaries": []}
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
        return {"ok": True, "wall_time": 1.5}


@pytest.fixture
def fake(monkeypatch) -> FakeRunner:
    runner = FakeRunner()
    monkeypatch.setattr(sweep_mod, "_run_cell", runner)
    return runner


@pytest.fixture
def experiment_file(tmp_path) -> Path:
    write(tmp_path / "base.toml", TINY)
    return write(tmp_path / "exp.toml", """
base = "base.toml"
rounds = 3

[attack]
name = "none"

[sweep]
adversaries = [0, 1]
defence.name = ["none", "topk-clip"]
""")


# ---- parsing -----------------------------------------------------------------------------------
def test_file_with_base_and_nested_or_quoted_axes(tmp_path, experiment_file):
    sw = Sweep.from_toml(experiment_file)
    assert sw.axes == {"adversaries": [0, 1], "defence.name": ["none", "topk-clip"]}
    assert sw.base.rounds == 3 and sw.base.nodes == 4 and sw.base.data.max_train == 800
    cells = sw.cells()
    assert [c.name for c in cells] == ["adversaries-0_defence-none", "adversaries-0_defence-topk-clip",
                                       "adversaries-1_defence-none", "adversaries-1_defence-topk-clip"]
    assert cells[3].config.adversaries == 1 and cells[3].config.defence.name == "topk-clip"
    assert cells[3].config.name == cells[3].name
    quoted = write(tmp_path / "quoted.toml", '[sweep]\n"defence.name" = ["none", "clip"]\nseed = [0]\n')
    assert Sweep.from_toml(quoted).axes == {"defence.name": ["none", "clip"], "seed": [0]}
    assert Sweep.from_mapping({"nodes": 3}).cells()[0].name == "run"


def test_set_overrides_fix_a_setting_or_replace_an_axis(experiment_file):
    sw = Sweep.from_toml(experiment_file, {"rounds": 1, "adversaries": 1, "seed": [0, 1]})
    assert sw.base.rounds == 1
    assert sw.axes["adversaries"] == [1] and sw.axes["seed"] == [0, 1]
    assert len(sw.cells()) == 4


@pytest.mark.parametrize(("table", "field"), [
    ({"nodes": []}, "sweep.nodes"),
    ({"nodes": 3}, "sweep.nodes"),
    ({"nodes": [3, 3]}, "sweep.nodes"),
    ({"nodes": [{"a": 1}]}, "sweep.nodes.a"),
])
def test_bad_axes_are_config_errors(table, field):
    with pytest.raises(ConfigError) as info:
        Sweep.from_mapping({"sweep": table})
    assert info.value.field.startswith("sweep.nodes")


def test_a_bad_cell_fails_before_anything_runs(tmp_path, fake):
    sw = Sweep.from_mapping({"nodes": 4, "sweep": {"adversaries": [1, 4]}})
    with pytest.raises(ConfigError, match="adversaries-4"):
        run_sweep(sw, tmp_path / "out")
    sw = Sweep.from_mapping({"nodes": 4, "sweep": {"defence.name": ["none", "nope"]}})
    with pytest.raises(ConfigError, match="defence-nope"):
        run_sweep(sw, tmp_path / "out")
    sw = Sweep.from_mapping({"nodes": 5, "sweep": {"topology": ["ring", "torus"]}})
    with pytest.raises(ConfigError, match="topology-torus"):
        run_sweep(sw, tmp_path / "out")
    assert fake.calls == []


def test_base_must_not_include_itself(tmp_path):
    write(tmp_path / "a.toml", 'base = "b.toml"\n')
    write(tmp_path / "b.toml", 'base = "a.toml"\n')
    with pytest.raises(ConfigError, match="include itself"):
        Sweep.from_toml(tmp_path / "a.toml")


def test_runs_with_no_adversary_share_one_key_whatever_the_attack():
    base = RunConfig(nodes=4)
    zero = [base.with_overrides({"attack.name": a, "adversaries": 0}) for a in ("boost", "altmin")]
    one = [base.with_overrides({"attack.name": a, "adversaries": 1}) for a in ("boost", "altmin")]
    assert cell_key(zero[0]) == cell_key(zero[1].replace(placement="central", name="other"))
    assert cell_key(one[0]) != cell_key(one[1])
    assert cell_key(zero[0]) != cell_key(base)  # attack "none" has no target example


# ---- running -----------------------------------------------------------------------------------
def test_rerun_skips_finished_cells_and_redoes_half_written_ones(tmp_path, experiment_file, fake):
    out = tmp_path / "out"
    sw = Sweep.from_toml(experiment_file)
    first = run_sweep(sw, out, plots=False)
    assert (first.ran, first.skipped, first.failed) == (4, 0, 0) and len(fake.calls) == 4

    second = run_sweep(sw, out, plots=False)
    assert (second.ran, second.skipped) == (0, 4) and len(fake.calls) == 4

    half = out / "runs" / "adversaries-1_defence-none"
    (half / "summary.json").unlink()  # interrupted: a folder without a summary
    (half / "metrics.jsonl").write_text('{"round": 1', encoding="utf-8")
    third = run_sweep(sw, out, plots=False)
    assert (third.ran, third.skipped) == (1, 3) and fake.calls[-1] == half.name

    changed = Sweep.from_toml(experiment_file, {"rounds": 2})  # other settings: not "finished"
    fourth = run_sweep(changed, out, plots=False)
    assert fourth.ran == 4 and len(fake.calls) == 9


def test_equivalent_cells_run_once_and_share_a_folder(tmp_path, fake):
    sw = Sweep.from_mapping({"nodes": 4, "rounds": 2,
                             "sweep": {"adversaries": [0, 1], "attack.name": ["boost", "altmin"]}})
    result = run_sweep(sw, tmp_path / "out", plots=False)
    assert len(result.rows) == 4 and result.ran == 3 and len(fake.calls) == 3
    runs = [row["run"] for row in result.rows]
    assert runs[0] == runs[1] == "runs/adversaries-0_attack-boost" and len(set(runs)) == 3


def test_results_csv_and_md_have_one_row_per_cell(tmp_path, experiment_file, fake):
    out = tmp_path / "out"
    run_sweep(Sweep.from_toml(experiment_file), out, plots=False, command="p2pfl sweep exp.toml --out out")
    with (out / "results.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert list(rows[0])[:3] == ["cell", "adversaries", "defence.name"]
    for name in ("accuracy_mean", "accuracy_min", "attack_success", "rounds_to_0.9", "wall_time_s", "status"):
        assert name in rows[0]
    benign, attacked = rows[0], rows[2]
    assert (benign["adversaries"], benign["attack_success"], benign["rounds_to_0.9"]) == ("0", "", "")
    assert attacked["adversaries"] == "1" and float(attacked["attack_success"]) == 1.0
    assert attacked["rounds_to_0.9"] == "2"  # 0.5, 1.0, 1.0
    assert float(attacked["accuracy_mean"]) == 0.8 and float(attacked["wall_time_s"]) == 1.5
    assert attacked["run"] == "runs/adversaries-1_defence-none" and attacked["status"] == "done"
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "`p2pfl sweep exp.toml --out out`" in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 4 and "rounds to 0.9" in table[0]
    assert "| 3 | 1 | none | 0.800 | 0.700 | 1.00 |" in md


def test_stealthy_rounds_count_the_rounds_within_the_benign_distance_spread():
    summary = {"rounds": [], "final": {}, "stealth": {"update_rounds_measured": 9, "update_rounds_within_benign": 2}}
    assert sweep_mod.result_row({}, "r", summary, "done")["stealthy_rounds"] == "2/9"
    assert sweep_mod.result_row({}, "r", {"rounds": [], "final": {}}, "done")["stealthy_rounds"] is None


def test_norm_ratio_and_announced_accuracy_columns_come_from_the_stealth_summary(tmp_path):
    summary = {"rounds": [], "final": {}, "stealth": {"norm_ratio_mean": 1.25, "announced_acc_mean": 0.75}}
    row = sweep_mod.result_row({}, "r", summary, "done")
    assert (row["norm_ratio"], row["announced_acc"]) == (1.25, 0.75)
    empty = sweep_mod.result_row({}, "r", {"rounds": [], "final": {}}, "done")
    assert empty["norm_ratio"] is None and empty["announced_acc"] is None
    sw = Sweep(base=tiny_config(rounds=1), axes={"seed": [0]})
    sweep_mod.write_results(tmp_path, sw, [{**row, "cell": 1, "seed": 0}])
    with (tmp_path / "results.csv").open(encoding="utf-8") as fh:
        (written,) = list(csv.DictReader(fh))
    assert (written["norm_ratio"], written["announced_acc"]) == ("1.25", "0.75")
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "norm ratio | announced acc" in md and "| 1.25 | 0.750 |" in md


def test_never_is_written_when_the_attack_never_reaches_the_threshold(tmp_path):
    row = sweep_mod.result_row({}, "r", {"rounds": [{"round": 1, "attack_success_mean": 0.1}],
                                         "final": {"attack_success_mean": 0.1}}, "done")
    assert row["rounds_to_0.9"] == "never"


def test_failed_cells_are_reported_and_retried(tmp_path, experiment_file, monkeypatch):
    runner = FakeRunner(fail={"adversaries-0_defence-none"})
    monkeypatch.setattr(sweep_mod, "_run_cell", runner)
    out = tmp_path / "out"
    result = run_sweep(Sweep.from_toml(experiment_file), out, plots=False)
    assert (result.ran, result.failed) == (3, 1)
    assert result.rows[0]["status"].startswith("failed: RuntimeError")
    runner.fail = set()
    again = run_sweep(Sweep.from_toml(experiment_file), out, plots=False)
    assert (again.ran, again.skipped) == (1, 3)


def test_load_sweep_gives_cells_with_their_summaries(tmp_path, experiment_file, fake):
    run_sweep(Sweep.from_toml(experiment_file), tmp_path / "out", plots=False)
    manifest, cells = load_sweep(tmp_path / "out")
    assert manifest["axes"]["adversaries"] == [0, 1] and len(cells) == 4
    assert all(c["summary"]["final"]["accuracy_mean"] == 0.8 for c in cells)


def test_a_real_sweep_runs_cells_in_process_and_is_complete(tmp_path):
    sw = Sweep(base=tiny_config(rounds=1), axes={"defence.name": ["none", "clip"]})
    result = run_sweep(sw, tmp_path / "out", plots=True)
    assert result.ran == 2 and result.failed == 0
    for cell in sw.cells():
        folder = tmp_path / "out" / "runs" / cell.name
        assert is_complete(folder, cell.config)
        assert (folder / "updates.jsonl").is_file()
    assert all(0.0 < row["accuracy_mean"] <= 1.0 for row in result.rows)
    assert [p.name for p in result.plots] == ["compare-defence-name.png"]


@pytest.mark.slow
def test_parallel_jobs_give_the_same_rows_as_sequential(tmp_path):
    sw = Sweep(base=tiny_config(rounds=2, adversaries=1, **{"attack.name": "boost"}),
               axes={"attack.name": ["boost", "altmin"]})
    par = run_sweep(sw, tmp_path / "par", jobs=2, plots=False)
    assert par.ran == 2 and par.failed == 0
    seq = run_sweep(sw, tmp_path / "seq", jobs=1, plots=False)
    for a, b in zip(par.rows, seq.rows, strict=True):
        assert a["accuracy_mean"] == pytest.approx(b["accuracy_mean"], abs=1e-9)
        assert a["attack_success"] == b["attack_success"]


# ---- the command ---------------------------------------------------------------------------------
def test_cli_sweep_dry_run_lists_cells(experiment_file, tmp_path):
    res = CliRunner().invoke(cli, ["sweep", str(experiment_file), "--out", str(tmp_path / "o"), "--dry-run",
                                   "--set", "seed=[0,1]"])
    assert res.exit_code == 0, res.output
    assert "8 cells, 8 distinct runs" in res.output
    assert not (tmp_path / "o").exists()


def test_cli_sweep_runs_and_reruns(experiment_file, tmp_path, fake):
    args = ["sweep", str(experiment_file), "--out", str(tmp_path / "o"), "--no-plots"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "4 cells: 4 ran, 0 finished earlier, 0 failed" in res.output
    res = CliRunner().invoke(cli, args)
    assert "finished earlier, skipped" in res.output and "0 ran, 4 finished earlier" in res.output


def test_cli_sweep_bad_value_is_a_config_error(experiment_file, tmp_path):
    res = CliRunner().invoke(cli, ["sweep", str(experiment_file), "--out", str(tmp_path / "o"),
                                   "--set", "adversaries=[0, 9]"])
    assert isinstance(res.exception, ConfigError) and "adversaries-9" in str(res.exception)
