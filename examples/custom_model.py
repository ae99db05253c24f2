"""Your own model and data: a user-defined torch model on user-supplied tensors, over a ring.

The model factory (``custom/model.py``) and the data loader (``custom/data.py``) live
outside the p2pfl package. One adversary runs the boost attack against a single target
example; every benign node filters what it receives with ``topk-clip``. The same
experiment runs twice: all nodes in this process, then one ``p2pfl node`` process per node
(which import ``custom.model`` and ``custom.data`` themselves). Same seed, same final models.

    python examples/custom_model.py                 # both ways, compared
    python examples/custom_model.py --only inprocess
    python examples/custom_model.py --only processes --tensorboard runs/tb

The functions are handed over as Python objects; being importable by name
(``custom.model:build``), they are stored in the settings as import paths, so node
processes can load them. In TOML or on the command line, write the import paths
(``custom_model.toml``; run it from this folder so ``custom`` is found).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # imported rather than run as a script (e.g. by the tests)
    sys.path.insert(0, str(HERE))

from custom.data import load  # noqa: E402 - after the path set-up above
from custom.model import build  # noqa: E402

from p2pfl import Experiment  # noqa: E402


def experiment(nodes: int = 5, rounds: int = 2, seed: int = 0, tensorboard: str | None = None) -> Experiment:
    """The ring experiment with the user's model and data."""
    return Experiment(
        model=build,  # stored as "custom.model:build"
        dataset=load,  # stored as "custom.data:load"
        topology="ring",
        nodes=nodes,
        rounds=rounds,
        seed=seed,
        adversaries=1,
        attack={"name": "boost", "lam": 10, "aux_size": 1},
        defence="topk-clip",
        epochs=1,
        batch_size=32,
        lr=0.01,
        tensorboard=tensorboard,
        name="custom-model-ring",
        **{"net.linger_ms": 0},
    )


def main(argv: list[str] | None = None) -> dict[str, dict[int, np.ndarray]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("inprocess", "processes"), default=None)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for the run folders (default: a temporary one)")
    parser.add_argument("--tensorboard", default=None, help="folder for TensorBoard event files")
    args = parser.parse_args(argv)

    exp = experiment(args.nodes, args.rounds, args.seed, args.tensorboard)
    print(f"model {exp.config.train.model}, data {exp.config.data.dataset}")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="p2pfl-custom-"))
    models: dict[str, dict[int, np.ndarray]] = {}
    for way in ("inprocess", "processes"):
        if args.only not in (None, way):
            continue
        result = exp.run(out=out / way, processes=way == "processes", overwrite=True, plots=False)
        final = result.final
        print(f"{way:>10}: benign accuracy {final['accuracy_mean']:.3f}, "
              f"attack success {final.get('attack_success_mean', float('nan')):.2f} "
              f"({len(result.final_models)} nodes, {result.wall_time:.1f}s, run folder {result.out})")
        models[way] = result.final_models
    if len(models) == 2:
        same = all(np.array_equal(models["inprocess"][i], models["processes"][i]) for i in models["inprocess"])
        print("in-process and processes: " + ("bit-identical final models" if same else "final models DIFFER"))
    return models


if __name__ == "__main__":
    main()
