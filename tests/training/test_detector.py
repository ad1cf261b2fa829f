"""The demo-detector training tools: a few steps on tiny synthetic data, the export the
appliance reads, the mAP arithmetic and determinism (the real scenes are not needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from appliance.inference.letterbox import Letterbox
from appliance.inference.onnx_engine import load_engine
from appliance.inference.parsers import make_parser
from tools.training.data import FrameSet, letterbox_frame, map_targets, to_input_tensor
from tools.training.detector import Detector, DetectorConfig, export_onnx, num_anchors
from tools.training.evaluate import average_precision, model_config, score_detections
from tools.training.train import TrainConfig, train

LABELS = ("square", "disc")
TINY = DetectorConfig(len(LABELS), widths=(16, 16, 24, 32), neck=16, head=16)


def _shapes(seed: int, count: int) -> tuple[FrameSet, list[np.ndarray], list[list[tuple[str, tuple[float, ...]]]]]:
    """Coloured squares and discs on a grey-noise 640x360 background, letterboxed to 320."""
    import cv2

    rng = np.random.default_rng(seed)
    lb = Letterbox.compute(640, 360, 320, 320)
    images, targets, sources, truths = [], [], [], []
    for _ in range(count):
        img = (rng.normal(90, 12, (360, 640, 3))).clip(0, 255).astype(np.uint8)
        objects = []
        for _ in range(int(rng.integers(1, 4))):
            side = float(rng.uniform(30, 90))
            x, y = float(rng.uniform(0, 640 - side)), float(rng.uniform(0, 360 - side))
            colour = tuple(int(c) for c in rng.integers(150, 256, 3))
            if rng.random() < 0.5:
                cv2.rectangle(img, (int(x), int(y)), (int(x + side), int(y + side)), colour, -1)
                objects.append(("square", (int(x), int(y), int(x + side) + 1, int(y + side) + 1)))
            else:
                r = int(side / 2)
                cv2.circle(img, (int(x) + r, int(y) + r), r, colour, -1)
                objects.append(("disc", (int(x), int(y), int(x) + 2 * r + 1, int(y) + 2 * r + 1)))
        images.append(letterbox_frame(img, lb))
        targets.append(map_targets(objects, LABELS, lb))
        sources.append(img)
        truths.append(objects)
    content = (lb.pad_x, lb.pad_y, lb.pad_x + lb.scaled_w, lb.pad_y + lb.scaled_h)
    return FrameSet(np.stack(images), targets, content, LABELS), sources, truths


def _config(steps: int, **kw: object) -> TrainConfig:
    base = dict(iterations=steps, batch=4, warmup=2, lr=5e-3, log_every=1000, seed=3)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_letterbox_matches_the_appliance_geometry() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    lb = Letterbox.compute(640, 360, 320, 320)
    ours = letterbox_frame(img, lb).astype(np.float32)
    theirs = lb.apply(img[:, :, ::-1].astype(np.float32))
    assert ours.shape == (320, 320, 3)
    assert np.all(ours[:lb.pad_y] == 0) and np.all(ours[lb.pad_y + lb.scaled_h:] == 0)
    assert np.abs(ours - theirs).max() <= 1.0  # same placement and area scaling, up to rounding
    t = map_targets([("disc", (100.0, 50.0, 200.0, 150.0)), ("other", (0.0, 0.0, 9.0, 9.0))], LABELS, lb)
    np.testing.assert_allclose(t, [[1.0, 50.0, 25.0 + lb.pad_y, 100.0, 75.0 + lb.pad_y]])


def test_training_steps_reduce_the_loss_and_export_reads_in_the_appliance(tmp_path: Path) -> None:
    frames, sources, _ = _shapes(0, 24)
    result = train(frames, _config(24), TINY)
    first, last = np.mean(result.losses[:4]), np.mean(result.losses[-4:])
    assert last < 0.8 * first, (first, last)

    path = tmp_path / "shapes.onnx"
    diff = export_onnx(result.model, path)
    assert diff < 1e-3

    import onnx

    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["output0"]
    engine = load_engine(model_config("shapes", path, LABELS, 0.01, 100))
    assert engine.input.shape == (None, 3, 320, 320)
    assert engine.outputs[0].shape == (None, 4 + len(LABELS), num_anchors()) == (None, 6, 2100)
    lb = Letterbox.compute(640, 360, 320, 320)
    batch = to_input_tensor(np.stack([letterbox_frame(s, lb) for s in sources[:3]]))
    out = engine.infer(batch)
    assert out[0].shape == (3, 6, 2100)
    scores = out[0][:, 4:]
    assert scores.min() >= 0.0 and scores.max() <= 1.0  # sigmoid inside the graph
    assert np.all(out[0][:, 2:4] >= 0.0)  # widths and heights
    parser = make_parser("yolov8", LABELS, 0.01, 0.45, 100, "shapes")
    found = parser.parse(out, [lb] * 3)
    assert len(found) == 3
    for dets in found:
        for d in dets:
            assert d.label in LABELS and 0.0 <= d.box[0] <= d.box[2] <= 640.0 and 0.0 <= d.box[1] <= d.box[3] <= 360.0


@pytest.mark.parametrize("crop", [None, (64, 96)])
def test_same_seed_same_weights(crop: tuple[int, int] | None) -> None:
    frames, _, _ = _shapes(5, 8)
    a = train(frames, _config(3, crop=crop), TINY).raw_model.state_dict()
    b = train(frames, _config(3, crop=crop), TINY).raw_model.state_dict()
    c = train(frames, _config(3, seed=4, crop=crop), TINY).raw_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_map_against_a_hand_computed_example() -> None:
    truth = [
        [("a", (0, 0, 10, 10)), ("a", (20, 20, 30, 30))],
        [("a", (0, 0, 10, 10)), ("b", (0, 0, 10, 20))],
    ]
    found = [
        [("a", 0.9, (0, 0, 10, 10)), ("a", 0.8, (50, 50, 60, 60)), ("a", 0.6, (0, 0, 10, 11)),
         ("c", 0.5, (1, 1, 5, 5))],
        [("a", 0.7, (1, 0, 10, 10)), ("b", 0.95, (0, 0, 10, 10))],
    ]
    # class a, by score: TP (0.9), FP (0.8, no truth there), TP (0.7), FP (0.6: its truth box is taken)
    # recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2 -> AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    # class b: IoU exactly 0.5 counts -> AP 1; class c has no truth and is left out of the mean
    scores = score_detections(found, truth, ("a", "b", "c"), operating_confidence=0.75)
    a, b, c = scores.classes
    assert a.ap50 == pytest.approx(5 / 9)
    assert b.ap50 == pytest.approx(1.0)
    assert math.isnan(c.ap50)
    assert scores.map50 == pytest.approx((5 / 9 + 1.0) / 2)
    # at IoU 0.75 the a boxes still fit (0.9), the b box covers half its truth: a miss and a false box
    assert (a.ap75, b.ap75) == (pytest.approx(5 / 9), 0.0)
    assert scores.map75 == pytest.approx(5 / 18)
    assert (a.precision, a.recall) == (pytest.approx(0.5), pytest.approx(1 / 3))  # 0.9 TP + 0.8 FP at >= 0.75
    assert (b.precision, b.recall) == (1.0, 1.0)
    assert math.isnan(c.precision) and c.detections_at_operating == 0
    # what the appliance reports at its thresholds, where its parse differs: P/R from that, AP unchanged
    reported = [[("a", 0.9, (0, 0, 10, 10))], [("a", 0.8, (1, 0, 10, 10)), ("b", 0.95, (0, 0, 10, 10))]]
    own = score_detections(found, truth, ("a", "b", "c"), operating_confidence=0.75, operating=reported)
    assert (own.classes[0].precision, own.classes[0].recall) == (1.0, pytest.approx(2 / 3))
    assert own.classes[0].ap50 == pytest.approx(5 / 9) and own.classes[0].detections_at_operating == 2
    assert average_precision(np.array([1.0, 1.0]), 2) == pytest.approx(1.0)
    assert average_precision(np.array([]), 2) == 0.0


def test_detector_size_is_small() -> None:
    model = Detector(DetectorConfig(10))
    params = sum(p.numel() for p in model.parameters())
    assert 300_000 < params < 1_000_000


def test_a_small_box_inside_a_larger_one_keeps_anchors() -> None:
    """A chip inside a tablet: the assigner gives the chip its own anchors (the parser reports
    one class per anchor, so a defect without anchors could never be found)."""
    from tools.training.detector import anchor_points, decode_xyxy
    from tools.training.train import assign, pad_targets

    points, strides = anchor_points(64, 64)
    # every anchor predicts the tablet's box exactly: by overlap the tablet would win them all
    tablet = np.array([[0, 20.0, 20.0, 36.0, 36.0], [1, 29.0, 29.0, 35.0, 35.0]], dtype=np.float32)
    gt_boxes, gt_classes, gt_valid = pad_targets([tablet])
    ltrb = torch.stack([points[:, 0] - 20, points[:, 1] - 20, 36 - points[:, 0], 36 - points[:, 1]], dim=1)
    pred = decode_xyxy(ltrb.unsqueeze(0), points)
    scores = torch.full((1, points.shape[0], 2), 0.5)
    _, target_scores, fg = assign(scores, pred, points, strides, gt_boxes, gt_classes, gt_valid, 2)
    assert fg.any()
    assert (target_scores[0, :, 1] > 0).sum() >= 1  # the chip
    assert (target_scores[0, :, 0] > 0).sum() >= 1  # and the tablet keeps some
