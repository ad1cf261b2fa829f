from __future__ import annotations

import numpy as np
import pytest

from appliance.inference.nms import batched_nms, nms


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(
    boxes: list[list[float]], scores: list[float], classes: list[int], iou: float, max_out: int | None
) -> list[int]:
    """Textbook greedy NMS, one pair at a time."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    keep: list[int] = []
    for i in order:
        if max_out is not None and len(keep) >= max_out:
            break
        if all(classes[k] != classes[i] or _iou(boxes[k], boxes[i]) <= iou for k in keep):
            keep.append(i)
    return keep


def _random_boxes(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 640, size=(count // 8 + 1, 2))  # clusters, so suppression happens
    cxcy = centres[rng.integers(0, len(centres), count)] + rng.normal(0, 12, size=(count, 2))
    wh = rng.uniform(8, 120, size=(count, 2))
    boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, size=count).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.3, 0.45, 0.7])
def test_nms_matches_reference(seed: int, threshold: float) -> None:
    boxes, scores = _random_boxes(seed, 300)
    got = nms(boxes, scores, threshold, max_out=1000)
    want = reference_nms(boxes.tolist(), scores.tolist(), [0] * len(scores), threshold, None)
    assert got.tolist() == want
    assert 0 < len(want) < len(scores)  # the case is not trivial


@pytest.mark.parametrize("seed", range(6))
def test_batched_nms_matches_class_aware_reference(seed: int) -> None:
    boxes, scores = _random_boxes(100 + seed, 300)
    classes = np.random.default_rng(seed).integers(0, 4, size=300)
    got = batched_nms(boxes, scores, classes, 0.45, max_out=1000)
    want = reference_nms(boxes.tolist(), scores.tolist(), classes.tolist(), 0.45, None)
    assert got.tolist() == want
    plain = nms(boxes, scores, 0.45, max_out=1000)
    assert len(got) > len(plain)  # other classes no longer suppress each other


@pytest.mark.parametrize("seed", range(3))
def test_max_out_keeps_the_best(seed: int) -> None:
    boxes, scores = _random_boxes(200 + seed, 200)
    classes = np.random.default_rng(seed).integers(0, 3, size=200)
    full = reference_nms(boxes.tolist(), scores.tolist(), classes.tolist(), 0.5, None)
    got = batched_nms(boxes, scores, classes, 0.5, max_out=5)
    assert got.tolist() == full[:5]
    assert nms(boxes, scores, 0.5, max_out=0).tolist() == []


def test_nms_small_cases() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.9], dtype=np.float32)
    # box 3 duplicates box 0 (same score: the earlier index wins), box 1 overlaps it (IoU 0.68)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2]
    assert batched_nms(boxes, scores, np.array([0, 1, 0, 1]), 0.5).tolist() == [0, 3, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5).tolist() == []
    # zero-area boxes never overlap anything
    flat = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], dtype=np.float32)
    assert nms(flat, np.array([0.5, 0.4]), 0.1).tolist() == [0, 1]
