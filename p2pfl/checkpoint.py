"""Per-round checkpoints of one node, written atomically, without pickle.

A checkpoint is two files in ``OUT/checkpoints``::

    node-I.rNNNNNN.npz   every array: x, the node's announced copies, its copies of the
                         neighbours (and their last deltas), trainer/filter tensors
    node-I.json          everything else, and the name of the npz it belongs to

The npz of round N is written under a new name (tmp file, fsync, ``os.replace``); then the
JSON is replaced the same way. Replacing the JSON is the commit point: a crash at any
moment leaves a JSON that names a complete npz, so the last committed round is always
loadable. Older npz files are removed after the commit.

What is saved (:class:`NodeState`): the model x, the public copies this node announced
(shared and per-neighbour) with their round, its copies of every neighbour with their
round and last sequence number, the trainer's state (generator and optimizer), the
filter's and the behaviour's state (when they have one), the last completed round, the
node's sequence counter and its rejection counters. Nested state (e.g. an optimizer's
``state_dict``) is stored as JSON with every tensor replaced by a reference into the npz.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass
class PeerState:
    """This node's copy of one neighbour."""

    copy: np.ndarray
    round: int
    last_seq: int
    last_delta: np.ndarray | None = None


@dataclass
class NodeState:
    """Everything a node needs to resume after its last completed round."""

    node: int
    exp_id: str
    round: int  # the last completed round (0: none yet)
    seq: int
    x: np.ndarray
    pub_shared: np.ndarray
    pub_round: int
    pub_private: dict[int, np.ndarray] = field(default_factory=dict)
    pub_rounds: dict[int, int] = field(default_factory=dict)  # async fan-out: the round of each private copy
    peers: dict[int, PeerState] = field(default_factory=dict)
    trainer: Any = None
    filter: Any = None
    behaviour: Any = None
    rejected: dict[str, int] = field(default_factory=dict)
    finished: bool = False


# ---- capture and restore (the only code that knows Node's attributes) ---------------------------------
def capture(node: Any, *, finished: bool = False) -> NodeState:
    """A consistent copy of ``node``'s state; call it on the event loop between rounds."""
    proto = node.protocol
    completed = node.rounds if finished else proto.round
    behaviour = getattr(node.behaviour, "state_dict", None)
    return NodeState(
        node=node.id,
        exp_id=node.exp_id,
        round=int(completed),
        seq=int(proto.seq),
        x=np.array(node.x, dtype=np.float32),
        pub_shared=proto.pub_shared.copy(),
        pub_round=int(proto.pub_round),
        pub_private={j: a.copy() for j, a in proto.pub_private.items()},
        pub_rounds={int(j): int(r) for j, r in proto.pub_rounds.items()},
        peers={j: PeerState(copy=p.copy.copy(), round=int(p.round), last_seq=int(p.last_seq),
                            last_delta=None if p.last_delta is None else np.array(p.last_delta))
               for j, p in proto.peers.items()},
        trainer=node.trainer.state_dict() if hasattr(node.trainer, "state_dict") else None,
        filter=node.filter.state_dict() if node.filter is not None else None,
        behaviour=behaviour() if callable(behaviour) else None,
        rejected=dict(proto.rejected),
        finished=finished,
    )


def restore(node: Any, state: NodeState) -> None:
    """Load ``state`` into a freshly built node of the same experiment (checked)."""
    proto = node.protocol
    if state.node != node.id:
        raise ConfigError("checkpoint", state.node, f"a checkpoint of node {node.id}")
    if state.exp_id != node.exp_id:
        raise ConfigError("checkpoint", state.exp_id,
                          f"a checkpoint of experiment {node.exp_id} (this one belongs to other settings; "
                          "use another --out folder)")
    if state.x.shape != node.x.shape:
        raise ConfigError("checkpoint", list(state.x.shape), f"a model of {node.x.shape[0]} parameters")
    if set(state.peers) != set(proto.peers):
        raise ConfigError("checkpoint", sorted(state.peers), f"neighbours {sorted(proto.peers)}")
    node.x = state.x.copy()
    proto.pub_shared = state.pub_shared.copy()
    proto.pub_private = {int(j): a.copy() for j, a in state.pub_private.items()}
    proto.pub_round = state.pub_round
    proto.pub_rounds = {int(j): int(r) for j, r in state.pub_rounds.items()}
    proto.seq = max(int(proto.seq), state.seq + 1)  # strictly after everything sent before
    for j, ps in state.peers.items():
        peer = proto.peers[j]
        peer.copy = ps.copy.copy()
        peer.round = ps.round
        peer.last_seq = ps.last_seq
        peer.last_delta = None if ps.last_delta is None else ps.last_delta.copy()
    proto.round = state.round
    proto.rejected = dict(state.rejected)
    if state.trainer is not None and hasattr(node.trainer, "load_state_dict"):
        node.trainer.load_state_dict(state.trainer)
    if state.filter is not None and node.filter is not None:
        node.filter.load_state_dict(state.filter)
    loader = getattr(node.behaviour, "load_state_dict", None)
    if state.behaviour is not None and callable(loader):
        loader(state.behaviour)


# ---- nested state <-> JSON + arrays -----------------------------------------------------------------------
def _encode(value: Any, arrays: dict[str, np.ndarray], prefix: str) -> Any:
    """JSON-able tree; arrays and torch tensors move into ``arrays`` and leave a reference."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        key = f"{prefix}#{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        key = f"{prefix}#{len(arrays)}"
        arrays[key] = value.detach().cpu().numpy()
        return {"__tensor__": key}
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays, prefix) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays, prefix) for v in value]
    if isinstance(value, Mapping):
        return {"__map__": [[_encode(k, arrays, prefix), _encode(v, arrays, prefix)] for k, v in value.items()]}
    raise TypeError(f"cannot checkpoint a {type(value).__name__} (at {prefix})")


def _decode(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return np.array(arrays[value["__array__"]])
    if "__tensor__" in value:
        import torch

        return torch.from_numpy(np.array(arrays[value["__tensor__"]]))
    if "__bytes__" in value:
        return bytes.fromhex(value["__bytes__"])
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__map__" in value:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value["__map__"]}
    raise ValueError(f"unknown checkpoint node {sorted(value)}")


# ---- files ------------------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Checkpointer:
    """Writes and reads the checkpoints of one node in ``directory``.

    ``durable=True`` fsyncs files and the directory, so a checkpoint also survives a power
    loss, not only a killed process.
    """

    def __init__(self, directory: str | os.PathLike, node: int, *, durable: bool = True) -> None:
        self.directory = Path(directory)
        self.node = node
        self.durable = durable
        self.json_path = self.directory / f"node-{node}.json"

    def _npz_path(self, round: int) -> Path:
        return self.directory / f"node-{self.node}.r{round:06d}.npz"

    def _write(self, path: Path, write: Any) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            if self.durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)

    def save(self, state: NodeState) -> Path:
        """Write ``state`` atomically; returns the JSON path (the commit point)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"x": state.x, "pub_shared": state.pub_shared}
        for j, a in state.pub_private.items():
            arrays[f"pub_private/{j}"] = a
        peers = {}
        for j, p in state.peers.items():
            arrays[f"peer/{j}/copy"] = p.copy
            if p.last_delta is not None:
                arrays[f"peer/{j}/last_delta"] = p.last_delta
            peers[str(j)] = {"round": p.round, "last_seq": p.last_seq, "last_delta": p.last_delta is not None}
        meta = {
            "format": FORMAT,
            "node": state.node,
            "exp_id": state.exp_id,
            "round": state.round,
            "finished": state.finished,
            "seq": state.seq,
            "pub_round": state.pub_round,
            "pub_private": sorted(state.pub_private),
            "pub_rounds": {str(j): r for j, r in sorted(state.pub_rounds.items())},
            "peers": peers,
            "trainer": _encode(state.trainer, arrays, "trainer"),
            "filter": _encode(state.filter, arrays, "filter"),
            "behaviour": _encode(state.behaviour, arrays, "behaviour"),
            "rejected": dict(state.rejected),
        }
        npz = self._npz_path(state.round)
        meta["arrays"] = npz.name
        self._write(npz, lambda fh: np.savez(fh, **arrays))
        text = json.dumps(meta, indent=1, sort_keys=True).encode()
        self._write(self.json_path, lambda fh: fh.write(text))
        if self.durable:
            _fsync_dir(self.directory)
        for old in self.directory.glob(f"node-{self.node}.r*.npz"):
            if old.name != npz.name:
                old.unlink(missing_ok=True)
        return self.json_path

    def load(self) -> NodeState | None:
        """The last committed state, or ``None`` if this node has no checkpoint."""
        if not self.json_path.exists():
            return None
        try:
            meta = json.loads(self.json_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            with np.load(self.directory / meta["arrays"], allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            peers = {
                int(j): PeerState(copy=arrays[f"peer/{j}/copy"], round=int(p["round"]), last_seq=int(p["last_seq"]),
                                  last_delta=arrays[f"peer/{j}/last_delta"] if p["last_delta"] else None)
                for j, p in meta["peers"].items()
            }
            return NodeState(
                node=int(meta["node"]),
                exp_id=str(meta["exp_id"]),
                round=int(meta["round"]),
                seq=int(meta["seq"]),
                x=arrays["x"],
                pub_shared=arrays["pub_shared"],
                pub_round=int(meta["pub_round"]),
                pub_private={int(j): arrays[f"pub_private/{j}"] for j in meta["pub_private"]},
                pub_rounds={int(j): int(r) for j, r in meta.get("pub_rounds", {}).items()},  # older: none
                peers=peers,
                trainer=_decode(meta["trainer"], arrays),
                filter=_decode(meta["filter"], arrays),
                behaviour=_decode(meta["behaviour"], arrays),
                rejected={str(k): int(v) for k, v in meta["rejected"].items()},
                finished=bool(meta["finished"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError("checkpoint", str(self.json_path),
                              f"a readable p2pfl checkpoint ({type(exc).__name__}: {exc}); "
                              "delete it to start this node afresh") from None


__all__ = ["Checkpointer", "NodeState", "PeerState", "capture", "restore"]
