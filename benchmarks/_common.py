"""Shared helpers: environment record, interleaved timing, result files and tables.

Every benchmark measures a *baseline* (what the machine can do without the framework) and
the *framework* path in the same process, interleaved rep by rep, and reports medians: the
machine has 2 cores and other jobs run on it, so only ratios measured side by side mean
anything. The load average is recorded with each result so a noisy figure can be judged.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on every platform
        return []


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux), else the peak from resource."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def environment() -> dict[str, Any]:
    """Versions and machine facts that a reader needs to compare two result files."""
    import numpy as np
    import torch
    import zmq

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }
    try:
        import msgpack

        env["msgpack"] = ".".join(map(str, msgpack.version))
    except ImportError:
        pass
    return env


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def interleaved(cases: Mapping[str, Callable[[], float]], reps: int, *, warmup: int = 1
                ) -> dict[str, list[float]]:
    """Run every case once per rep, alternating, and collect what each returns.

    A case returns its own measurement (seconds, or a rate) so that it can exclude its
    set-up. The order alternates between reps so that neither side always runs first.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            out[name].append(cases[name]())
    return out


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@dataclass
class Result:
    """One row of the results table and one JSON file.

    ``ratio`` is framework / baseline in the unit of the row (a throughput ratio, where
    higher is better, or a time ratio, where lower is better: ``higher_is_better`` says
    which); ``met`` compares it with ``target``.
    """

    name: str
    what: str
    unit: str
    baseline: float
    framework: float
    ratio: float
    target: float
    higher_is_better: bool
    reps: int
    baseline_samples: list[float] = field(default_factory=list)
    framework_samples: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    met: bool = False
    load_average: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.met = bool(self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target)
        self.load_average = load_average()

    @property
    def target_text(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}"


def write_results(group: str, results: list[Result], *, quick: bool, started: float,
                  extra: Mapping[str, Any] | None = None, command: str | None = None) -> Path:
    """benchmarks/results/<group>.json with the environment, the rows and run facts.

    ``command`` is the command line that ran (``python -m benchmarks --only filter``);
    without one, the command that runs just this group."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{group}{'-quick' if quick else ''}.json"
    doc = {
        "group": group,
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command or "python -m benchmarks" + (" --quick" if quick else "") + f" --only {group}",
        "environment": environment(),
        "load_average_end": load_average(),
        "results": [asdict(r) | {"target_text": r.target_text} for r in results],
        **dict(extra or {}),
    }
    path.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def fmt(x: float) -> str:
    if x == 0 or not (abs(x) < 1e15):
        return f"{x:g}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def table(results: list[Result]) -> str:
    """A Markdown table: one row per result."""
    head = "| benchmark | baseline | framework | unit | ratio | target | met | load avg |\n"
    head += "|---|---:|---:|---|---:|---|:-:|---|\n"
    rows = []
    for r in results:
        load = "/".join(f"{x:.1f}" for x in r.load_average[:1]) or "-"
        rows.append(f"| {r.name} | {fmt(r.baseline)} | {fmt(r.framework)} | {r.unit} | "
                    f"{r.ratio:.3g} | {r.target_text} | {'yes' if r.met else '**no**'} | {load} |")
    return head + "\n".join(rows) + "\n"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
