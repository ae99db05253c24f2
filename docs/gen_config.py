"""Write docs/configuration.md from the settings classes of p2pfl.

    python docs/gen_config.py            # rewrite docs/configuration.md
    python docs/gen_config.py --check    # exit status 1 if the file is out of date

The list of settings and their defaults come from the code: the frozen dataclasses of
``p2pfl.config`` (every field and its default), the filter registry ``p2pfl.filters.FILTERS``
(every filter's ``PARAMS`` and their defaults) and the attack registry ``p2pfl.attacks``
(which attack takes which parameter). What a setting means and which values it accepts is
written here, next to the name it belongs to; a setting added to the code without a line
here makes this script (and ``tests/test_docs.py``) fail with its name, so the page cannot
silently fall behind the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "configuration.md"
if str(HERE.parent) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(HERE.parent))

from p2pfl import config, filters  # noqa: E402
from p2pfl.attacks import params as attacks  # noqa: E402  (the parameter table and its option tuples)
from p2pfl.attacks.backdoor import BACKDOOR_PARAMS  # noqa: E402
from p2pfl.topology import TOPOLOGIES  # noqa: E402


def one_of(values: tuple[str, ...]) -> str:
    return "one of " + ", ".join(f"`{v}`" for v in values)


# ---- what each setting means: (allowed values, meaning) ---------------------------------------------
TOP: dict[str, tuple[str, str]] = {
    "name": ("a non-empty string", "Run name; `p2pfl run` derives one from the settings when it is not given."),
    "topology": (one_of(TOPOLOGIES) + ", or a path to a topology `.toml` file",
                 "The communication graph (`p2pfl topology show NAME` draws it)."),
    "topology_params": ("a table of numbers", "Generator parameters, e.g. `k`, `p` (small-world), "
                        "`degree` (random-regular), `p` (erdos-renyi), `rows`, `cols` (torus)."),
    "nodes": ("integer, 2 to 100000", "Number of nodes; when not given, the topology file's `nodes`, else 10."),
    "rounds": ("integer, 1 to 1000000", "Synchronous rounds; in async mode the number of ticks of each node."),
    "seed": ("integer, 0 to 2^32 - 1", "Seeds everything: graph, data split, initial model, adversary placement, "
             "backdoor, faults."),
    "mixing": (one_of(config.MIXING_RULES), "Mixing weights W: Metropolis-Hastings (symmetric, doubly "
               "stochastic) or 1/(deg + 1)."),
    "adversaries": ("integer, 0 to nodes - 1 (and at most the nodes not listed in `[[roles]]`)",
                    "How many nodes run `[attack]`."),
    "placement": (one_of(config.PLACEMENTS), "Where the adversaries sit: a seeded sample, highest degree "
                  "first, spread out (farthest-point), or a connected cluster."),
    "eval_every": ("integer >= 1", "Evaluate every k rounds (the last round always)."),
    "mode": (one_of(config.MODES), "`sync`: lock-step rounds; `async`: every node runs `rounds` ticks on its "
             "own clock (see [protocol.md](protocol.md#rounds-and-ticks))."),
    "speed": ("number in (0, 1]", "Compute speed of every node: after training a node sleeps (1/speed - 1) "
              "times its training time. A `[[roles]]` entry's `speed` wins."),
    "time_budget": ("number >= 0; non-zero only with `mode = \"async\"`",
                    "Async: a node stops ticking after this many seconds (0: run all ticks)."),
    "data": ("a table", "[`[data]`](#data)"),
    "train": ("a table", "[`[train]`](#train)"),
    "attack": ("a table, or an attack name", "[`[attack]`](#attack)"),
    "defence": ("a table, or a filter name", "[`[defence]`](#defence)"),
    "net": ("a table", "[`[net]`](#net)"),
    "report": ("a table", "[`[report]`](#report)"),
    "roles": ("a list of `[[roles]]` tables", "[`[[roles]]`](#roles)"),
    "churn": ("a list of `[[churn]]` tables; only with `mode = \"async\"`", "[`[[churn]]`](#churn)"),
}

DATA: dict[str, tuple[str, str]] = {
    "dataset": (one_of(config.DATASETS), "Fashion-MNIST (images) or UCI Adult (tabular; use `train.model = "
                "\"mlp\"`)."),
    "partition": (one_of(config.PARTITIONS), "How the training set is split among nodes: uniformly, by a "
                  "Dirichlet draw over classes, or in class shards."),
    "alpha": ("number > 0", "Dirichlet concentration (`partition = \"dirichlet\"`); small is more skewed."),
    "shards_per_node": ("integer >= 1", "Class shards per node (`partition = \"shards\"`)."),
    "max_train": ("integer >= 10, or unset", "Use at most this many training examples (unset: all)."),
    "max_test": ("integer >= 10, or unset", "Use at most this many test examples (unset: all)."),
    "test_fraction": ("number in [0.01, 0.9]", "Share of the embedded 10,000-image Fashion-MNIST split "
                      "kept as the test set (stratified by class); the full sets use their own test split."),
    "data_dir": ("a folder, or unset", "Searched first for the data files (then `$P2PFL_DATA`, then "
                 "`~/.cache/p2pfl`); not part of the settings digest, so it may differ per machine."),
    "download": ("`true` or `false`", "Fetch Fashion-MNIST from its official mirror (sha256 checked) when "
                 "it is not found."),
    "validation_fraction": ("number in [0, 0.5]", "Share of each node's shard kept for local validation "
                            "(the `accuracy-check` filter uses it)."),
}

TRAIN: dict[str, tuple[str, str]] = {
    "model": (one_of(config.MODELS), "`cnn`: a small CPU-sized CNN; `paper-cnn`: the 3.38M-parameter CNN of "
              "Bhagoji et al.; `mlp`: a multilayer perceptron; `linear`: logistic regression (the smallest, for "
              "protocol-scale runs); or your factory as `\"package.module:factory\"` (README: Your own model and data)."),
    "epochs": ("integer, 0 to 1000", "Local epochs per round (0: no training, gossip only)."),
    "batch_size": ("integer >= 1", "Minibatch size."),
    "lr": ("number > 0", "Learning rate."),
    "optimizer": (one_of(config.OPTIMIZERS), "Local optimiser."),
    "momentum": ("number in [0, 1]; non-zero only with `optimizer = \"sgd\"`", "SGD momentum."),
    "weight_decay": ("number >= 0", "L2 weight decay."),
    "keep_optimizer_state": ("`true` or `false`", "Keep the optimiser's state (e.g. Adam moments) across "
                             "rounds instead of starting it afresh each round."),
}

NET: dict[str, tuple[str, str]] = {
    "transport": (one_of(config.TRANSPORTS), "ZeroMQ transport of in-process and `--processes` runs."),
    "host": ("a host name or IP address", "Address the nodes of `p2pfl run` bind on."),
    "round_timeout": ("seconds > 0", "Longest wait for a neighbour's delta in one round; then the node "
                      "goes on without it. Also bounds the final catch-up and the wait for `done`."),
    "connect_timeout": ("seconds > 0", "Longest wait for every neighbour's hello before round 1."),
    "send_timeout": ("seconds > 0", "A send that finds no room for this long is dropped (and repaired "
                     "by a snapshot later)."),
    "linger_ms": ("integer >= 0", "How long closing a socket waits for queued messages."),
    "hwm": ("integer >= 1", "ZeroMQ high-water mark (messages) of every socket."),
    "max_message_mb": ("number >= 0", "Largest message a node accepts, in MiB; 0: derived from the model "
                       "size (8 bytes per parameter + 64 KiB)."),
    "compression": ("number in [0, 1]", "Fraction of coordinates a delta carries (top-k, the rest stays "
                    "in the public copy's difference and is sent later); 0: dense deltas."),
    "window": ("integer, 1 to 1000", "How many rounds ahead of its own a node buffers a neighbour's delta."),
    "gap_grace": ("seconds > 0", "How long a gap or a silent neighbour is tolerated before a snapshot is "
                  "requested (and between repeated requests, hellos and dones)."),
    "dead_after": ("seconds > 0", "A neighbour whose link is down, with nothing heard since, for this long "
                   "is skipped."),
    "max_abs": ("number > 0", "Largest magnitude accepted in a received model (2x that in a delta); beyond: "
                "rejected as `magnitude`."),
    "send_queue": ("integer, 1 to 100000", "Messages queued per neighbour; a further one is dropped and "
                   "the link repaired later."),
    "loss": ("probability in [0, 1]", "Fault injection: a message is dropped."),
    "duplicate": ("probability in [0, 1]", "Fault injection: a message is delivered twice."),
    "reorder": ("probability in [0, 1]", "Fault injection: a message is held back behind the next one on "
                "its link."),
    "delay_ms": ("number, 0 to 3600000", "Fault injection: fixed one-way delay."),
    "jitter_ms": ("number, 0 to 3600000", "Fault injection: uniform extra delay in [0, jitter_ms)."),
    "fault_seed": ("integer, 0 to 2^32 - 1, or unset", "Seed of the injected faults (unset: the run's seed)."),
    "fanout": ("integer, 0 to 100000", "Async: neighbours a node announces to per tick, drawn at random "
               "(seeded per node); 0: all."),
    "staleness": ("number, 0 to 100", "Async: a neighbour's weight is W_ij (1 + age)^-a, age in the "
                  "node's own ticks since that neighbour's copy changed; the own weight absorbs the rest."),
    "tick_period": ("seconds, 0 to 3600", "Async: a node starts a tick at most this often (0: as fast as "
                    "it trains)."),
    "merge_wait": ("seconds, 0 to 3600", "Async: after announcing, wait up to this long for `merge_quorum` of "
                   "the live neighbours to have announced this tick (or a later one) before merging (0: merge at "
                   "once). A bounded, partial barrier: it closes most of async's lag behind sync."),
    "merge_quorum": ("number in (0, 1]", "Async: the share of live neighbours `merge_wait` waits for."),
    "merge_order": ("one of `train-first`, `merge-first`", "Async: train, announce, then merge the latest copies "
                    "(default), or merge first, then train and announce (gossip learning's order)."),
    "link_delay_ms": ("a list of `\"i-j:ms\"` (both ways) or `\"i>j:ms\"` (i to j only)",
                      "Extra one-way delay on given links, added to `delay_ms`."),
}

ROLE: dict[str, tuple[str, str]] = {
    "nodes": ("a non-empty list of node ids", "The nodes this entry applies to (each node in at most one "
              "entry)."),
    "role": ("a string", "Label in the metrics; default: the profile's file name, else the attack's name or "
             "`benign`."),
    "attack": ("a table as `[attack]`", "Their attack; a listed node whose attack is not `none` is an "
               "adversary, one with `none` is benign and never chosen by `placement`."),
    "defence": ("a table as `[defence]`", "Their filter, instead of the run's."),
    "speed": ("number in (0, 1]", "Their compute speed, instead of the run's `speed`."),
}

REPORT: dict[str, tuple[str, str]] = {
    "tensorboard": ("a folder path", "Also write per-node scalars by round (accuracy, attack success, filter "
                    "norms in and out) as TensorBoard event files here; needs `p2pfl[tensorboard]` "
                    "(`--tensorboard DIR`)."),
}

CHURN: dict[str, tuple[str, str]] = {
    "nodes": ("a non-empty list of node ids", "The nodes that leave (each node in at most one entry)."),
    "leave": ("integer >= 1", "The tick at which they leave: they stop training, announcing and answering, "
              "and close their sockets."),
    "rejoin": ("integer > leave, or 0", "The tick at which they come back (hello, snapshots, restart from "
               "their neighbours' models); 0: gone for good."),
}

# attack parameters: (allowed values, default, meaning)
ATTACK: dict[str, tuple[str, str, str]] = {
    "lam": ("number > 0", "deg + 1 (boost, stealth, altmin, replace); 1 (signflip, labelflip)",
            "Boost factor, or the weight of the backdoor loss (stealth, altmin)."),
    "rho": ("number >= 0", "1e-4", "Weight of the distance term rho/2 ‖w - w_ref‖^2."),
    "ls": ("integer >= 1", "10", "Benign steps per malicious step (altmin)."),
    "mal_epochs": ("integer >= 1", "boost: 5; stealth, altmin, replace, labelflip: 2 x train.epochs; "
                   "pgd, neurotoxin, scale, adaptive: train.epochs",
                   "boost: least number of steps on the auxiliary set; the others: epochs over the own shard."),
    "tol": ("number >= 0", "boost: 1e-6; stealth, altmin: 0",
            "boost trains until the auxiliary loss is at most `tol`; stealth and altmin skip a malicious step "
            "once it is."),
    "max_steps": ("integer >= 1", "1000", "Cap on boost's steps on the auxiliary set."),
    "mal_optimizer": (one_of(attacks.MAL_OPTIMIZERS), "`node`",
                      "Optimiser of the malicious steps (`node`: the nodes' own)."),
    "mal_lr": ("number > 0", "train.lr", "Learning rate of the malicious steps."),
    "estimate": (one_of(attacks.ESTIMATES), "`none`",
                 "Estimate the benign neighbours' update from the last round: start from it (`pre`) or "
                 "subtract it before boosting (`post`)."),
    "source": (one_of(attacks.SOURCES), "`updates`",
               "Where the neighbours' last updates come from: their announced model minus the round's "
               "start (`updates`) or the deltas they sent (`deltas`)."),
    "collude": ("`true` or `false`", "`false`", "Adversaries of one in-process run pool their estimates."),
    "constrain": (one_of(attacks.CONSTRAINTS), "`self`",
                  "Reference of the distance term: the node's own honest update, or its neighbours' mean."),
    "delay": ("integer >= 0", "0", "Honest rounds before the attack starts."),
    "equivocate": ("`true` or `false`", "`false`", "Announce a different model to each neighbour, scaled "
                   "to its mixing weight."),
    "sigma": ("number > 0", "the RMS coordinate of the node's honest update", "Noise scale (gaussian)."),
    "z": ("number >= 0", "1.0", "Standard deviations below the mean (alie)."),
    "eps": ("number > 0", "ipm: 0.1; dissensus: 1.0; pgd, neurotoxin: unset (use `eps_rel`)",
            "ipm's scale of the negated mean; dissensus' push; pgd's absolute ball radius."),
    "eps_rel": ("number > 0", "1.0", "pgd, neurotoxin: ball radius as a multiple of the honest update's norm "
                "(or of the distance-spread margin with `eps_from = \"spread\"`)."),
    "eps_from": (one_of(attacks.EPS_FROM), "`norm`", "What `eps_rel` multiplies."),
    "ref": (one_of(attacks.REFS), "`start`", "Centre of pgd's ball: the round's start x, or x + own honest update."),
    "norm": (one_of(attacks.NORMS), "`l2`", "Norm of pgd's ball."),
    "project_every": ("integer >= 1", "1", "Project every this many steps (and at the end)."),
    "ratio": ("number in (0, 1)", "0.1", "neurotoxin: share of coordinates (the benign top) left untouched."),
    "mask_from": (one_of(attacks.MASK_FROM), "`own`", "neurotoxin: the benign direction its mask comes from."),
    "alpha": ("number in (0, 1]", "0.7", "scale: weight of the backdoor loss against the anomaly term."),
    "gamma": ("number > 0", "1 / W_jm per neighbour j", "scale: the scale factor."),
    "clip_to": ("`auto` or a number > 0", "unset", "scale: cap the announced update at an estimated clip "
                "radius."),
    "budget": ("number > 0", "scale: unset; adaptive: 1.0",
               "scale: cap at `budget` x the honest update's norm; adaptive: multiple of the estimated clip "
               "radius it spends."),
    "perturb": (one_of(attacks.PERTURBATIONS), "`std`", "minmax, minsum: the direction of the deviation."),
    "gamma_init": ("number > 0", "10", "minmax, minsum: start of the search for the deviation's size."),
    "kappa": ("number in (0, 1]", "0.1", "adaptive: the receiving filter's kappa."),
    "tau": ("`auto` or a number > 0", "`auto`", "adaptive: the receiving filter's clip radius rule."),
    "support": ("number in (0, 1]", "kappa", "adaptive: share of coordinates it concentrates on."),
    "target": ("`random`, or `S:T` (two different classes)", "`random`",
               "The backdoor's target label (and source class)."),
    "aux_size": ("integer >= 1", "1", "r, the number of auxiliary examples (single backdoor)."),
    "backdoor": ("one of `single`, `class`, `trigger`", "`single`", "Backdoor kind (see "
                 "[threat-model.md](threat-model.md#what-the-adversary-wants))."),
    "poison_fraction": ("number in (0, 1]", "0.5", "trigger: share of each own batch that is stamped."),
    "trigger_size": ("integer >= 1", "4", "trigger: side of the square patch, in pixels."),
    "trigger_value": ("a number", "the largest pixel value", "trigger: value of the patch's pixels."),
    "trigger_pos": ("one of `br`, `bl`, `tr`, `tl`", "`br`", "trigger: corner of the patch."),
}

# filter parameters: (allowed values, meaning); defaults come from each filter's PARAMS
DEFENCE: dict[str, tuple[str, str]] = {
    "tau": ("`auto` or a number > 0", "Clip radius; `auto`: chosen each round by `tau_rule` (clip, topk-clip) "
            "or by the ClippedGossip rule (clipped-gossip)."),
    "tau_rule": (one_of(filters.TAU_RULES), "How `auto` picks tau (see [filters.md](filters.md#clip))."),
    "tau_scale": ("number > 0", "Multiplier of the `own` rule."),
    "tau_history": ("integer >= 1", "Radii remembered for rounds without an own update."),
    "kappa": ("number in (0, 1]", "Fraction of coordinates kept, k = max(1, round(kappa d))."),
    "mode": (one_of(filters.TOPK_MODES), "Top-k of the aggregate, or of each proposal."),
    "delta": ("number in (0, 1), or unset", "Weight share that may be clipped (unset: clip the largest)."),
    "gamma": ("number > 0", "Acceptance radius, relative to ‖z_i‖."),
    "kappa_b": ("number >= 0", "Decay rate of the acceptance radius over the run."),
    "threshold": ("number in [0, 1]", "Tolerated drop of validation accuracy."),
    "b": ("integer >= 0", "Values trimmed at each end, per coordinate."),
    "f": ("integer >= 0", "Assumed number of Byzantine neighbours."),
    "multi": ("integer >= 1, or unset", "Candidates averaged (unset: n - f)."),
}


# ---- rendering --------------------------------------------------------------------------------------
def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple | list) and not value:
        return "none"
    if isinstance(value, dict) or (hasattr(value, "items") and not value):
        return "empty"
    return f"`{value}`"


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return None if dataclasses.is_dataclass(value) else value
    return "(required)"


def _table(cls: type, docs: dict[str, tuple[str, str]], prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    missing = [n for n in names if n not in docs]
    stale = [n for n in docs if n not in names]
    if missing or stale:
        raise SystemExit(f"docs/gen_config.py: {cls.__name__}: describe {missing}, drop {stale}")
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        allowed, meaning = docs[f.name]
        default = _field_default(f)
        shown = "required" if default == "(required)" else ("-" if default is None else _default(default))
        rows.append(f"| `{prefix}{f.name}` | {shown} | {allowed} | {meaning} |")
    return rows


def _attack_rows() -> list[str]:
    accepted: dict[str, list[str]] = {}
    for name in attacks.ATTACKS:
        for key in attacks.PARAMS[name]:
            accepted.setdefault(key, []).append(name)
    plan_params = ("target", "aux_size", *BACKDOOR_PARAMS)
    keys = [*accepted, *(k for k in plan_params if k not in accepted)]
    missing = [k for k in keys if k not in ATTACK]
    stale = [k for k in ATTACK if k not in keys]
    if missing or stale:
        raise SystemExit(f"docs/gen_config.py: attack parameters: describe {missing}, drop {stale}")
    rows = ["| key | taken by | default | allowed | meaning |", "|---|---|---|---|---|"]
    for key in keys:
        allowed, default, meaning = ATTACK[key]
        users = "every attack" if key in plan_params else ", ".join(accepted[key])
        rows.append(f"| `attack.{key}` | {users} | {default} | {allowed} | {meaning} |")
    return rows


def _defence_rows() -> list[str]:
    taken: dict[str, list[tuple[str, Any]]] = {}
    for name, cls in filters.FILTERS.items():
        for key, default in cls.PARAMS.items():
            taken.setdefault(key, []).append((name, default))
    missing = [k for k in taken if k not in DEFENCE]
    stale = [k for k in DEFENCE if k not in taken]
    if missing or stale:
        raise SystemExit(f"docs/gen_config.py: filter parameters: describe {missing}, drop {stale}")
    rows = ["| key | taken by (default) | allowed | meaning |", "|---|---|---|---|"]
    for key, users in taken.items():
        allowed, meaning = DEFENCE[key]
        by = ", ".join(f"{name} ({_default(default)})" for name, default in users)
        rows.append(f"| `defence.{key}` | {by} | {allowed} | {meaning} |")
    return rows


def render() -> str:
    out = [
        "# Configuration",
        "",
        "<!-- Generated by `python docs/gen_config.py` from the settings classes in p2pfl.config,",
        "     p2pfl.filters and p2pfl.attacks; do not edit by hand (tests/test_docs.py checks it). -->",
        "",
        "Every setting of a run, with its default and the values it accepts. A run reads them from",
        "a TOML file (`p2pfl run --config FILE`), from command-line flags (`--nodes 10`,",
        "`--defence topk-clip`, ...), from `--set KEY=VALUE` for any key below (`--set train.epochs=2`,",
        "`--set attack.lam=5`, `--set net.loss=0.1`), or from Python (`Experiment(nodes=6, ...)`,",
        "`RunConfig(...)`). Later sources win: file, then flags and `--set`.",
        "",
        "Unknown keys are errors, never ignored; a bad value stops the run before anything starts,",
        "with one line naming the key and what is allowed:",
        "",
        "```",
        "$ p2pfl run --set train.optimizer=adamw",
        "p2pfl: error: train.optimizer: 'adamw' is invalid; one of adam, sgd",
        "```",
        "",
        "Every node of an experiment must hold the same settings: nodes compare a digest of them",
        "at their handshake (all but `name`, `data.data_dir` and `data.download`, which may differ",
        "per machine). The run folder's `config.toml` holds the resolved settings, so",
        "`p2pfl run --config runs/X/config.toml` repeats a run.",
        "",
        "## Top level",
        "",
        *_table(config.RunConfig, TOP, ""),
        "",
        "## data",
        "",
        "`[data]`: which data set, how it is split among the nodes, where it is found.",
        "",
        *_table(config.DataConfig, DATA, "data."),
        "",
        "## train",
        "",
        "`[train]`: local training of every node.",
        "",
        *_table(config.TrainConfig, TRAIN, "train."),
        "",
        "## attack",
        "",
        "`[attack]`: what the adversaries do. `name` is one of "
        + ", ".join(f"`{a}`" for a in attacks.ATTACKS)
        + " (default `\"none\"`: adversaries behave honestly); every other key is a parameter of that",
        "attack, and a parameter the attack does not take is an error. The attacks are described in",
        "[threat-model.md](threat-model.md).",
        "",
        *_attack_rows(),
        "",
        "## defence",
        "",
        "`[defence]`: the filter every benign node applies to what it receives. `name` is one of "
        + ", ".join(f"`{f}`" for f in filters.FILTERS)
        + " (default `\"none\"`), or several names separated by commas (a chain, see",
        "[filters.md](filters.md#chains)); every other key is a parameter, given to each filter of",
        "the chain that takes it. The filters are described in [filters.md](filters.md).",
        "",
        *_defence_rows(),
        "",
        "## net",
        "",
        "`[net]`: sockets, timeouts, limits, fault injection and async mode.",
        "",
        *_table(config.NetConfig, NET, "net."),
        "",
        "## report",
        "",
        "`[report]`: outputs besides the run folder; per machine, so not compared between nodes.",
        "",
        *_table(config.ReportConfig, REPORT, "report."),
        "",
        "## roles",
        "",
        "`[[roles]]`: nodes with their own attack, filter or speed. Besides the keys below, an",
        "entry may name a `profile`: a TOML file with `role`, `description`, `speed`, `[attack]` and",
        "`[defence]` (the built-in ones are `benign`, `boost`, `stealth`, `altmin`, ...; a path",
        "to a `.toml` file works too); keys given in the entry win over the profile's. On the",
        "command line: `--role 0,3=boost`.",
        "",
        *_table(config.RoleConfig, ROLE, ""),
        "",
        "## churn",
        "",
        "`[[churn]]` (async mode only): nodes that leave and come back.",
        "",
        *_table(config.ChurnConfig, CHURN, ""),
        "",
        "## deployment",
        "",
        "A deployment file (`p2pfl node --deployment FILE`) is a run file plus a `[deployment]`",
        "table; see [deployment.md](deployment.md).",
        "",
        "| key | allowed | meaning |",
        "|---|---|---|",
        "| `deployment.nodes` | a table `\"ID\" = \"host:port\"` for every node 0..nodes-1 | Where each node "
        "listens (and its neighbours dial it). |",
        "| `deployment.keys_dir` | a folder made by `p2pfl keygen`, relative to the file | CurveZMQ keys; "
        "unset: no encryption or authentication. |",
        "| `deployment.keys` | a table `\"ID\" = \"z85 public key\"` | Public keys listed in the file, so a "
        "machine needs only its own secret key in `keys_dir`. |",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.is_file() else ""
        if current != text:
            print(f"{OUT} is out of date: run python docs/gen_config.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
