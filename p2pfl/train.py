"""Local training of one node on flat parameter vectors.

The gossip layer sees a model only as a flat float32 vector (:func:`get_flat`,
:func:`set_flat`); a :class:`Trainer` turns a vector ``x`` into the trained vector ``z``.

Reproducibility
---------------
A :class:`Trainer` owns a seeded :class:`torch.Generator` that draws both the minibatch
order and the dropout masks (through :func:`p2pfl.models.set_dropout_generator`), so no
global RNG is used: two trainers with the same seed, model and data produce bit-identical
vectors whichever thread runs them and whatever other trainers do meanwhile. Across
processes or machines, bit-identity also needs the same intra-op thread count, since it
can change the order of floating-point reductions: callers that need it should call
``torch.set_num_threads(1)`` (also the fastest setting when one process runs many nodes).
A trainer itself is not thread-safe: use one trainer from one thread at a time.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from p2pfl.data import TensorData
from p2pfl.errors import ConfigError
from p2pfl.models import set_dropout_generator

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd")


def get_flat(model: nn.Module) -> np.ndarray:
    """All parameters of ``model`` (in ``model.parameters()`` order) as a new float32 vector."""
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).to(torch.float32) for p in model.parameters()])
    return flat.cpu().numpy()


def set_flat(model: nn.Module, vec: np.ndarray) -> None:
    """Copy ``vec`` into the parameters of ``model`` (in ``model.parameters()`` order).

    The parameters never become views of ``vec`` (unlike
    :func:`torch.nn.utils.vector_to_parameters`): later changes to either side do not
    affect the other.

    Raises
    ------
    ValueError
        ``vec`` is not 1-D or its length differs from the number of parameters.
    """
    arr = np.asarray(vec)
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    if arr.ndim != 1 or arr.shape[0] != total:
        raise ValueError(f"flat vector has shape {arr.shape}, the model has {total} parameters")
    src = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    with torch.no_grad():
        offset = 0
        for p in params:
            n = p.numel()
            p.copy_(src[offset : offset + n].view_as(p))
            offset += n


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return (
        isinstance(v, int | float | np.integer | np.floating)
        and not isinstance(v, bool)
        and math.isfinite(v)
    )


@dataclass(frozen=True)
class TrainSpec:
    """How a node trains locally.

    Attributes
    ----------
    epochs : int
        Passes over the local data per :meth:`Trainer.train` call, >= 1.
    batch_size : int
        Minibatch size, >= 1 (the last batch of an epoch may be smaller).
    lr : float
        Learning rate, > 0.
    optimizer : str
        One of :data:`OPTIMIZERS`.
    momentum : float
        SGD momentum in ``[0, 1)``; must stay 0 with Adam.
    weight_decay : float
        L2 weight decay, >= 0.
    """

    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ConfigError("train.epochs", self.epochs, "an integer >= 1")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ConfigError("train.batch_size", self.batch_size, "an integer >= 1")
        if not _is_real(self.lr) or self.lr <= 0:
            raise ConfigError("train.lr", self.lr, "a finite number > 0")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("train.optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if not _is_real(self.momentum) or not 0 <= self.momentum < 1:
            raise ConfigError("train.momentum", self.momentum, "a number in [0, 1)")
        if self.optimizer != "sgd" and self.momentum != 0:
            raise ConfigError(
                "train.momentum", self.momentum, "only used by optimizer 'sgd'; set 0"
            )
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError("train.weight_decay", self.weight_decay, "a finite number >= 0")


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and mean cross-entropy of a model on ``n`` samples (NaN when ``n == 0``)."""

    accuracy: float
    loss: float
    n: int


class ModelPool:
    """One torch module per thread, shared by every :class:`Trainer` of a process.

    A node that is not training needs no module of its own: its model is the flat vector.
    Trainers built on a pool borrow the calling thread's module for each call, load their
    parameters into it (:func:`set_flat` overwrites every parameter; the models here have
    no buffers) and point its dropout layers at their own generator, so results are
    bit-identical to a module per trainer. Grads are cleared on every hand-out. Only for
    trainers without persistent optimizer state (``keep_optimizer_state=False``): a kept
    optimizer holds references to one module's parameters.

    ``build`` makes a module (called once per thread that trains, evaluates or attacks).
    """

    def __init__(self, build: Callable[[], nn.Module]) -> None:
        self._build = build
        self._local = threading.local()
        self.built = 0  # modules made so far (one per thread that asked)

    def get(self, generator: torch.Generator) -> nn.Module:
        """This thread's module, grads cleared, dropout drawing from ``generator``."""
        model = getattr(self._local, "model", None)
        if model is None:
            model = self._local.model = self._build()
            self.built += 1
        model.zero_grad(set_to_none=True)
        set_dropout_generator(model, generator)
        return model


class Interrupted(RuntimeError):
    """Training was stopped from another thread (:attr:`Trainer.stop`)."""


class Trainer:
    """Local training of one node.

    Owns a model instance, an optimizer and a torch.Generator (seeded) used for shuffling
    and dropout, so that results are bit-reproducible from the seed regardless of which
    thread runs it or what other nodes do.

    Parameters
    ----------
    model
        The node's own model instance (not shared with other trainers; its dropout layers
        are pointed at the trainer's generator), or a :class:`ModelPool` whose per-thread
        module the trainer borrows for each call (not with ``keep_optimizer_state``).
    spec
        Training hyper-parameters.
    seed
        Seeds the generator (batch order and dropout masks).
    keep_optimizer_state
        ``False``: a fresh optimizer for every :meth:`train` call (FedAvg-style local
        training from the received model). ``True``: one optimizer whose state (Adam
        moments, momentum) persists across calls and in :meth:`state_dict`.
    """

    def __init__(
        self,
        model: nn.Module | ModelPool,
        spec: TrainSpec,
        *,
        seed: int,
        keep_optimizer_state: bool = False,
    ) -> None:
        if not _is_int(seed) or seed < 0:
            raise ConfigError("seed", seed, "a non-negative integer")
        if isinstance(model, ModelPool) and keep_optimizer_state:
            raise ValueError("keep_optimizer_state needs the trainer's own module, not a ModelPool")
        self._pool = model if isinstance(model, ModelPool) else None
        self._model = None if isinstance(model, ModelPool) else model
        self.spec = spec
        self.seed = int(seed)
        self.keep_optimizer_state = keep_optimizer_state
        self.generator = torch.Generator().manual_seed(self.seed)
        if self._model is not None:
            set_dropout_generator(self._model, self.generator)
        self._optimizer: torch.optim.Optimizer | None = None
        #: Optimizer steps taken by the last :meth:`train` call.
        self.last_steps = 0
        #: Set from any thread to stop a running :meth:`train` at its next batch (it raises
        #: :class:`Interrupted`); a node stopping on Ctrl-C does not wait for a whole epoch.
        self.stop = threading.Event()

    @property
    def model(self) -> nn.Module:
        """The module to compute with: the trainer's own, or this thread's pooled one (borrow it
        once per call: each access hands the pooled module out again)."""
        if self._pool is not None:
            return self._pool.get(self.generator)
        assert self._model is not None
        return self._model

    def _make_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        s = self.spec
        params = list((model or self.model).parameters())
        if s.optimizer == "adam":
            return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)

    def _get_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        if not self.keep_optimizer_state:
            return self._make_optimizer(model)
        if self._optimizer is None:
            self._optimizer = self._make_optimizer()
        return self._optimizer

    def _batches(self, n: int, epochs: int | None, steps: int | None):
        """Index batches: ``epochs`` shuffled passes, or exactly ``steps`` batches."""
        bs = self.spec.batch_size
        done = 0
        epoch = 0
        while True:
            if steps is None and epoch >= epochs:  # type: ignore[operator]
                return
            perm = torch.randperm(n, generator=self.generator)
            for start in range(0, n, bs):
                if steps is not None and done >= steps:
                    return
                if self.stop.is_set():
                    raise Interrupted("training stopped")
                yield perm[start : start + bs]
                done += 1
            epoch += 1

    def train(
        self,
        x: np.ndarray,
        data: TensorData,
        *,
        epochs: int | None = None,
        extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
        steps: int | None = None,
    ) -> np.ndarray:
        """Train from ``x`` on ``data`` and return the new flat vector ``z``.

        Parameters
        ----------
        x
            Start point (flat vector); it is copied, never modified.
        data
            The local training set.
        epochs
            Overrides ``spec.epochs`` (0 returns ``x`` unchanged).
        extra_loss
            Added to the minibatch cross-entropy at every step, called with the model
            (e.g. an attacker's distance penalty ``rho * ||w - w_ref||^2``).
        steps
            Run exactly this many minibatch steps instead of whole epochs, reshuffling at
            each pass over the data. Mutually exclusive with ``epochs``.

        Returns
        -------
        numpy.ndarray
            The trained parameters, a new float32 vector.
        """
        if epochs is not None and steps is not None:
            raise ValueError("give epochs or steps, not both")
        if epochs is None and steps is None:
            epochs = self.spec.epochs
        if epochs is not None and (not _is_int(epochs) or epochs < 0):
            raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
        if steps is not None and (not _is_int(steps) or steps < 0):
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        if len(data) == 0:
            raise ValueError("cannot train on an empty data set")
        model = self.model
        set_flat(model, x)
        model.train()
        optimizer = self._get_optimizer(model)
        taken = 0
        for idx in self._batches(len(data), epochs, steps):
            xb, yb = data.x[idx], data.y[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            loss.backward()
            optimizer.step()
            taken += 1
        self.last_steps = taken
        return get_flat(model)

    @torch.no_grad()
    def evaluate(self, x: np.ndarray, data: TensorData, *, batch_size: int = 256) -> Evaluation:
        """Accuracy and mean cross-entropy of parameters ``x`` on ``data`` (eval mode)."""
        n = len(data)
        if n == 0:
            return Evaluation(accuracy=math.nan, loss=math.nan, n=0)
        model = self.model
        set_flat(model, x)
        model.eval()
        correct = 0
        total_loss = 0.0
        for start in range(0, n, batch_size):
            xb, yb = data.x[start : start + batch_size], data.y[start : start + batch_size]
            logits = model(xb)
            total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(dim=1) == yb).sum())
        return Evaluation(accuracy=correct / n, loss=total_loss / n, n=n)

    @torch.no_grad()
    def predict_proba(
        self, x: np.ndarray, inputs: torch.Tensor, *, batch_size: int = 256
    ) -> np.ndarray:
        """Class probabilities ``(N, classes)`` of parameters ``x`` on a batch of inputs."""
        model = self.model
        set_flat(model, x)
        model.eval()
        out = [
            torch.softmax(model(inputs[start : start + batch_size]), dim=1)
            for start in range(0, inputs.shape[0], batch_size)
        ] or [torch.softmax(model(inputs), dim=1)]
        return torch.cat(out).numpy()

    def state_dict(self) -> dict[str, Any]:
        """Generator state and (when kept) optimizer state, for checkpoints."""
        opt = self._optimizer.state_dict() if self._optimizer is not None else None
        return {"generator": self.generator.get_state(), "optimizer": opt}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the model parameters are separate)."""
        self.generator.set_state(state["generator"])
        opt_state = state.get("optimizer")
        if opt_state is not None and self.keep_optimizer_state:
            self._optimizer = self._make_optimizer()
            self._optimizer.load_state_dict(opt_state)


__all__ = ["OPTIMIZERS", "Evaluation", "Interrupted", "ModelPool", "TrainSpec", "Trainer", "get_flat", "set_flat"]
