"""Parsing accuracy: confusion matrices and IoU over CelebAMask-HQ's 19 classes."""

from __future__ import annotations

import numpy as np


def confusion_matrix(predicted: np.ndarray, target: np.ndarray, num_classes: int = 19) -> np.ndarray:
    """``(num_classes, num_classes)`` pixel counts: row = true class, column = predicted.

    Label maps of any matching shape; target labels outside ``[0, num_classes)`` are ignored.
    Sum the matrices of several images to score a whole set.
    """
    predicted, target = np.asarray(predicted).ravel().astype(np.int64), np.asarray(target).ravel().astype(np.int64)
    if predicted.shape != target.shape:
        raise ValueError(f"label maps differ in size: {predicted.size} vs {target.size}")
    valid = (target >= 0) & (target < num_classes)
    index = target[valid] * num_classes + np.clip(predicted[valid], 0, num_classes - 1)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class (NaN for a class absent from both prediction and target)."""
    confusion = np.asarray(confusion, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in the prediction or the target (the usual mIoU)."""
    return float(np.nanmean(class_iou(confusion)))
