"""Tests of p2pfl.data: IDX reading, dataset search and download, partitions."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import logging
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FULL_DATA, needs_full_data
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.data import (
    EMBEDDED_FASHION_MNIST_DIR,
    IDENTITY_KEYS,
    PARTITIONS,
    TensorData,
    identity,
    identity_difference,
    load_dataset,
    partition,
    read_idx,
    split_validation,
)
from p2pfl.data import fmnist as fmnist_mod  # patch the loader's constants where it reads them
from p2pfl.errors import ConfigError, DataError

SHARED = FULL_DATA or Path("P2PFL_DATA-is-not-set")
needs_shared_fmnist = needs_full_data("fashion-mnist/train-images-idx3-ubyte.gz", "the full Fashion-MNIST")
needs_shared_adult = needs_full_data("adult/adult.data.gz", "UCI Adult")

EMB_IMAGES = EMBEDDED_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"
EMB_LABELS = EMBEDDED_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz"


# ----------------------------------------------------------------------------- helpers


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def _write_fake_fmnist(
    directory: Path, n_train: int, n_test: int, *, gz: bool = True, fill: int = 0
) -> dict[str, str]:
    """Write a small but valid four-file Fashion-MNIST set; return sha256 by file name."""
    directory.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for stem, count, kind in [
        ("train-images-idx3-ubyte", n_train, "images"),
        ("train-labels-idx1-ubyte", n_train, "labels"),
        ("t10k-images-idx3-ubyte", n_test, "images"),
        ("t10k-labels-idx1-ubyte", n_test, "labels"),
    ]:
        if kind == "images":
            arr = np.full((count, 28, 28), fill, dtype=np.uint8)
        else:
            arr = np.arange(count) % 10
        raw = _idx_bytes(arr)
        name = stem + (".gz" if gz else "")
        payload = gzip.compress(raw, mtime=0) if gz else raw
        (directory / name).write_bytes(payload)
        hashes[name] = hashlib.sha256(payload).hexdigest()
    return hashes


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (random port); yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ----------------------------------------------------------------------------- IDX reader


def test_read_idx_embedded_files_have_expected_shapes_and_labels() -> None:
    images = read_idx(EMB_IMAGES, magic=0x803)
    labels = read_idx(EMB_LABELS, magic=0x801)

    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert set(np.unique(labels).tolist()) == set(range(10))
    assert np.bincount(labels).tolist() == [1000] * 10


def test_read_idx_corrupted_magic_names_the_file(tmp_path: Path) -> None:
    raw = bytearray(gzip.decompress(EMB_LABELS.read_bytes()))
    raw[2] = 0x0D  # float type instead of unsigned byte
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bytes(raw))

    with pytest.raises(DataError, match="magic") as info:
        read_idx(bad)

    assert str(bad) in str(info.value)


def test_read_idx_wrong_kind_and_truncation_are_data_errors(tmp_path: Path) -> None:
    truncated = tmp_path / "short-idx1-ubyte"
    truncated.write_bytes(_idx_bytes(np.arange(10))[:-3])

    with pytest.raises(DataError, match="magic"):
        read_idx(EMB_LABELS, magic=0x803)
    with pytest.raises(DataError, match="short-idx1-ubyte"):
        read_idx(truncated)


def test_load_dataset_with_corrupted_full_set_names_the_file(tmp_path: Path) -> None:
    _write_fake_fmnist(tmp_path, 20, 10, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[3] = 0x01
    path.write_bytes(bytes(raw))

    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_dataset("fmnist", search=[tmp_path])


# ----------------------------------------------------------------------------- search order


def test_embedded_default_is_a_stratified_deterministic_disjoint_split() -> None:
    a = load_dataset("fmnist", seed=3)
    b = load_dataset("fmnist", seed=3)
    c = load_dataset("fmnist", seed=4)

    assert a.source.startswith("embedded Fashion-MNIST test split (8000 train / 2000 test)")
    assert a.input_shape == (1, 28, 28)
    assert a.train.x.shape == (8000, 1, 28, 28) and a.test.x.shape == (2000, 1, 28, 28)
    assert a.train.x.dtype == torch.float32 and a.train.y.dtype == torch.int64
    assert 0.0 <= float(a.train.x.min()) and float(a.train.x.max()) <= 1.0
    assert np.bincount(a.train.labels).tolist() == [800] * 10
    assert np.bincount(a.test.labels).tolist() == [200] * 10
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.test.x, c.test.x)
    # disjoint and covering: train + test is exactly the multiset of embedded images
    split_rows = (torch.cat([a.train.x, a.test.x]) * 255).round().to(torch.uint8)
    embedded_rows = read_idx(EMB_IMAGES)
    assert sorted(r.tobytes() for r in split_rows.numpy().reshape(10000, -1)) == sorted(
        r.tobytes() for r in embedded_rows.reshape(10000, -1)
    )


def test_embedded_test_fraction_and_max_subsets_are_stratified() -> None:
    bundle = load_dataset("fmnist", embedded_test_fraction=0.5, max_train=100, max_test=30)

    assert len(bundle.train) == 100 and len(bundle.test) == 30
    assert np.bincount(bundle.train.labels).tolist() == [10] * 10
    assert np.bincount(bundle.test.labels).tolist() == [3] * 10
    assert "5000 train / 5000 test" in bundle.source and "subset 100 / 30" in bundle.source


def test_full_set_in_search_dir_is_preferred_over_embedded(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _write_fake_fmnist(tmp_path / "root" / "fashion-mnist", 40, 20, fill=7)
    _write_fake_fmnist(tmp_path / "later", 30, 10, fill=9)

    bundle = load_dataset("fmnist", search=[empty, tmp_path / "root", tmp_path / "later"])

    assert bundle.source.startswith(
        f"full Fashion-MNIST from {tmp_path / 'root' / 'fashion-mnist'}"
    )
    assert "(40 train / 20 test)" in bundle.source
    assert len(bundle.train) == 40 and len(bundle.test) == 20
    assert torch.allclose(bundle.train.x, torch.full_like(bundle.train.x, 7 / 255))


def test_torchvision_layout_and_partial_sets(tmp_path: Path) -> None:
    _write_fake_fmnist(tmp_path / "tv" / "FashionMNIST" / "raw", 20, 10, gz=False)
    partial = tmp_path / "partial"
    _write_fake_fmnist(partial, 20, 10)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()

    bundle = load_dataset("fmnist", search=[partial, tmp_path / "tv"])
    fallback = load_dataset("fmnist", search=[partial])

    assert "FashionMNIST/raw" in bundle.source and len(bundle.train) == 20
    assert fallback.source.startswith("embedded")


@needs_shared_fmnist
def test_shared_data_dir_in_p2pfl_layout_gives_the_full_set() -> None:
    bundle = load_dataset("fmnist", search=[SHARED], max_train=200, max_test=100)

    assert bundle.source.startswith(f"full Fashion-MNIST from {SHARED / 'fashion-mnist'}")
    assert "(60000 train / 10000 test)" in bundle.source
    assert len(bundle.train) == 200 and len(bundle.test) == 100


def test_missing_embedded_copy_lists_every_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fmnist_mod, "EMBEDDED_FASHION_MNIST_DIR", tmp_path / "nowhere")

    with pytest.raises(DataError) as info:
        load_dataset("fmnist", search=[tmp_path / "a"], cache_dir=tmp_path / "cache")

    message = str(info.value)
    for place in ["a", "a/fashion-mnist", "a/FashionMNIST/raw", "cache", "nowhere"]:
        assert str(tmp_path / place) in message


# ----------------------------------------------------------------------------- download


def test_download_from_local_mirror_with_pinned_hashes(
    http_dir: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url = http_dir
    hashes = _write_fake_fmnist(root, 50, 20, fill=3)
    monkeypatch.setattr(fmnist_mod, "FASHION_MNIST_SHA256", hashes)
    cache = tmp_path / "cache"

    bundle = load_dataset("fmnist", download=True, cache_dir=cache, mirror=url)
    for f in root.iterdir():
        f.unlink()  # the second load must come from the cache, not the server
    again = load_dataset("fmnist", download=True, cache_dir=cache, mirror=url)

    assert bundle.source.startswith(f"full Fashion-MNIST downloaded from {url}")
    assert len(bundle.train) == 50 and len(bundle.test) == 20
    assert sorted(p.name for p in cache.iterdir()) == sorted(hashes)
    assert again.source.startswith(f"full Fashion-MNIST from {cache}")


@needs_shared_fmnist
def test_download_of_the_official_files(http_dir: tuple[Path, str], tmp_path: Path) -> None:
    root, url = http_dir
    for f in (SHARED / "fashion-mnist").glob("*.gz"):
        shutil.copyfile(f, root / f.name)

    bundle = load_dataset(
        "fmnist", download=True, cache_dir=tmp_path / "c", mirror=url, max_train=100, max_test=100
    )

    assert "(60000 train / 10000 test)" in bundle.source
    assert len(bundle.train) == 100


def test_download_with_corrupt_file_fails_on_sha256_and_leaves_no_file(
    http_dir: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url = http_dir
    hashes = _write_fake_fmnist(root, 10, 10)
    monkeypatch.setattr(fmnist_mod, "FASHION_MNIST_SHA256", hashes)
    target = root / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes() + b"tampered")
    cache = tmp_path / "cache"

    with pytest.raises(DataError, match="sha256") as info:
        load_dataset("fmnist", download=True, cache_dir=cache, mirror=url)

    assert "train-labels-idx1-ubyte.gz" in str(info.value)
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    assert not list(cache.glob("*.part"))


def test_download_network_failure_is_a_data_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    with pytest.raises(DataError, match="download of http://127.0.0.1"):
        load_dataset("fmnist", download=True, cache_dir=tmp_path, mirror=f"http://127.0.0.1:{port}")


# ----------------------------------------------------------------------------- adult


def test_adult_not_found_lists_places(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("adult", search=[tmp_path / "x", tmp_path / "y"])

    message = str(info.value)
    for place in ["x", "x/adult", "y", "y/adult"]:
        assert str(tmp_path / place) in message


def test_adult_synthetic_parse_handles_header_missing_values_and_dots(tmp_path: Path) -> None:
    row = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, {c}, {y}\n"
    train = row.format(c="United-States", y="<=50K") + row.format(c="?", y=">50K") + "\n"
    test = "|1x3 Cross validator\n" + row.format(c="Peru", y=">50K.") + "\n"
    with gzip.open(tmp_path / "adult.data.gz", "wt") as f:
        f.write(train)
    (tmp_path / "adult.test").write_text(test)

    bundle = load_dataset("adult", search=[tmp_path])

    assert bundle.train.y.tolist() == [0, 1] and bundle.test.y.tolist() == [1]
    assert bundle.train.x.shape[1] == bundle.test.x.shape[1] == bundle.input_shape[0]
    assert not torch.isnan(bundle.test.x).any()


def test_adult_bad_row_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "adult.data").write_text("1, 2, 3\n")
    (tmp_path / "adult.test").write_text("")

    with pytest.raises(DataError, match=r"adult.data:1: expected 15"):
        load_dataset("adult", search=[tmp_path])


@needs_shared_adult
def test_adult_real_files_parse_to_standardised_features() -> None:
    bundle = load_dataset("adult", search=[SHARED])

    assert bundle.train.x.shape == (32561, 108) and bundle.test.x.shape == (16281, 108)
    assert bundle.input_shape == (108,) and bundle.train.classes == 2
    assert not torch.isnan(bundle.train.x).any() and not torch.isnan(bundle.test.x).any()
    assert int(bundle.train.y.sum()) == 7841 and int(bundle.test.y.sum()) == 3846
    assert torch.allclose(bundle.train.x[:, :6].mean(0), torch.zeros(6), atol=1e-4)
    assert "UCI Adult from" in bundle.source


# ----------------------------------------------------------------------------- partitions


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.repeat(np.arange(10), 100)


def _check_cover(parts: list[np.ndarray], total: int, n: int) -> None:
    assert len(parts) == n
    joined = np.concatenate(parts)
    assert joined.shape[0] == total
    assert np.array_equal(np.sort(joined), np.arange(total))
    assert all(p.dtype == np.int64 for p in parts)


@pytest.mark.parametrize("scheme", PARTITIONS)
def test_partition_is_disjoint_covering_and_deterministic(scheme: str, labels: np.ndarray) -> None:
    a = partition(labels, 7, scheme, seed=5)
    b = partition(labels, 7, scheme, seed=5)
    c = partition(labels, 7, scheme, seed=6)

    _check_cover(a, labels.shape[0], 7)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))
    assert min(len(p) for p in a) >= 1


def _mean_max_class_share(parts: list[np.ndarray], labels: np.ndarray) -> float:
    return float(np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts]))


def test_partition_label_skew(labels: np.ndarray) -> None:
    iid = partition(labels, 10, "iid", seed=0)
    skewed = partition(labels, 10, "dirichlet", alpha=0.05, seed=0)
    flat = partition(labels, 10, "dirichlet", alpha=1000.0, seed=0)
    shards = partition(labels, 10, "shards", shards_per_node=2, seed=0)

    assert _mean_max_class_share(iid, labels) < 0.3
    assert _mean_max_class_share(flat, labels) < 0.3
    assert _mean_max_class_share(skewed, labels) > 0.5
    assert all(len(np.unique(labels[p])) <= 2 for p in shards)


def test_dirichlet_gives_every_node_a_sample_even_when_tight() -> None:
    labels = np.array([0, 0, 1, 1, 2])

    parts = partition(labels, 5, "dirichlet", alpha=0.01, seed=1)

    _check_cover(parts, 5, 5)
    assert all(len(p) == 1 for p in parts)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 12),
    extra=st.integers(0, 200),
    classes=st.integers(1, 6),
    scheme=st.sampled_from(PARTITIONS),
    seed=st.integers(0, 2**31),
)
def test_partition_property(
    data: st.DataObject, n: int, extra: int, classes: int, scheme: str, seed: int
) -> None:
    shards_per_node = data.draw(st.integers(1, 3))
    total = n * shards_per_node + extra
    labels = np.array(
        data.draw(st.lists(st.integers(0, classes - 1), min_size=total, max_size=total))
    )
    alpha = data.draw(st.floats(0.01, 100.0))

    parts = partition(labels, n, scheme, alpha=alpha, shards_per_node=shards_per_node, seed=seed)

    _check_cover(parts, total, n)
    assert min(len(p) for p in parts) >= 1
    again = partition(labels, n, scheme, alpha=alpha, shards_per_node=shards_per_node, seed=seed)
    assert all(np.array_equal(p, q) for p, q in zip(parts, again, strict=True))


def test_partition_bad_arguments_are_config_errors(labels: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="partition: 'zipf'"):
        partition(labels, 3, "zipf")
    with pytest.raises(ConfigError, match="partition.n"):
        partition(labels, 0)
    with pytest.raises(ConfigError, match="partition.n"):
        partition(labels[:3], 4)
    with pytest.raises(ConfigError, match="partition.alpha"):
        partition(labels, 3, "dirichlet", alpha=0.0)
    with pytest.raises(ConfigError, match="partition.shards_per_node"):
        partition(labels, 10, "shards", shards_per_node=101)


# ----------------------------------------------------------------------------- misc


def test_unknown_dataset_and_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="dataset: 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="embedded_test_fraction"):
        load_dataset("fmnist", embedded_test_fraction=1.0)
    with pytest.raises(ConfigError, match="max_train"):
        load_dataset("fmnist", max_train=0)


def test_split_validation_is_stratified_disjoint_and_seeded() -> None:
    y = torch.from_numpy(np.repeat(np.arange(4), 25))
    x = torch.arange(100, dtype=torch.float32).reshape(100, 1)
    data = TensorData(x, y, 4)

    train, val = split_validation(data, 0.2, seed=1)
    again, _ = split_validation(data, 0.2, seed=1)
    other, _ = split_validation(data, 0.2, seed=2)

    assert len(train) == 80 and len(val) == 20
    assert np.bincount(val.labels).tolist() == [5] * 4
    assert sorted(torch.cat([train.x, val.x]).reshape(-1).tolist()) == list(range(100))
    assert torch.equal(train.x, again.x) and not torch.equal(train.x, other.x)


def test_tensor_data_subset_and_validation() -> None:
    data = TensorData(torch.zeros(5, 3), torch.arange(5), 5)

    sub = data.subset(np.array([4, 0]))

    assert len(sub) == 2 and sub.y.tolist() == [4, 0]
    with pytest.raises(ValueError):
        TensorData(torch.zeros(5, 3), torch.arange(4), 5)


# ----------------------------------------------------------------------------- data identity


def test_identity_is_small_flat_scalars_and_equal_for_the_same_data() -> None:
    a = identity(load_dataset("fmnist", max_train=300, max_test=100, seed=3))
    b = identity(load_dataset("fmnist", max_train=300, max_test=100, seed=3))

    assert a == b and identity_difference(b, a, 1) == ""
    assert tuple(a) == IDENTITY_KEYS and len(a) <= 8
    assert all(isinstance(v, str | int) and not isinstance(v, bool) for v in a.values())
    assert a["dataset"] == "fmnist" and a["source"] == "embedded"
    assert (a["train"], a["test"], a["classes"]) == (300, 100, 10)
    assert len(json.dumps(a)) < 300


def test_identity_full_set_against_embedded_split_names_both(tmp_path: Path) -> None:
    _write_fake_fmnist(tmp_path / "full", 40, 20)
    full = identity(load_dataset("fmnist", search=[tmp_path / "full"]))
    embedded = identity(load_dataset("fmnist", search=[tmp_path / "empty"]))

    assert full["source"] == "full"
    assert identity_difference(embedded, full, 1) == (
        "data differs: embedded split at node 1, full Fashion-MNIST here"
    )
    assert identity_difference(full, embedded, 4) == (
        "data differs: full Fashion-MNIST at node 4, embedded split here"
    )


def test_identity_names_a_different_training_size() -> None:
    small = identity(load_dataset("fmnist", max_train=2000))
    large = identity(load_dataset("fmnist"))

    assert identity_difference(small, large, 1) == (
        "data differs: 2000 training examples at node 1, 8000 here"
    )


def test_identity_names_different_contents_of_the_same_sizes(tmp_path: Path) -> None:
    _write_fake_fmnist(tmp_path / "a", 40, 20, fill=7)
    _write_fake_fmnist(tmp_path / "b", 40, 20, fill=9)
    _write_fake_fmnist(tmp_path / "c", 40, 20, fill=9)  # train of b, test of a
    for stem in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(tmp_path / "a" / stem, tmp_path / "c" / stem)
    a, b, c = (identity(load_dataset("fmnist", search=[tmp_path / d])) for d in "abc")

    test_diff = identity_difference(b, a, 2)
    train_diff = identity_difference(c, a, 2)

    assert test_diff == (
        f"data differs: test split hash {b['test_hash'][:8]}\u2026 at node 2, "
        f"{a['test_hash'][:8]}\u2026 here"
    )
    assert train_diff.startswith("data differs: training split hash")
    assert c["test_hash"] == a["test_hash"] and c["train_hash"] == b["train_hash"]


def test_identity_does_not_depend_on_the_folder_or_file_compression(tmp_path: Path) -> None:
    _write_fake_fmnist(tmp_path / "here", 40, 20, fill=5)
    _write_fake_fmnist(tmp_path / "there" / "FashionMNIST" / "raw", 40, 20, fill=5, gz=False)

    here = identity(load_dataset("fmnist", search=[tmp_path / "here"]))
    there = identity(load_dataset("fmnist", search=[tmp_path / "there"]))

    assert here == there


def _deep(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "theirs",
    [
        [], 1, None, 1.5, True, b"\x00", "not json", "[" * 5000, "1", {"x": [1, 2, 3]},
        _deep(5000), {"dataset": _deep(5000)},
    ],
    ids=lambda v: type(v).__name__,
)
def test_identity_difference_hostile_values_are_named_not_raised(theirs: object) -> None:
    ours = identity(load_dataset("fmnist", max_train=100, max_test=50))

    message = identity_difference(theirs, ours, 1)

    assert message.startswith("data identity missing or malformed at node 1")


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        ("train", True, "malformed"), ("train", "8000", "malformed"), ("train", -1, "malformed"),
        ("train", 2**70, "malformed"), ("test_hash", "zz" * 8, "malformed"),
        ("dataset", "x" * 5000, "malformed"), ("dataset", "fmnist\nFAKE LOG LINE", "malformed"),
        ("source", ["full"], "malformed"), ("classes", None, "missing"),
    ],
)
def test_identity_difference_wrong_types_name_the_key(key: str, value: object, what: str) -> None:
    ours = identity(load_dataset("fmnist", max_train=100, max_test=50))

    message = identity_difference({**ours, key: value}, ours, 3)

    assert message == f"data identity missing or malformed at node 3 ('{key}' is {what})"
    assert "\n" not in message and len(message) < 120


def test_identity_difference_accepts_the_identity_as_json_text() -> None:
    ours = identity(load_dataset("fmnist", max_train=100, max_test=50))

    assert identity_difference(json.dumps(ours), ours, 1) == ""
    assert identity_difference(json.dumps({**ours, "test": 7}), ours, 1) == (
        "data differs: 7 test examples at node 1, 50 here"
    )


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(theirs=_json, extra=st.dictionaries(st.sampled_from(IDENTITY_KEYS), _json, max_size=3))
def test_identity_difference_never_raises_and_is_one_short_line(theirs: object, extra: dict) -> None:
    ours = {"dataset": "fmnist", "source": "full", "train": 60000, "test": 10000, "classes": 10,
            "test_hash": "0123456789abcdef", "train_hash": "fedcba9876543210"}

    for value in (theirs, {**ours, **extra}):
        message = identity_difference(value, ours, 5)
        assert isinstance(message, str) and "\n" not in message and len(message) < 200
        assert (message == "") == (isinstance(value, dict) and all(value.get(k) == ours[k] for k in ours)
                                   and all(type(value[k]) is type(ours[k]) for k in ours))


def test_fallback_to_the_embedded_split_warns_where_it_looked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="p2pfl.data"):
        load_dataset("fmnist", search=[tmp_path / "nothing-here"], max_train=100, max_test=50)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(tmp_path / "nothing-here") in warnings[0] and "embedded" in warnings[0]
