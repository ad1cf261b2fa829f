"""Looks: colour descriptions of boxes, and the tracker keeping people apart by them."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from appliance.analytics.assembly import tracker_for
from appliance.analytics.stream import StreamAnalytics
from appliance.clock import ManualClock
from appliance.config.schema import ApplianceConfig
from appliance.events.factory import EventFactory
from appliance.tracking import appearance
from appliance.tracking.tracker import Tracker, TrackerSettings
from appliance.types import Detection, FrameResult
from tests.support import Picture

W, H = 640, 360
GREY = (90, 90, 90)
RED_BLUE = ((200, 40, 40), (40, 40, 200))  # top and bottom of one person's clothes
GREEN_YELLOW = ((40, 180, 40), (220, 220, 60))


def scene(people: list[tuple[float, tuple]]) -> tuple[np.ndarray, list[Detection]]:
    """A grey frame with people 60 x 160 px standing on y=300, their left edges at the given x, each
    in two colours (top and bottom halves); the later ones drawn in front."""
    rgb = np.full((H, W, 3), GREY, dtype=np.uint8)
    detections = []
    for x, (top, bottom) in people:
        x0, x1 = int(round(x)), int(round(x)) + 60
        rgb[140:220, x0:x1] = top
        rgb[220:300, x0:x1] = bottom
        detections.append(Detection("person", 0.9, (float(x0), 140.0, float(x1), 300.0)))
    return rgb, detections


def test_the_same_colours_are_close_and_different_clothes_far_apart():
    rgb, (a, b) = scene([(100, RED_BLUE), (400, GREEN_YELLOW)])
    looks = appearance.describe(rgb, np.array([a.box, b.box, a.box]))
    assert looks.shape == (3, appearance.SIZE)
    apart = appearance.distances(looks, looks)
    assert apart[0, 2] == pytest.approx(0.0, abs=1e-6)
    assert apart[0, 1] == pytest.approx(1.0, abs=1e-6)  # not one colour in common
    # the same person on another background, shifted by a few pixels: still much closer than the other
    other = np.full_like(rgb, 30)
    other[140:300, 103:163] = rgb[140:300, 100:160]
    moved = appearance.describe(other, np.array([(103, 138, 163, 302)]))
    near, far = appearance.distances(moved, looks[:2])[0]
    assert near < 0.3 < 0.9 < far


@pytest.mark.parametrize("level", [62, 64, 96, 128, 191])
def test_a_shift_of_a_few_levels_changes_the_looks_a_little(level: int):
    """The same clothes a few levels darker (the light, the codec's rounding) look nearly the same, even
    where their colour lies on the edge of two bins; other clothes stay far apart."""
    def look(top: tuple, bottom: tuple) -> np.ndarray:
        rgb, (person,) = scene([(100, (top, bottom))])
        return appearance.describe(rgb, np.array([person.box]))

    red = (level, 40, 40)
    darker = tuple(max(c - 4, 0) for c in red)
    same = look(red, (40, 40, 200))
    shifted, other = look(darker, (36, 36, 196)), look((40, 180, 40), (220, 220, 60))
    (near, far), = appearance.distances(same, np.vstack([shifted, other]))
    assert near < 0.25 and far > 0.7, (near, far)


def test_a_box_out_of_the_frame_has_unknown_looks():
    rgb, _ = scene([(100, RED_BLUE)])
    looks = appearance.describe(rgb, np.array([(700, 100, 760, 200), (100, 140, 160, 300)]))
    assert np.isnan(looks[0]).all() and not np.isnan(looks[1]).any()
    assert np.isnan(appearance.distances(looks[:1], looks[1:])).all()


def bounce(frame: int) -> list[tuple[float, tuple]]:
    """Two people walk towards each other, meet in one spot (frame 10, one box for both) and walk
    back the way they came."""
    step = 12 * (frame if frame <= 10 else 20 - frame)
    return [(150 + step, RED_BLUE), (390 - step, GREEN_YELLOW)]


def ids_by_clothes(tracker: Tracker, looks: bool, frames: int = 20) -> dict[tuple, set[int]]:
    seen: dict[tuple, set[int]] = {RED_BLUE: set(), GREEN_YELLOW: set()}
    for frame in range(frames):
        people = bounce(frame)
        rgb, detections = scene(people)
        described = appearance.describe(rgb, np.array([d.box for d in detections])) if looks else None
        tracks = tracker.update(detections, described)
        if frame == 10:
            continue  # one spot: whose is which box?
        for track in tracks:
            x = track.seen_box[0]
            clothes = min(people, key=lambda p: abs(p[0] - x))[1]
            seen[clothes].add(track.track_id)
    return seen


def test_people_who_meet_and_turn_back_keep_their_ids_by_their_clothes():
    # by motion alone, each track goes on the way it went, onto the other person
    motion = ids_by_clothes(Tracker(), looks=False)
    assert motion[RED_BLUE] & motion[GREEN_YELLOW], motion
    looks = ids_by_clothes(Tracker(), looks=True)
    assert len(looks[RED_BLUE]) == len(looks[GREEN_YELLOW]) == 1 and looks[RED_BLUE] != looks[GREEN_YELLOW], looks
    # weight 0: looks are kept but count for nothing
    assert ids_by_clothes(Tracker(TrackerSettings(appearance_weight=0.0)), looks=True) == motion


def test_a_lone_detection_that_looks_different_still_continues_its_track():
    tracker = Tracker()
    for frame in range(5):
        rgb, detections = scene([(100 + 5 * frame, RED_BLUE)])
        first = tracker.update(detections, appearance.describe(rgb, np.array([d.box for d in detections])))
    rgb, detections = scene([(125, GREEN_YELLOW)])  # the light changed, or a coat came off
    (track,) = tracker.update(detections, appearance.describe(rgb, np.array([d.box for d in detections])))
    assert track.track_id == first[0].track_id



@pytest.mark.parametrize(("labels", "with_image", "separated"), [
    (("person",), True, True), (("person",), False, False), ((), True, False)])
def test_stream_analytics_describe_the_appearance_labels_from_the_frame(labels: tuple, with_image: bool,
                                                                       separated: bool):
    """Looks come from a few of the frame's pixels (the frame is not converted), for the configured labels
    only; without pixels, or without labels, tracking goes by motion alone."""
    tracker = Tracker(TrackerSettings(appearance_labels=labels))
    analytics = StreamAnalytics("cam", tracker, [], EventFactory("dev", "v1", ManualClock()), lambda e: None)
    seen: dict[tuple, set[int]] = {RED_BLUE: set(), GREEN_YELLOW: set()}
    conversions = samplings = 0
    for frame in range(20):
        people = bounce(frame)
        rgb, detections = scene(people)
        picture = Picture(rgb) if with_image else None
        result = FrameResult("cam", frame, frame * 200_000_000, 0.0, W, H, detections)
        analytics.process(result, picture)  # type: ignore[arg-type]
        conversions += picture.conversions if picture is not None else 0
        samplings += picture.samplings if picture is not None else 0
        for track in result.tracks if frame != 10 else ():
            clothes = min(people, key=lambda p: abs(p[0] - track.seen_box[0]))[1]
            seen[clothes].add(track.track_id)
    assert (not seen[RED_BLUE] & seen[GREEN_YELLOW]) == separated, seen
    assert conversions == 0
    assert samplings == (20 if labels and with_image else 0)


def test_a_source_s_tracker_config_turns_looks_on():
    def source(tracker: dict) -> dict:
        return {"sources": [{"id": "cam", "uri": "test://ball", "rules": {"tracker": tracker}}]}

    config = ApplianceConfig.model_validate(source({"appearance_labels": ["person"], "appearance_weight": 1.5}))
    settings = tracker_for(config.sources[0]).settings
    assert settings.appearance_labels == ("person",) and settings.appearance_weight == 1.5
    assert tracker_for(ApplianceConfig.model_validate(source({})).sources[0]).settings.appearance_labels == ()
    with pytest.raises(ValidationError, match="appearance_weight"):
        ApplianceConfig.model_validate(source({"appearance_weight": -1}))
