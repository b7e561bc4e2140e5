"""Agreement between labels: confusion matrix, Dice and IoU per class."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Counts[i, j] of voxels of class ``classes[i]`` predicted as ``classes[j]``.

    Voxels whose truth is not one of ``classes`` (0 = unpainted) are ignored.
    """
    classes = [int(c) for c in classes]
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[classes] = np.arange(len(classes))
    t = lookup[np.asarray(truth, dtype=np.uint8).ravel()]
    p = lookup[np.asarray(predicted, dtype=np.uint8).ravel()]
    keep = t >= 0
    t, p = t[keep], p[keep]
    n = len(classes)
    # predictions outside the classes count as wrong for the truth's class
    p = np.where(p < 0, n, p)
    counts = np.bincount(t * (n + 1) + p, minlength=n * (n + 1)).reshape(n, n + 1)
    return counts[:, :n].astype(np.int64)  # the "outside" column counts in no prediction total


def scores(counts: np.ndarray, classes: Sequence[int]) -> dict[str, dict[str, float]]:
    """``{"<class value>": {"dice", "iou", "voxels"}}`` from a confusion matrix."""
    result = {}
    total_pred = counts.sum(axis=0)
    for i, value in enumerate(classes):
        tp = float(counts[i, i])
        truth = float(counts[i].sum())
        pred = float(total_pred[i])
        dice = 2 * tp / (truth + pred) if truth + pred else float("nan")
        iou = tp / (truth + pred - tp) if truth + pred - tp else float("nan")
        result[str(int(value))] = {"dice": round(dice, 4), "iou": round(iou, 4), "voxels": int(truth)}
    return result


def dice_per_class(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[int]) -> dict[int, float]:
    """Dice of each class over the voxels where ``truth`` is labelled."""
    s = scores(confusion(truth, predicted, classes), classes)
    return {int(k): v["dice"] for k, v in s.items()}


def accuracy(counts: np.ndarray) -> float:
    total = counts.sum()
    return float(np.trace(counts) / total) if total else float("nan")
