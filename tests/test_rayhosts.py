"""Node hosts as Ray actors (``p2pfl run --backend ray``), on a real local Ray cluster of two raylets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from p2pfl.cli import main
from p2pfl.deployment import free_tcp_ports
from p2pfl.launch import run
from p2pfl.metrics import read_records

ROOT = Path(__file__).resolve().parent.parent


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    return exit_info.value.code, capsys.readouterr().err


# ---- flags, checked before anything runs ---------------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["--backend", "slurm", "--workers", "2"], "--backend"),
    (["--backend", "ray"], "--workers"),
    (["--workers", "2", "--address", "auto"], "--address"),
    (["--workers", "2", "--insecure"], "--insecure"),
    (["--backend", "ray", "--workers", "2", "--ray-placement", "everywhere"], "--ray-placement"),
])
def test_bad_backend_flags_name_the_flag_and_write_nothing(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["run", "--nodes", "4", *args], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "runs").exists()


def test_without_ray_installed_the_error_says_how_to_install_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code, err = run_cli(["run", "--nodes", "4", "--backend", "ray", "--workers", "2"], capsys)
    assert code == 2 and "p2pfl[ray]" in err, err
    assert not (tmp_path / "runs").exists()


# ---- a real cluster: `ray start --head` and a second raylet on this machine ------------------------------
def _ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def ray_cluster():
    """Address of a two-raylet Ray cluster on this machine (stopped afterwards)."""
    pytest.importorskip("ray", reason="Ray is the optional extra p2pfl[ray] (make install installs it)")
    port = free_tcp_ports(1)[0]
    # No token authentication inside this throwaway cluster: Ray 2.5x turns it on for `ray start`
    # whenever ~/.ray/auth_token exists (any earlier private ray.init() writes one), and then
    # `ray start --address` on the same machine cannot join without being told to send it.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    common = ["--num-cpus", "2", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    try:
        subprocess.run([_ray_cli(), "start", "--head", "--port", str(port), "--include-dashboard", "false",
                        *common], check=True, capture_output=True, timeout=180, env=env)
        subprocess.run([_ray_cli(), "start", "--address", f"127.0.0.1:{port}", *common],
                       check=True, capture_output=True, timeout=180, env=env)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, timeout=120, env=env)


def _alive_raylets(address: str) -> int:
    code = (f"import ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_hosts_on_two_raylets_give_the_inprocess_models(make_config, tmp_path, ray_cluster):
    # Arrange: a ring of 6, one node host per raylet (strict spread).
    assert _alive_raylets(ray_cluster) == 2
    cfg = make_config(topology="ring", nodes=6, rounds=2)
    reference = run(cfg)
    # Act
    result = run(cfg, out=tmp_path / "run", hosts=2, backend="ray",
                 ray_options={"address": ray_cluster, "placement": "strict-spread"})
    # Assert: bit-identical final models, from two different raylets, in the usual run folder.
    for i in range(cfg.nodes):
        assert np.array_equal(result.final_models[i], reference.final_models[i]), i
    raylets = {h["raylet"] for h in result.extra["ray"]}
    assert len(raylets) == 2 and result.extra["backend"] == "ray"
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert sorted((r["node"], r["round"]) for r in records) == [(i, t) for i in range(6) for t in (1, 2)]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["accuracy_mean"] == pytest.approx(reference.final["accuracy_mean"])


@pytest.mark.slow
def test_a_host_killed_mid_run_is_restarted_and_its_nodes_resume(tmp_path, ray_cluster):
    # Arrange: `p2pfl run --backend ray` with 2 hosts on a ring of 6, rounds long enough that
    # the others are still running when the restarted host is back (~10 s of start-up).
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "p2pfl", "run", "--topology", "ring", "--nodes", "6", "--rounds", "8",
           "--max-train", "1200", "--max-test", "300", "--epochs", "20", "--round-timeout", "120",
           "--backend", "ray", "--address", ray_cluster, "--workers", "2", "--ray-placement", "strict-spread",
           "--out", str(out), "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim_nodes = [3, 4, 5]  # host 1's block

    def last_round(i: int) -> int:
        path = out / "nodes" / f"node-{i}.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return json.loads(lines[-1])["round"] if lines else 0

    try:
        deadline = time.monotonic() + 300
        while min(last_round(i) for i in victim_nodes) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "host 1's nodes never finished round 2"
            time.sleep(0.2)
        killed_after = {i: last_round(i) for i in victim_nodes}
        first = json.loads((out / "hosts" / "host-1.json").read_text())
        # Act: SIGKILL host 1's process, as `kill -9` would.
        os.kill(first["pid"], signal.SIGKILL)
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    # Assert: the run completed; host 1 came back in a new process and its nodes resumed from
    # their checkpoints (no round repeated; rounds the others finished meanwhile are caught up
    # with, not replayed); their neighbours went on without waiting for the round timeout
    # (Ray restarts a host within seconds, often before `net.dead_after` makes them skip it).
    assert code == 0, err[-3000:]
    again = json.loads((out / "hosts" / "host-1.json").read_text())
    assert again["pid"] != first["pid"]
    records = read_records(out / "metrics.jsonl")
    for i in range(6):
        rounds = [r["round"] for r in records if r["node"] == i]
        if i in victim_nodes:
            assert rounds[:killed_after[i]] == list(range(1, killed_after[i] + 1)), (i, rounds)
            assert rounds == sorted(set(rounds)) and rounds[-1] == 8, (i, rounds)
        else:
            assert rounds == list(range(1, 9)), (i, rounds)
    log = (out / "hosts" / "host-1.log").read_text()
    assert all(f"node {i}: resuming after round" in log for i in victim_nodes), log[-3000:]
    assert min(killed_after.values()) >= 2
    assert max(r["time"]["wait"] for r in records if r["node"] in (0, 2)) < 60.0
    final = {r["node"]: r for r in records if r["round"] == 8}
    others = np.mean([final[i]["accuracy"] for i in (0, 1, 2)])
    assert all(abs(final[i]["accuracy"] - others) <= 0.05 for i in victim_nodes), final


@pytest.mark.slow
def test_the_command_line_with_a_private_cluster_writes_the_usual_run_folder(tmp_path, capsys):
    # Arrange / Act: `p2pfl run --backend ray --address local` (Ray starts and stops its own cluster).
    pytest.importorskip("ray", reason="Ray is the optional extra p2pfl[ray] (make install installs it)")
    out = tmp_path / "run"
    code, err = run_cli(["run", "--topology", "ring", "--nodes", "4", "--rounds", "2", "--max-train", "400",
                         "--max-test", "100", "--backend", "ray", "--address", "local", "--workers", "3",
                         "--out", str(out), "-q"], capsys)
    # Assert: the same files as any run, every node's records, three hosts.
    assert code == 0, err
    for name in ("config.toml", "plan.json", "deployment.toml", "metrics.jsonl", "summary.json"):
        assert (out / name).exists(), name
    assert sorted(p.name for p in (out / "final").iterdir()) == [f"node-{i}.npy" for i in range(4)]
    assert len(read_records(out / "metrics.jsonl")) == 8
    assert len(list((out / "hosts").glob("host-*.json"))) == 3
