"""Synthetic 8x8 "bars" images: the user's own tensors, generated, nothing downloaded.

Class k of 4 is a bright two-pixel bar (top, bottom, left or right) on Gaussian noise, with
a random brightness; a small CNN learns it in a few hundred steps.
"""

from __future__ import annotations

import numpy as np
import torch

from p2pfl.data import UserData

CLASSES = 4
SIDE = 8


def _images(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = rng.integers(0, CLASSES, size=n)
    x = rng.normal(0.0, 0.35, size=(n, 1, SIDE, SIDE))
    bright = rng.uniform(0.6, 1.2, size=n)
    for i, (label, b) in enumerate(zip(y, bright, strict=True)):
        if label == 0:
            x[i, 0, 1:3, :] += b
        elif label == 1:
            x[i, 0, 5:7, :] += b
        elif label == 2:
            x[i, 0, :, 1:3] += b
        else:
            x[i, 0, :, 5:7] += b
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


def load(seed: int = 0, n_train: int = 800, n_test: int = 200) -> UserData:
    """Train and test tensors, a pure function of ``seed`` (p2pfl passes the run's seed)."""
    rng = np.random.default_rng(seed)
    x_train, y_train = _images(n_train, rng)
    x_test, y_test = _images(n_test, rng)
    return UserData(x_train, y_train, x_test, y_test, classes=CLASSES)
