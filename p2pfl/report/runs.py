"""The plots of one run folder (see :mod:`p2pfl.report`) and what they read from it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from ..errors import ConfigError
from ..metrics import read_records
from . import _style as st

log = logging.getLogger(__name__)


# ---- loading -----------------------------------------------------------------------------------
@dataclass
class RunData:
    """What the plots need from a run: settings, summary, records, update statistics."""

    name: str
    config: RunConfig | None
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    adversaries: tuple[int, ...]
    updates: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    folder: Path | None = None

    @classmethod
    def load(cls, folder: str | Path) -> RunData:
        folder = Path(folder)
        summary_path = folder / "summary.json"
        if not summary_path.is_file():
            raise ConfigError("run", str(folder), "a run folder with a summary.json (a finished run)")
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        config = None
        if (folder / "config.toml").is_file():
            try:
                config = RunConfig.from_toml(folder / "config.toml")
            except ConfigError as exc:
                log.warning("%s: config.toml unreadable (%s); plotting without it", folder, exc)
        records = read_records(folder / "metrics.jsonl") if (folder / "metrics.jsonl").is_file() else []
        updates = read_records(folder / "updates.jsonl") if (folder / "updates.jsonl").is_file() else []
        samples: dict[int, dict[int, np.ndarray]] = {}
        for path in sorted((folder / "updates").glob("round-*.npz")):
            try:
                t = int(path.stem.split("-")[1])
                with np.load(path) as z:
                    samples[t] = {int(k.split("_")[1]): z[k] for k in z.files if k.startswith("node_")}
            except (ValueError, OSError, IndexError) as exc:
                log.warning("%s: skipped (%s)", path, exc)
        name = config.name if config is not None else folder.name
        return cls(name=name, config=config, summary=summary, records=records,
                   adversaries=tuple(int(a) for a in summary.get("adversaries", [])),
                   updates=updates, samples=samples, folder=folder)

    @classmethod
    def from_result(cls, result: Any) -> RunData:
        """From a :class:`p2pfl.launch.RunResult` (e.g. of a run without a folder)."""
        return cls(name=result.config.name, config=result.config, summary=result.summary,
                   records=list(result.records), adversaries=tuple(result.adversaries),
                   updates=list(result.extra.get("updates", [])),
                   samples=dict(result.extra.get("update_samples", {})), folder=result.out)

    @property
    def rounds(self) -> list[dict[str, Any]]:
        return self.summary.get("rounds", [])

    @property
    def has_attack_metrics(self) -> bool:
        return any("attack_success_mean" in r for r in self.rounds)

    def topology(self) -> Any:
        """The run's graph, rebuilt from its settings (None if that is impossible here)."""
        if self.config is None:
            return None
        from ..topology import build_topology

        cfg = self.config
        try:
            return build_topology(cfg.topology, cfg.nodes, seed=cfg.seed, **dict(cfg.topology_params))
        except ConfigError as exc:
            log.warning("%s: cannot rebuild topology %r (%s)", self.name, cfg.topology, exc)
            return None

    def subtitle(self) -> str:
        if self.config is None:
            return ""
        c = self.config
        defence = c.defence.name
        attack = f"{c.adversaries} adversar{'y' if c.adversaries == 1 else 'ies'} ({c.attack.name})" \
            if c.adversaries else "no adversaries"
        return (f"{Path(c.topology).stem}, {c.nodes} nodes, {attack}, defence {defence}; "
                f"{c.data.dataset}/{c.train.model}, E={c.train.epochs}")


# ---- run plots ---------------------------------------------------------------------------------
def plot_rounds(run: RunData, path: Path) -> Path | None:
    """Benign accuracy (and attack success) by round, with min-max bands and the adversaries."""
    rows = [row for row in run.rounds if "accuracy_mean" in row]  # evaluated rounds (eval_every)
    if not rows:
        return None
    r = st.col(rows, "round")
    panels = 2 if run.has_attack_metrics else 1
    fig = st.figure(6.0 * panels, 4.6)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    ax.fill_between(r, st.col(rows, "accuracy_min"), st.col(rows, "accuracy_max"), color=st.BENIGN, alpha=0.2,
                    label="benign min–max")
    ax.plot(r, st.col(rows, "accuracy_mean"), color=st.BENIGN, marker="o", ms=3, label="benign mean")
    adv = [rec for rec in run.records if rec.get("role", "benign") != "benign" and "accuracy" in rec]
    if adv:
        ax.scatter([rec["round"] for rec in adv], [rec["accuracy"] for rec in adv], marker="x",
                   color=st.ATTACK, s=30, zorder=3, label="adversaries' own models")
    ax.set(xlabel="round", ylabel="test accuracy (fraction correct)", ylim=(0, 1.02),
           title="clean test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    st.integer_rounds(ax)
    if panels == 2:
        ax = axes[1]
        ax.fill_between(r, st.col(rows, "attack_success_min"), st.col(rows, "attack_success_max"),
                        color=st.ATTACK, alpha=0.15, label="benign min–max")
        ax.plot(r, st.col(rows, "attack_success_mean"), color=st.ATTACK, marker="o", ms=3,
                label="attack success, benign mean")
        if any("target_confidence_mean" in row for row in rows):
            ax.plot(r, st.col(rows, "target_confidence_mean"), color=st.CONF, ls="--",
                    label="target confidence, benign mean")
        adv = [rec for rec in run.records if rec.get("role", "benign") != "benign" and "attack_success" in rec]
        if adv:
            ax.scatter([rec["round"] for rec in adv], [rec["attack_success"] for rec in adv], marker="x",
                       color="black", s=30, zorder=3, label="adversaries' own models")
        ax.axhline(0.9, color="0.5", lw=0.8, ls=":")
        ax.set(xlabel="round", ylabel="share of target examples classified as target",
               ylim=(-0.03, 1.03), title="attack success on benign nodes")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        st.integer_rounds(ax)
    st.title(fig, run, "accuracy and attack success by round")
    return st.save(fig, path)


def plot_hops(run: RunData, path: Path) -> Path | None:
    """Attack success by round, one line per hop distance to the nearest adversary."""
    rows = [row for row in run.rounds if row.get("attack_success_by_hops")]
    if not rows:
        return None
    hops = sorted({int(h) for row in rows for h in row["attack_success_by_hops"]})
    counts: dict[int, int] = {}
    topo = run.topology()
    if topo is not None and run.adversaries:
        dist = topo.hops(run.adversaries)
        counts = {h: int((dist == h).sum()) for h in hops}
    fig = st.figure(7.0, 4.6)
    ax = fig.add_subplot()
    cmap = st.cmap("viridis")
    for k, h in enumerate(hops):
        xs = [row["round"] for row in rows if str(h) in row["attack_success_by_hops"]]
        ys = [row["attack_success_by_hops"][str(h)] for row in rows if str(h) in row["attack_success_by_hops"]]
        label = f"{h} hop{'s' if h != 1 else ''}" + (f" ({st.nodes(counts[h])})" if h in counts else "")
        ax.plot(xs, ys, marker="o", ms=3, color=cmap(k / max(1, len(hops) - 1) * 0.85), label=label)
    ax.set(xlabel="round", ylabel="attack success (benign mean within the group)", ylim=(-0.03, 1.03),
           title="attack success by hop distance to the nearest adversary")
    ax.grid(alpha=0.3)
    ax.legend(title="distance", fontsize=8)
    st.integer_rounds(ax)
    st.title(fig, run, "attack success by distance")
    return st.save(fig, path)


def plot_topology(run: RunData, path: Path) -> Path | None:
    """The graph, adversaries highlighted, benign nodes coloured by their final value."""
    topo = run.topology()
    if topo is None:
        return None
    from .graph import draw

    nodes = run.summary.get("nodes", [])
    key = "attack_success" if any("attack_success" in n for n in nodes) else "accuracy"
    values = {int(n["node"]): float(n[key]) for n in nodes
              if key in n and n.get("role", "benign") == "benign"}
    label = "final attack success" if key == "attack_success" else "final test accuracy"
    title = f"{run.name}: {topo.name}, {topo.n} nodes, adversaries in red"
    return draw(topo, path, adversaries=run.adversaries, values=values or None, title=title,
                value_label=label)


def _sampled_rounds(run: RunData) -> list[int]:
    rounds = sorted(run.samples)
    if len(rounds) <= 3:
        return rounds
    return [rounds[0], rounds[1], rounds[-1]]


def plot_update_histograms(run: RunData, path: Path) -> Path | None:
    """Histograms of benign vs malicious update values (the paper's weight-update view)."""
    from matplotlib.ticker import MaxNLocator

    rounds = _sampled_rounds(run)
    if not rounds:
        return None
    adv = set(run.adversaries)
    fig = st.figure(4.6 * len(rounds), 4.2)
    axes = fig.subplots(1, len(rounds), squeeze=False)[0]
    for ax, t in zip(axes, rounds, strict=True):
        per_node = run.samples[t]
        benign = [v for i, v in per_node.items() if i not in adv]
        bad = [v for i, v in per_node.items() if i in adv]
        pooled = np.concatenate(benign + bad)
        pooled = pooled[np.isfinite(pooled)]
        if pooled.size == 0:
            continue
        lo, hi = float(pooled.min()), float(pooled.max())
        if lo == hi:
            lo, hi = lo - 1e-6, hi + 1e-6
        bins = np.linspace(lo, hi, 81)
        if benign:
            dens, _ = np.histogram(np.concatenate(benign), bins=bins, density=True)
            ax.stairs(dens, bins, fill=True, alpha=0.5, color=st.BENIGN, label=f"benign ({st.nodes(len(benign))})")
        if bad:
            dens, _ = np.histogram(np.concatenate(bad), bins=bins, density=True)
            ax.stairs(dens, bins, lw=1.6, color=st.ATTACK, label=f"malicious ({st.nodes(len(bad))})")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        ax.set(xlabel="update value (weight change in the round)", ylabel="density (log scale)",
               title=f"round {t}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    n_coords = len(next(iter(run.samples[rounds[0]].values())))
    st.title(fig, run, f"weight-update distribution ({n_coords:,} sampled coordinates per node)")
    return st.save(fig, path)


def _distance_rows(run: RunData) -> tuple[list[dict[str, Any]], str]:
    """Per round: benign spread and each adversary's distances; from updates, else attack info."""
    adv = set(run.adversaries)
    out: list[dict[str, Any]] = []
    if run.updates:
        for row in run.updates:
            item: dict[str, Any] = {"round": row["round"], "adv": {}}
            if "benign_spread" in row:
                item["benign"] = (row["benign_spread"]["min"], row["benign_spread"]["max"])
            for i, entry in row.get("nodes", {}).items():
                if int(i) in adv and "dist_min" in entry:
                    item["adv"][int(i)] = (entry["dist_min"], entry["dist_max"])
            out.append(item)
        return out, "update = announced model − model at round start"
    # the attacks' stealth statistics describe round t-1 (what the adversary saw in round t)
    by_round: dict[int, dict[str, Any]] = {}
    for rec in run.records:
        info = rec.get("attack") or {}
        if "prev_dist_min" not in info:
            continue
        t = int(rec["round"]) - 1
        item = by_round.setdefault(t, {"round": t, "adv": {}})
        item["adv"][int(rec["node"])] = (info["prev_dist_min"], info["prev_dist_max"])
        if "benign_min" in info:
            lo, hi = item.get("benign", (np.inf, -np.inf))
            item["benign"] = (min(lo, info["benign_min"]), max(hi, info["benign_max"]))
    return [by_round[t] for t in sorted(by_round)], "the adversaries' stealth statistics (their neighbours' deltas)"


def plot_distances(run: RunData, path: Path) -> Path | None:
    """The paper's L2 distance spread: benign pairwise range vs adversaries' range, by round."""
    rows, source = _distance_rows(run)
    if not rows or not any(r["adv"] or "benign" in r for r in rows):
        return None
    fig = st.figure(7.0, 4.6)
    ax = fig.add_subplot()
    br = [r for r in rows if "benign" in r]
    if br:
        xs = np.array([r["round"] for r in br], dtype=float)
        ax.fill_between(xs, [r["benign"][0] for r in br], [r["benign"][1] for r in br], color=st.BENIGN,
                        alpha=0.3, label="between benign updates (min–max)")
    advs = sorted({a for r in rows for a in r["adv"]})
    for k, a in enumerate(advs):
        pts = [(r["round"], *r["adv"][a]) for r in rows if a in r["adv"]]
        xs = np.array([p[0] for p in pts], dtype=float) + 0.08 * (k - (len(advs) - 1) / 2)
        lo = np.array([p[1] for p in pts])
        hi = np.array([p[2] for p in pts])
        ax.errorbar(xs, (lo + hi) / 2, yerr=[(hi - lo) / 2, (hi - lo) / 2], fmt="none", ecolor=st.ATTACK,
                    elinewidth=2.5, capsize=3, label="adversary to benign (min–max)" if k == 0 else None)
    values = [v for r in rows for v in ((*r.get("benign", ()),) + tuple(x for a in r["adv"].values() for x in a))
              if v > 0]
    log_scale = bool(values) and max(values) / min(values) > 20
    if log_scale:
        from matplotlib.ticker import ScalarFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set(xlabel="round", ylabel="L2 distance between updates" + (" (log scale)" if log_scale else ""),
           title=source)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    st.integer_rounds(ax)
    st.title(fig, run, "L2 distance spread of weight updates")
    return st.save(fig, path)


def timed(config: RunConfig | None) -> bool:
    """Whether wall-clock time is part of what a run studies: async mode, slow nodes or churn."""
    if config is None:
        return False
    return (config.mode == "async" or config.speed != 1.0 or bool(config.churn)
            or any(r.speed not in (None, 1.0) for r in config.roles))


def plot_wall(run: RunData, path: Path) -> Path | None:
    """Benign accuracy (and attack success) against wall-clock seconds since the nodes started.

    Written for runs where time matters (:func:`timed`); other runs keep their plot set.
    """
    if not timed(run.config):
        return None
    recs = [r for r in run.records if r.get("role", "benign") == "benign" and "wall" in r and "accuracy" in r]
    if not recs:
        return None
    rows = [row for row in run.rounds if "accuracy_mean" in row and "wall_mean" in row]
    keys = [("accuracy", "test accuracy (fraction correct)", st.BENIGN)]
    if any("attack_success" in r for r in recs):
        keys.append(("attack_success", "share of target examples classified as target", st.ATTACK))
    fig = st.figure(6.0 * len(keys), 4.6)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, (key, label, color) in zip(axes, keys, strict=True):
        pts = [(float(r["wall"]), float(r[key])) for r in recs if key in r]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.35, color=color,
                   label="one benign node's evaluation")
        if rows and f"{key}_mean" in rows[0]:
            ax.plot(st.col(rows, "wall_mean"), st.col(rows, f"{key}_mean"), color="black", marker="o", ms=3,
                    label="benign mean per round/tick (at its mean wall time)")
        ax.set(xlabel="wall-clock time since start (s)", ylabel=label, ylim=(-0.03, 1.03),
               title=f"{key.replace('_', ' ')} against wall time")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    mode = run.config.mode if run.config is not None else "sync"
    st.title(fig, run, f"accuracy against wall-clock time ({mode} mode)")
    return st.save(fig, path)


def write_run_plots(run: str | Path | RunData | Any, dest: str | Path | None = None) -> list[Path]:
    """Write every plot a run supports; return the paths written.

    ``run`` is a run folder, a :class:`RunData` or a :class:`p2pfl.launch.RunResult`;
    ``dest`` defaults to ``<run folder>/plots``. This is what ``p2pfl run`` calls at the end.
    """
    data = run if isinstance(run, RunData) else RunData.load(run) if isinstance(run, str | Path) \
        else RunData.from_result(run)
    if dest is None:
        if data.folder is None:
            raise ConfigError("dest", None, "a folder for the plots (the run has no folder)")
        dest = data.folder / st.PLOTS_DIR
    dest = Path(dest)
    written = []
    for fn, name in ((plot_rounds, "rounds.png"), (plot_hops, "hops.png"),
                     (plot_topology, "topology.png"), (plot_update_histograms, "updates.png"),
                     (plot_distances, "distances.png"), (plot_wall, "wall.png")):
        path = fn(data, dest / name)
        if path is not None:
            written.append(Path(path))
    return written


__all__ = ["RunData", "plot_distances", "plot_hops", "plot_rounds", "plot_topology", "plot_update_histograms",
           "plot_wall", "timed", "write_run_plots"]
