"""``p2pfl node`` (one node of a deployment, resumable) and ``p2pfl keygen`` (CurveZMQ keys)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ..config import RunConfig
from ..deployment import Deployment, run_node_async
from ..errors import ConfigError
from ..logs import setup_logging
from ..plan import set_torch_threads
from ..security import keygen as make_keys
from ._common import search_path


@click.command()
@click.option("--deployment", type=click.Path(dir_okay=False), default=None,
              help="Run settings plus [deployment.nodes] id = host:port (and keys_dir).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Run settings, when --listen and --peer give the addresses instead of a deployment file.")
@click.option("--id", "node_id", type=int, default=None, help="This node's id.")
@click.option("--id-from-env", default=None, metavar="VAR",
              help="Read the id from an environment variable (SLURM_PROCID, OMPI_COMM_WORLD_RANK).")
@click.option("--ids", "ids_spec", default=None, metavar="IDS",
              help="Run a block of nodes in this process (a node host), e.g. 0-49 or 0-9,20-29.")
@click.option("--ids-from-env", default=None, metavar="VAR",
              help="Node host: take the rank from an environment variable (SLURM_PROCID) and run "
                   "its block of --block nodes (rank r runs r*block .. r*block+block-1).")
@click.option("--block", type=int, default=None, help="Nodes per rank with --ids-from-env.")
@click.option("--threads", type=int, default=None, help="Node host: training threads (default: CPUs, at most 4).")
@click.option("--no-checkpoints", is_flag=True, help="Do not checkpoint every round (no resume).")
@click.option("--listen", default=None, help="Bind here instead of this node's deployment address (e.g. tcp://0.0.0.0:7000).")
@click.option("--peer", "peers", multiple=True, metavar="ID=ADDR",
              help="A neighbour's address, e.g. 3=10.0.0.4:7000 (overrides the deployment file).")
@click.option("--keys-dir", type=click.Path(file_okay=False), default=None,
              help="CurveZMQ keys from `p2pfl keygen` (overrides the deployment's keys_dir).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for metrics, checkpoints and the final model; the same --out resumes.")
@click.option("--data-dir", "data_dirs", multiple=True,
              help="Where data sets are looked up (then data.data_dir, $P2PFL_DATA, ~/.cache/p2pfl).")
@click.option("--only-data-dirs", is_flag=True,
              help="Look only in the --data-dir folders, in order: how `run --processes` hands its own "
                   "search path to the node processes it starts.")
@click.option("--insecure", is_flag=True,
              help="Listen on a non-loopback address without CurveZMQ keys (no encryption, no "
                   "authentication: anybody who reaches the port can claim to be a neighbour).")
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def node(deployment: str | None, config_file: str | None, node_id: int | None, id_from_env: str | None,
         ids_spec: str | None, ids_from_env: str | None, block: int | None, threads: int | None,
         no_checkpoints: bool, listen: str | None, peers: tuple[str, ...], keys_dir: str | None, out: str | None,
         data_dirs: tuple[str, ...], only_data_dirs: bool, insecure: bool, quiet: bool, verbose: int) -> None:
    """Run one node of an experiment (one per machine, or per process).

    Started again with the same --out after a crash or Ctrl-C, it resumes from its last
    checkpoint and its neighbours resync it.
    """
    setup_logging(verbose, quiet)
    if ids_spec is not None or ids_from_env is not None:
        return _node_host(deployment, node_id, id_from_env, ids_spec, ids_from_env, block, threads,
                          no_checkpoints, listen, peers, keys_dir, out, data_dirs, only_data_dirs, insecure, quiet)
    if block is not None:
        raise ConfigError("--block", block, "only with --ids-from-env VAR")
    if id_from_env is not None:
        raw = os.environ.get(id_from_env)
        if raw is None:
            raise ConfigError("--id-from-env", id_from_env, "the name of a set environment variable")
        try:
            node_id = int(raw)
        except ValueError:
            raise ConfigError(id_from_env, raw, "an integer node id") from None
    if node_id is None:
        raise ConfigError("--id", None, "a node id (or --id-from-env VAR)")
    if deployment is not None:
        dep = Deployment.from_toml(deployment)
    elif config_file is not None:
        if listen is None:
            raise ConfigError("--listen", None, "this node's address (needed without --deployment)")
        dep = Deployment(config=RunConfig.from_toml(config_file), addresses={})
    else:
        raise ConfigError("--deployment", None, "a deployment file, or --config with --listen and --peer ID=ADDR")
    addresses = dict(dep.addresses)
    for item in peers:
        key, sep, addr = item.partition("=")
        if not sep or not key.strip().isdigit() or not addr.strip():
            raise ConfigError("--peer", item, "ID=ADDR, e.g. 3=10.0.0.4:7000")
        addresses[int(key)] = addr.strip() if "://" in addr else f"tcp://{addr.strip()}"
    dep = dataclasses.replace(dep, addresses=addresses,
                              keys_dir=Path(keys_dir).resolve() if keys_dir else dep.keys_dir)
    set_torch_threads(1)
    out_path = Path(out) if out else None

    def show(rec: Mapping[str, Any]) -> None:
        if not quiet:
            click.echo(f"node {rec['node']} round {rec['round']}: accuracy {rec.get('accuracy', float('nan')):.4f}")

    search = search_path(data_dirs, dep.config, only=only_data_dirs)
    asyncio.run(run_node_async(dep, node_id, out=out_path, listen=listen, search=search, on_record=show,
                               insecure=insecure, checkpoints=not no_checkpoints))


def _node_host(deployment: str | None, node_id: int | None, id_from_env: str | None, ids_spec: str | None,
               ids_from_env: str | None, block: int | None, threads: int | None, no_checkpoints: bool,
               listen: str | None, peers: tuple[str, ...], keys_dir: str | None, out: str | None,
               data_dirs: tuple[str, ...], only_data_dirs: bool, insecure: bool, quiet: bool) -> None:
    """``p2pfl node --ids`` / ``--ids-from-env VAR --block B``: a node host (see :mod:`p2pfl.host`)."""
    from ..host import block_ids, host_main, parse_ids

    if node_id is not None or id_from_env is not None:
        raise ConfigError("--ids", ids_spec or ids_from_env, "either --id/--id-from-env or --ids/--ids-from-env")
    if ids_spec is not None and ids_from_env is not None:
        raise ConfigError("--ids", ids_spec, "either --ids or --ids-from-env, not both")
    if listen is not None or peers:
        raise ConfigError("--listen", listen or peers[0], "a deployment file for a node host (--ids)")
    if deployment is None:
        raise ConfigError("--deployment", None, "a deployment file with every node's address (node hosts need one)")
    dep = Deployment.from_toml(deployment)
    if keys_dir:
        dep = dataclasses.replace(dep, keys_dir=Path(keys_dir).resolve())
    nodes = dep.config.nodes
    if ids_from_env is not None:
        if block is None:
            raise ConfigError("--block", None, "the number of nodes per rank (with --ids-from-env)")
        raw = os.environ.get(ids_from_env)
        if raw is None:
            raise ConfigError("--ids-from-env", ids_from_env, "the name of a set environment variable")
        if not raw.strip().isdigit():
            raise ConfigError(ids_from_env, raw, "a non-negative integer rank")
        ids = block_ids(int(raw), block, nodes)
    else:
        if block is not None:
            raise ConfigError("--block", block, "only with --ids-from-env VAR")
        ids = parse_ids(ids_spec or "", nodes)
    if threads is not None and threads < 1:
        raise ConfigError("--threads", threads, "an integer >= 1")

    def show(rec: Mapping[str, Any]) -> None:
        if not quiet:
            click.echo(f"node {rec['node']} round {rec['round']}: accuracy {rec.get('accuracy', float('nan')):.4f}")

    search = search_path(data_dirs, dep.config, only=only_data_dirs)
    host_main(dep, ids, out=Path(out) if out else None, search=search, on_record=show,
              checkpoints=not no_checkpoints, insecure=insecure, threads=threads)


@click.command("deployment")
@click.argument("config_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--machines", required=True, metavar="A,B,...",
              help="The machines the ranks run on, in rank order (Slurm: scontrol show hostnames).")
@click.option("--block", type=int, required=True, help="Nodes per rank (as given to p2pfl node --block).")
@click.option("--tasks-per-machine", type=int, default=1, show_default=True,
              help="Ranks per machine (Slurm: --ntasks-per-node).")
@click.option("--port", type=int, default=7000, show_default=True, help="Node i listens on port + i.")
@click.option("--keys-dir", type=click.Path(file_okay=False), default=None,
              help="CurveZMQ keys of every node (p2pfl keygen); a host with keys runs one node: --block 1.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="The deployment file to write.")
def deployment(config_file: str, machines: str, block: int, tasks_per_machine: int, port: int,
               keys_dir: str | None, output: str) -> None:
    """Write a deployment file for node hosts started by rank (``p2pfl node --ids-from-env``).

    Rank r runs nodes r*BLOCK .. r*BLOCK+BLOCK-1 on machine r // TASKS_PER_MACHINE of
    --machines; node i listens on that machine at port + i.
    """
    from ..host import block_addresses

    config = RunConfig.from_toml(config_file)
    if keys_dir is not None and block != 1:
        raise ConfigError("--block", block, "1 with --keys-dir (a host with CurveZMQ keys runs one node)")
    addresses = block_addresses(config.nodes, machines.split(","), block, port=port,
                                tasks_per_machine=tasks_per_machine)
    dep = Deployment(config=config, addresses=addresses, keys_dir=Path(keys_dir).resolve() if keys_dir else None)
    Path(output).write_text(dep.to_toml(), encoding="utf-8")
    ranks = -(-config.nodes // block)
    click.echo(f"{output}: {config.nodes} nodes, {ranks} rank(s) of {block}, on "
               f"{len({a.rsplit(':', 1)[0] for a in addresses.values()})} machine(s)")


@click.command("keygen")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--nodes", type=int, required=True, help="Make key pairs for nodes 0..N-1.")
@click.option("--overwrite", is_flag=True, help="Replace existing keys.")
def keygen(directory: str, nodes: int, overwrite: bool) -> None:
    """Make a CurveZMQ key pair per node: DIR/node-I.key (public) and node-I.key_secret (0600).

    Give every machine its own secret file and everybody's public files (or list the public
    keys under [deployment.keys] in the deployment file), and set keys_dir in [deployment].
    """
    written = make_keys(directory, nodes, overwrite=overwrite)
    click.echo(f"wrote {len(written) // 2} key pairs to {directory} (secret files are mode 0600)")


__all__ = ["keygen", "node"]
