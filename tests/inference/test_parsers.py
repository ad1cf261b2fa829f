"""Each layout end to end: a tiny ONNX model with known outputs -> engine -> parser -> Detections.

The frames are 640x480 letterboxed into 64x64 model inputs: scale 1/10, image rows
8..56 (8 rows of border above and below).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from appliance.inference.engine import ModelMismatch, TensorSpec
from appliance.inference.letterbox import Letterbox
from appliance.inference.onnx_engine import OnnxRuntimeEngine
from appliance.inference.parsers import make_parser
from appliance.types import Detection
from tests.inference.onnx_models import model_config, switch_model

LABELS = ["cat", "dog", "bird"]
LB = Letterbox.compute(640, 480, 64, 64)
Frames = Callable[..., np.ndarray]


def _same(found: list[Detection], expected: list[tuple[str, float, tuple[float, float, float, float]]]) -> None:
    assert [(d.label, d.model) for d in found] == [(label, "test-model") for label, _, _ in expected]
    for det, (_, score, box) in zip(found, expected, strict=True):
        assert det.confidence == pytest.approx(score, abs=1e-6)
        assert det.box == pytest.approx(box, abs=1e-3)
        assert all(isinstance(v, float) for v in det.box) and isinstance(det.confidence, float)


def _run(path: Path, parser_kind: str, batch: np.ndarray, class_confidence: dict[str, float] | None = None,
         **settings: float) -> list[list[Detection]]:
    engine = OnnxRuntimeEngine(model_config(path, LABELS, parser=parser_kind))
    parser = make_parser(
        parser_kind, LABELS, settings.get("confidence", 0.25), settings.get("iou", 0.45),
        int(settings.get("max_detections", 100)), "test-model", class_confidence,
    )
    parser.check(engine.outputs)
    return parser.parse(engine.infer(batch), [LB] * len(batch))


def _yolov8_output() -> tuple[np.ndarray, np.ndarray]:
    anchors = [  # cx, cy, w, h, cat, dog, bird (input pixels)
        (20, 30, 10, 8, 0.875, 0.125, 0.0),    # 0 cat -> source (150, 180, 250, 260)
        (21, 30, 10, 8, 0.75, 0.0, 0.0),       # 1 cat, overlaps 0: suppressed
        (20, 31, 10, 8, 0.0, 0.625, 0.0),      # 2 dog on the same spot: kept (class-aware)
        (40, 40, 6, 6, 0.125, 0.0, 0.0),       # 3 below the confidence threshold
        (30, 3, 10, 4, 0.0, 0.0, 0.5),         # 4 entirely in the top border: dropped
        (60, 50, 16, 8, 0.0, 0.0, 0.5),        # 5 bird, runs off the right edge: clipped
        (40, 20, 4, 4, 0.25, 0.0, 0.0),        # 6 exactly at the threshold: kept
    ]
    dark = np.asarray(anchors, dtype=np.float32).T  # [4+nc, A]
    bright = np.zeros_like(dark)
    bright[:, 0] = [32, 32, 8, 16, 0.0, 0.0, 1.0]  # item 2: one bird (280, 160, 360, 320)
    return dark, bright


def test_yolov8_layout(tmp_path: Path, frames: Frames) -> None:
    dark, bright = _yolov8_output()
    path = switch_model(tmp_path / "v8.onnx", dark, bright)
    found = _run(path, "yolov8", frames(2, [0.0, 1.0]))
    assert len(found) == 2
    _same(found[0], [
        ("cat", 0.875, (150, 180, 250, 260)),
        ("dog", 0.625, (150, 190, 250, 270)),
        ("bird", 0.5, (520, 380, 640, 460)),
        ("cat", 0.25, (380, 100, 420, 140)),
    ])
    _same(found[1], [("bird", 1.0, (280, 160, 360, 320))])


def test_yolov8_max_detections_and_iou(tmp_path: Path, frames: Frames) -> None:
    dark, bright = _yolov8_output()
    path = switch_model(tmp_path / "v8.onnx", dark, bright)
    top = _run(path, "yolov8", frames(1, [0.0]), max_detections=2)
    assert [(d.label, d.confidence) for d in top[0]] == [("cat", 0.875), ("dog", 0.625)]
    # anchors 0 and 1 overlap with IoU 0.82: a threshold above that keeps both
    loose = _run(path, "yolov8", frames(1, [0.0]), iou=0.9)
    assert [d.confidence for d in loose[0] if d.label == "cat"] == [0.875, 0.75, 0.25]


@pytest.mark.parametrize("kind", ["yolov8", "yolov5", "yolo_end2end"])
def test_a_class_may_have_its_own_threshold(tmp_path: Path, frames: Frames, kind: str) -> None:
    # per anchor: a cat at 0.2, a dog at 0.2, a bird at 0.6, far apart (each layout's own columns)
    spots = [(10, 20, "cat", 0.2), (30, 20, "dog", 0.2), (50, 40, "bird", 0.6)]
    if kind == "yolov8":
        rows = [(x, y, 6, 6, *[score if label == name else 0.0 for name in LABELS])
                for x, y, label, score in spots]
        output = np.asarray(rows, dtype=np.float32).T
    elif kind == "yolov5":
        rows = [(x, y, 6, 6, score, *[1.0 if label == name else 0.0 for name in LABELS])
                for x, y, label, score in spots]
        output = np.asarray(rows, dtype=np.float32)
    else:
        rows = [(x - 3, y - 3, x + 3, y + 3, score, LABELS.index(label)) for x, y, label, score in spots]
        output = np.asarray(rows, dtype=np.float32)
    path = switch_model(tmp_path / f"{kind}.onnx", output, output)
    batch = frames(1, [0.0])
    assert [d.label for d in _run(path, kind, batch)[0]] == ["bird"]  # 0.25 for all
    # the dog at 0.15 comes through; the bird, held to 0.7, does not; the cat keeps the 0.25
    found = _run(path, kind, batch, class_confidence={"dog": 0.15, "bird": 0.7})[0]
    assert [(d.label, d.confidence) for d in found] == [("dog", pytest.approx(0.2))]


@pytest.mark.parametrize("kind", ["yolov8", "yolov5"])
def test_an_anchor_is_the_best_class_that_reaches_its_own_threshold(tmp_path: Path, frames: Frames, kind: str
                                                                    ) -> None:
    # one anchor: cat 0.2 (its threshold 0.25), dog 0.06 (its threshold 0.05); another: cat 0.5, dog 0.3
    spots = [(10, 20, (0.2, 0.06, 0.0)), (50, 40, (0.5, 0.3, 0.0))]
    if kind == "yolov8":
        output = np.asarray([(x, y, 6, 6, *scores) for x, y, scores in spots], dtype=np.float32).T
    else:
        output = np.asarray([(x, y, 6, 6, 1.0, *scores) for x, y, scores in spots], dtype=np.float32)
    path = switch_model(tmp_path / f"{kind}.onnx", output, output)
    found = _run(path, kind, frames(1, [0.0]), class_confidence={"dog": 0.05})[0]
    # the top class below its threshold does not hide a class above its own; one class per anchor
    assert [(d.label, d.confidence) for d in found] == [("cat", pytest.approx(0.5)), ("dog", pytest.approx(0.06))]
    assert found[1].box == pytest.approx((70, 90, 130, 150), abs=1e-3)


def test_yolov5_layout(tmp_path: Path, frames: Frames) -> None:
    anchors = [  # cx, cy, w, h, objectness, cat, dog, bird
        (20, 30, 10, 8, 0.5, 0.5, 1.0, 0.0),     # dog 0.5 -> (150, 180, 250, 260)
        (21, 30, 10, 8, 1.0, 0.0, 0.375, 0.0),   # dog 0.375, overlaps the first: suppressed
        (20, 30, 10, 8, 1.0, 0.25, 0.0, 0.0),    # cat 0.25 < 0.3: dropped
        (50, 40, 4, 8, 0.25, 0.0, 0.0, 1.0),     # objectness below the threshold: dropped
        (50, 40, 4, 8, 0.75, 0.0, 0.0, 0.5),     # bird 0.375 -> (480, 280, 520, 360)
    ]
    dark = np.asarray(anchors, dtype=np.float32)  # [A, 5+nc]
    bright = dark.copy()
    bright[:, 4] = 0.0  # item 2: nothing
    path = switch_model(tmp_path / "v5.onnx", dark, bright)
    found = _run(path, "yolov5", frames(2, [0.0, 1.0]), confidence=0.3)
    _same(found[0], [("dog", 0.5, (150, 180, 250, 260)), ("bird", 0.375, (480, 280, 520, 360))])
    assert found[1] == []


def test_end2end_layout(tmp_path: Path, frames: Frames) -> None:
    rows = [  # x1, y1, x2, y2, score, class (already suppressed by the model)
        (15, 26, 25, 34, 0.5, 0),    # cat -> (150, 180, 250, 260)
        (16, 26, 26, 34, 0.75, 0),   # overlapping cat: kept, no NMS here; sorted first
        (-4, 10, 8, 20, 0.625, 2),   # bird clipped at the left edge -> (0, 20, 80, 120)
        (0, 0, 0, 0, 0.0, 0),        # padding row
        (1, 1, 60, 60, 0.125, 1),    # below threshold
    ]
    dark = np.asarray(rows, dtype=np.float32)
    bright = np.zeros_like(dark)
    bright[0] = (32, 32, 40, 40, 0.875, 1)  # item 2: one dog (320, 240, 400, 320)
    path = switch_model(tmp_path / "e2e.onnx", dark, bright)
    found = _run(path, "yolo_end2end", frames(2, [0.0, 1.0]))
    _same(found[0], [
        ("cat", 0.75, (160, 180, 260, 260)),
        ("bird", 0.625, (0, 20, 80, 120)),
        ("cat", 0.5, (150, 180, 250, 260)),
    ])
    _same(found[1], [("dog", 0.875, (320, 240, 400, 320))])
    top = _run(path, "yolo_end2end", frames(1, [0.0]), max_detections=1)
    assert [d.confidence for d in top[0]] == [0.75]


def test_end2end_class_beyond_labels(tmp_path: Path) -> None:
    out = np.zeros((1, 3, 6), dtype=np.float32)
    out[0, 0] = (1, 1, 10, 10, 0.9, 7)
    parser = make_parser("yolo_end2end", LABELS, 0.25, 0.45, 100, "test-model")
    with pytest.raises(ModelMismatch, match="class 7 but only 3 labels"):
        parser.parse([out], [LB])


@pytest.mark.parametrize(
    ("kind", "good", "bad", "expected"),
    [
        ("yolov8", (2, 7, 84), (2, 6, 84), "[N, 7, anchors]"),
        ("yolov8", (2, 7, 84), (2, 7), "[N, 7, anchors]"),
        ("yolov5", (2, 84, 8), (2, 84, 85), "[N, anchors, 8]"),
        ("yolo_end2end", (2, 300, 6), (2, 300, 7), "[N, detections, 6]"),
    ],
)
def test_output_layout_must_fit_labels(
    kind: str, good: tuple[int, ...], bad: tuple[int, ...], expected: str
) -> None:
    parser = make_parser(kind, LABELS, 0.25, 0.45, 100, "test-model")
    assert len(parser.parse([np.zeros(good, dtype=np.float32)], [LB, LB])) == 2
    found = "[" + ", ".join(map(str, bad)) + "]"
    with pytest.raises(ModelMismatch) as caught:
        parser.parse([np.zeros(bad, dtype=np.float32)], [LB, LB])
    assert expected in str(caught.value) and found in str(caught.value)
    assert "3 labels" in str(caught.value)
    with pytest.raises(ModelMismatch) as declared:
        parser.check([TensorSpec("output0", (None, *bad[1:]), "float32")])
    assert expected in str(declared.value) and "[?, " in str(declared.value)
    parser.check([TensorSpec("output0", (None, *good[1:]), "float32")])


def test_batch_and_frame_count_must_agree() -> None:
    parser = make_parser("yolov8", LABELS, 0.25, 0.45, 100, "test-model")
    with pytest.raises(ValueError, match="output batch 2 but 1 frames"):
        parser.parse([np.zeros((2, 7, 10), dtype=np.float32)], [LB])


def test_unknown_parser_kind() -> None:
    with pytest.raises(ValueError, match="unknown parser 'ssd'"):
        make_parser("ssd", LABELS, 0.25, 0.45, 100, "test-model")


def test_many_anchors_are_fast_enough() -> None:
    """A 640-input YOLOv8 head with 80 classes (8400 anchors), mostly background."""
    rng = np.random.default_rng(0)
    out = np.zeros((4, 84, 8400), dtype=np.float32)
    out[:, 0:2] = rng.uniform(0, 640, size=(4, 2, 8400))
    out[:, 2:4] = rng.uniform(10, 80, size=(4, 2, 8400))
    out[:, 4:] = rng.uniform(0, 0.3, size=(4, 80, 8400))
    labels = [f"c{i}" for i in range(80)]
    parser = make_parser("yolov8", labels, 0.25, 0.45, 100, "test-model")
    lb = Letterbox.compute(1920, 1080, 640, 640)
    found = parser.parse([out], [lb] * 4)
    assert len(found) == 4 and all(0 < len(f) <= 100 for f in found)
    assert all(d.confidence >= 0.25 for f in found for d in f)
    assert all(0 <= d.box[0] <= d.box[2] <= 1920 and 0 <= d.box[1] <= d.box[3] <= 1080 for f in found for d in f)
