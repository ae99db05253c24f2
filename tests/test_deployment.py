"""`p2pfl node` as separate programs: deployment files, CurveZMQ, network namespaces,
kill -9 and restart, liveness, Ctrl-C, and the handshake that names what differs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.asyncio
from conftest import tiny_config

from p2pfl.checkpoint import Checkpointer
from p2pfl.config import RunConfig, flat_settings
from p2pfl.errors import ConfigError
from p2pfl.launch import Deployment, free_tcp_ports, make_node, run
from p2pfl.metrics import read_records
from p2pfl.plan import Plan
from p2pfl.security import keygen
from p2pfl.transport import Transport

ROOT = Path(__file__).resolve().parents[1]


# ---- helpers ---------------------------------------------------------------------------------------------
def process_config(**changes) -> RunConfig:
    """5 nodes on a ring, tiny data; timeouts generous for 5 processes on 2 cores."""
    base = {"topology": "ring", "nodes": 5, "rounds": 3, "data.max_train": 1000, "data.max_test": 300,
            "train.epochs": 1, "net.round_timeout": 60.0, "net.connect_timeout": 60.0, "net.linger_ms": 1000}
    base.update(changes)
    return tiny_config(**base)


def write_deployment(path: Path, cfg: RunConfig, addresses: dict[int, str], keys_dir: Path | None = None) -> Path:
    dep = Deployment(config=cfg, addresses=addresses, keys_dir=keys_dir)
    path.write_text(dep.to_toml(), encoding="utf-8")
    return path


def node_command(dep: Path, node: int, out: Path, prefix: Sequence[str] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "p2pfl", "node", "--deployment", str(dep), "--id", str(node),
            "--out", str(out), "-v"]


class Cluster:
    """Starts `p2pfl node` processes, keeps their logs, and kills what is left at the end."""

    def __init__(self, dep: Path, out: Path, nodes: int, prefix: Callable[[int], Sequence[str]] = lambda i: ()):
        self.dep, self.out, self.nodes, self.prefix = dep, out, nodes, prefix
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.exits: dict[int, list[int]] = {i: [] for i in range(nodes)}
        (out / "nodes").mkdir(parents=True, exist_ok=True)

    def start(self, i: int) -> None:
        log = (self.out / "nodes" / f"node-{i}.log").open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        self.procs[i] = subprocess.Popen(node_command(self.dep, i, self.out, self.prefix(i)), stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        log.close()

    def records(self, i: int) -> list[dict]:
        path = self.out / "nodes" / f"node-{i}.jsonl"
        return read_records(path) if path.exists() else []

    def last_round(self, i: int) -> int:
        recs = self.records(i)
        return max((int(r["round"]) for r in recs), default=0)

    def wait_until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.05)

    def check_alive(self) -> None:
        for i, p in self.procs.items():
            if p.poll() not in (None, 0):
                raise AssertionError(f"node {i} exited with {p.returncode}\n{self.logs()}")

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for i, p in self.procs.items():
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"node {i} still running after {timeout}s\n{self.logs()}") from None
        codes = {i: p.returncode for i, p in self.procs.items()}
        assert all(c == 0 for c in codes.values()), f"exit codes {codes}\n{self.logs()}"

    def logs(self, tail: int = 25) -> str:
        parts = []
        for i in range(self.nodes):
            path = self.out / "nodes" / f"node-{i}.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- node {i} ---\n" + "\n".join(lines))
        return "\n".join(parts)

    def final_models(self) -> dict[int, np.ndarray]:
        return {i: np.load(self.out / "final" / f"node-{i}.npy") for i in range(self.nodes)}

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


@pytest.fixture
def cluster_factory(tmp_path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(dep: Path, nodes: int, **kw) -> Cluster:
        c = Cluster(dep, tmp_path / "run", nodes, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


_REFERENCE: dict[str, dict[int, np.ndarray]] = {}


def run_all(cluster: Cluster, cfg: RunConfig) -> None:
    """Start every node of the deployment and wait for all of them to finish."""
    for i in range(cfg.nodes):
        cluster.start(i)
    cluster.wait_all(timeout=300)


def assert_matches_reference(cluster: Cluster, cfg: RunConfig) -> None:
    """Every node's final model equals the in-process run's, bit for bit."""
    ref = reference_models(cfg)
    got = cluster.final_models()
    for i in range(cfg.nodes):
        assert np.array_equal(got[i], ref[i]), i


def reference_models(cfg: RunConfig) -> dict[int, np.ndarray]:
    """Final models of `p2pfl run` in one process (no CURVE) for the same settings, cached."""
    key = cfg.digest()
    if key not in _REFERENCE:
        _REFERENCE[key] = run(cfg).final_models
    return _REFERENCE[key]


# ---- deployment files ---------------------------------------------------------------------------------------
def test_example_deployment_file_parses_and_names_its_keys():
    dep = Deployment.from_toml(ROOT / "nodes" / "cluster.example.toml")
    assert sorted(dep.addresses) == list(range(dep.config.nodes))
    assert all(a.startswith("tcp://") for a in dep.addresses.values())
    assert dep.keys_dir is not None and dep.keys_dir.name == "keys"


def test_deployment_round_trips_with_public_keys(tmp_path):
    keygen(tmp_path / "keys", 3)
    keys = {i: (tmp_path / "keys" / f"node-{i}.key").read_text().split('"')[1] for i in range(3)}
    dep = Deployment(config=tiny_config(nodes=3), addresses={i: f"tcp://127.0.0.1:{7000 + i}" for i in range(3)},
                     keys_dir=tmp_path / "keys", public_keys=keys)
    path = tmp_path / "dep.toml"
    path.write_text(dep.to_toml())
    back = Deployment.from_toml(path)
    assert back.public_keys == keys and back.keys_dir == tmp_path / "keys" and back.addresses == dep.addresses


@pytest.mark.parametrize("table, match", [
    ('nodes = {"0" = "127.0.0.1:1", "1" = "127.0.0.1:2"}\nkeys = {"0" = "short"}', "deployment.keys.0"),
    ('nodes = {"0" = "127.0.0.1:1", "1" = "127.0.0.1:2"}\nkeys = {"0" = "' + "A" * 40 + '"}', "keys_dir"),
    ('nodes = {"0" = "127.0.0.1:1"}', "an address for every node"),
    ('nodes = {"0" = "127.0.0.1:1", "1" = "127.0.0.1:2"}\nport = 3', "only the keys"),
])
def test_bad_deployment_files_fail_with_the_field_named(tmp_path, table, match):
    path = tmp_path / "dep.toml"
    path.write_text(f'nodes = 2\n[deployment]\n{table}\n')
    with pytest.raises(ConfigError, match=match):
        Deployment.from_toml(path)


def test_node_refuses_to_start_without_its_keys(tmp_path):
    # Fail closed: keys_dir set but missing -> exit status 1 before any socket exists.
    cfg = tiny_config(nodes=2, topology="line")
    dep = write_deployment(tmp_path / "dep.toml", cfg, {0: "tcp://127.0.0.1:1", 1: "tcp://127.0.0.1:2"},
                           keys_dir=tmp_path / "nokeys")
    res = subprocess.run(node_command(dep, 0, tmp_path / "out"), capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert res.returncode == 1
    assert "nokeys" in res.stderr and "does not exist" in res.stderr


@pytest.mark.parametrize("args, match", [
    ([], "a deployment file, or --config"),
    (["--config", "CFG"], "--listen"),
    (["--config", "CFG", "--listen", "tcp://127.0.0.1:7000", "--peer", "one=127.0.0.1:1"], "ID=ADDR"),
])
def test_node_command_needs_addresses(tmp_path, capsys, args, match):
    from p2pfl.cli import main

    cfg_path = tmp_path / "run.toml"
    cfg_path.write_text(tiny_config(nodes=2, topology="line").to_toml())
    with pytest.raises(SystemExit) as exc:
        main(["node", "--id", "0", *[str(cfg_path) if a == "CFG" else a for a in args]])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


@pytest.mark.slow
def test_nodes_from_flags_without_a_deployment_file(tmp_path, cluster_factory):
    # Arrange: a 2-node line given by --config, --listen and --peer only.
    cfg = process_config(topology="line", nodes=2, rounds=2, **{"train.epochs": 1})
    (tmp_path / "run.toml").write_text(cfg.to_toml())
    ports = free_tcp_ports(2)
    out = tmp_path / "run"
    (out / "nodes").mkdir(parents=True)
    procs = []
    for i in range(2):
        cmd = [sys.executable, "-m", "p2pfl", "node", "--config", str(tmp_path / "run.toml"), "--id", str(i),
               "--listen", f"tcp://127.0.0.1:{ports[i]}", "--peer", f"{1 - i}=127.0.0.1:{ports[1 - i]}",
               "--out", str(out), "-q"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    # Act
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    # Assert: both finished, with the same final models as one process.
    assert [p.returncode for p in procs] == [0, 0], errs
    ref = reference_models(cfg)
    for i in range(2):
        assert np.array_equal(np.load(out / "final" / f"node-{i}.npy"), ref[i])


# ---- handshake -----------------------------------------------------------------------------------------------
async def test_handshake_mismatch_names_the_setting_that_differs(make_config, caplog):
    # Arrange: node 1 of a 2-node line runs with seed 1, node 0 with seed 0.
    cfgs = [make_config(topology="line", nodes=2, rounds=1, seed=s,
                        **{"train.epochs": 0, "net.connect_timeout": 1.5, "net.round_timeout": 1.0}) for s in (0, 1)]
    plans = [Plan.build(c) for c in cfgs]
    ctx = zmq.asyncio.Context()
    trs = {i: Transport(i, "tcp://127.0.0.1:0", context=ctx, linger_ms=0) for i in range(2)}
    addrs = {i: t.bind() for i, t in trs.items()}
    nodes = []
    try:
        for i in range(2):
            trs[i].connect({1 - i: addrs[1 - i]})
            node = make_node(plans[i], i, trs[i])
            tree = cfgs[i].to_mapping()
            tree.pop("name")

            node.settings = flat_settings(tree)
            nodes.append(node)
        # Act
        await asyncio.gather(*(n.run() for n in nodes))
    finally:
        for t in trs.values():
            t.close()
        ctx.destroy(linger=0)
    # Assert: refused as "handshake" on both sides, with the setting named; never merged.
    for n in nodes:
        assert n.rejected.get("handshake", 0) >= 1
        assert n.peers[1 - n.id].refused.startswith("seed differs: ")
    assert "seed differs: 1 at node 1, 0 here" in nodes[0].peers[1].refused
    assert "did not say hello" in caplog.text and "seed differs" in caplog.text
    for n in nodes:
        assert all(r["heard"] == 0 for r in n.history)


# ---- liveness ------------------------------------------------------------------------------------------------
async def test_dead_neighbour_is_skipped_within_seconds_not_after_the_round_timeout(make_config):
    # Arrange: a 3-ring with a 60 s round timeout; node 2 disappears after round 1.
    cfg = make_config(topology="ring", nodes=3, rounds=4, **{"train.epochs": 0, "net.round_timeout": 60.0})
    plan = Plan.build(cfg)
    ctx = zmq.asyncio.Context()
    trs = {i: Transport(i, "tcp://127.0.0.1:0", context=ctx, linger_ms=0) for i in range(3)}
    addrs = {i: t.bind() for i, t in trs.items()}
    for i, t in trs.items():
        t.connect({j: addrs[j] for j in plan.topology.neighbours(i)})
    nodes = [make_node(plan, i, trs[i]) for i in range(3)]

    class DiesAfterRound1:
        name = "benign"

        def craft(self, view):
            if view.round == 2:
                raise RuntimeError("crash")  # stands in for a crash
            return type(nodes[0].behaviour)().craft(view)

    nodes[2].behaviour = DiesAfterRound1()
    started = time.monotonic()
    try:
        victim = asyncio.ensure_future(nodes[2].run())
        survivors = asyncio.gather(nodes[0].run(), nodes[1].run())
        with pytest.raises(BaseException):  # noqa: B017 -- the stand-in crash
            await victim
        trs[2].close()  # the process is gone: its sockets close
        await asyncio.wait_for(survivors, 40)
    finally:
        for t in trs.values():
            t.close()
        ctx.destroy(linger=0)
    elapsed = time.monotonic() - started
    # Assert: rounds 2..4 ran without node 2, far quicker than one 60 s timeout.
    assert elapsed < 30, elapsed
    for n in nodes[:2]:
        assert [r["round"] for r in n.history] == [1, 2, 3, 4]
        assert all(r["skipped"] == [2] for r in n.history[1:])
        assert n.peers[2].down


# ---- separate processes ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_five_node_processes_with_curve_match_the_inprocess_run(tmp_path, cluster_factory):
    # Arrange: keys, one deployment file, 5 addresses 127.0.0.2..6.
    cfg = process_config()
    keygen(tmp_path / "keys", cfg.nodes)
    addresses = {i: f"tcp://127.0.0.{i + 2}:{free_tcp_ports(1, f'127.0.0.{i + 2}')[0]}" for i in range(cfg.nodes)}
    dep = write_deployment(tmp_path / "cluster.toml", cfg, addresses, keys_dir=tmp_path / "keys")
    cluster = cluster_factory(dep, cfg.nodes)
    # Act
    run_all(cluster, cfg)
    # Assert: identical final models to one process, and nothing was refused.
    assert_matches_reference(cluster, cfg)
    for i in range(cfg.nodes):
        recs = cluster.records(i)
        assert [r["round"] for r in recs] == [1, 2, 3]
        assert recs[-1]["rejected"] == {}
    assert Checkpointer(cluster.out / "checkpoints", 0).load().finished


def _netns_unavailable() -> str:
    if sys.platform != "linux":
        return "network namespaces exist only on Linux"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    probe = f"p2pfl-probe-{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"`ip netns add` failed: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


class Namespaces:
    """n hosts on one switch: a bridge in its own namespace, one veth pair per host."""

    def __init__(self, n: int, subnet: str = "10.231.77") -> None:
        tag = os.getpid() % 100000
        self.switch = f"p2pfl-sw{tag}"
        self.hosts = [f"p2pfl-h{tag}-{i}" for i in range(n)]
        self.addresses = [f"{subnet}.{i + 2}" for i in range(n)]
        self.subnet = subnet

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def up(self) -> None:
        self._ip("netns", "add", self.switch)
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")
        for i, (host, addr) in enumerate(zip(self.hosts, self.addresses, strict=True)):
            self._ip("netns", "add", host)
            self._ip("-n", host, "link", "set", "lo", "up")
            self._ip("-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", f"port{i}",
                     "netns", self.switch)
            self._ip("-n", self.switch, "link", "set", f"port{i}", "master", "br0")
            self._ip("-n", self.switch, "link", "set", f"port{i}", "up")
            self._ip("-n", host, "addr", "add", f"{addr}/24", "dev", "eth0")
            self._ip("-n", host, "link", "set", "eth0", "up")

    def down(self) -> None:
        for ns in [*self.hosts, self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.slow
@pytest.mark.netns
def test_five_nodes_in_their_own_network_namespaces(tmp_path, cluster_factory):
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    cfg = process_config()
    net = Namespaces(cfg.nodes)
    try:
        net.up()
        # Arrange: each node is a host 10.231.77.(i+2) on a bridge; it can reach only that subnet.
        ping = subprocess.run(["ip", "netns", "exec", net.hosts[0], "ping", "-c1", "-W2", net.addresses[4]],
                              capture_output=True, text=True)
        if ping.returncode != 0 and shutil.which("ping"):
            pytest.fail(f"the bridge does not forward: {ping.stdout}{ping.stderr}")
        keygen(tmp_path / "keys", cfg.nodes)
        addresses = {i: f"tcp://{a}:7100" for i, a in enumerate(net.addresses)}
        dep = write_deployment(tmp_path / "cluster.toml", cfg, addresses, keys_dir=tmp_path / "keys")
        cluster = cluster_factory(dep, cfg.nodes, prefix=lambda i: ("ip", "netns", "exec", net.hosts[i]))
        # Act
        run_all(cluster, cfg)
        # Assert
        assert_matches_reference(cluster, cfg)
    finally:
        net.down()
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert net.switch not in leftover


@pytest.mark.slow
def test_kill_9_at_round_3_restart_at_round_5_completes(tmp_path, cluster_factory):
    # Arrange: 5 processes on a complete graph, 8 rounds, each long enough (several seconds)
    # that the others' rounds 5..8 outlast the victim's start-up (~16 s under load).
    cfg = process_config(topology="full", rounds=8, **{"data.max_train": 1500, "data.max_test": 500,
                                                       "train.epochs": 50, "net.round_timeout": 60.0})
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_tcp_ports(cfg.nodes))}
    dep = write_deployment(tmp_path / "cluster.toml", cfg, addresses)
    cluster = cluster_factory(dep, cfg.nodes)
    victim = 2
    for i in range(cfg.nodes):
        cluster.start(i)
    # Act: SIGKILL the victim while it is in round 3 (its round-2 record is written) ...
    cluster.wait_until(lambda: cluster.last_round(victim) >= 2, 240, "node 2 to finish round 2")
    killed_after = cluster.last_round(victim)
    cluster.procs[victim].send_signal(signal.SIGKILL)
    cluster.procs[victim].wait(timeout=10)
    assert cluster.procs[victim].returncode == -signal.SIGKILL
    del cluster.procs[victim]
    # ... and start it again, with the same command, once the others are in round 5.
    others = [i for i in range(cfg.nodes) if i != victim]
    cluster.wait_until(lambda: min(cluster.last_round(i) for i in others) >= 4, 240, "the others to reach round 5")
    cluster.start(victim)
    cluster.wait_all(timeout=300)
    # Assert: everybody completed 8 rounds; the victim is within 2 points of the others.
    final = {i: cluster.records(i)[-1] for i in range(cfg.nodes)}
    assert all(r["round"] == 8 for r in final.values()), final
    acc_others = np.mean([final[i]["accuracy"] for i in others])
    assert abs(final[victim]["accuracy"] - acc_others) <= 0.02, (final[victim]["accuracy"], acc_others)
    rounds_victim = [r["round"] for r in cluster.records(victim)]
    assert rounds_victim[:killed_after] == list(range(1, killed_after + 1))
    assert 3 not in rounds_victim[killed_after:] and rounds_victim[-1] == 8
    assert final[victim]["heard"] == 4, "the restarted node did not rejoin before the end"
    for j in others:
        skipped = [r["round"] for r in cluster.records(j) if victim in r["skipped"]]
        assert skipped, f"node {j} never skipped the dead node"
        assert max(skipped) < 8, "the restarted node was not resynced"
        log = (cluster.out / "nodes" / f"node-{j}.log").read_text()
        assert f"neighbour {victim} is down" in log
    assert "resuming after round" in (cluster.out / "nodes" / f"node-{victim}.log").read_text()
    assert not any(r.get("rejected", {}).get("internal") for i in range(cfg.nodes) for r in cluster.records(i))


@pytest.mark.slow
def test_ctrl_c_stops_a_node_cleanly_and_it_resumes(tmp_path, cluster_factory):
    # Arrange: a 2-node line, 4 rounds.
    cfg = process_config(topology="line", nodes=2, rounds=4, **{"train.epochs": 2})
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_tcp_ports(2))}
    dep = write_deployment(tmp_path / "cluster.toml", cfg, addresses)
    cluster = cluster_factory(dep, 2)
    cluster.start(0)
    cluster.start(1)
    # Act: Ctrl-C node 1 after its first round.
    cluster.wait_until(lambda: cluster.last_round(1) >= 1, 240, "node 1 to finish round 1")
    cluster.procs[1].send_signal(signal.SIGINT)
    code = cluster.procs[1].wait(timeout=60)
    state = Checkpointer(cluster.out / "checkpoints", 1).load()
    del cluster.procs[1]
    cluster.start(1)
    cluster.wait_all(timeout=300)
    # Assert: exit 130 with a usable checkpoint; the restarted node finished the run.
    assert code == 130
    assert state is not None and state.round >= 1 and not state.finished
    assert cluster.records(1)[-1]["round"] == 4
    assert Checkpointer(cluster.out / "checkpoints", 1).load().finished
    assert "SIGINT received" in (cluster.out / "nodes" / "node-1.log").read_text()
    rounds = [r["round"] for r in cluster.records(1)]
    assert rounds == sorted(set(rounds)) and rounds[0] == 1 and rounds[-1] == 4  # resumed, nothing repeated
    assert cluster.records(0)[-1]["round"] == 4


@pytest.mark.slow
def test_ctrl_c_during_a_long_local_epoch_stops_within_seconds_and_resumes(tmp_path, cluster_factory):
    # Arrange: a 2-node line whose rounds are long local trainings (several seconds each).
    cfg = process_config(topology="line", nodes=2, rounds=2,
                         **{"train.epochs": 150, "net.round_timeout": 240.0})
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_tcp_ports(2))}
    dep = write_deployment(tmp_path / "cluster.toml", cfg, addresses)
    cluster = cluster_factory(dep, 2)
    cluster.start(0)
    cluster.start(1)
    # Act: Ctrl-C node 1 right after round 1, i.e. inside round 2's training.
    cluster.wait_until(lambda: cluster.last_round(1) >= 1, 240, "node 1 to finish round 1")
    time.sleep(0.5)
    started = time.monotonic()
    cluster.procs[1].send_signal(signal.SIGINT)
    code = cluster.procs[1].wait(timeout=60)
    stopped_after = time.monotonic() - started
    del cluster.procs[1]
    cluster.start(1)
    cluster.wait_all(timeout=300)
    # Assert: it stopped at its next batch, not at the end of the epochs (the bound is loose:
    # the machine is shared; the closing note gives the measured figure), then resumed.
    print(f"node 1 stopped {stopped_after:.2f} s after SIGINT")
    assert code == 130
    assert stopped_after < 5.0  # measured: 0.17 s at a load average of 7 on 2 cores
    assert [r["round"] for r in cluster.records(1)] == [1, 2]
    assert cluster.records(0)[-1]["round"] == 2
