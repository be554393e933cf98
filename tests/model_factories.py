"""A user model factory importable as `tests.model_factories:mlp`, for recipes in the tests (no tests here)."""

from torch import nn


def mlp(hidden: int = 32, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
