"""scikit-learn's bundled handwritten digits (1,797 8x8 images): the default task, no download needed."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from edgekd.recipe import TaskSection
from edgekd.tasks.base import TaskData

PIXEL_MAX = 16.0  # load_digits pixels are integers 0..16


def load_digits_task(section: TaskSection) -> TaskData:
    digits = load_digits()
    images = (digits.images / PIXEL_MAX).astype(np.float32)[:, None, :, :]  # N x 1 x 8 x 8
    labels = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=section.test_fraction, random_state=section.seed, stratify=labels
    )
    val_share = section.val_fraction / (1.0 - section.test_fraction)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_share, random_state=section.seed, stratify=y_rest
    )
    split = {
        "method": "stratified",
        "seed": section.seed,
        "train": len(y_train),
        "val": len(y_val),
        "test": len(y_test),
    }
    return TaskData(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        input_name="pixels",
        split=split,
    )
