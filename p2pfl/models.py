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

import logging
import math

import torch
from torch import nn

from p2pfl.errors import ConfigError

logger = logging.getLogger(__name__)

MODELS = ("cnn", "paper-cnn", "mlp", "linear")

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


def build_model(name: str, *, input_shape: tuple[int, ...], classes: int, seed: int) -> nn.Module:
    """Build a model with weights determined by ``seed`` alone.

    Parameters
    ----------
    name
        One of :data:`MODELS`.
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
        Unknown name, or an input shape or class count the model cannot take.
    """
    if name not in _BUILDERS:
        raise ConfigError("model", name, f"one of {', '.join(MODELS)}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ConfigError("classes", classes, "an integer >= 2")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", seed, "a non-negative integer")
    shape = tuple(int(s) for s in input_shape)
    with torch.device("meta"):
        model = _BUILDERS[name](shape, classes)
    model = model.to_empty(device="cpu")
    _init_parameters(model, torch.Generator().manual_seed(seed))
    dropout_seed = (seed * 0x9E3779B97F4A7C15 + _DROPOUT_STREAM) % (1 << 63)
    set_dropout_generator(model, torch.Generator().manual_seed(dropout_seed))
    model.train()
    logger.debug(
        "built %s for %s -> %d classes: %d parameters", name, shape, classes, num_params(model)
    )
    return model


__all__ = [
    "MODELS",
    "SeededDropout",
    "Standardize",
    "build_model",
    "num_params",
    "set_dropout_generator",
]
