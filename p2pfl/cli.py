"""The ``p2pfl`` command line. Thin: it parses, builds a config, calls the library, prints.

Bad flags or config values exit with status 2 and one line naming the field and what is
allowed. The CLI is the only place that reads environment variables (``P2PFL_DATA``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from .config import RunConfig
from .errors import ConfigError, DataError, P2PFLError

log = logging.getLogger("p2pfl")


def _search_dirs(data_dirs: tuple[str, ...], config: RunConfig | None = None, *, only: bool = False) -> list[Path]:
    """--data-dir folders, the config's data.data_dir, $P2PFL_DATA, ~/.cache/p2pfl (see
    :func:`p2pfl.plan.resolve_search_dirs`); with ``only``, exactly the --data-dir folders."""
    from .plan import resolve_search_dirs

    if only:
        return [Path(d).expanduser() for d in data_dirs]
    return resolve_search_dirs(data_dirs, config_dir=config.data.data_dir if config is not None else None,
                               env_value=os.environ.get("P2PFL_DATA"))


def _parse_value(text: str) -> Any:
    """A --set value: TOML scalar syntax (numbers, booleans, quoted strings), else a bare string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="p2pfl")
def cli() -> None:
    """p2pfl: serverless gossip learning for studying model poisoning and local defences."""


# ---- p2pfl run ---------------------------------------------------------------------------------------
_RUN_FLAGS: dict[str, str] = {
    "topology": "topology",
    "nodes": "nodes",
    "rounds": "rounds",
    "seed": "seed",
    "mixing": "mixing",
    "adversaries": "adversaries",
    "placement": "placement",
    "attack": "attack.name",
    "defence": "defence.name",
    "dataset": "data.dataset",
    "partition": "data.partition",
    "alpha": "data.alpha",
    "max_train": "data.max_train",
    "max_test": "data.max_test",
    "model": "train.model",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "transport": "net.transport",
    "round_timeout": "net.round_timeout",
    "compression": "net.compression",
    "target": "attack.target",
    "aux_size": "attack.aux_size",
    "backdoor": "attack.backdoor",
    "eval_every": "eval_every",
    "name": "name",
    "mode": "mode",
    "fanout": "net.fanout",
}


def parse_role(text: str) -> dict[str, Any]:
    """``--role 0,3=boost`` or ``--role 5=nodes/stealth.toml`` -> a [[roles]] entry."""
    if "=" not in text:
        raise ConfigError("--role", text, "NODES=PROFILE, e.g. 0,3=boost or 5=nodes/stealth.toml")
    ids, profile = text.split("=", 1)
    try:
        nodes = [int(i) for i in ids.split(",") if i.strip()]
    except ValueError:
        raise ConfigError("--role", text, "comma-separated node ids before '=', e.g. 0,3=boost") from None
    return {"nodes": nodes, "profile": profile.strip()}


def build_config(config_file: str | None, flags: Mapping[str, Any], sets: tuple[str, ...],
                 data_dirs: tuple[str, ...] = (), roles: tuple[str, ...] = ()) -> RunConfig:
    """Config file, then flags, then --set KEY=VALUE, then --role, later ones winning."""
    base = RunConfig.from_toml(config_file) if config_file else RunConfig()
    overrides: dict[str, Any] = {}
    for flag, key in _RUN_FLAGS.items():
        value = flags.get(flag)
        if value is not None:
            overrides[key] = value
    for item in sets:
        if "=" not in item:
            raise ConfigError("--set", item, "KEY=VALUE, e.g. train.epochs=2 or attack.lam=10")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value.strip())
    if data_dirs:
        overrides["data.data_dir"] = data_dirs[0]
    defence = overrides.get("defence.name")
    if defence == "":
        overrides["defence.name"] = "topk-clip"
    config = base.with_overrides(overrides) if overrides else base
    if roles:
        from .config import load_role

        config = config.replace(roles=config.roles + tuple(load_role(parse_role(r)) for r in roles))
    if (flags.get("adversaries") and config.attack.name == "none" and flags.get("attack") is None
            and not any(f"{k}=" in " ".join(sets) for k in ("attack.name",))):
        config = config.with_overrides({"attack.name": "boost"})  # --adversaries N alone: the default attack
    return config


def validate_names(config: RunConfig) -> None:
    """Check attack and defence names against what exists, naming the allowed values."""
    from .attacks import check_params
    from .filters import build_filter

    build_filter(config.defence.name, dict(config.defence.params))
    check_params(config.attack.name, dict(config.attack.params))
    for role in config.roles:
        if role.defence is not None:
            build_filter(role.defence.name, dict(role.defence.params))
        if role.attack is not None:
            check_params(role.attack.name, dict(role.attack.params))


class _RunView:
    """Progress bar by round with live mean accuracy (rich), fed by per-node records."""

    def __init__(self, config: RunConfig, quiet: bool) -> None:
        self.config = config
        self.quiet = quiet
        self.by_round: dict[int, list[Mapping[str, Any]]] = {}
        self._progress = None
        self._task = None
        self.done_rounds = 0

    def __enter__(self) -> _RunView:
        if not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                console=_console(), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("rounds", total=self.config.rounds, status="starting")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, rec: Mapping[str, Any]) -> None:
        r = int(rec["round"])
        recs = self.by_round.setdefault(r, [])
        recs.append(rec)
        if len(recs) == self.config.nodes and self._progress is not None:
            benign = [x for x in recs if x.get("role") == "benign" and "accuracy" in x]
            if not benign:  # not an evaluation round (eval_every)
                self.done_rounds = max(self.done_rounds, r)
                self._progress.update(self._task, completed=self.done_rounds)
                return
            acc = sum(x["accuracy"] for x in benign) / len(benign)
            status = f"round {r}: benign accuracy {acc:.3f}"
            if any("attack_success" in x for x in benign):
                asr = sum(x.get("attack_success", 0.0) for x in benign) / max(1, len(benign))
                status += f", attack success {asr:.2f}"
            self.done_rounds = max(self.done_rounds, r)
            self._progress.update(self._task, completed=self.done_rounds, status=status)


def _console():  # noqa: ANN202
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def print_result(result: Any) -> None:
    """The per-node table and where the results are."""
    from rich.table import Table

    console = _console()
    nodes = result.summary.get("nodes", [])
    has_attack = any("attack_success" in n for n in nodes)
    table = Table(title=f"{result.config.name}: final round {result.config.rounds}")
    table.add_column("node", justify="right")
    table.add_column("role")
    table.add_column("accuracy", justify="right")
    if has_attack:
        table.add_column("attack success", justify="right")
    for n in nodes:
        row = [str(n["node"]), n.get("role", ""), f"{n.get('accuracy', float('nan')):.4f}"]
        if has_attack:
            row.append(f"{n['attack_success']:.2f}" if "attack_success" in n else "")
        table.add_row(*row)
    console.print(table)
    final = result.final
    line = f"benign accuracy mean {final.get('accuracy_mean', float('nan')):.4f} " \
           f"(min {final.get('accuracy_min', float('nan')):.4f}, max {final.get('accuracy_max', float('nan')):.4f})"
    if "attack_success_mean" in final:
        line += f"; attack success mean {final['attack_success_mean']:.3f}"
    console.print(line)
    console.print(f"data: {result.data_source}; wall time {result.wall_time:.1f}s")
    if result.out is not None:
        console.print(f"results in {result.out}")


@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Run settings (TOML).")
@click.option("--topology", help="ring, line, star, full, torus, random-regular, erdos-renyi, small-world, or a .toml path.")
@click.option("--nodes", type=int)
@click.option("--rounds", type=int)
@click.option("--seed", type=int)
@click.option("--mixing", help="metropolis (default) or uniform.")
@click.option("--adversaries", type=int, help="Number of adversarial nodes.")
@click.option("--placement", help="random, central, spread or clustered.")
@click.option("--attack", help="What adversaries do: boost (default with --adversaries), stealth, altmin, "
              "signflip, gaussian, labelflip, alie, ipm, replace, pgd, scale, neurotoxin, none.")
@click.option("--target", help="The backdoor: 'random' (r test examples with random wrong labels) or S:T, e.g. 5:7.")
@click.option("--aux-size", type=int, help="r, the number of auxiliary (target) examples (default 1).")
@click.option("--backdoor", help="Backdoor kind: single (default: the r aux examples), class (every own "
              "example of class S labelled T, --target S:T) or trigger (a pixel patch stamped on own images, "
              "label T; attack.trigger_size/_value/_pos, attack.poison_fraction).")
@click.option("--defence", "--defense", "defence", is_flag=False, flag_value="", default=None,
              help="Local filter(s), comma-separated; bare --defence means topk-clip.")
@click.option("--dataset", help="fmnist or adult.")
@click.option("--partition", help="iid, dirichlet or shards.")
@click.option("--alpha", type=float, help="Dirichlet concentration.")
@click.option("--max-train", type=int, help="Use at most this many training samples.")
@click.option("--max-test", type=int, help="Use at most this many test samples.")
@click.option("--model", help="cnn (small, CPU default), paper-cnn or mlp.")
@click.option("--epochs", type=int, help="Local epochs per round.")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--transport", help="tcp or ipc.")
@click.option("--round-timeout", type=float, help="Seconds to wait for neighbours each round.")
@click.option("--compression", type=float, help="Announce only this fraction of coordinates (top-k).")
@click.option("--eval-every", type=int, help="Evaluate every k rounds (and always the last).")
@click.option("--mode", help="sync (lock-step rounds, default) or async (gossip learning: every node runs "
              "`rounds` ticks on its own clock, no barrier).")
@click.option("--fanout", type=int, help="Async: announce to this many neighbours per tick, chosen at random (0 = all).")
@click.option("--name", help="Run name (default: derived from the settings).")
@click.option("--data-dir", "data_dirs", multiple=True, help="Where data sets are looked up (then $P2PFL_DATA, ~/.cache/p2pfl).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any setting, e.g. train.epochs=2, attack.lam=10.")
@click.option("--role", "roles", multiple=True, metavar="NODES=PROFILE",
              help="Give nodes a role profile (attack and/or filter), e.g. 0,3=boost or 5=nodes/stealth.toml.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: runs/NAME-TIMESTAMP).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@click.option("--processes", is_flag=True, help="One OS process per node instead of one process for all.")
@click.option("--workers", "hosts", type=int, default=None,
              help="Spread the nodes over this many node hosts (OS processes) on this machine.")
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def run(config_file: str | None, data_dirs: tuple[str, ...], sets: tuple[str, ...], roles: tuple[str, ...],
        out: str | None, overwrite: bool, processes: bool, hosts: int | None, quiet: bool, verbose: int,
        **flags: Any) -> None:
    """Run a whole experiment on this machine."""
    from .experiment import execute as run_experiment  # launch.run plus weight-update records
    from .launch import prepare_out
    from .plan import Plan

    _setup_logging(verbose, quiet)
    config = build_config(config_file, flags, sets, data_dirs, roles)
    if flags.get("name") is None and config.name == "run":
        config = config.replace(name=f"{Path(config.topology).stem}-{config.nodes}n-{config.adversaries}adv"
                                f"-{config.attack.name}-{config.defence.name.replace(',', '+')}")
    validate_names(config)
    out = out or f"runs/{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    search = _search_dirs(data_dirs, config)
    if hosts is not None:
        from .host import split_blocks

        if processes:
            raise ConfigError("--workers", hosts, "either --workers W or --processes, not both")
        split_blocks(config.nodes, hosts)  # checks W before anything runs
    plan = Plan.build(config, search=search)
    prepare_out(out, overwrite=overwrite)  # refuses to mix into an existing run, before any output
    with _RunView(config, quiet) as view:
        result = run_experiment(config, out=out, processes=processes, search=search,
                                progress=view, overwrite=True, plan=plan, hosts=hosts)
    from .report import write_run_plots

    plots = write_run_plots(result) if result.out is not None else []
    if not quiet:
        print_result(result)
        if plots:
            click.echo(f"plots in {plots[0].parent} ({', '.join(p.name for p in plots)})")


# ---- p2pfl node ----------------------------------------------------------------------------------------
@cli.command()
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
    import asyncio
    import dataclasses

    from .launch import Deployment, run_node_async
    from .plan import set_torch_threads

    _setup_logging(verbose, quiet)
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

    search = _search_dirs(data_dirs, dep.config, only=only_data_dirs)
    asyncio.run(run_node_async(dep, node_id, out=out_path, listen=listen, search=search, on_record=show,
                               insecure=insecure, checkpoints=not no_checkpoints))


def _node_host(deployment: str | None, node_id: int | None, id_from_env: str | None, ids_spec: str | None,
               ids_from_env: str | None, block: int | None, threads: int | None, no_checkpoints: bool,
               listen: str | None, peers: tuple[str, ...], keys_dir: str | None, out: str | None,
               data_dirs: tuple[str, ...], only_data_dirs: bool, insecure: bool, quiet: bool) -> None:
    """``p2pfl node --ids`` / ``--ids-from-env VAR --block B``: a node host (see :mod:`p2pfl.host`)."""
    import dataclasses

    from .host import block_ids, host_main, parse_ids
    from .launch import Deployment

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

    search = _search_dirs(data_dirs, dep.config, only=only_data_dirs)
    host_main(dep, ids, out=Path(out) if out else None, search=search, on_record=show,
              checkpoints=not no_checkpoints, insecure=insecure, threads=threads)


# ---- p2pfl topology ------------------------------------------------------------------------------------
@cli.group()
def topology() -> None:
    """Inspect topologies."""


@topology.command("show")
@click.argument("name")
@click.option("--nodes", type=int, default=None)
@click.option("--seed", type=int, default=0)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Generator parameter, e.g. k=4.")
@click.option("--adversaries", type=int, default=0)
@click.option("--placement", default="random")
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="Also draw the graph to this PNG.")
def topology_show(name: str, nodes: int | None, seed: int, sets: tuple[str, ...], adversaries: int,
                  placement: str, png: str | None) -> None:
    """Print a topology (degrees, diameter, spectral gap) and optionally draw it."""
    from .topology import build_topology, draw, place_adversaries, render_text

    params = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError("--set", item, "KEY=VALUE")
        k, v = item.split("=", 1)
        params[k] = _parse_value(v)
    topo = build_topology(name, nodes, seed=seed, **params)
    advs = place_adversaries(topo, adversaries, placement, seed=seed) if adversaries else ()
    click.echo(render_text(topo))
    if advs:
        click.echo(f"adversaries ({placement}): {', '.join(map(str, advs))}")
    if png:
        path = draw(topo, png, adversaries=advs, title=f"{topo.name} ({topo.n} nodes)")
        click.echo(f"wrote {path}")


# ---- commands that live beside their subject ---------------------------------------------------------------
# (module, attribute): each module defines its own click command; cli only registers it.
_PLUGGED = (("security", "keygen_command"), ("sweep", "sweep_command"), ("report", "report_command"))


def _register() -> None:
    import importlib

    for module, attr in _PLUGGED:
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise
            continue
        cli.add_command(getattr(mod, attr))


_register()


# ---- entry point -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors with exit status 2 for bad input."""
    try:
        cli.main(args=argv, prog_name="p2pfl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        _exit_now(130)
    except click.exceptions.ClickException as exc:  # usage errors, bad option values
        click.echo(f"p2pfl: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 2)
    except ConfigError as exc:
        click.echo(f"p2pfl: error: {exc}", err=True)
        sys.exit(2)
    except DataError as exc:
        click.echo(f"p2pfl: data error: {exc}", err=True)
        sys.exit(1)
    except P2PFLError as exc:
        click.echo(f"p2pfl: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        _exit_now(130)


def _exit_now(code: int) -> None:
    """Exit at once after Ctrl-C: files are closed and checkpoints committed by then, and the
    interpreter's final garbage collection of a torch process can take seconds on a busy
    machine (measured: 2-3 s of a 3 s stop), which a user waiting on Ctrl-C should not pay."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
