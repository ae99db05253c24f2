"""The message schema and its codec: a msgpack header frame plus raw tensor frames.

A message on the wire is a ZeroMQ multipart message::

    frame 0     msgpack map (the header, at most ``MAX_HEADER_BYTES``)
    frame 1..n  raw little-endian tensor bytes, one frame per tensor, in header order

Header keys (all required unless noted; unknown keys are rejected)::

    v      int    protocol version, must equal VERSION
    kind   str    one of KINDS
    exp    str    experiment id (runs never mix)
    src    int    sender node id (authenticated by CurveZMQ when keys are configured)
    dst    int    recipient node id (a message cannot be replayed to another node)
    round  int    gossip round (>= 0)
    seq    int    per-link sequence number, strictly increasing (replay protection)
    base   int    round of the public copy a delta applies to (kind "delta"; else -1)
    sum    bin    checksum of the sender's public copy after this message ("delta", "snapshot")
    t      array  tensor descriptors [name, dtype, shape]; one per tensor frame
    info   map    (optional) small str -> scalar/bin extras, e.g. handshake hashes

Tensors are never copied into the header: :func:`encode` returns memoryviews of the arrays
(zero-copy send) and :func:`decode` wraps received buffers with ``numpy.frombuffer``
(zero-copy receive; the arrays are read-only). No pickle anywhere.

Every violation raises :class:`~p2pfl.errors.DecodeError` with a stable ``reason``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from .errors import DecodeError

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
CHECKSUM_BYTES = 8

KINDS = ("hello", "delta", "snapshot", "snapshot_req", "done")
# Which tensors each kind may carry; a delta is either dense ("delta") or sparse ("idx"+"val").
_TENSORS: dict[str, tuple[frozenset[str], ...]] = {
    "hello": (frozenset(),),
    "delta": (frozenset({"delta"}), frozenset({"idx", "val"})),
    "snapshot": (frozenset({"model"}),),
    "snapshot_req": (frozenset(),),
    "done": (frozenset(),),
}
_NEEDS_SUM = frozenset({"delta", "snapshot"})
DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8"), "<i4": np.dtype("<i4"), "<i8": np.dtype("<i8")}
_FIELDS = frozenset({"v", "kind", "exp", "src", "dst", "round", "seq", "base", "sum", "t", "info"})
_REQUIRED = _FIELDS - {"info"}
_INT_FIELDS = ("src", "dst", "round", "seq", "base")
MAX_INT = 2**63 - 1
MAX_DIM = 2**40  # largest tensor dimension accepted, even in an empty tensor


@dataclass(frozen=True)
class Message:
    """One decoded (or to-be-encoded) protocol message."""

    kind: str
    exp: str
    src: int
    dst: int
    round: int
    seq: int
    base: int = -1
    checksum: bytes = b""
    tensors: Mapping[str, np.ndarray] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.tensors.values())


def checksum(vec: np.ndarray) -> bytes:
    """Checksum of a public copy: CRC-32 over its raw bytes plus its length (8 bytes).

    Receivers compare it with their own copy after applying a delta, so a lost, reordered
    or corrupted update is detected and repaired with a snapshot. It guards honest drift,
    not forgery (a sender vouches for its own bytes; authenticity is CurveZMQ's job), so a
    CRC is enough: about 3 ms for 3.4M values here (5x a memory copy, half of SHA-1, a
    fifth of BLAKE2b), paid once per announcement and once per received delta.
    """
    data = np.ascontiguousarray(vec).data
    return struct.pack("<II", zlib.crc32(data), data.nbytes & 0xFFFFFFFF)


def encode(msg: Message) -> list[bytes | memoryview]:
    """Encode a message into frames; tensor frames are zero-copy views of the arrays.

    The caller must not modify the arrays until the frames have been sent.
    """
    descriptors = []
    frames: list[bytes | memoryview] = [b""]
    for name, arr in msg.tensors.items():
        arr = np.asarray(arr)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        key = dt.str
        if key not in DTYPES:
            raise ValueError(f"tensor {name!r}: dtype {arr.dtype} is not one of {sorted(DTYPES)}")
        arr = np.ascontiguousarray(arr, dtype=DTYPES[key])
        descriptors.append([name, key, list(arr.shape)])
        frames.append(memoryview(arr).cast("B"))
    header: dict[str, Any] = {
        "v": VERSION,
        "kind": msg.kind,
        "exp": msg.exp,
        "src": msg.src,
        "dst": msg.dst,
        "round": msg.round,
        "seq": msg.seq,
        "base": msg.base,
        "sum": msg.checksum,
        "t": descriptors,
    }
    if msg.info:
        header["info"] = dict(msg.info)
    frames[0] = msgpack.packb(header, use_bin_type=True)
    return frames


def _buffer(frame: Any) -> memoryview:
    """A memoryview of a received frame: bytes, memoryview or zmq.Frame (``.buffer``)."""
    buf = getattr(frame, "buffer", frame)
    try:
        view = memoryview(buf)
    except TypeError:
        raise DecodeError("malformed", f"frame of type {type(frame).__name__}") from None
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def decode(
    frames: Sequence[Any],
    *,
    max_bytes: int = 1 << 30,
    dim: int | None = None,
) -> Message:
    """Decode and validate a multipart message.

    Parameters
    ----------
    frames:
        The received parts (bytes, memoryviews or ``zmq.Frame``).
    max_bytes:
        Upper bound on the total tensor payload; larger messages are ``"oversized"``.
    dim:
        The model dimension d. When given, dense tensors must have shape (d,) and sparse
        indices must lie in [0, d).

    Raises
    ------
    DecodeError
        On any violation; ``reason`` is one of ``malformed``, ``oversized``, ``version``,
        ``schema``, ``dtype``, ``shape``, ``nonfinite``, ``index``. A tensor's size is
        computed with Python integers and bounded (every dimension <= ``MAX_DIM``, the
        product of its nonzero dimensions within ``max_bytes``) before numpy sees its shape.
    """
    if not frames:
        raise DecodeError("malformed", "no frames")
    head = _buffer(frames[0])
    if len(head) > MAX_HEADER_BYTES:
        raise DecodeError("oversized", f"header of {len(head)} bytes > {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(
            head,
            raw=False,
            strict_map_key=True,
            max_str_len=4096,
            max_bin_len=4096,
            max_array_len=4096,
            max_map_len=64,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise DecodeError("malformed", f"header is not msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise DecodeError("schema", f"header is a {type(header).__name__}, not a map")
    unknown = set(header) - _FIELDS
    if unknown:
        raise DecodeError("schema", f"unknown fields {sorted(map(str, unknown))}")
    missing = _REQUIRED - set(header)
    if missing:
        raise DecodeError("schema", f"missing fields {sorted(missing)}")
    if header["v"] != VERSION or type(header["v"]) is not int:
        raise DecodeError("version", f"version {header['v']!r}, expected {VERSION}")
    kind = header["kind"]
    if type(kind) is not str or kind not in KINDS:
        raise DecodeError("schema", f"kind {kind!r} not one of {KINDS}")
    if type(header["exp"]) is not str:
        raise DecodeError("schema", "exp must be a string")
    for key in _INT_FIELDS:
        value = header[key]
        if type(value) is not int or not (-1 <= value <= MAX_INT):
            raise DecodeError("schema", f"{key} must be an integer >= -1, got {value!r}")
    if header["src"] < 0 or header["dst"] < 0 or header["round"] < 0 or header["seq"] < 0:
        raise DecodeError("schema", "src, dst, round and seq must be >= 0")
    chk = header["sum"]
    if type(chk) is not bytes:
        raise DecodeError("schema", "sum must be bytes")
    if kind in _NEEDS_SUM and len(chk) != CHECKSUM_BYTES:
        raise DecodeError("schema", f"{kind} needs an 8-byte checksum, got {len(chk)}")
    info = header.get("info", {})
    if not isinstance(info, dict) or not all(
        type(k) is str and isinstance(v, str | int | float | bytes | bool) for k, v in info.items()
    ):
        raise DecodeError("schema", "info must map strings to scalars")

    descriptors = header["t"]
    if not isinstance(descriptors, list):
        raise DecodeError("schema", "t must be a list of tensor descriptors")
    if len(descriptors) != len(frames) - 1:
        raise DecodeError("shape", f"{len(descriptors)} tensor descriptors but {len(frames) - 1} tensor frames")
    tensors: dict[str, np.ndarray] = {}
    total = 0
    for desc, frame in zip(descriptors, frames[1:], strict=True):
        if (
            not isinstance(desc, list)
            or len(desc) != 3
            or type(desc[0]) is not str
            or type(desc[1]) is not str
            or not isinstance(desc[2], list)
            or not all(type(s) is int and 0 <= s <= MAX_INT for s in desc[2])
            or len(desc[2]) > 4
        ):
            raise DecodeError("schema", f"bad tensor descriptor {desc!r}"[:200])
        name, dtype_key, shape = desc
        if name in tensors:
            raise DecodeError("schema", f"tensor {name!r} appears twice")
        dtype = DTYPES.get(dtype_key)
        if dtype is None:
            raise DecodeError("dtype", f"tensor {name!r}: dtype {dtype_key!r} not one of {sorted(DTYPES)}")
        # Sizes in Python ints, checked before numpy sees the shape: numpy refuses shapes
        # whose nonzero dimensions overflow its index type even when one dimension is 0
        # ([0, 2**63-1]), and would raise its own ValueError.
        count = 1
        nominal = 1  # product of the nonzero dimensions: what numpy has to represent
        for s in shape:
            count *= s
            nominal *= max(s, 1)
        expected = count * dtype.itemsize
        total += expected
        if total > max_bytes:
            raise DecodeError("oversized", f"tensor payload over {max_bytes} bytes")
        if any(s > MAX_DIM for s in shape) or nominal * dtype.itemsize > max(max_bytes, 0):
            raise DecodeError("shape", f"tensor {name!r}: impossible shape {shape}"[:200])
        buf = _buffer(frame)
        if len(buf) != expected:
            raise DecodeError("shape", f"tensor {name!r}: {len(buf)} bytes for shape {shape} of {dtype_key}")
        try:
            arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
        except (ValueError, TypeError) as exc:  # not reachable after the checks above; never "internal"
            raise DecodeError("shape", f"tensor {name!r}: shape {shape}: {exc}"[:200]) from None
        arr.setflags(write=False)  # a view of the received frame: never modified in place
        tensors[name] = arr
    names = frozenset(tensors)
    if names not in _TENSORS[kind]:
        allowed = " or ".join(str(sorted(s)) for s in _TENSORS[kind])
        raise DecodeError("schema", f"{kind} carries tensors {sorted(names)}, expected {allowed}")
    _validate_tensors(kind, tensors, dim)
    return Message(
        kind=kind,
        exp=header["exp"],
        src=header["src"],
        dst=header["dst"],
        round=header["round"],
        seq=header["seq"],
        base=header["base"],
        checksum=chk,
        tensors=tensors,
        info=info,
    )


def _all_finite(arr: np.ndarray) -> bool:
    # A finite sum proves every element finite (NaN and +-Inf propagate through it), and a
    # sum reads the payload without the temporary boolean array of isfinite(). Only when the
    # sum is not finite (a NaN/Inf, or large finite values overflowing) is the exact check run.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.einsum("i->", arr.reshape(-1))):
            return True
    return bool(np.isfinite(arr).all())


def _validate_tensors(kind: str, tensors: Mapping[str, np.ndarray], dim: int | None) -> None:
    for name, arr in tensors.items():
        if arr.dtype.kind == "f" and not _all_finite(arr):
            raise DecodeError("nonfinite", f"tensor {name!r} holds NaN or Inf")
    for name in ("delta", "model"):
        if name in tensors:
            arr = tensors[name]
            if arr.ndim != 1 or arr.dtype != np.float32:
                raise DecodeError("shape", f"{name} must be a 1-D float32 vector, got {arr.dtype}{list(arr.shape)}")
            if dim is not None and arr.shape[0] != dim:
                raise DecodeError("shape", f"{name} has {arr.shape[0]} values, the model has {dim}")
    if "idx" in tensors:
        idx, val = tensors["idx"], tensors["val"]
        if idx.ndim != 1 or val.ndim != 1 or idx.shape != val.shape:
            raise DecodeError("shape", f"idx{list(idx.shape)} and val{list(val.shape)} must be equal 1-D")
        if idx.dtype.kind != "i" or val.dtype != np.float32:
            raise DecodeError("dtype", "idx must be integer and val float32")
        if idx.size:
            if idx[0] < 0 or (dim is not None and idx[-1] >= dim):
                raise DecodeError("index", f"indices outside [0, {dim})")
            if idx.size > 1 and not bool((idx[1:] > idx[:-1]).all()):
                raise DecodeError("index", "indices must be strictly increasing")
            if dim is not None and idx.size > dim:
                raise DecodeError("index", f"{idx.size} indices for a model of {dim}")


def sparse_delta(delta: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of a dense delta by magnitude as (sorted int32/int64 indices, float32 values)."""
    d = delta.shape[0]
    k = max(1, min(d, int(round(fraction * d))))
    if k >= d:
        idx = np.arange(d)
    else:
        idx = np.argpartition(np.abs(delta), d - k)[d - k:]
        idx.sort()
    idx = idx.astype(np.int32 if d < 2**31 else np.int64)
    return idx, delta[idx].astype(np.float32, copy=False)


def apply_delta(target: np.ndarray, msg: Message) -> None:
    """Add a (dense or sparse) delta message to ``target`` in place."""
    if "delta" in msg.tensors:
        target += msg.tensors["delta"]
    else:
        idx = msg.tensors["idx"]
        target[idx] += msg.tensors["val"]


__all__ = ["KINDS", "MAX_DIM", "VERSION", "Message", "apply_delta", "checksum", "decode", "encode", "sparse_delta"]
