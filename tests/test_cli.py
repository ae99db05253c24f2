"""The command line: one-line errors with exit status 2, and a real run folder."""

from __future__ import annotations

import json
import tomllib

import pytest

from p2pfl.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--topology", "rnig"], "topology: 'rnig'"),
        (["run", "--nodes", "1"], "nodes: 1"),
        (["run", "--adversaries", "5", "--nodes", "5"], "adversaries: 5"),
        (["run", "--attack", "evil"], "attack.name: 'evil'"),
        (["run", "--defence", "krum,evil"], "defence: 'evil'"),
        (["run", "--set", "train.lr=-1"], "train.lr"),
        (["run", "--set", "nonsense"], "--set"),
        (["run", "--bogus-flag"], "No such option"),
        (["run", "--nodes", "abc"], "'abc' is not a valid integer"),
        (["topology", "show", "ring", "--nodes", "2"], "at least 3 nodes for ring"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "runs").exists()  # nothing written for a rejected run


def test_run_writes_a_complete_run_folder(capsys, tmp_path):
    out = tmp_path / "r"
    code, stdout, _ = run_cli(["run", "--topology", "ring", "--nodes", "3", "--rounds", "2", "--seed", "1",
                               "--set", "data.max_train=600", "--set", "data.max_test=200",
                               "--set", "train.epochs=1", "--out", str(out)], capsys)
    assert code == 0
    assert "results in" in stdout and "benign accuracy mean" in stdout
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["nodes"] == 3 and config["seed"] == 1 and config["train"]["epochs"] == 1
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for key in ("accuracy_mean", "accuracy_min", "accuracy_max"):
        assert 0.0 <= summary["final"][key] <= 1.0
    assert sorted(p.name for p in (out / "final").iterdir()) == [f"node-{i}.npy" for i in range(3)]
    # The same folder is not overwritten without --overwrite: nothing a user wrote is lost.
    code, _, err = run_cli(["run", "--nodes", "3", "--rounds", "1", "--out", str(out)], capsys)
    assert code == 2 and "--overwrite" in err
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6


def test_topology_show_prints_and_draws(capsys, tmp_path):
    png = tmp_path / "g.png"
    code, out, _ = run_cli(["topology", "show", "torus", "--nodes", "9", "--png", str(png),
                            "--adversaries", "2", "--placement", "spread"], capsys)
    assert code == 0
    assert "diameter" in out and "spectral gap" in out and "adversaries (spread)" in out
    assert png.stat().st_size > 1000


def test_adversaries_alone_mean_the_default_attack_boost():
    from p2pfl.cli import build_config

    cfg = build_config(None, {"adversaries": 2}, ())
    assert cfg.attack.name == "boost"
    assert build_config(None, {"adversaries": 2, "attack": "signflip"}, ()).attack.name == "signflip"
    assert build_config(None, {}, ()).attack.name == "none"
    cfg = build_config(None, {"adversaries": 1, "target": "5:7", "aux_size": 3}, ())
    assert cfg.attack.params["target"] == "5:7" and cfg.attack.params["aux_size"] == 3


# ---- package data: profiles and topology files found from any directory ------------------------------
SMALL_RUN = ["--rounds", "1", "--max-train", "400", "--max-test", "100", "--epochs", "1", "-q"]


def p2pfl_in(cwd, *args):
    """`python -m p2pfl ARGS` in ``cwd`` (outside the checkout), on this tree's p2pfl."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import p2pfl

    env = dict(os.environ, PYTHONPATH=str(Path(p2pfl.__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "p2pfl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_shipped_role_profile_works_from_an_empty_directory(tmp_path):
    # Act: the README's command, small, from a folder with nothing in it.
    proc = p2pfl_in(tmp_path, "run", "--topology", "ring", "--nodes", "4", "--role", "0=boost",
                    "--defence", "topk-clip", "--out", "r", *SMALL_RUN)

    # Assert: node 0 ran the shipped boost profile.
    assert proc.returncode == 0, proc.stderr
    config = tomllib.loads((tmp_path / "r" / "config.toml").read_text())
    assert config["roles"][0]["nodes"] == [0] and config["roles"][0]["attack"]["name"] == "boost"
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["adversaries"] == [0]


def test_topology_file_sets_the_node_count_and_a_conflicting_nodes_is_refused(tmp_path):
    # Arrange: a graph file of 5 nodes in the working directory.
    (tmp_path / "five.toml").write_text('kind = "ring"\nnodes = 5\n', encoding="utf-8")

    # Act
    proc = p2pfl_in(tmp_path, "run", "--topology", "five.toml", "--out", "r", *SMALL_RUN)
    clash = p2pfl_in(tmp_path, "run", "--topology", "five.toml", "--nodes", "4", "--out", "r2", *SMALL_RUN)

    # Assert: the file's nodes = 5 is used without --nodes; --nodes 4 is an error naming both counts.
    assert proc.returncode == 0, proc.stderr
    assert tomllib.loads((tmp_path / "r" / "config.toml").read_text())["nodes"] == 5
    assert len(json.loads((tmp_path / "r" / "summary.json").read_text())["nodes"]) == 5
    assert clash.returncode == 2
    assert "nodes: 4" in clash.stderr and "nodes = 5" in clash.stderr and "five.toml" in clash.stderr
    assert not (tmp_path / "r2").exists()


def test_shipped_topology_file_is_found_from_any_directory(tmp_path, monkeypatch):
    from p2pfl.config import RunConfig
    from p2pfl.topology import build_topology

    # Act: a path into the shipped folder, from a directory that has no such folder.
    monkeypatch.chdir(tmp_path)
    config = RunConfig(topology="topologies/example-edges.toml")
    topo = build_topology(config.topology, config.nodes)

    # Assert: the file's 8 nodes and its bridge edge.
    assert config.nodes == 8 and topo.n == 8 and (3, 4) in topo.edges
