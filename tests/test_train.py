"""Tests of p2pfl.train: flat vectors, reproducible local training, evaluation."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from p2pfl.data import TensorData, load_dataset
from p2pfl.errors import ConfigError
from p2pfl.models import build_model, num_params
from p2pfl.train import ModelPool, Trainer, TrainSpec, get_flat, set_flat

IMAGE = (1, 28, 28)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Bit-reproducibility is promised for a fixed intra-op thread count (documented)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fmnist() -> tuple[TensorData, TensorData]:
    bundle = load_dataset("fmnist", max_train=320, max_test=200, seed=0)
    return bundle.train, bundle.test


def _tabular(n: int = 100, features: int = 6, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).to(torch.int64)
    return TensorData(x, y, 2)


def _mlp(seed: int = 0, features: int = 6) -> torch.nn.Module:
    return build_model("mlp", input_shape=(features,), classes=2, seed=seed)


# ----------------------------------------------------------------------------- flat vectors


def test_get_set_flat_round_trip() -> None:
    model = _mlp()
    vec = np.arange(num_params(model), dtype=np.float32) / 1000

    set_flat(model, vec)
    out = get_flat(model)

    assert out.dtype == np.float32 and out.shape == (num_params(model),)
    assert np.array_equal(out, vec)
    assert np.array_equal(model[1].bias.detach().numpy(), vec[6 * 64 : 6 * 64 + 64])


def test_set_flat_copies_and_get_flat_returns_a_copy() -> None:
    model = _mlp()
    vec = np.zeros(num_params(model), dtype=np.float32)

    set_flat(model, vec)
    vec += 5.0
    out = get_flat(model)
    out -= 3.0

    assert np.all(get_flat(model) == 0.0)


def test_set_flat_rejects_wrong_size() -> None:
    model = _mlp()

    with pytest.raises(ValueError, match="parameters"):
        set_flat(model, np.zeros(num_params(model) + 1, dtype=np.float32))
    with pytest.raises(ValueError):
        set_flat(model, np.zeros((1, num_params(model)), dtype=np.float32))


def test_training_does_not_mutate_the_start_vector() -> None:
    trainer = Trainer(_mlp(), TrainSpec(epochs=2), seed=0)
    x = get_flat(trainer.model)
    snapshot = x.copy()

    z = trainer.train(x, _tabular())

    assert np.array_equal(x, snapshot)
    assert not np.array_equal(z, x)


# ----------------------------------------------------------------------------- training


def test_training_reduces_loss(fmnist: tuple[TensorData, TensorData]) -> None:
    train, _ = fmnist
    trainer = Trainer(
        build_model("cnn", input_shape=IMAGE, classes=10, seed=0), TrainSpec(epochs=3), seed=0
    )
    x = get_flat(trainer.model)
    before = trainer.evaluate(x, train)

    z = trainer.train(x, train)
    after = trainer.evaluate(z, train)

    assert after.loss < 0.8 * before.loss
    assert after.accuracy > before.accuracy


def _run_cnn(seed: int, data: TensorData, out: dict[str, np.ndarray], key: str) -> None:
    model = build_model("cnn", input_shape=IMAGE, classes=10, seed=0)
    trainer = Trainer(model, TrainSpec(epochs=2, batch_size=16), seed=seed)
    out[key] = trainer.train(get_flat(model), data)


def test_same_seed_is_bit_identical_across_concurrent_threads(
    fmnist: tuple[TensorData, TensorData],
) -> None:
    train, _ = fmnist
    results: dict[str, np.ndarray] = {}

    def other_work() -> None:  # a third, unrelated trainer using dropout and shuffling
        trainer = Trainer(_mlp(seed=9, features=784), TrainSpec(epochs=6, batch_size=8), seed=123)
        flat = TensorData(train.x.reshape(len(train), -1), train.y, 10)
        results["other"] = trainer.train(get_flat(trainer.model), TensorData(flat.x, flat.y % 2, 2))

    threads = [
        threading.Thread(target=_run_cnn, args=(7, train, results, "a")),
        threading.Thread(target=_run_cnn, args=(7, train, results, "b")),
        threading.Thread(target=other_work),
    ]
    for t in threads:
        t.start()
    torch.rand(100)  # the main thread uses the global RNG meanwhile
    for t in threads:
        t.join()
    _run_cnn(7, train, results, "sequential")

    assert np.array_equal(results["a"], results["b"])
    assert np.array_equal(results["a"], results["sequential"])


def test_different_seeds_give_different_results(fmnist: tuple[TensorData, TensorData]) -> None:
    train, _ = fmnist
    results: dict[str, np.ndarray] = {}

    _run_cnn(1, train, results, "one")
    _run_cnn(2, train, results, "two")

    assert not np.array_equal(results["one"], results["two"])


def test_evaluate_and_predict_proba(fmnist: tuple[TensorData, TensorData]) -> None:
    _, test = fmnist
    trainer = Trainer(
        build_model("cnn", input_shape=IMAGE, classes=10, seed=0), TrainSpec(), seed=0
    )
    x = get_flat(trainer.model)

    ev = trainer.evaluate(x, test, batch_size=64)
    proba = trainer.predict_proba(x, test.x[:5])

    assert 0.0 <= ev.accuracy <= 1.0 and ev.n == 200 and math.isfinite(ev.loss) and ev.loss > 0
    assert proba.shape == (5, 10) and proba.dtype == np.float32
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert not trainer.model.training


def test_extra_loss_is_used() -> None:
    trainer = Trainer(_mlp(), TrainSpec(optimizer="sgd", lr=0.01), seed=0)
    x = get_flat(trainer.model)
    target_np = x + np.random.default_rng(0).normal(0.0, 0.5, size=x.shape).astype(np.float32)
    target = torch.from_numpy(target_np)

    def pull(model: torch.nn.Module) -> torch.Tensor:
        flat = torch.cat([p.reshape(-1) for p in model.parameters()])
        return 25.0 * ((flat - target) ** 2).sum()

    z = trainer.train(x, _tabular(), steps=20, extra_loss=pull)

    assert np.linalg.norm(z - target_np) < 0.1 * np.linalg.norm(x - target_np)


def test_steps_runs_exactly_that_many_optimizer_steps() -> None:
    trainer = Trainer(_mlp(), TrainSpec(batch_size=32), seed=0, keep_optimizer_state=True)
    calls = []

    def count(model: torch.nn.Module) -> torch.Tensor:
        calls.append(1)
        return torch.zeros(())

    # 100 samples in batches of 32: 4 batches per epoch, so 7 steps cross an epoch boundary
    trainer.train(get_flat(trainer.model), _tabular(100), steps=7, extra_loss=count)

    adam_steps = {float(s["step"]) for s in trainer.state_dict()["optimizer"]["state"].values()}
    assert len(calls) == 7 and trainer.last_steps == 7
    assert adam_steps == {7.0}


def test_epochs_run_ceil_n_over_batch_steps_and_zero_is_a_no_op() -> None:
    trainer = Trainer(_mlp(), TrainSpec(epochs=2, batch_size=32), seed=0)
    x = get_flat(trainer.model)

    trainer.train(x, _tabular(100))
    full = trainer.last_steps
    z = trainer.train(x, _tabular(100), epochs=0)

    assert full == 8
    assert trainer.last_steps == 0 and np.array_equal(z, x)
    with pytest.raises(ValueError, match="not both"):
        trainer.train(x, _tabular(), epochs=1, steps=1)


def test_optimizer_state_is_fresh_unless_kept() -> None:
    data = _tabular()
    fresh = Trainer(_mlp(), TrainSpec(), seed=0)
    kept = Trainer(_mlp(), TrainSpec(), seed=0, keep_optimizer_state=True)
    x = get_flat(fresh.model)

    a1 = fresh.train(x, data)
    b1 = kept.train(x, data)
    a2 = fresh.train(a1, data)
    b2 = kept.train(b1, data)

    assert np.array_equal(a1, b1)
    assert not np.array_equal(a2, b2)
    assert fresh.state_dict()["optimizer"] is None


def test_state_dict_round_trip_resumes_identically() -> None:
    data = _tabular()
    straight = Trainer(_mlp(), TrainSpec(), seed=3, keep_optimizer_state=True)
    x = get_flat(straight.model)
    z1 = straight.train(x, data)
    z2 = straight.train(z1, data)

    first = Trainer(_mlp(), TrainSpec(), seed=3, keep_optimizer_state=True)
    first.train(x, data)
    resumed = Trainer(_mlp(), TrainSpec(), seed=99, keep_optimizer_state=True)
    resumed.load_state_dict(first.state_dict())

    assert np.array_equal(resumed.train(z1, data), z2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epochs": 0}, "train.epochs"),
        ({"epochs": 1.5}, "train.epochs"),
        ({"batch_size": 0}, "train.batch_size"),
        ({"lr": 0.0}, "train.lr"),
        ({"lr": float("nan")}, "train.lr"),
        ({"optimizer": "adagrad"}, "train.optimizer"),
        ({"optimizer": "sgd", "momentum": 1.0}, "train.momentum"),
        ({"momentum": 0.9}, "train.momentum"),
        ({"weight_decay": -1.0}, "train.weight_decay"),
    ],
)
def test_bad_train_spec_is_a_config_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainSpec(**kwargs)

    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


# ----------------------------------------------------------------------------- shared modules


def test_trainers_on_a_model_pool_match_trainers_with_their_own_modules(
    fmnist: tuple[TensorData, TensorData],
) -> None:
    """Three nodes' trainers borrowing one module per thread (interleaved rounds, two threads)
    give bit-identical vectors to three trainers that each own a module."""
    train, test = fmnist
    shards = [train.subset(np.arange(k, len(train), 3)) for k in range(3)]
    x0 = get_flat(build_model("cnn", input_shape=IMAGE, classes=10, seed=0))
    spec = TrainSpec(epochs=1, batch_size=16)

    def own(k: int) -> Trainer:
        return Trainer(build_model("cnn", input_shape=IMAGE, classes=10, seed=0), spec, seed=k)

    pool = ModelPool(lambda: build_model("cnn", input_shape=IMAGE, classes=10, seed=0))
    owned = [own(k) for k in range(3)]
    pooled = [Trainer(pool, spec, seed=k) for k in range(3)]

    def rounds(trainers: list[Trainer]) -> list[np.ndarray]:
        xs = [x0] * 3
        for r in range(2):
            with ThreadPoolExecutor(max_workers=2) as ex:  # nodes in any order on any thread
                order = [2, 0, 1] if r else [0, 1, 2]
                done = {k: ex.submit(trainers[k].train, xs[k], shards[k]) for k in order}
            xs = [done[k].result() for k in range(3)]
        return xs

    expected, got = rounds(owned), rounds(pooled)

    for k in range(3):
        assert np.array_equal(expected[k], got[k]), k
    assert 1 <= pool.built <= 4  # at most one module per thread that trained (2 pools of 2)
    assert pooled[0].evaluate(got[0], test) == owned[0].evaluate(expected[0], test)


def test_a_model_pool_refuses_kept_optimizer_state() -> None:
    pool = ModelPool(_mlp)
    with pytest.raises(ValueError, match="keep_optimizer_state"):
        Trainer(pool, TrainSpec(), seed=0, keep_optimizer_state=True)
