"""Node hosts: blocks of nodes per OS process (p2pfl.host, `p2pfl node --ids`, `run --workers`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from p2pfl.cli import main
from p2pfl.errors import ConfigError
from p2pfl.host import block_ids, ids_text, parse_ids, raise_fd_limit, split_blocks
from p2pfl.launch import Deployment, free_tcp_ports, run

ROOT = Path(__file__).resolve().parent.parent


# ---- id blocks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "ids"), [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0-1,5,7-8", [0, 1, 5, 7, 8]),
                                           ("2-3,0-2", [0, 1, 2, 3])])
def test_parse_ids_reads_ranges_and_lists(text, ids):
    assert parse_ids(text, 10) == ids


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-", "-2", "0-10", "1,,2", "0.5"])
def test_parse_ids_refuses_anything_else_naming_the_flag(text):
    with pytest.raises(ConfigError, match="--ids"):
        parse_ids(text, 10)


def test_ids_text_round_trips_through_parse_ids():
    ids = [0, 1, 2, 5, 7, 8, 9, 20]
    assert ids_text(ids) == "0-2,5,7-9,20"
    assert parse_ids(ids_text(ids)) == ids


def test_block_ids_gives_each_rank_its_block_and_the_last_one_the_rest():
    assert block_ids(0, 4, 10) == [0, 1, 2, 3]
    assert block_ids(2, 4, 10) == [8, 9]
    with pytest.raises(ConfigError, match="rank in 0..2"):
        block_ids(3, 4, 10)
    with pytest.raises(ConfigError, match="--block"):
        block_ids(0, 0, 10)


def test_split_blocks_covers_every_node_once_in_near_equal_blocks():
    blocks = split_blocks(10, 3)
    assert [len(b) for b in blocks] == [4, 3, 3]
    assert sum(blocks, []) == list(range(10))
    for bad in (0, 11):
        with pytest.raises(ConfigError, match="--workers"):
            split_blocks(10, bad)


def test_raise_fd_limit_never_lowers_the_soft_limit():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, _ = raise_fd_limit(min(soft, 64))
    assert new_soft == soft


# ---- command line -------------------------------------------------------------------------------------
def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def deployment_file(make_config, tmp_path) -> Path:
    cfg = make_config(topology="ring", nodes=4, rounds=1)
    dep = Deployment(config=cfg, addresses={i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_tcp_ports(4))})
    path = tmp_path / "dep.toml"
    path.write_text(dep.to_toml(), encoding="utf-8")
    return path


@pytest.mark.parametrize(("extra", "needle"), [
    (["--ids", "0-9"], "--ids"),
    (["--ids", "0-1", "--id", "0"], "--ids"),
    (["--ids-from-env", "P2PFL_TEST_RANK_UNSET", "--block", "2"], "--ids-from-env"),
    (["--ids-from-env", "P2PFL_TEST_RANK"], "--block"),
    (["--ids", "0-1", "--block", "2"], "--block"),
    (["--ids", "0-1", "--threads", "0"], "--threads"),
])
def test_bad_host_flags_are_one_line_and_exit_2(extra, needle, deployment_file, capsys, monkeypatch):
    monkeypatch.setenv("P2PFL_TEST_RANK", "0")
    code, err = run_cli(["node", "--deployment", str(deployment_file), *extra], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], err


def test_run_workers_is_checked_before_anything_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["run", "--nodes", "3", "--workers", "4"], capsys)
    assert code == 2 and "--workers" in err
    code, err = run_cli(["run", "--nodes", "3", "--workers", "2", "--processes"], capsys)
    assert code == 2 and "--workers" in err
    assert not (tmp_path / "runs").exists()


# ---- real hosts on loopback ---------------------------------------------------------------------------
@pytest.mark.slow
def test_hosts_started_by_rank_match_the_inprocess_run(make_config, tmp_path):
    """Two `p2pfl node --ids-from-env RANK --block 2` processes (as Slurm would start them)
    run a 4-node ring exactly like the in-process run, each node with its own files."""
    cfg = make_config(topology="ring", nodes=4, rounds=2)
    ref = run(cfg)
    dep = Deployment(config=cfg, addresses={i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_tcp_ports(4))})
    path = tmp_path / "dep.toml"
    path.write_text(dep.to_toml(), encoding="utf-8")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-m", "p2pfl", "node", "--deployment", str(path), "--out", str(out),
                               "--ids-from-env", "RANK", "--block", "2", "-q"],
                              env={**env, "RANK": str(rank)}, stderr=subprocess.PIPE)
             for rank in (0, 1)]
    try:
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], [p.stderr.read().decode()[-2000:] for p in procs if p.stderr]
    for i in range(4):
        assert np.array_equal(np.load(out / "final" / f"node-{i}.npy"), ref.final_models[i]), i
        assert (out / "nodes" / f"node-{i}.jsonl").exists()
        assert any((out / "checkpoints").glob(f"node-{i}*")), i


def test_a_host_past_the_descriptor_limit_says_to_use_more_hosts(make_config, monkeypatch):
    import asyncio

    from p2pfl import host

    cfg = make_config(topology="ring", nodes=4, rounds=1)
    dep = Deployment(config=cfg, addresses={i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_tcp_ports(4))})
    monkeypatch.setattr(host, "raise_fd_limit", lambda wanted: (64, 64))
    with pytest.raises(ConfigError, match="more hosts"):
        asyncio.run(host.run_host_async(dep, [0, 1, 2, 3], out=None))
