"""``p2pfl run``: flags and files to a :class:`~p2pfl.config.RunConfig`, a progress bar, the result table."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import click

from .. import launch
from ..config import RunConfig, load_role, parse_assignments
from ..errors import ConfigError
from ..experiment import default_name
from ..logs import setup_logging
from ..plan import Plan, validate
from ..report import write_run_plots
from ..runfolder import prepare_out
from ..updates import RecordUpdates
from ._common import console, search_path

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
    "tensorboard": "report.tensorboard",
}


def parse_role(text: str) -> dict[str, Any]:
    """``--role 0,3=boost`` or ``--role 5=my-profile.toml`` -> a [[roles]] entry."""
    if "=" not in text:
        raise ConfigError("--role", text, "NODES=PROFILE, e.g. 0,3=boost or 5=my-profile.toml")
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
    overrides.update(parse_assignments(sets))
    if data_dirs:
        overrides["data.data_dir"] = data_dirs[0]
    defence = overrides.get("defence.name")
    if defence == "":
        overrides["defence.name"] = "topk-clip"
    config = base.with_overrides(overrides) if overrides else base
    if roles:
        config = config.replace(roles=config.roles + tuple(load_role(parse_role(r)) for r in roles))
    if (flags.get("adversaries") and config.attack.name == "none" and flags.get("attack") is None
            and not any(f"{k}=" in " ".join(sets) for k in ("attack.name",))):
        config = config.with_overrides({"attack.name": "boost"})  # --adversaries N alone: the default attack
    return config


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
                console=console(), transient=False,
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


def print_result(result: Any) -> None:
    """The per-node table and where the results are."""
    from rich.table import Table

    out = console()
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
    out.print(table)
    final = result.final
    line = f"benign accuracy mean {final.get('accuracy_mean', float('nan')):.4f} " \
           f"(min {final.get('accuracy_min', float('nan')):.4f}, max {final.get('accuracy_max', float('nan')):.4f})"
    if "attack_success_mean" in final:
        line += f"; attack success mean {final['attack_success_mean']:.3f}"
    out.print(line)
    out.print(f"data: {result.data_source}; wall time {result.wall_time:.1f}s")
    if result.out is not None:
        out.print(f"results in {result.out}")
    if result.extra.get("tensorboard"):
        out.print(f"TensorBoard: tensorboard --logdir {result.extra['tensorboard']}")


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Run settings (TOML).")
@click.option("--topology", help="ring, line, star, full, torus, random-regular, erdos-renyi, small-world, or a "
              ".toml path (yours, or a shipped one such as topologies/torus.toml).")
@click.option("--nodes", type=int, help="Number of nodes (default: the topology file's nodes, else 10).")
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
@click.option("--dataset", help="fmnist, adult, or your loader as an import path package.module:loader.")
@click.option("--partition", help="iid, dirichlet or shards.")
@click.option("--alpha", type=float, help="Dirichlet concentration.")
@click.option("--max-train", type=int, help="Use at most this many training samples.")
@click.option("--max-test", type=int, help="Use at most this many test samples.")
@click.option("--model", help="cnn (small, CPU default), paper-cnn, mlp, or your factory as an import path "
              "package.module:factory.")
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
              help="Give nodes a role profile (attack and/or filter): a shipped one (boost, stealth, ... "
                   "see p2pfl/profiles) or a file, e.g. 0,3=boost or 5=my-profile.toml.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: runs/NAME-TIMESTAMP).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None,
              help="Also write per-node scalars (accuracy, attack success, filter norms) as TensorBoard "
                   "event files here (needs p2pfl[tensorboard]).")
@click.option("--processes", is_flag=True, help="One OS process per node instead of one process for all.")
@click.option("--workers", "hosts", type=int, default=None,
              help="Spread the nodes over this many node hosts (OS processes on this machine, or Ray actors "
                   "with --backend ray).")
@click.option("--backend", default="local", show_default=True,
              help="Where the --workers node hosts run: local (OS processes here) or ray (actors of a Ray "
                   "cluster; needs p2pfl[ray]).")
@click.option("--address", "ray_address", default=None,
              help="Ray: the cluster to join (auto: the one `ray start` made here; host:port; ray://host:10001); "
                   "default: $RAY_ADDRESS, a cluster running here, else a private one for this run.")
@click.option("--ray-placement", default="spread", show_default=True,
              help="Ray: spread the hosts over the machines, strict-spread (one per raylet), or pack.")
@click.option("--ray-restarts", type=int, default=1, show_default=True,
              help="Ray: restarts of a host whose process dies (its nodes resume from their checkpoints).")
@click.option("--insecure", is_flag=True,
              help="Ray: let hosts on several machines talk plain ZeroMQ over non-loopback addresses.")
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def run(config_file: str | None, data_dirs: tuple[str, ...], sets: tuple[str, ...], roles: tuple[str, ...],
        out: str | None, overwrite: bool, processes: bool, hosts: int | None, backend: str, ray_address: str | None,
        ray_placement: str, ray_restarts: int, insecure: bool, quiet: bool, verbose: int, **flags: Any) -> None:
    """Run a whole experiment on this machine."""
    setup_logging(verbose, quiet)
    config = build_config(config_file, flags, sets, data_dirs, roles)
    if flags.get("name") is None and config.name == "run":
        config = config.replace(name=default_name(config))
    validate(config)
    out = out or f"runs/{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    search = search_path(data_dirs, config)
    launch.check_backend(backend, hosts=hosts, processes=processes)
    ray_options = None
    if backend == "ray":
        from ..rayhosts import PLACEMENTS, import_ray

        if ray_placement not in PLACEMENTS:
            raise ConfigError("--ray-placement", ray_placement, ", ".join(PLACEMENTS))
        import_ray()  # installed? (before anything is written)
        ray_options = {"address": ray_address, "placement": ray_placement, "restarts": ray_restarts,
                       "insecure": insecure}
    elif ray_address is not None or insecure:
        raise ConfigError("--address" if ray_address is not None else "--insecure", ray_address or True,
                          "only with --backend ray")
    if hosts is not None:
        from ..host import split_blocks

        if processes:
            raise ConfigError("--workers", hosts, "either --workers W or --processes, not both")
        split_blocks(config.nodes, hosts)  # checks W before anything runs
    plan = Plan.build(config, search=search)
    prepare_out(out, overwrite=overwrite)  # refuses to mix into an existing run, before any output
    with _RunView(config, quiet) as view:
        result = launch.run(config, out=out, processes=processes, search=search, progress=view,
                            overwrite=True, plan=plan, hooks=[RecordUpdates()], hosts=hosts, backend=backend,
                            ray_options=ray_options)
    plots = write_run_plots(result) if result.out is not None else []
    if not quiet:
        print_result(result)
        if plots:
            click.echo(f"plots in {plots[0].parent} ({', '.join(p.name for p in plots)})")


__all__ = ["build_config", "parse_role", "print_result", "run"]
