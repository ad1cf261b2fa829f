"""The ppe rules' second stage: each person's items named by a classifier from their crop.

The engine is a stand-in whose outputs are known from its input: a person wears a
helmet when the top of their crop is red, and everything else always. So the crop's
window, which person a verdict belongs to, and the fallback to the detector's items
where the backend keeps no frames can be checked exactly; the shipped model runs in
test_end_to_end.py and its card.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from appliance.analytics.ppe import PpeRules, PpeSettings
from appliance.analytics.stream import StreamAnalytics
from appliance.analytics.wearing import WornItems, crop_grid, person_crops
from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.inference.classify import AttributeParser
from appliance.inference.engine import TensorSpec
from appliance.types import Detection, Event, FrameResult
from tests.support import Picture

W, H = 640, 360
ITEMS = ["helmet", "mask", "mask_improper", "gloves", "gown", "goggles"]
RED = (230, 30, 30)


class RedHatEngine:
    """``helmet``: the share of red in the top eighth of the crop; every other item worn, the mask properly."""

    name = "red-hat"
    input = TensorSpec("images", (None, 3, 128, 64), "float32")
    outputs = (TensorSpec("output0", (None, len(ITEMS)), "float32"),)
    max_batch = 2  # smaller than the crowd below: the crops go in chunks

    def __init__(self) -> None:
        self.batches: list[int] = []

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self.batches.append(len(batch))
        top = batch[:, :, :16]
        red = ((top[:, 0] > 0.8) & (top[:, 1] < 0.2)).mean(axis=(1, 2))
        out = np.ones((len(batch), len(ITEMS)), np.float32)
        out[:, 0] = red * 2  # half the top red: surely a helmet
        out[:, 2] = 0.0
        return [np.clip(out, 0.0, 1.0)]

    def close(self) -> None:
        pass


def test_the_crop_is_a_window_of_the_inputs_shape_centred_on_the_box() -> None:
    ys, xs = crop_grid(np.array([[100, 50, 140, 250]]), (W, H), 64, 128, 0.05)
    assert ys.shape == (1, 128, 1) and xs.shape == (1, 1, 64)
    # 200 px tall plus 10 above and below; 110 wide (1:2) around the box's centre x = 120
    assert (ys[0, 0, 0], ys[0, -1, 0]) == (40, 259)
    assert (xs[0, 0, 0], xs[0, 0, -1]) == (65, 174)
    ys, xs = crop_grid(np.array([[0, 300, 30, 360]]), (W, H), 64, 128, 0.05)
    assert ys.min() >= 0 and ys.max() == H - 1 and xs.min() == 0 and xs.max() <= W - 1  # the border repeats


def test_crops_are_read_from_the_grid_only() -> None:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, 320:] = 255
    picture = Picture(rgb)
    batch = person_crops(picture.sample, picture.size, np.array([[300, 100, 340, 200]]), 64, 128, 0.0)
    assert batch.shape == (1, 3, 128, 64) and batch.dtype == np.float32
    assert batch[0, :, :, :32].max() == 0.0 and batch[0, :, :, 32:].min() == 1.0  # left half dark, right bright
    assert picture.conversions == 0 and picture.samplings == 1


def scene_frame(hats: dict[float, bool]) -> np.ndarray:
    """Grey room; a person 40 x 200 px at each x, in a red hat or bare-headed."""
    rgb = np.full((H, W, 3), 90, np.uint8)
    for x, hat in hats.items():
        rgb[100:300, int(x):int(x) + 40] = (60, 60, 140)
        if hat:
            rgb[95:115, int(x) - 4:int(x) + 44] = RED
    return rgb


def run(with_pixels: bool, seconds: float = 4.0) -> tuple[list[Event], RedHatEngine]:
    """Three people: at x=100 and x=400 in red hats, at x=250 bare-headed, but the detector puts its one
    helmet box on the bare head (and none on the others)."""
    engine = RedHatEngine()
    settings = PpeSettings.model_validate({"required": ["helmet", "gown"], "item_check": {"model": "items"}})
    rules = PpeRules(settings, "cam", WornItems(engine, AttributeParser(ITEMS, "items"), margin=0.05))
    events: list[Event] = []
    analytics = StreamAnalytics("cam", None, [rules], EventFactory("dev", "v1", ManualClock()), events.append)
    picture = Picture(scene_frame({100: True, 250: False, 400: True}))
    from appliance.types import Track

    for i in range(int(seconds * 5)):
        people = [Track(k + 1, "person", 0.9, (x, 100.0, x + 40.0, 300.0)) for k, x in enumerate((100, 250, 400))]
        detections = [Detection("person", 0.9, t.box) for t in people]
        detections += [Detection("helmet", 0.9, (252.0, 96.0, 288.0, 112.0)),
                       *(Detection("gown", 0.9, (x, 140.0, x + 40.0, 240.0)) for x in (100, 250, 400))]
        result = FrameResult("cam", i, int(i * 0.2e9), 1000.0 + i * 0.2, W, H, detections, tracks=people)
        analytics.process(result, picture if with_pixels else None)
    analytics.close()
    return events, engine


def test_the_classifier_names_each_persons_items_not_the_detectors_boxes() -> None:
    events, engine = run(with_pixels=True)
    starts = [e for e in events if e.kind == "ppe.missing_item" and e.phase == "start"]
    assert [(e.track_id, e.attributes["items"]) for e in starts] == [(2, ["helmet"])]  # the bare head only
    assert set(engine.batches) == {2, 1}  # three people a frame, in chunks of the engine's largest batch


def test_without_pixels_the_rules_fall_back_to_the_detectors_items(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        events, engine = run(with_pixels=False)
    starts = [e for e in events if e.kind == "ppe.missing_item" and e.phase == "start"]
    assert sorted(e.track_id for e in starts) == [1, 3]  # the detector's one helmet went to the bare head
    assert engine.batches == []
    assert sum("keeps no frames to crop" in r.getMessage() for r in caplog.records) == 1


def test_rules_and_an_item_classifier_go_together() -> None:
    with pytest.raises(ValueError, match="go together"):
        PpeRules(PpeSettings.model_validate({"item_check": {"model": "items"}}), "cam")
