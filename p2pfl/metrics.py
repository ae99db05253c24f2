"""Per-round records of every node, and the run summary built from them.

A record is one JSON object per node per round (``metrics.jsonl``): ``round``, ``tick``
(the same number; in async mode the node's own tick), ``wall`` (seconds since the node
started the run), ``node``, ``role``, the node's evaluation (``accuracy``, ``loss``, attack metrics when an auxiliary
set exists), what it heard, what it rejected, timings and filter statistics.
``summary.json`` aggregates benign nodes per round and adds a ``final`` object.
:class:`TensorBoardWriter` turns the same records into TensorBoard event files.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from .errors import P2PFLError

log = logging.getLogger(__name__)

# Per-node values that summaries aggregate over benign nodes (mean/min/max), when present.
AGGREGATED = ("accuracy", "attack_success", "target_confidence")


class MetricsWriter:
    """Append-only JSON-lines writer, flushed per record so a crash loses nothing written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO | None = self.path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path} is closed")
        self._fh.write(json.dumps(record, separators=(",", ":"), default=_jsonable) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics.jsonl file; a truncated last line (crash mid-write) is skipped."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _stats(values: list[float], key: str) -> dict[str, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {}
    return {f"{key}_mean": sum(vals) / len(vals), f"{key}_min": min(vals), f"{key}_max": max(vals)}


def _group_mean(benign: list[Mapping[str, Any]], groups_of: Mapping[int, int]) -> dict[str, float]:
    groups: dict[int, list[float]] = defaultdict(list)
    for x in benign:
        g = groups_of.get(int(x["node"]))
        if g is not None and "attack_success" in x:
            groups[g].append(float(x["attack_success"]))
    return {str(g): sum(v) / len(v) for g, v in sorted(groups.items())}


def _stealth_counts(rounds: list[Mapping[str, Any]]) -> dict[str, float]:
    """Rounds in which the adversaries passed the distance-spread test, of those measured,
    and the mean norm ratio and announced accuracy over the rounds the attack was active.

    A round counts as passed when every adversary's flag is 1 (the per-round value is the
    mean over adversaries). ``norm_ratio_mean``/``_max``: the adversaries' update norm over
    their benign update norm (per-round mean over adversaries), over the rounds in which
    they attacked (``active`` > 0; delayed rounds are honest and would pull it towards 1);
    ``announced_acc_mean``: the announced models' clean accuracy over the same rounds.
    """
    out: dict[str, float] = {}
    for key, name in (("prev_update_within", "update"), ("prev_within", "delta")):
        flags = [row["attack"][key] for row in rounds if key in row.get("attack", {})]
        if flags:
            out[f"{name}_rounds_measured"] = len(flags)
            out[f"{name}_rounds_within_benign"] = sum(1 for f in flags if f >= 1.0)
    active = [row["attack"] for row in rounds
              if isinstance(row.get("attack"), Mapping) and row["attack"].get("active", 1.0) > 0]
    ratios = [a["norm_ratio"] for a in active if "norm_ratio" in a]
    if ratios:
        out["norm_ratio_mean"] = sum(ratios) / len(ratios)
        out["norm_ratio_max"] = max(ratios)
    accs = [a["announced_acc"] for a in active if "announced_acc" in a]
    if accs:
        out["announced_acc_mean"] = sum(accs) / len(accs)
    return out


def summarize(
    records: Iterable[Mapping[str, Any]],
    *,
    hops: Mapping[int, int] | None = None,
    malicious_neighbours: Mapping[int, int] | None = None,
    extra: Mapping[str, Any] | None = None,
    last_per_node: bool = False,
) -> dict[str, Any]:
    """Summarise records: per round, mean/min/max over benign nodes of each aggregated value.

    ``hops`` (node -> hop distance to the nearest adversary) adds ``attack_success_by_hops``
    and ``malicious_neighbours`` (node -> how many of its neighbours are adversaries) adds
    ``attack_success_by_malicious_neighbours`` when attack metrics exist. The adversaries'
    own per-round ``attack`` statistics (delta norm, distance spread to benign deltas, ...)
    are averaged over adversaries into ``attack``; ``stealth`` counts the rounds in which
    the adversaries' updates (deltas) were within the benign distance spread and gives the
    mean norm ratio and announced accuracy of the rounds they attacked.

    ``last_per_node`` (async runs): ``final`` aggregates every benign node's last evaluated
    record, whatever its tick, instead of the last tick's row (with a time budget or churn,
    nodes end at different ticks, and the last tick may hold only the fastest nodes).
    """
    by_round: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        by_round[int(rec["round"])].append(rec)
    rounds = []
    for r in sorted(by_round):
        recs = by_round[r]
        benign = [x for x in recs if x.get("role", "benign") == "benign"]
        row: dict[str, Any] = {"round": r, "nodes": len(recs), "benign": len(benign)}
        for key in AGGREGATED:
            row.update(_stats([x.get(key) for x in benign if key in x], key))
        walls = [float(x["wall"]) for x in benign if isinstance(x.get("wall"), int | float)]
        if walls:  # seconds since the nodes started: the wall-clock axis of the plots
            row["wall_mean"] = round(sum(walls) / len(walls), 4)
            row["wall_max"] = round(max(walls), 4)
        if any("attack_success" in x for x in benign):
            if hops:
                row["attack_success_by_hops"] = _group_mean(benign, hops)
            if malicious_neighbours:
                row["attack_success_by_malicious_neighbours"] = _group_mean(benign, malicious_neighbours)
        stats: dict[str, list[float]] = defaultdict(list)
        for x in recs:
            if x.get("role", "benign") != "benign" and isinstance(x.get("attack"), Mapping):
                for k, v in x["attack"].items():
                    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                        stats[k].append(float(v))
        if stats:
            row["attack"] = {k: sum(v) / len(v) for k, v in sorted(stats.items())}
        rounds.append(row)
    summary: dict[str, Any] = {"rounds": rounds, "final": dict(rounds[-1]) if rounds else {}}
    if last_per_node and rounds:
        summary["final"] = _final_per_node([rec for recs in by_round.values() for rec in recs])
    stealth = _stealth_counts(rounds)
    if stealth:
        summary["stealth"] = stealth
    last = by_round[max(by_round)] if by_round else []
    summary["nodes"] = [
        {k: rec[k] for k in ("node", "role", *AGGREGATED) if k in rec}
        for rec in sorted(last, key=lambda x: int(x["node"]))
    ]
    if extra:
        summary.update(extra)
    return summary


def _final_per_node(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    last: dict[int, Mapping[str, Any]] = {}
    for rec in sorted(records, key=lambda x: int(x["round"])):
        if "accuracy" in rec:
            last[int(rec["node"])] = rec
    benign = [x for x in last.values() if x.get("role", "benign") == "benign"]
    row: dict[str, Any] = {"round": max((int(x["round"]) for x in last.values()), default=0),
                           "nodes": len(last), "benign": len(benign)}
    for key in AGGREGATED:
        row.update(_stats([x.get(key) for x in benign if key in x], key))
    walls = [float(x["wall"]) for x in benign if isinstance(x.get("wall"), int | float)]
    if walls:
        row["wall_mean"] = round(sum(walls) / len(walls), 4)
        row["wall_max"] = round(max(walls), 4)
    return row


#: The pip extra that installs what :class:`TensorBoardWriter` needs.
TENSORBOARD_EXTRA = "p2pfl[tensorboard]"
_TB_EVAL = ("accuracy", "loss", "attack_success", "target_confidence")


class TensorBoardWriter:
    """Per-node scalars of the metrics records, as TensorBoard event files.

    One TensorBoard run per node, ``<logdir>/node-<i>``, so the nodes can be compared and
    filtered in the TensorBoard UI. Step = the record's ``round`` (the node's tick in async
    mode); wall time = when the writer started plus the record's ``wall`` (TensorBoard's
    WALL / RELATIVE axes then show the run's time line, the natural axis in async mode).
    Tags:

    ``accuracy``, ``loss``, ``attack_success``, ``target_confidence``
        the node's evaluation (evaluated rounds only; attack metrics when the run has an
        attack);
    ``filter/norm_in_mean``, ``filter/norm_out_mean``, ``filter/norm_in/<j>``, ``filter/norm_out/<j>``
        norms of the neighbours' updates before and after the node's filter (nodes that filter);
    ``attack/<statistic>``
        an adversary's own per-round statistics (update norm, norm ratio, ...);
    ``time/round``
        seconds the round (tick) took.

    Uses :class:`torch.utils.tensorboard.SummaryWriter` (needs the ``tensorboard`` package:
    ``pip install 'p2pfl[tensorboard]'``), imported when the writer is made, so a missing
    package fails before a run starts.
    """

    def __init__(self, logdir: str | Path, *, start: float | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise P2PFLError(f"TensorBoard logging (--tensorboard / report.tensorboard = {str(logdir)!r}) needs "
                             f"the tensorboard package: pip install '{TENSORBOARD_EXTRA}' ({exc})") from None
        import time

        self.logdir = Path(logdir)
        self.start = time.time() if start is None else float(start)
        self._writer_class = SummaryWriter
        self._writers: dict[int, Any] = {}

    def _writer(self, node: int) -> Any:
        if node not in self._writers:
            self._writers[node] = self._writer_class(log_dir=str(self.logdir / f"node-{node}"))
        return self._writers[node]

    def write(self, rec: Mapping[str, Any]) -> None:
        """Add one record's scalars (a record without ``node`` or ``round`` is ignored)."""
        if not isinstance(rec.get("node"), int) or not isinstance(rec.get("round"), int):
            return
        w = self._writer(rec["node"])
        step = rec["round"]
        wall = rec.get("wall")
        walltime = self.start + float(wall) if _number(wall) else None

        def add(tag: str, value: Any) -> None:
            if _number(value):
                w.add_scalar(tag, float(value), step, walltime=walltime)

        for key in _TB_EVAL:
            add(key, rec.get(key))
        filt = rec.get("filter")
        if isinstance(filt, Mapping):
            for side in ("norm_in", "norm_out"):
                norms = filt.get(side)
                if isinstance(norms, Mapping) and norms:
                    values = [float(v) for v in norms.values() if _number(v)]
                    if values:
                        add(f"filter/{side}_mean", sum(values) / len(values))
                    for j, v in sorted(norms.items(), key=lambda kv: str(kv[0])):
                        add(f"filter/{side}/{j}", v)
        attack = rec.get("attack")
        if isinstance(attack, Mapping):
            for k, v in sorted(attack.items()):
                add(f"attack/{k}", v)
        times = rec.get("time")
        if isinstance(times, Mapping):
            add("time/round", times.get("round"))

    def progress(self, then: Callable[[Mapping[str, Any]], None] | None = None
                 ) -> Callable[[Mapping[str, Any]], None]:
        """A progress callback that writes every record, then calls ``then``."""
        def on_record(rec: Mapping[str, Any]) -> None:
            try:
                self.write(rec)
            except Exception:  # a log never breaks a run
                log.exception("TensorBoard: could not write a record of node %s", rec.get("node"))
            if then is not None:
                then(rec)

        return on_record

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def write_summary(path: str | Path, summary: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n", encoding="utf-8")


__all__ = ["AGGREGATED", "TENSORBOARD_EXTRA", "MetricsWriter", "TensorBoardWriter", "read_records", "summarize",
           "write_summary"]
