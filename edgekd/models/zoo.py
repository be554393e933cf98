"""The built-in model zoo for the default task: a CNN teacher and a much smaller student."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgekd.errors import RecipeError, did_you_mean


def digits_cnn(num_classes: int) -> nn.Module:
    """Teacher: three conv blocks and an MLP head, ~160k parameters, for 1x8x8 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 64 x 4 x 4
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 128 x 2 x 2
        nn.Flatten(),
        nn.Linear(512, 128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, num_classes),
    )  # fmt: skip


def digits_tiny(num_classes: int) -> nn.Module:
    """Student: two small conv blocks and a linear head, ~2.7k parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 8 x 4 x 4
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 2 x 2
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )  # fmt: skip


ZOO: dict[str, Callable[[int], nn.Module]] = {
    "digits-cnn": digits_cnn,
    "digits-tiny": digits_tiny,
}


def build_model(architecture: str, num_classes: int, key: str = "architecture") -> nn.Module:
    try:
        factory = ZOO[architecture]
    except KeyError:
        hint = did_you_mean(architecture, ZOO)
        raise RecipeError(
            f"recipe key '{key}': unknown architecture '{architecture}'{hint}; choose from {', '.join(ZOO)}"
        ) from None
    return factory(num_classes)
