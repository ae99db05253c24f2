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


# ---- deployment files for ranks (p2pfl deployment, examples/slurm.sbatch) ----------------------------
def test_block_addresses_put_each_rank_on_its_machine_with_a_port_per_node():
    from p2pfl.host import block_addresses

    addr = block_addresses(10, ["a", "b", "c"], 4, port=7000)
    assert [addr[i] for i in (0, 3, 4, 7, 8, 9)] == ["tcp://a:7000", "tcp://a:7003", "tcp://b:7004",
                                                     "tcp://b:7007", "tcp://c:7008", "tcp://c:7009"]
    two_per_machine = block_addresses(10, ["a", "b"], 3, tasks_per_machine=2)
    assert {two_per_machine[i].split(":")[1] for i in range(6)} == {"//a"}
    assert two_per_machine[6].startswith("tcp://b:")
    with pytest.raises(ConfigError, match="--machines"):
        block_addresses(10, ["a", "b"], 4)  # 3 ranks, one per machine
    with pytest.raises(ConfigError, match="--port"):
        block_addresses(10, ["a"], 10, port=65530)


def test_deployment_command_writes_a_file_node_hosts_accept(tmp_path, capsys, make_config):
    cfg = make_config(topology="ring", nodes=6, rounds=1)
    (tmp_path / "run.toml").write_text(cfg.to_toml(), encoding="utf-8")
    code, err = run_cli(["deployment", str(tmp_path / "run.toml"), "--machines", "n1,n2", "--block", "3",
                         "-o", str(tmp_path / "cluster.toml")], capsys)
    assert code == 0, err
    dep = Deployment.from_toml(tmp_path / "cluster.toml")
    assert dep.config.nodes == 6 and dep.addresses[2] == "tcp://n1:7002" and dep.addresses[3] == "tcp://n2:7003"
    code, err = run_cli(["deployment", str(tmp_path / "run.toml"), "--machines", "n1", "--block", "3",
                         "-o", str(tmp_path / "x.toml")], capsys)
    assert code == 2 and "--machines" in err and not (tmp_path / "x.toml").exists()


def free_port_range(count: int) -> int:
    """A base port whose next ``count`` ports are free now, below Linux's ephemeral range
    (32768-60999), where the suite's own outgoing connections take ports."""
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - count)
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free range of ports")


@pytest.mark.slow
def test_the_slurm_script_runs_node_hosts_by_rank(make_config, tmp_path):
    """examples/slurm.sbatch as Slurm would run it: `scontrol` and `srun` are stand-ins that
    list two machines (both this one) and start the tasks here with SLURM_PROCID set; the
    p2pfl part is real (the deployment file, two node hosts by rank, real sockets)."""
    cfg = make_config(topology="ring", nodes=6, rounds=2)
    ref = run(cfg)
    (tmp_path / "run.toml").write_text(cfg.to_toml(), encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/bash\nprintf '127.0.0.1\\n127.0.0.1\\n'\n")
    (bin_dir / "srun").write_text("#!/bin/bash\npids=()\nfor ((r = 0; r < SLURM_NTASKS; r++)); do\n"
                                  "  SLURM_PROCID=$r \"$@\" & pids+=($!)\ndone\n"
                                  "status=0\nfor p in \"${pids[@]}\"; do wait \"$p\" || status=1; done\nexit $status\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    out = tmp_path / "out"
    port = free_port_range(cfg.nodes)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               SLURM_JOB_NODELIST="node[1-2]", SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1", SLURM_JOB_ID="42",
               CONFIG=str(tmp_path / "run.toml"), BLOCK="3", PORT=str(port), OUT=str(out),
               DATA=str(tmp_path / "nodata"))
    proc = subprocess.run(["bash", str(ROOT / "examples" / "slurm.sbatch")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    dep = Deployment.from_toml(out / "cluster.toml")
    assert dep.addresses[3].endswith(f":{port + 3}")
    for i in range(cfg.nodes):
        assert np.array_equal(np.load(out / "final" / f"node-{i}.npy"), ref.final_models[i]), i
