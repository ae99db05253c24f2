"""The codec: round trips of every dtype, and every malformed input is one DecodeError."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl import wire
from p2pfl.errors import DecodeError


def delta_msg(vec: np.ndarray, **kw) -> wire.Message:
    fields = dict(kind="delta", exp="e", src=1, dst=2, round=3, seq=7, base=2,
                  checksum=wire.checksum(vec), tensors={"delta": vec})
    fields.update(kw)
    return wire.Message(**fields)


def header_of(frames) -> dict:
    return msgpack.unpackb(frames[0], raw=False)


def with_header(frames, **changes) -> list:
    head = header_of(frames)
    head.update(changes)
    return [msgpack.packb(head, use_bin_type=True), *frames[1:]]


@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<i4", "<i8"])
def test_round_trip_every_dtype(dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    msg = wire.Message(kind="hello", exp="x", src=0, dst=1, round=0, seq=1, tensors={})
    frames = wire.encode(msg)
    assert wire.decode(frames).kind == "hello"
    # Tensors of every dtype survive in a snapshot-shaped wrapper (generic decode path).
    frames = wire.encode(wire.Message(kind="snapshot", exp="x", src=0, dst=1, round=1, seq=2,
                                      checksum=b"12345678", tensors={"model": np.zeros(3, np.float32)}))
    frames[0] = msgpack.packb({**header_of(frames), "t": [["model", dtype, list(arr.shape)]]}, use_bin_type=True)
    frames[1] = arr.tobytes()
    if dtype == "<f4":
        with pytest.raises(DecodeError) as err:  # a snapshot must be 1-D
            wire.decode(frames)
        assert err.value.reason == "shape"
    else:
        with pytest.raises(DecodeError):
            wire.decode(frames)


def test_dense_delta_round_trip_is_zero_copy_and_exact():
    vec = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    frames = wire.encode(delta_msg(vec))
    assert isinstance(frames[1], memoryview) and frames[1].obj is not None  # a view, not a copy
    msg = wire.decode(frames, dim=1000)
    out = msg.tensors["delta"]
    assert out.dtype == np.float32 and np.array_equal(out, vec)
    assert not out.flags.writeable  # wraps the received buffer
    assert (msg.src, msg.dst, msg.round, msg.seq, msg.base) == (1, 2, 3, 7, 2)
    assert msg.checksum == wire.checksum(vec)


def test_sparse_delta_round_trip_and_apply():
    vec = np.random.default_rng(1).standard_normal(500).astype(np.float32)
    idx, val = wire.sparse_delta(vec, 0.1)
    assert len(idx) == 50 and np.all(np.diff(idx) > 0)
    assert np.all(np.abs(val).min() >= np.sort(np.abs(vec))[-50])
    msg = wire.decode(wire.encode(delta_msg(vec, tensors={"idx": idx, "val": val})), dim=500)
    target = np.zeros(500, np.float32)
    wire.apply_delta(target, msg)
    assert np.array_equal(target[idx], val) and np.count_nonzero(target) == 50


def test_checksum_detects_one_ulp():
    vec = np.ones(100, np.float32)
    other = vec.copy()
    other[17] = np.nextafter(np.float32(1), np.float32(2))
    assert wire.checksum(vec) != wire.checksum(other)
    assert len(wire.checksum(vec)) == wire.CHECKSUM_BYTES


# ---- every malformed input raises the one DecodeError ------------------------------------------
VEC = np.arange(10, dtype=np.float32)
GOOD = wire.encode(delta_msg(VEC))


def _cases():
    good = [bytes(f) for f in GOOD]
    nan = VEC.copy()
    nan[3] = math.nan
    inf = VEC.copy()
    inf[0] = math.inf
    return {
        "empty": ([], "malformed"),
        "not msgpack": ([b"\xc1\xc1\xc1", good[1]], "malformed"),
        "truncated header": ([good[0][:-5], good[1]], "malformed"),
        "truncated tensor": ([good[0], good[1][:-4]], "shape"),
        "missing tensor frame": ([good[0]], "shape"),
        "extra frame": ([good[0], good[1], b"xx"], "shape"),
        "header is a list": ([msgpack.packb([1, 2, 3]), good[1]], "schema"),
        "unknown field": (with_header(good, evil=1), "schema"),
        "missing field": ([msgpack.packb({k: v for k, v in header_of(good).items() if k != "seq"}), good[1]], "schema"),
        "unknown version": (with_header(good, v=99), "version"),
        "version as bool": (with_header(good, v=True), "version"),
        "unknown kind": (with_header(good, kind="exec"), "schema"),
        "round is a string": (with_header(good, round="3"), "schema"),
        "negative src": (with_header(good, src=-1), "schema"),
        "huge int": (with_header(good, seq=2**64 - 1), "schema"),
        "checksum wrong size": (with_header(good, sum=b"abc"), "schema"),
        "bad dtype": (with_header(good, t=[["delta", "|O", [10]]]), "dtype"),
        "wrong shape": (with_header(good, t=[["delta", "<f4", [11]]]), "shape"),
        "2-D delta": (with_header(good, t=[["delta", "<f4", [2, 5]]]), "shape"),
        "float64 delta": ([msgpack.packb({**header_of(good), "t": [["delta", "<f8", [5]]]}), good[1]], "shape"),
        "wrong tensor name": (with_header(good, t=[["model", "<f4", [10]]]), "schema"),
        "descriptor junk": (with_header(good, t=[["delta", "<f4"]]), "schema"),
        "NaN": (wire.encode(delta_msg(nan)), "nonfinite"),
        "Inf": (wire.encode(delta_msg(inf)), "nonfinite"),
        "oversized header": ([b"\x00" * (wire.MAX_HEADER_BYTES + 1), good[1]], "oversized"),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_malformed_inputs_raise_decode_error(name):
    frames, reason = _cases()[name]
    with pytest.raises(DecodeError) as err:
        wire.decode(frames, dim=10)
    assert err.value.reason == reason, err.value


def test_oversized_payload_and_model_dimension():
    with pytest.raises(DecodeError) as err:
        wire.decode(GOOD, max_bytes=39)
    assert err.value.reason == "oversized"
    with pytest.raises(DecodeError) as err:
        wire.decode(GOOD, dim=11)
    assert err.value.reason == "shape"


def test_sparse_index_violations():
    val = np.ones(3, np.float32)
    for idx, reason in [(np.array([0, 5, 5], np.int32), "index"),   # not strictly increasing
                        (np.array([3, 1, 2], np.int32), "index"),
                        (np.array([0, 1, 10], np.int32), "index"),  # out of range for dim 10
                        (np.array([-1, 1, 2], np.int32), "index")]:
        frames = wire.encode(delta_msg(VEC, tensors={"idx": idx, "val": val}))
        with pytest.raises(DecodeError) as err:
            wire.decode(frames, dim=10)
        assert err.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_mutations_never_escape_as_other_errors(data):
    # Arrange: flip, cut or extend bytes of a valid message anywhere.
    frames = [bytearray(f) for f in GOOD]
    k = data.draw(st.integers(0, len(frames) - 1))
    op = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if op == "flip" and frames[k]:
        pos = data.draw(st.integers(0, len(frames[k]) - 1))
        frames[k][pos] ^= data.draw(st.integers(1, 255))
    elif op == "cut":
        frames[k] = frames[k][: data.draw(st.integers(0, len(frames[k])))]
    else:
        frames[k] += data.draw(st.binary(min_size=1, max_size=16))
    # Act / Assert: either it still decodes to a valid, finite message or it is a DecodeError.
    try:
        msg = wire.decode([bytes(f) for f in frames], dim=10)
    except DecodeError:
        return
    for arr in msg.tensors.values():
        assert np.isfinite(arr).all()
    assert msg.tensors["delta"].shape == (10,)


# ---- tensor shapes are bounded before numpy sees them --------------------------------------------
def _empty_tensor(shape, dtype="<f4", kind="snapshot", name="model") -> list[bytes]:
    """A snapshot whose one tensor frame is empty and whose descriptor claims ``shape``."""
    frames = [bytes(f) for f in wire.encode(wire.Message(kind=kind, exp="e", src=1, dst=2, round=1, seq=1,
                                                         checksum=b"12345678",
                                                         tensors={name: np.zeros(3, np.float32)}))]
    return [msgpack.packb({**header_of(frames), "t": [[name, dtype, shape]]}, use_bin_type=True), b""]


@pytest.mark.parametrize("shape", [
    [0, wire.MAX_INT],          # numpy: "array is too big" inside reshape
    [wire.MAX_INT, 0],
    [0, 2**40, 2**40],          # each dim within MAX_DIM, their product is not
    [0, 2**62, 4],              # the nonzero dims overflow int64 together
    [0, 0, 0, wire.MAX_INT],
    [0, wire.MAX_DIM + 1],
    [2**20, 0, 2**20],          # representable by numpy but nominally 4 TiB: refused too
])
@pytest.mark.parametrize("dtype", ["<f4", "<i8"])
def test_empty_tensor_with_a_huge_dimension_is_a_shape_error(shape, dtype):
    with pytest.raises(DecodeError) as err:
        wire.decode(_empty_tensor(shape, dtype), max_bytes=1 << 30)
    assert err.value.reason == "shape", err.value


def test_huge_shapes_are_named_rejections_even_with_a_huge_limit():
    # A caller's max_bytes beyond anything numpy can hold must not let numpy decide.
    for shape in ([0, wire.MAX_INT], [wire.MAX_DIM + 1], [2**41, 1], [0, 2**62, 2**62]):
        with pytest.raises(DecodeError) as err:
            wire.decode(_empty_tensor(shape), max_bytes=2**100)
        assert err.value.reason == "shape", (shape, err.value)


def test_payload_size_overflowing_int64_is_oversized():
    # count * itemsize beyond 2**63: computed with Python ints, so simply over the limit
    with pytest.raises(DecodeError) as err:
        wire.decode(_empty_tensor([2**40, 2**40, 2**40]))
    assert err.value.reason == "oversized"


def test_empty_tensors_of_sane_shape_still_decode():
    frames = _empty_tensor([0], "<i4", kind="delta", name="idx")
    head = header_of(frames)
    head.update(base=0, t=[["idx", "<i4", [0]], ["val", "<f4", [0]]])
    msg = wire.decode([msgpack.packb(head, use_bin_type=True), b"", b""], dim=10)
    assert msg.tensors["idx"].shape == (0,) and msg.tensors["val"].shape == (0,)


_DIMS = st.sampled_from([0, 1, 3, 2**31, 2**32, 2**40, 2**40 + 1, 2**62, wire.MAX_INT])


@settings(max_examples=300, deadline=None)
@given(shape=st.lists(_DIMS, min_size=0, max_size=4), dtype=st.sampled_from(sorted(wire.DTYPES)),
       max_bytes=st.sampled_from([0, 39, 1 << 30, 2**63, 2**100]), payload=st.sampled_from([b"", b"\x00" * 24]))
def test_arbitrary_shapes_are_decode_errors_or_valid(shape, dtype, max_bytes, payload):
    frames = _empty_tensor(shape, dtype)
    frames[1] = payload
    try:
        msg = wire.decode(frames, max_bytes=max_bytes)
    except DecodeError:
        return
    assert msg.tensors["model"].nbytes == len(payload)
