"""Model zoo: small networks whose weights are a pure function of a seed.

Models
------
``"cnn"``
    The fast CPU default for 28x28 images (38,362 parameters for 1x28x28 and 10 classes)::

        Standardize(0.2860, 0.3530) -> Conv2d(C,16,5) ReLU MaxPool2
        -> Conv2d(16,32,5) ReLU MaxPool2 -> Flatten -> Dropout(0.25)
        -> Linear(32*4*4, 48) ReLU -> Linear(48, classes)

    Chosen by measurement: on one CPU thread it trains at about 5,000 samples/s (batch
    32, Adam) and reaches 83-85% test accuracy on the embedded Fashion-MNIST split after
    5 epochs on 8,000 images. ``Standardize`` (Fashion-MNIST pixel mean/std, fixed, not a
    parameter) is worth about 2 points there; data stays in ``[0, 1]``.

``"paper-cnn"``
    The Fashion-MNIST CNN of Bhagoji et al. (3,382,346 parameters for 28x28 inputs)::

        Conv2d(C,64,5) ReLU -> Conv2d(64,64,5) ReLU -> Dropout(0.25) -> Flatten
        -> Linear(64*20*20, 128) ReLU -> Dropout(0.5) -> Linear(128, classes)

``"mlp"``
    For tabular inputs (any shape, flattened): ``Linear(F, 64) ReLU Dropout(0.1) Linear(64, classes)``.

Your own model
--------------
``train.model = "package.module:factory"`` (an import path, see :mod:`p2pfl.imports`), or a
Python callable or :class:`torch.nn.Module` given to :class:`~p2pfl.Experiment`. A factory
is called with those of these keywords it takes, by name::

    factory(input_shape: tuple[int, ...], classes: int, seed: int) -> torch.nn.Module

``input_shape`` is one input without the batch dimension (``x_train.shape[1:]``),
``classes`` the number of logits the model must return. It is called with the global torch
RNG seeded with ``seed`` (and restored afterwards), so a factory that relies on PyTorch's
default initialisation is a pure function of the seed, as every node of a run needs (they
all start from the same x^0, compared at handshake). The module must have float32 CPU
parameters and map a batch ``(B, *input_shape)`` to logits ``(B, classes)``. Every
:class:`torch.nn.Dropout` in it is replaced by the equivalent :class:`SeededDropout`, so
its masks come from the node's own generator (bit-reproducible under threads). Only
parameters are gossiped: buffers (BatchNorm running statistics) stay local to each node,
and a warning says so.
``"linear"``
    Multinomial logistic regression (any input shape, flattened): ``Linear(F, classes)``;
    7,850 parameters for 28x28 inputs and 10 classes. The smallest model, for protocol-scale
    runs (thousands of nodes) where the model's size, not its accuracy, matters.

Determinism
-----------
Modules are first built on the ``meta`` device (no memory, no random draws) and then
initialised with PyTorch's default scheme (Kaiming-uniform weights, uniform biases) from a
local :class:`torch.Generator` seeded with ``seed``; the global RNG is neither read nor
advanced. Dropout is :class:`SeededDropout`, which draws its masks from a generator owned
by the model (see :func:`set_dropout_generator`), because :class:`torch.nn.Dropout` draws
from the process-wide generator, which is racy when nodes train in threads of one process.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from p2pfl.errors import ConfigError
from p2pfl.imports import (
    IMPORT_PATH_HELP,
    call_with,
    import_object,
    import_path_of,
    is_import_path,
    is_placeholder,
)

logger = logging.getLogger(__name__)

MODELS = ("cnn", "paper-cnn", "mlp", "linear")

#: The documented signature of a user's model factory (quoted in error messages).
FACTORY_SIGNATURE = "factory(input_shape, classes, seed) -> torch.nn.Module"

#: What ``train.model`` may be: a built-in name, an import path, a callable or a module.
ModelSource = str | Callable[..., nn.Module] | nn.Module

_SEEDED_BUILD = threading.Lock()  # one seeded user-model build at a time (they share the global torch RNG)
_DROPOUT_STREAM = 0x5EED_D409  # mixed into the seed of a model's default dropout generator
_FMNIST_MEAN, _FMNIST_STD = 0.2860, 0.3530  # pixel statistics of Fashion-MNIST train, in [0, 1]


class SeededDropout(nn.Module):
    """Inverted dropout whose masks come from an explicit :class:`torch.Generator`.

    In training mode every element is zeroed with probability ``p`` and the others are
    scaled by ``1 / (1 - p)`` (as :class:`torch.nn.Dropout`); in eval mode it is the
    identity. The mask is drawn from :attr:`generator`; when it is ``None`` the global
    generator is used, like :class:`torch.nn.Dropout` (not reproducible under threads).

    Parameters
    ----------
    p
        Drop probability in ``[0, 1]``.
    generator
        CPU generator for the masks; usually set with :func:`set_dropout_generator`.
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = 1.0 - self.p
        mask = torch.empty_like(x).bernoulli_(keep, generator=self.generator)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Standardize(nn.Module):
    """Fixed affine input scaling ``(x - mean) / std``; constants, not parameters."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.mean = float(mean)
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


def set_dropout_generator(model: nn.Module, generator: torch.Generator) -> None:
    """Make every :class:`SeededDropout` in ``model`` draw its masks from ``generator``.

    All dropout layers share the one generator; since a forward pass visits them in a
    fixed order, the masks are still a deterministic function of the generator state.
    """
    for module in model.modules():
        if isinstance(module, SeededDropout):
            module.generator = generator


def num_params(model: nn.Module) -> int:
    """Number of scalars in ``model.parameters()`` (the length of its flat vector)."""
    return sum(p.numel() for p in model.parameters())


def _conv_out(size: int, kernel: int) -> int:
    return size - kernel + 1


def _image_shape(name: str, input_shape: tuple[int, ...], min_side: int) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape[1:]) < min_side or input_shape[0] < 1:
        raise ConfigError(
            "input_shape",
            tuple(input_shape),
            f"model {name!r} needs images (channels, height, width) of at least {min_side}x{min_side}",
        )
    c, h, w = input_shape
    return int(c), int(h), int(w)


def _small_cnn(input_shape: tuple[int, ...], classes: int) -> nn.Module:
    c, h, w = _image_shape("cnn", input_shape, 12)
    h = _conv_out(_conv_out(h, 5) // 2, 5) // 2
    w = _conv_out(_conv_out(w, 5) // 2, 5) // 2
    return nn.Sequential(
        Standardize(_FMNIST_MEAN, _FMNIST_STD),
        nn.Conv2d(c, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        SeededDropout(0.25),
        nn.Linear(32 * h * w, 48),
        nn.ReLU(),
        nn.Linear(48, classes),
    )


def _paper_cnn(input_shape: tuple[int, ...], classes: int) -> nn.Module:
    c, h, w = _image_shape("paper-cnn", input_shape, 9)
    h, w = _conv_out(_conv_out(h, 5), 5), _conv_out(_conv_out(w, 5), 5)
    return nn.Sequential(
        nn.Conv2d(c, 64, 5),
        nn.ReLU(),
        nn.Conv2d(64, 64, 5),
        nn.ReLU(),
        SeededDropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * h * w, 128),
        nn.ReLU(),
        SeededDropout(0.5),
        nn.Linear(128, classes),
    )


def _mlp(input_shape: tuple[int, ...], classes: int) -> nn.Module:
    features = math.prod(input_shape)
    if len(input_shape) == 0 or features < 1:
        raise ConfigError(
            "input_shape", tuple(input_shape), "model 'mlp' needs a non-empty input shape"
        )
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, 64),
        nn.ReLU(),
        SeededDropout(0.1),
        nn.Linear(64, classes),
    )


def _linear(input_shape: tuple[int, ...], classes: int) -> nn.Module:
    features = math.prod(input_shape)
    if len(input_shape) == 0 or features < 1:
        raise ConfigError(
            "input_shape", tuple(input_shape), "model 'linear' needs a non-empty input shape"
        )
    return nn.Sequential(nn.Flatten(), nn.Linear(features, classes))


_BUILDERS = {"cnn": _small_cnn, "paper-cnn": _paper_cnn, "mlp": _mlp, "linear": _linear}


def _init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear/Conv initialisation, drawn from ``generator``."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    module.bias.uniform_(-bound, bound, generator=generator)
            elif any(True for _ in module.parameters(recurse=False)):
                raise TypeError(f"no seeded initialisation for {type(module).__name__}")


def is_user_model(source: Any) -> bool:
    """True unless ``source`` is a built-in model name."""
    return not (isinstance(source, str) and source in MODELS)


def describe_model(source: ModelSource) -> str:
    """A short name of a model source for settings and messages."""
    if isinstance(source, str):
        return source
    return import_path_of(source) or getattr(source, "__qualname__", None) or type(source).__name__


def _user_model(source: ModelSource, input_shape: tuple[int, ...], classes: int, seed: int,
                field: str) -> nn.Module:
    what = f"a model factory {FACTORY_SIGNATURE}"
    if is_placeholder(source):
        raise ConfigError(field, source, "the Python object itself (Experiment(model=...), in this process); "
                                         f"node processes and other hosts need {IMPORT_PATH_HELP}")
    if isinstance(source, str):
        if not is_import_path(source):
            raise ConfigError(field, source, f"one of {', '.join(MODELS)}, or {IMPORT_PATH_HELP} of {what}")
        factory: Any = import_object(source, field, what)
    else:
        factory = source
    # seeded default init; the caller's RNG state is restored; builds in other threads wait
    with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(factory, nn.Module):
            model = copy.deepcopy(factory)
        else:
            model = call_with(factory, field, FACTORY_SIGNATURE, input_shape=input_shape, classes=classes,
                              seed=seed)
    name = describe_model(source)
    if not isinstance(model, nn.Module):
        raise ConfigError(field, name, f"{what}; it returned a {type(model).__name__}")
    params = list(model.parameters())
    if not params:
        raise ConfigError(field, name, f"{what}; the module it returned has no parameters")
    bad = next((p for p in params if p.dtype != torch.float32 or p.device.type != "cpu"), None)
    if bad is not None:
        raise ConfigError(field, name, f"{what} with float32 CPU parameters; it has {bad.dtype} on "
                                       f"{bad.device.type} (call .float() / .cpu())")
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if type(child) is nn.Dropout:  # same inverted dropout, masks from the node's generator
                setattr(parent, child_name, SeededDropout(child.p))
    if any(True for _ in model.buffers()):
        logger.warning("%s: model %s has buffers (e.g. BatchNorm statistics); only parameters are gossiped, "
                       "buffers stay local to each node", field, name)
    return model


def check_model_output(model: nn.Module, inputs: torch.Tensor, classes: int, *, field: str = "train.model",
                       name: str = "") -> None:
    """Raise a ConfigError unless ``model(inputs)`` gives logits ``(len(inputs), classes)``.

    Run once per plan on two training examples, so that a model that does not fit the data
    fails before any node starts, with a message naming ``field``.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(inputs)
    except Exception as exc:  # noqa: BLE001 - the user's forward pass
        raise ConfigError(field, name, f"a model that takes inputs of shape {tuple(inputs.shape)}; its forward "
                                       f"pass raised {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    want = (int(inputs.shape[0]), int(classes))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want or not out.is_floating_point():
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(field, name, f"a model that maps inputs {tuple(inputs.shape)} to float logits of "
                                       f"shape {want}; it returned {got}")


def build_model(name: ModelSource, *, input_shape: tuple[int, ...], classes: int, seed: int,
                field: str = "train.model") -> nn.Module:
    """Build a model with weights determined by ``seed`` alone.

    Parameters
    ----------
    name
        One of :data:`MODELS`; or the user's model: an import path ``"package.module:factory"``,
        a factory callable or a :class:`torch.nn.Module` (copied), see "Your own model" above.
    input_shape
        Shape of one input without the batch dimension, e.g. ``(1, 28, 28)`` or ``(108,)``.
    classes
        Number of output logits, >= 2.
    seed
        Non-negative integer; the same seed gives bit-identical weights whatever the global
        RNG state, and building does not advance the global RNG.

    Returns
    -------
    torch.nn.Module
        A float32 CPU module in training mode. Its dropout layers draw from a generator
        derived from ``seed``; :class:`p2pfl.train.Trainer` replaces it with its own.

    Raises
    ------
    ConfigError
        Unknown name, an input shape or class count the model cannot take; for a user's
        model also: an import path that does not load, a factory that does not return a
        float32 CPU :class:`torch.nn.Module` with parameters. Named after ``field``.
    """
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ConfigError("classes", classes, "an integer >= 2")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", seed, "a non-negative integer")
    shape = tuple(int(s) for s in input_shape)
    if is_user_model(name):
        model = _user_model(name, shape, classes, seed, field)
    else:
        with torch.device("meta"):
            model = _BUILDERS[name](shape, classes)  # type: ignore[index]
        model = model.to_empty(device="cpu")
        _init_parameters(model, torch.Generator().manual_seed(seed))
    dropout_seed = (seed * 0x9E3779B97F4A7C15 + _DROPOUT_STREAM) % (1 << 63)
    set_dropout_generator(model, torch.Generator().manual_seed(dropout_seed))
    model.train()
    logger.debug(
        "built %s for %s -> %d classes: %d parameters", describe_model(name), shape, classes, num_params(model)
    )
    return model


__all__ = [
    "FACTORY_SIGNATURE",
    "MODELS",
    "ModelSource",
    "SeededDropout",
    "Standardize",
    "build_model",
    "check_model_output",
    "describe_model",
    "is_user_model",
    "num_params",
    "set_dropout_generator",
]
