"""The second stages: crops of counted parts scored by an anomaly engine, crops of tools
named clean, dirty or damaged by a classifier.

The engine here is a stand-in whose outputs are known from its input (the map is
"how much redder than green" each pixel is), so the crop, the masking and the
event can be checked exactly; the shipped model runs in test_end_to_end.py.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.analytics.defects import DefectRules, DefectSettings
from appliance.analytics.inspection import (
    AnomalyInspector,
    CropClassifier,
    area_resize,
    part_alone,
    square_around,
)
from appliance.analytics.stream import StreamAnalytics
from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.inference.anomaly import AnomalyParser
from appliance.inference.classify import ClassifierParser
from appliance.inference.engine import TensorSpec
from appliance.metrics import ApplianceMetrics
from appliance.tracking.tracker import Tracker
from appliance.types import Detection, Event, FrameResult
from tests.support import Picture

W, H = 640, 360
GREY = np.array([90, 90, 90], dtype=np.uint8)


class RednessEngine:
    """``anomaly_map`` = max(R - G, 0) per pixel, ``pred_score`` = its maximum."""

    name = "redness"
    input = TensorSpec("input", (None, 3, 64, 64), "float32")
    outputs = (TensorSpec("anomaly_map", (None, 1, 64, 64), "float32"), TensorSpec("pred_score", (None,), "float32"))
    max_batch = 8

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self.seen.append(batch.copy())
        amap = np.clip(batch[:, 0] - batch[:, 1], 0, None)[:, None]
        return [amap, amap.reshape(len(batch), -1).max(axis=1)]

    def close(self) -> None:
        pass



def frame_with_parts(parts: list[tuple[float, float, bool]], size: int = 50) -> np.ndarray:
    """Grey belt; each part a light square, with a red spot when defective."""
    rgb = np.full((H, W, 3), GREY, dtype=np.uint8)
    for cx, cy, defective in parts:
        x1, y1 = int(cx - size / 2), int(cy - size / 2)
        rgb[y1:y1 + size, x1:x1 + size] = (200, 200, 200)
        if defective:
            rgb[y1 + 10:y1 + 20, x1 + 30:x1 + 40] = (250, 30, 30)
    return rgb


def test_square_crop_is_centred_widened_and_kept_inside_the_frame() -> None:
    assert square_around((100, 100, 150, 140), W, H, 0.1, 64) == (93, 88, 64)  # 50 * 1.2 + 4 < 64
    assert square_around((100, 100, 200, 140), W, H, 0.1, 64) == (88, 58, 124)
    assert square_around((600, 300, 640, 360), W, H, 0.1, 64) == (564, 284, 76)  # 60 * 1.2 + 4, pushed back inside
    assert square_around((0, 0, 640, 360), W, H, 0.1, 64)[2] == 360  # never larger than the frame


@pytest.mark.parametrize("side", [64, 91, 128, 200])
def test_area_resize_matches_opencv_inter_area(side: int) -> None:
    rng = np.random.default_rng(side)
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    ours = area_resize(image, 64)
    theirs = cv2.resize(image.astype(np.float32), (64, 64), interpolation=cv2.INTER_AREA)
    assert ours.shape == (64, 64, 3)
    assert np.abs(ours - theirs).max() < 0.05


def test_what_lies_outside_the_part_is_painted_in_the_background_colour() -> None:
    crop = np.full((64, 64, 3), 90, dtype=np.uint8)
    crop[0:6, :] = (255, 200, 0)  # a rail at the top edge
    crop[20:40, 20:40] = 200  # the part
    alone = part_alone(crop, (120, 120, 140, 140), left=100, top=100)
    assert (alone[0:6] == 90).all()  # the rail is gone
    assert (alone[20:40, 20:40] == 200).all()  # the part is kept, with 2 px around it
    assert alone[17, 30].tolist() == [90, 90, 90] and alone[18, 30].tolist() == [90, 90, 90]


def rig(threshold: float = 0.5) -> tuple[StreamAnalytics, RednessEngine, list[Event], ApplianceMetrics]:
    engine = RednessEngine()
    metrics = ApplianceMetrics()
    settings = DefectSettings.model_validate({"inspection_line": "inspect", "anomaly": {"model": "redness"}})
    inspector = AnomalyInspector(engine, AnomalyParser(threshold, "redness"))
    events: list[Event] = []
    analytics = StreamAnalytics(
        "cam", Tracker(), [DefectRules(settings, "cam", metrics, inspector)],
        EventFactory("dev", "v1", ManualClock()), events.append,
        lines=[("inspect", [(0.5, 0.0), (0.5, 1.0)], True)],
    )
    return analytics, engine, events, metrics


def test_each_counted_part_is_scored_once_and_a_red_one_raises_defect_anomaly() -> None:
    analytics, engine, events, metrics = rig()
    pictures = []
    for i in range(12):  # two parts at 80 px/s, 5 frames/s, crossing x=320; the lower one has a red spot
        x = 200 + 16 * i
        picture = Picture(frame_with_parts([(x, 100, False), (x - 30, 250, True)]))
        pictures.append(picture)
        detections = [Detection("vial", 0.9, (x - 25, 75, x + 25, 125)),
                      Detection("vial", 0.9, (x - 55, 225, x - 5, 275))]
        analytics.process(FrameResult("cam", i, i * 200_000_000, 1_700_000_000.0 + i / 5, W, H, detections),
                          picture)
    assert len(engine.seen) == 2  # once per part, at its crossing
    flagged = [e for e in events if e.kind == "defect.anomaly"]
    assert len(flagged) == 1 and flagged[0].phase == "start"
    event = flagged[0]
    assert event.attributes["score"] == pytest.approx(220 / 255, abs=0.01)
    assert event.attributes["threshold"] == 0.5 and event.attributes["part"] == "vial"
    peak_x, peak_y = event.attributes["peak"]
    x1, y1, x2, y2 = event.attributes["box"]
    assert x1 + 30 <= peak_x <= x1 + 40 and y1 + 10 <= peak_y <= y1 + 20  # the spot, in source pixels
    heat = np.array(event.attributes["heat_map"])
    assert heat.shape == (16, 16) and heat.max() == pytest.approx(event.attributes["score"], abs=0.01)
    # pixels are converted only in the frames where a part was counted
    assert sum(p.conversions for p in pictures) == 2
    count = metrics.registry.get_sample_value(
        "appliance_part_anomaly_score_count", {"stream": "cam", "line": "inspect"})
    assert count == 2


def test_above_the_threshold_only() -> None:
    analytics, engine, events, _ = rig(threshold=0.95)
    for i in range(12):
        x = 200 + 16 * i
        analytics.process(FrameResult("cam", i, i * 200_000_000, 0.0, W, H,
                                      [Detection("vial", 0.9, (x - 25, 75, x + 25, 125))]),
                          Picture(frame_with_parts([(x, 100, True)])))
    assert len(engine.seen) == 1
    assert [e for e in events if e.kind == "defect.anomaly"] == []


def test_without_pixels_parts_are_counted_and_the_gap_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    analytics, engine, events, metrics = rig()
    for i in range(12):
        x = 200 + 16 * i
        analytics.process(FrameResult("cam", i, i * 200_000_000, 0.0, W, H,
                                      [Detection("vial", 0.9, (x - 25, 75, x + 25, 125))]))
    assert engine.seen == []
    assert metrics.registry.get_sample_value(
        "appliance_parts_inspected_total", {"stream": "cam", "line": "inspect", "result": "ok"}) == 1
    assert "parts are not checked for anomalies" in caplog.text


# -- the tool-state classifier ---------------------------------------------------------

class TintEngine:
    """A stand-in classifier of ``clean``/``dirty``/``damaged``: logits from the crop's mean
    colour (red: damaged, blue: dirty, else clean)."""

    name = "tint"
    input = TensorSpec("images", (None, 3, 96, 96), "float32")
    outputs = (TensorSpec("output0", (None, 3), "float32"),)
    max_batch = 8

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self.seen.append(batch.copy())
        r, g, b = (batch[:, c].mean(axis=(1, 2)) for c in range(3))
        return [np.stack([np.full_like(r, 0.05), (b - r) * 10, (r - b) * 10], axis=1)]


def tool_frame(colour: tuple[int, int, int], box: tuple[int, int, int, int] = (200, 100, 260, 220)) -> np.ndarray:
    rgb = np.full((H, W, 3), GREY, dtype=np.uint8)
    x1, y1, x2, y2 = box
    rgb[y1:y2, x1:x2] = colour
    return rgb


def tool_rig(threshold: float = 0.5) -> tuple[StreamAnalytics, TintEngine, list[Event]]:
    engine = TintEngine()
    settings = DefectSettings.model_validate({"tool_check": {"model": "tint"}})
    classifier = CropClassifier(engine, ClassifierParser(["clean", "dirty", "damaged"], "tint"), 0.1, threshold)
    events: list[Event] = []
    analytics = StreamAnalytics("cam", Tracker(), [DefectRules(settings, "cam", None, None, classifier)],
                                EventFactory("dev", "v1", ManualClock()), events.append)
    return analytics, engine, events


def present(analytics: StreamAnalytics, colours: list[tuple[int, int, int]], t0: float = 1.0) -> None:
    for i, colour in enumerate(colours):
        t = t0 + i / 5
        analytics.process(FrameResult("cam", i, round(t * 1e9), 1_700_000_000.0 + t, W, H,
                                      [Detection("tool", 0.9, (200, 100, 260, 220))]), Picture(tool_frame(colour)))


def test_a_tool_s_state_is_the_classifier_s_verdict_on_its_crop() -> None:
    analytics, engine, events = tool_rig()
    red, blue = (220, 40, 40), (40, 40, 220)
    present(analytics, [red] * 8 + [blue] * 2)
    analytics.close()
    assert len(engine.seen) == 10 and engine.seen[0].shape == (1, 3, 96, 96)  # every frame, one crop
    start, end = [e for e in events if e.kind == "tool.verified"]
    assert start.phase == "start" and start.attributes["state"] == "damaged" and start.severity == "warning"
    assert end.attributes["votes"] == {"damaged": 8, "dirty": 2}


def test_unsure_verdicts_do_not_vote() -> None:
    analytics, engine, events = tool_rig(threshold=0.9)
    present(analytics, [(120, 90, 100)] * 10)  # barely red: about 0.5 damaged
    analytics.close()
    assert len(engine.seen) == 10 and [e for e in events if e.kind == "tool.verified"] == []
    analytics, engine, events = tool_rig(threshold=0.9)
    present(analytics, [(90, 90, 90)] * 10)  # grey: clean (logits 0.05, 0, 0 are near a tie)
    assert [e for e in events if e.kind == "tool.verified"] == []


def test_a_label_with_a_state_needs_no_classifier() -> None:
    analytics, engine, events = tool_rig()
    for i in range(10):
        t = 1.0 + i / 5
        analytics.process(FrameResult("cam", i, round(t * 1e9), 0.0, W, H,
                                      [Detection("tool_dirty", 0.9, (200, 100, 260, 220))]),
                          Picture(tool_frame((220, 40, 40))))
    assert engine.seen == []
    (start,) = [e for e in events if e.kind == "tool.verified"]
    assert start.attributes["state"] == "dirty"


def test_without_pixels_a_tool_is_recorded_as_unchecked(caplog: pytest.LogCaptureFixture) -> None:
    analytics, engine, events = tool_rig()
    for i in range(10):
        t = 1.0 + i / 5
        tool = Detection("tool", 0.9, (200, 100, 260, 220))
        analytics.process(FrameResult("cam", i, round(t * 1e9), 0.0, W, H, [tool]))
    assert engine.seen == []
    (start,) = [e for e in events if e.kind == "tool.verified"]
    assert start.attributes["state"] == "unchecked" and start.severity == "warning"
    assert "tools are recorded as 'unchecked'" in caplog.text
