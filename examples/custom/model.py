"""A tiny CNN for small single-channel images: the user's own torch model.

p2pfl calls ``build`` with the keywords it takes (here ``input_shape`` and ``classes``) and
with the torch RNG seeded from the run's seed, so plain ``nn.Conv2d``/``nn.Linear`` default
initialisation gives every node the same initial model.
"""

from __future__ import annotations

from torch import nn


def build(input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """Conv(3x3, 8) ReLU MaxPool2 -> Dropout(0.1) -> Linear(classes), for (C, H, W) inputs."""
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),  # p2pfl swaps it for its seeded dropout (same maths, reproducible masks)
        nn.Linear(8 * (height // 2) * (width // 2), classes),
    )
