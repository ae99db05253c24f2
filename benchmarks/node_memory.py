"""RSS per node of an in-process run, and what the protocol state of one node holds.

    python -m benchmarks.node_memory 200 cnn   # nodes, model (ring, training off, 3 rounds)

Prints RSS after the plan, per node after the run (nodes kept alive, so their state counts),
and the model-sized vectors one node holds (x, its announced copy, its neighbours' copies,
their last deltas when kept). Run it with ``MALLOC_MMAP_THRESHOLD_=65536`` to see what glibc's
dynamic mmap threshold keeps in the heap.
"""

from __future__ import annotations

import json
import sys
import tempfile

import numpy as np

from ._common import rss_bytes


def main(nodes: int, model: str) -> dict[str, object]:
    from p2pfl import launch
    from p2pfl.config import RunConfig
    from p2pfl.node import Node
    from p2pfl.plan import Plan, set_torch_threads

    set_torch_threads(1)
    cfg = RunConfig(name="mem", topology="ring", nodes=nodes, rounds=3, seed=0).with_overrides({
        "train.epochs": 0, "data.max_test": 10, "net.linger_ms": 0, "train.model": model,
        "net.round_timeout": 300.0, "net.connect_timeout": 300.0})
    plan = Plan.build(cfg, search=[tempfile.mkdtemp(prefix="p2pfl-bench-nodata-")])
    before = rss_bytes()
    kept: list[Node] = []
    launch.run_inprocess(plan, keep_nodes=kept)
    after = rss_bytes()
    node = kept[nodes // 2]
    vectors = {"x": node.x.nbytes, "announced": node.protocol.pub_shared.nbytes}
    for j, peer in node.peers.items():
        vectors[f"copy of {j}"] = peer.copy.nbytes
        if peer.last_delta is not None:
            vectors[f"last delta of {j}"] = np.asarray(peer.last_delta).nbytes
    model_bytes = plan.dim * 4
    per_node = (after - before) / nodes
    shard = sum(t.element_size() * t.nelement() for t in (plan.node_data(0)[0].x, plan.node_data(0)[0].y))
    return {"nodes": nodes, "model": model, "model_bytes": model_bytes, "rss_after_plan": before,
            "rss_per_node": round(per_node), "model_sizes_per_node": round(per_node / model_bytes, 2),
            "protocol_vectors_bytes": sum(vectors.values()), "vectors": vectors, "data_shard_bytes": shard,
            "rest_per_node": round(per_node - sum(vectors.values()) - shard)}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "cnn")))
