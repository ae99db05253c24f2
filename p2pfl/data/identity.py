"""Data identity: what two nodes compare at handshake (:func:`identity`,
:func:`identity_difference`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

import numpy as np

from .base import USER_DATASET, DatasetBundle, TensorData

#: Keys of :func:`identity`, in the order :func:`identity_difference` compares them.
IDENTITY_KEYS = ("dataset", "source", "train", "test", "classes", "test_hash", "train_hash")

_HASH_CHARS = 16  # hex characters of sha256 kept per split
_IDENTITY_JSON_MAX = 4096  # a JSON-encoded identity longer than this is malformed
_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]{1,32}")
_HEX_RE = re.compile(r"[0-9a-f]{8,64}")
_SOURCE_NAMES = {
    ("embedded", "fmnist"): "embedded split",
    ("full", "fmnist"): "full Fashion-MNIST",
    ("full", "adult"): "full UCI Adult",
    ("user", USER_DATASET): "user-supplied data",
}


def _split_hash(data: TensorData) -> str:
    """sha256 (first :data:`_HASH_CHARS` hex chars) of a split's dtypes, shapes and bytes."""
    h = hashlib.sha256()
    parts = []
    for t, dtype in ((data.x, "<f4"), (data.y, "<i8")):
        arr = np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)
        h.update(f"{dtype}{arr.shape};".encode())
        parts.append(arr)
    for arr in parts:
        h.update(arr)  # C-contiguous buffer, hashed without a copy
    return h.hexdigest()[:_HASH_CHARS]


def identity(bundle: DatasetBundle) -> dict[str, str | int]:
    """What a node's data is, in a few msgpack/JSON scalars, for the handshake.

    Keys (:data:`IDENTITY_KEYS`): ``dataset`` (``"fmnist"``, ``"adult"``, ``"custom"``), ``source``
    (``"embedded"`` split of the packaged copy, ``"full"`` set read from files, ``"user"``
    data from a loader or tensors), ``train``
    and ``test`` (sizes after ``max_train`` / ``max_test``), ``classes``, and ``test_hash``
    / ``train_hash``: the first 16 hex characters of the sha256 of each split's inputs and
    labels as they are used (after every subset). Paths are left out on purpose: the same
    files in different folders on two machines are the same data; different files are
    caught by the hashes. Costs one pass of sha256 over the data (~0.15 s for the full
    Fashion-MNIST); compute it once per plan.
    """
    kind = bundle.kind or ("embedded" if bundle.source.startswith("embedded") else "full")
    return {
        "dataset": bundle.name,
        "source": kind,
        "train": len(bundle.train),
        "test": len(bundle.test),
        "classes": int(bundle.train.classes),
        "test_hash": _split_hash(bundle.test),
        "train_hash": _split_hash(bundle.train),
    }


def _describe_source(kind: str, dataset: object) -> str:
    return _SOURCE_NAMES.get((kind, dataset if isinstance(dataset, str) else ""), f"{kind} data")


def _valid(key: str, value: object) -> bool:
    if key in ("train", "test", "classes"):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
    if not isinstance(value, str):
        return False
    return bool((_HEX_RE if key.endswith("_hash") else _NAME_RE).fullmatch(value))


def _short(h: str) -> str:
    return h[:8] + "\u2026"


def identity_difference(theirs: object, ours: Mapping[str, object], src: object) -> str:
    """``""`` when a peer's data identity equals ours, else one line naming the difference.

    Parameters
    ----------
    theirs
        What node ``src`` sent: any decoded value (mapping, list, number, None, deeply nested,
        or the identity as a JSON string of at most 4096 characters). Never trusted.
    ours
        This node's :func:`identity`.
    src
        The peer's id, for the message.

    Returns
    -------
    str
        E.g. ``"data differs: embedded split at node 1, full Fashion-MNIST here"``,
        ``"data differs: 2000 training examples at node 1, 60000 here"``,
        ``"data differs: test split hash 3fa2c1d0… at node 1, 9b1c77e2… here"`` or
        ``"data identity missing or malformed at node 1 (...)"``. Only validated values of
        ``theirs`` are quoted (short names, hex, integers), so the line is safe to log.
        Never raises.
    """
    node = str(src) if isinstance(src, int) and not isinstance(src, bool) else "?"
    try:
        if isinstance(theirs, str | bytes) and len(theirs) <= _IDENTITY_JSON_MAX:
            try:
                theirs = json.loads(theirs)
            except (ValueError, RecursionError):
                return f"data identity missing or malformed at node {node} (not a JSON object)"
        if not isinstance(theirs, Mapping):
            return f"data identity missing or malformed at node {node}"
        for key in IDENTITY_KEYS:
            if key not in ours:
                continue
            value = theirs.get(key)
            if not _valid(key, value):
                what = "missing" if value is None else "malformed"
                return f"data identity missing or malformed at node {node} ('{key}' is {what})"
            mine = ours[key]
            if value == mine:
                continue
            if key == "dataset":
                return f"data differs: data set {value} at node {node}, {mine} here"
            if key == "source":
                return (f"data differs: {_describe_source(str(value), theirs.get('dataset'))} at node "
                        f"{node}, {_describe_source(str(mine), ours.get('dataset'))} here")
            if key in ("train", "test", "classes"):
                noun = {"train": "training examples", "test": "test examples", "classes": "classes"}[key]
                return f"data differs: {value} {noun} at node {node}, {mine} here"
            split = "training" if key == "train_hash" else "test"
            return (f"data differs: {split} split hash {_short(str(value))} at node {node}, "
                    f"{_short(str(mine))} here")
        return ""
    except Exception:  # noqa: BLE001 - a hostile value must not crash the handshake
        return f"data identity missing or malformed at node {node}"
