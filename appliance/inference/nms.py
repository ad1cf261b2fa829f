"""Greedy non-maximum suppression in numpy.

Boxes are ``[K, 4]`` x1y1x2y2. A box is suppressed when its IoU with a kept,
higher-scoring box is greater than ``iou_threshold`` (torchvision's rule). Ties in
score keep the earlier box first (stable order).
"""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int | None = None) -> np.ndarray:
    """Indices of the kept boxes, highest score first (at most ``max_out``)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0] != s.shape[0]:
        raise ValueError(f"{b.shape[0]} boxes but {s.shape[0]} scores")
    limit = b.shape[0] if max_out is None else max(int(max_out), 0)
    order = np.argsort(-s, kind="stable")
    if limit == 0 or order.size == 0:
        return np.zeros(0, dtype=np.intp)
    b = b[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = np.clip(x2 - x1, 0.0, None) * np.clip(y2 - y1, 0.0, None)
    alive = np.arange(order.size)  # positions (in score order) not yet suppressed
    keep: list[int] = []
    while alive.size and len(keep) < limit:
        best, rest = alive[0], alive[1:]
        keep.append(int(best))
        if not rest.size:
            break
        iw = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0.0, None)
        ih = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0.0, None)
        inter = iw * ih
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)
        alive = rest[iou <= iou_threshold]
    return order[np.asarray(keep, dtype=np.intp)]


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    max_out: int | None = None,
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Each class is moved to its own region of the plane (offset by class times the
    span of all coordinates), then one plain NMS runs.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    c = np.asarray(classes).reshape(-1)
    if c.shape[0] != b.shape[0]:
        raise ValueError(f"{b.shape[0]} boxes but {c.shape[0]} classes")
    _, dense = np.unique(c, return_inverse=True)
    span = float(b.max() - b.min()) + 1.0
    shifted = b + (dense.reshape(-1).astype(np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_out)
