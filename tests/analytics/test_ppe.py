"""PPE / safety rules through the real tracker and StreamAnalytics, frame by frame in stream time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from appliance.analytics.base import TimingSettings
from appliance.analytics.ppe import PpeRules, PpeSettings
from appliance.analytics.stream import StreamAnalytics, ZoneSpec
from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.tracking.tracker import Tracker, TrackerSettings, iou_matrix
from appliance.types import Detection, Event, FrameResult, Track
from tools.scenes.cleanroom import CleanRoomScene

FPS = 5
W, H = 1280, 720
ALL = ("helmet", "mask", "gloves", "gown", "goggles")


def person(x: float, y: float, wears: Iterable[str] = ALL, drop: Iterable[str] = (), scale: float = 1.0
           ) -> list[Detection]:
    """A person 80 x 200 px (times ``scale``) with its top-left at (x, y), and the boxes of what it wears."""
    parts = {
        "helmet": [(20, 0, 60, 25)],
        "goggles": [(25, 20, 55, 32)],
        "mask": [(28, 32, 52, 48)],
        "mask_improper": [(28, 42, 52, 58)],
        "gown": [(5, 50, 75, 150)],
        "gloves": [(-5, 100, 10, 115), (70, 100, 85, 115)],
    }
    k = scale
    out = [Detection("person", 0.9, (x, y, x + 80 * k, y + 200 * k))]
    for item in wears:
        if item in drop:
            continue
        for x1, y1, x2, y2 in parts[item]:
            out.append(Detection(item, 0.8, (x + k * x1, y + k * y1, x + k * x2, y + k * y2)))
    return out


def frame(i: int, detections: list[Detection]) -> FrameResult:
    return FrameResult("cam", i, int(round(i / FPS * 1e9)), 1000.0 + i / FPS, W, H, list(detections))


class Run:
    """One stream's analytics with the ppe rules; its events, and the stream time each was emitted at."""

    def __init__(self, settings: PpeSettings | None = None, zones: Sequence[ZoneSpec] = (),
                 tracker: TrackerSettings | None = None) -> None:
        self.events: list[Event] = []
        self.emitted_at: list[float] = []
        self._t = 0.0
        self.analytics = StreamAnalytics("cam", Tracker(tracker), [PpeRules(settings or PpeSettings(), "cam")],
                                         EventFactory("dev", "v1", ManualClock()), self._emit, zones=zones)

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        self.emitted_at.append(self._t)

    def feed(self, frames: Iterable[FrameResult]) -> Run:
        for result in frames:
            self._t = result.pts_ns / 1e9
            self.analytics.process(result)
        return self

    def close(self) -> Run:
        self.analytics.close()
        return self

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def scripted(seconds: float, scene: Callable[[float], list[Detection]]) -> list[FrameResult]:
    return [frame(i, scene(i / FPS)) for i in range(int(round(seconds * FPS)))]


def start_end(events: list[Event]) -> list[tuple[str, float, float | None]]:
    return [(e.phase, e.attributes["stream_time_s"], e.attributes.get("stream_end_s")) for e in events]


def test_five_seconds_without_a_mask_make_one_event_after_the_grace():
    run = Run().feed(scripted(12, lambda t: person(400, 300, drop=("mask",) if 2 <= t < 7 else ())))
    events = run.of("ppe.missing_item")
    assert [e.phase for e in run.events] == ["start", "end"]
    start, end = events
    assert start_end(events) == [("start", 2.0, None), ("end", 2.0, 6.8)]
    assert run.emitted_at[0] == pytest.approx(4.0)  # not before the grace
    assert run.emitted_at[1] == pytest.approx(6.8 + 4.0)  # the mask worn for the end hysteresis
    assert start.attributes["items"] == ["mask"]
    assert start.attributes["required"] == sorted(ALL)
    assert start.severity == "warning" and start.track_id is not None and start.track_id == end.track_id
    assert start.zone is None
    assert start.attributes["box"] == pytest.approx([400, 300, 480, 500], abs=2)
    assert end.attributes["episode"] == start.id


def test_a_glove_missed_in_single_frames_does_not_split_the_event():
    # no mask all along; gloves missed in one frame, and later in every third frame
    def scene(t: float) -> list[Detection]:
        i = round(t * FPS)
        flicker = i == 12 or (20 <= i < 35 and i % 3 == 0)
        return person(400, 300, drop=("mask", "gloves") if flicker else ("mask",))

    run = Run().feed(scripted(8, scene)).close()
    assert [(e.phase, e.attributes["items"]) for e in run.events] == [("start", ["mask"]), ("end", ["mask"])]
    # alone, a missed glove frame starts nothing
    assert Run().feed(scripted(8, lambda t: person(400, 300, drop=("gloves",) if round(t * FPS) == 12 else ()))
                      ).close().events == []


def test_an_item_taken_off_is_dated_from_its_last_sighting_despite_the_hold():
    # no mask from the start; the gloves come off at 4 s for good
    run = Run().feed(scripted(9, lambda t: person(400, 300, drop=("mask", "gloves") if t >= 4 else ("mask",))))
    run.close()
    assert [(e.phase, e.attributes["items"], e.attributes["stream_time_s"], e.attributes.get("stream_end_s"))
            for e in run.events] == [
        ("start", ["mask"], 0.0, None),
        ("end", ["mask"], 0.0, 3.8),
        ("start", ["gloves", "mask"], 4.0, None),
        ("end", ["gloves", "mask"], 4.0, 8.8),
    ]
    assert run.emitted_at[2] == pytest.approx(6.0)


@pytest.mark.parametrize(("stitch_gap_s", "end_after_s", "crowd_end_after_s", "events"),
                         [(2.0, 1.0, 0.0, 1), (0.0, 1.0, 0.0, 2), (0.0, 4.0, 0.0, 1), (0.0, 1.0, 7.0, 1)])
def test_a_person_the_tracker_loses_for_a_moment_keeps_one_event(stitch_gap_s: float, end_after_s: float,
                                                                 crowd_end_after_s: float, events: int):
    """Unseen for a second (behind someone), back 40 px further under a new track id: the same
    person, the same missing mask. Stitching the person's tracks keeps one event; without it, the end
    hysteresis still does (the situation is continued where it was), or keeping the situation of someone
    who vanished inside the view; without any, a second event."""
    def scene(t: float) -> list[Detection]:
        if 4.0 <= t < 5.0:
            return []
        return person(400 + (40 if t >= 5.0 else 0), 300, drop=("mask",))

    timing = TimingSettings(start_after_s=2.0, end_after_s=end_after_s)
    run = Run(PpeSettings(stitch_gap_s=stitch_gap_s, timing=timing, crowd_end_after_s=crowd_end_after_s),
              tracker=TrackerSettings(max_lost_frames=1))
    run.feed(scripted(10, scene)).close()
    starts = [e for e in run.of("ppe.missing_item") if e.phase == "start"]
    assert len(starts) == events, start_end(run.of("ppe.missing_item"))
    assert starts[0].attributes["stream_time_s"] == 0.0
    assert len({e.track_id for e in starts}) == events  # the tracker did give the person a new id


def test_a_person_the_detector_saw_in_one_frame_only_raises_nothing():
    """A stray box (the top half of someone, seen once) lacks everything, and is gone at once: while a
    situation is in its grace it goes on unseen only for someone seen in more than one frame."""
    def scene(t: float) -> list[Detection]:
        stray = person(800, 300, wears=()) if round(t * FPS) == 10 else []
        return person(400, 300) + stray

    run = Run().feed(scripted(8, scene)).close()
    assert run.events == []


@pytest.mark.parametrize(("x", "back_at", "started_at"), [(800, 2.4, 2.4), (800, None, None), (1200, None, 2.0)])
def test_a_situation_whose_grace_ends_while_its_person_is_hidden_starts_when_they_are_seen(
        x: float, back_at: float | None, started_at: float | None):
    """Seen lacking everything for 0.4 s, then hidden (behind someone) as the grace ends: the situation
    starts when the person is seen again, dated from the first sighting, with the box where they are
    then (the snapshot shows them). Never seen again, it starts at all only for someone last seen at the
    frame's border (who walked out of view: the last box is all there is)."""
    def scene(t: float) -> list[Detection]:
        if t < 0.4:
            return person(x, 300, wears=())
        return person(x + 40, 300, wears=()) if back_at is not None and t >= back_at else []

    run = Run(tracker=TrackerSettings(max_lost_frames=20)).feed(scripted(8, scene)).close()
    starts = [e for e in run.of("ppe.missing_item") if e.phase == "start"]
    if started_at is None:
        assert starts == []
        return
    assert len(starts) == 1, start_end(run.events)
    assert starts[0].attributes["stream_time_s"] == 0.0
    assert run.emitted_at[run.events.index(starts[0])] == pytest.approx(started_at)
    assert starts[0].attributes["box"][0] == pytest.approx(x + (40 if back_at is not None else 0), abs=2)


def test_what_someone_in_front_hides_is_neither_seen_nor_missed():
    """B stands in front of A (feet lower in the image) for 4 s, hiding A's head and hands: the detector
    sees none of A's helmet, mask, goggles or gloves meanwhile, and A lacks none of them. A's mask, seen
    missing before B came, stays missing while hidden: one event, no end and new start."""
    def scene(a_wears: tuple[str, ...]) -> Callable[[float], list[Detection]]:
        def at(t: float) -> list[Detection]:
            if 2.0 <= t < 6.0:  # B in front, its box over most of A's
                return person(400, 300, wears=[i for i in a_wears if i == "gown"]) + person(430, 300, scale=1.05)
            return person(400, 300, wears=a_wears) + person(700, 300, scale=1.05)
        return at

    assert Run().feed(scripted(9, scene(ALL))).close().events == []
    run = Run().feed(scripted(9, scene(("helmet", "gloves", "gown", "goggles")))).close()
    assert [(e.phase, e.attributes["items"]) for e in run.of("ppe.missing_item")] == [("start", ["mask"]),
                                                                                      ("end", ["mask"])]
    assert run.of("ppe.missing_item")[1].attributes["stream_end_s"] == pytest.approx(8.8)


def test_someone_first_seen_behind_another_lacks_only_what_was_seen_missing():
    """A walks in behind B: for 4 s B hides A's head and hands, so A's missing mask is unknown; once B
    steps aside and A's face shows without it, A's missing mask is reported, from that moment."""
    def at(t: float) -> list[Detection]:
        a = person(400, 300, wears=("gown",) if t < 4.0 else ("helmet", "gloves", "gown", "goggles"))
        return a + person(430 if t < 4.0 else 700, 300, scale=1.05)

    run = Run().feed(scripted(9, at)).close()
    starts = run.of("ppe.missing_item")[:1]
    assert [(e.phase, e.attributes["items"], e.attributes["stream_time_s"]) for e in starts] == [
        ("start", ["mask"], pytest.approx(4.0))]


def test_a_mask_under_the_nose_must_be_seen_through_its_grace():
    """Under the nose for a second, hidden for 1.4 s, back with the mask worn: nothing to report (the
    hidden face is no evidence either way). Seen the whole 2 s grace, it is reported."""
    def scene(hidden: tuple[float, float]) -> Callable[[float], list[Detection]]:
        def at(t: float) -> list[Detection]:
            if hidden[0] <= t < hidden[1]:
                return []
            wrong = [item for item in ALL if item != "mask"] + ["mask_improper"]
            return person(400, 300, wears=wrong if 1.0 <= t < 2.0 else ALL)
        return at

    assert Run().feed(scripted(8, scene((2.0, 3.4)))).close().events == []
    seen = Run().feed(scripted(8, lambda t: person(400, 300, wears=[item for item in ALL if item != "mask"]
                                                   + ["mask_improper"] if 1.0 <= t < 3.2 else ALL))).close()
    assert start_end(seen.of("ppe.improper")) == [("start", 1.0, None), ("end", 1.0, 3.0)]


def test_zone_requirements_follow_the_feet():
    # the general area needs a gown only; the filling room (right half of the floor) needs mask and goggles too
    settings = PpeSettings(required=["gown"], zone_required={"filling": ["gown", "mask", "goggles"]})
    zones = [("filling", [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)], True)]

    def scene(t: float) -> list[Detection]:
        # walks right 40 px/s from x=400 (feet at x=440) to x=840 in 10 s, then stands; only a gown
        return person(400 + 40 * min(t, 10.0), 300, wears=("gown", "helmet"))

    run = Run(settings, zones).feed(scripted(16, scene)).close()
    assert [(e.phase, e.attributes["items"], e.zone) for e in run.events] == [
        ("start", ["goggles", "mask"], "filling"), ("end", ["goggles", "mask"], "filling")]
    start = run.events[0]
    assert start.attributes["required"] == ["goggles", "gown", "mask"]
    # the feet cross x=640 at t=5 s (box x=600); the head was over the line 1 s earlier
    assert start.attributes["stream_time_s"] == pytest.approx(5.0, abs=0.25)
    # outside that zone nothing is missing, even with the head over the zone's floor
    run = Run(settings, zones).feed(scripted(6, lambda t: person(560, 300, wears=("gown",)))).close()
    assert run.events == []


def test_items_go_to_the_person_they_fit():
    # a far person (smaller, feet higher up) with a mask and no gloves; a near one in front of it, half
    # overlapping, with gloves (its left glove over the far person's body) and no mask; a third person
    # beside them, with both
    def scene(t: float) -> list[Detection]:
        return (person(400, 250, wears=("mask",), scale=0.75) + person(430, 280, wears=("gloves",))
                + person(700, 280, wears=("mask", "gloves")))

    run = Run(PpeSettings(required=["mask", "gloves"])).feed(scripted(5, scene)).close()
    starts = {tuple(e.attributes["items"]): e.attributes["box"][0] for e in run.events if e.phase == "start"}
    assert starts == {("gloves",): pytest.approx(400, abs=2), ("mask",): pytest.approx(430, abs=2)}


def test_a_neighbour_s_glove_does_not_end_a_missing_gloves_episode():
    # A, gloved, stands still; B, without gloves, walks past it from the right and back: while they
    # overlap, A's right glove lies in B's box at the same height, as near B's hand spot as A's
    def scene(t: float) -> list[Detection]:
        x = 700 - 60 * t if t < 5 else 400 + 60 * (t - 5)
        glove = [Detection("gloves", 0.8, (465, 400, 480, 415)), Detection("gloves", 0.8, (395, 400, 410, 415))]
        return person(400, 300, wears=("helmet",)) + glove + person(x, 300, wears=("helmet",))

    run = Run(PpeSettings(required=["helmet", "gloves"])).feed(scripted(10, scene)).close()
    events = run.of("ppe.missing_item")
    assert start_end(events) == [("start", 0.0, None), ("end", 0.0, 9.8)], start_end(events)
    assert events[0].attributes["items"] == ["gloves"] and events[0].attributes["box"][0] > 500  # B


def test_one_person_wears_one_helmet():
    # side by side at the same depth; the right one stretches an arm out to the right, so that its own
    # helmet is nearer the left one's head spot than its own: still, each gets one
    def scene(t: float) -> list[Detection]:
        return person(400, 300, wears=("helmet",)) + [
            Detection("person", 0.9, (430, 300, 570, 500)), Detection("helmet", 0.8, (440, 300, 480, 325))]

    assert Run(PpeSettings(required=["helmet"])).feed(scripted(5, scene)).close().events == []


def test_a_mask_under_the_nose_is_improper_not_missing():
    def scene(t: float) -> list[Detection]:
        wears = [item for item in ALL if item != "mask"] + ["mask_improper"] if 1 <= t < 6 else ALL
        return person(400, 300, wears=wears)

    run = Run().feed(scripted(9, scene)).close()
    assert run.of("ppe.missing_item") == []
    events = run.of("ppe.improper")
    assert start_end(events) == [("start", 1.0, None), ("end", 1.0, 5.8)]
    assert events[0].attributes["items"] == ["mask"] and events[0].severity == "warning"


HYGIENE = PpeSettings(required=[], wash_zone="wash", clean_zone="clean")
HYGIENE_ZONES = [
    ("wash", [(100, 400), (400, 400), (400, 700), (100, 700)], False),
    ("clean", [(800, 400), (1200, 400), (1200, 700), (800, 700)], False),
]


def walk(points: Sequence[tuple[float, float, float]]) -> Callable[[float], list[Detection]]:
    """Feet at (x, y) at time t, linearly between the (t, x, y) points; everything worn."""
    times = [p[0] for p in points]

    def scene(t: float) -> list[Detection]:
        fx, fy = np.interp(t, times, [p[1] for p in points]), np.interp(t, times, [p[2] for p in points])
        return person(float(fx) - 40, float(fy) - 200)
    return scene


def test_washing_first_raises_nothing_skipping_it_raises_one_violation():
    washed = walk([(0, 600, 550), (2, 250, 550), (6, 250, 550), (10, 1000, 550), (14, 1000, 550)])
    assert Run(HYGIENE, HYGIENE_ZONES).feed(scripted(14, washed)).close().events == []

    # straight to the clean zone, out, a short wash (2.2 s inside its edge), back in and staying there:
    # one violation per entry
    skipped = walk([(0, 600, 550), (3, 1000, 550), (5, 1000, 550), (8, 600, 550), (11, 350, 550), (12, 350, 550),
                    (15, 600, 550), (18, 1000, 550), (21, 1000, 550)])
    run = Run(HYGIENE, HYGIENE_ZONES).feed(scripted(21, skipped)).close()
    violations = run.of("hygiene.sequence_violation")
    assert [(e.phase, e.zone, e.severity) for e in violations] == [("start", "clean", "warning")] * 2
    first, second = violations
    assert first.attributes["stream_time_s"] == pytest.approx(1.5, abs=0.25)  # feet reach x=800 at 1.5 s
    assert first.attributes["stream_end_s"] == first.attributes["stream_time_s"]
    assert first.attributes["wash_dwell_s"] == 0.0 and first.attributes["required_s"] == 3.0
    assert second.attributes["stream_time_s"] == pytest.approx(16.5, abs=0.25)  # feet at x=800 again
    assert second.attributes["wash_dwell_s"] == pytest.approx(2.2, abs=0.3)


def test_feet_along_the_clean_zones_edge_make_one_entry():
    """Unwashed, into the clean zone, then along its lower edge (y = 700), the feet's point out of it for
    0.4 s at a time (the box's bottom changes as the legs move): one violation. Out for 2 s and back in
    is a new entry."""
    def along_edge(t: float) -> list[Detection]:
        x = float(np.interp(t, [0, 3, 9], [600, 850, 1150]))
        y = 705 if t >= 3 and t % 1.5 < 0.4 else 695
        return person(x - 40, y - 200)

    run = Run(HYGIENE, HYGIENE_ZONES).feed(scripted(9, along_edge)).close()
    assert [e.attributes["stream_time_s"] for e in run.of("hygiene.sequence_violation")] == [
        pytest.approx(2.4, abs=0.25)]  # feet reach x=800 at 2.4 s

    out_and_back = walk([(0, 600, 550), (3, 1000, 550), (4, 1000, 550), (4.2, 1000, 720), (6.2, 1000, 720),
                         (6.4, 1000, 550), (8, 1000, 550)])
    run = Run(HYGIENE, HYGIENE_ZONES).feed(scripted(8, out_and_back)).close()
    assert len(run.of("hygiene.sequence_violation")) == 2
    # seen stepping out over the edge, then hidden until back in: out for 1.6 s is a new entry, for 0.6 s
    # (seen out at 4.2 s, back in at 4.8 s) it is not
    def out_for(seconds: float) -> Callable[[float], list[Detection]]:
        scene = walk([(0, 600, 680), (3, 1000, 680), (4, 1000, 680), (4.2, 1000, 730), (4.2 + seconds, 1000, 730),
                      (4.4 + seconds, 1000, 680), (8, 1000, 680)])
        return lambda t: [] if 4.6 <= t < 4.3 + seconds else scene(t)

    for seconds, entries in ((1.4, 2), (0.4, 1)):
        run = Run(HYGIENE, HYGIENE_ZONES).feed(scripted(8, out_for(seconds))).close()
        assert len(run.of("hygiene.sequence_violation")) == entries, seconds
    strict = PpeSettings(required=[], wash_zone="wash", clean_zone="clean", clean_left_after_s=0.0)
    assert len(Run(strict, HYGIENE_ZONES).feed(scripted(9, along_edge)).close().of("hygiene.sequence_violation")) > 1


def test_a_wash_is_timed_on_while_someone_hides_the_washer_for_a_moment():
    """3.9 s at the basin, hidden behind someone for 1.6 s of it: a full wash, no violation. The
    wash zone's clock runs through a gap no longer than the stitch gap, not through a longer one."""
    washed = walk([(0, 450, 550), (0.5, 250, 550), (3.2, 250, 550), (7.2, 1000, 550), (10, 1000, 550)])

    def hidden(start: float, end: float) -> Callable[[float], list[Detection]]:
        return lambda t: [] if start <= t < end else washed(t)

    run = Run(HYGIENE, HYGIENE_ZONES).feed(scripted(10, hidden(1.8, 3.4))).close()
    assert run.events == []
    run = Run(HYGIENE, HYGIENE_ZONES).feed(scripted(10, hidden(1.0, 3.6))).close()  # 2.6 s: too long to tell
    assert [e.kind for e in run.events] == ["hygiene.sequence_violation"]


def test_someone_who_emerges_from_behind_a_washer_shares_their_wash():
    """Two wash side by side, one seen only once they step apart (a group at the basin): the one who
    emerges from the other's box washed with them. Someone first seen away from everyone has not."""
    washer = walk([(0, 600, 550), (1, 250, 550), (5, 250, 550), (9, 1000, 550), (11, 1000, 550)])
    beside = walk([(0, 600, 550), (1, 270, 540), (5, 270, 540), (9, 1060, 540), (11, 1060, 540)])

    def group(t: float) -> list[Detection]:
        return washer(t) + (beside(t) if t >= 4.6 else [])  # one box for two until they step apart

    run = Run(HYGIENE, HYGIENE_ZONES).feed(scripted(11, group)).close()
    assert run.events == []
    strict = PpeSettings(required=[], wash_zone="wash", clean_zone="clean", emerged_overlap=None)
    run = Run(strict, HYGIENE_ZONES).feed(scripted(11, group)).close()
    assert [e.kind for e in run.events] == ["hygiene.sequence_violation"]
    assert run.events[0].attributes["wash_dwell_s"] < HYGIENE.min_wash_s  # only what it was seen to wash

    alone = walk([(0, 600, 550), (4.6, 600, 550), (9, 1060, 540), (11, 1060, 540)])  # not at the basin
    run = Run(HYGIENE, HYGIENE_ZONES).feed(scripted(11, lambda t: washer(t) + (alone(t) if t >= 4.6 else [])))
    assert [e.kind for e in run.close().events] == ["hygiene.sequence_violation"]


def test_walking_into_the_clean_zone_from_outside_the_view_is_an_entry():
    zones = [("wash", [(100, 400), (400, 400), (400, 700), (100, 700)], False),
             ("clean", [(900, 400), (1280, 400), (1280, 700), (900, 700)], False)]
    # nobody in the first frames; then one walks in over the right edge, straight into the clean zone
    walked_in = walk([(0, 1290, 550), (4, 1000, 550), (6, 1000, 550)])
    run = Run(HYGIENE, zones).feed(scripted(6, lambda t: walked_in(t) if t >= 0.4 else [])).close()
    assert [e.kind for e in run.events] == ["hygiene.sequence_violation"]
    # first seen inside, away from the edges (it was hidden), or there from the stream's start: no entry
    inside = walk([(0, 1000, 550), (3, 1050, 550)])
    assert Run(HYGIENE, zones).feed(scripted(3, lambda t: inside(t) if t >= 0.4 else [])).close().events == []
    at_edge = walk([(0, 1250, 550), (3, 1200, 550)])
    assert Run(HYGIENE, zones).feed(scripted(3, at_edge)).close().events == []


def test_someone_who_emerges_from_behind_a_person_who_just_walked_in_walked_in_too():
    """Two walk in over the right edge one behind the other (one box), straight into the clean zone,
    unwashed (the first is seen at 0.4 s); the second is told apart 1.2 s later: two violations. One
    told apart from someone who has been inside for longer than the stitch gap did not just walk in."""
    zones = [("wash", [(100, 400), (400, 400), (400, 700), (100, 700)], False),
             ("clean", [(900, 400), (1280, 400), (1280, 700), (900, 700)], False)]
    first = walk([(0, 1290, 550), (3, 1050, 550), (8, 1050, 550)])
    second = walk([(0, 1300, 540), (3, 1070, 540), (8, 1070, 540)])

    def group(seen: float) -> Callable[[float], list[Detection]]:
        return lambda t: (first(t) + (second(t) if t >= seen else [])) if t >= 0.4 else []

    run = Run(HYGIENE, zones).feed(scripted(8, group(1.6))).close()
    assert [e.kind for e in run.events] == ["hygiene.sequence_violation"] * 2
    assert [e.attributes["stream_time_s"] for e in run.events] == [pytest.approx(0.4), pytest.approx(1.6)]
    run = Run(HYGIENE, zones).feed(scripted(8, group(4.0))).close()
    assert [e.attributes["stream_time_s"] for e in run.events] == [pytest.approx(0.4)]


def test_flickering_fire_is_one_critical_event():
    fire = Detection("fire", 0.7, (100, 100, 260, 300))

    def scene(t: float) -> list[Detection]:
        i = round(t * FPS)
        shown = 5 <= i < 40 and i % 3 != 2
        return ([fire] if shown else []) + ([Detection("smoke", 0.6, (0, 0, 50, 50))] if i == 45 else [])

    run = Run(PpeSettings(required=[])).feed(scripted(14, scene)).close()
    assert [(e.kind, e.phase) for e in run.events] == [("fire.detected", "start"), ("fire.detected", "end")]
    start, end = run.events
    assert start.severity == "critical" and start.track_id is None
    assert start_end(run.events) == [("start", 1.2, None), ("end", 1.2, 7.8)]
    assert start.attributes["area_ratio"] == pytest.approx(160 * 200 / (W * H), abs=1e-5)
    assert start.attributes["count"] == 1
    assert start.attributes["box"] == [100, 100, 260, 300]


def test_with_a_fire_model_only_its_fire_and_smoke_count():
    """The ppe detector's smoke on a bright wall is no alarm when a model of its own finds fire and smoke."""
    wall = Detection("smoke", 0.6, (0, 0, 80, 40), "ppe")
    plume = Detection("smoke", 0.5, (300, 100, 360, 180), "hazards")
    shown = lambda t: [wall] + ([plume] if t >= 3 else [])  # noqa: E731

    run = Run(PpeSettings(required=[], fire_model="hazards")).feed(scripted(8, shown)).close()
    assert start_end(run.events) == [("start", 3.0, None), ("end", 3.0, 7.8)]
    assert run.events[0].attributes["box"] == [300, 100, 360, 180]
    run = Run(PpeSettings(required=[])).feed(scripted(8, shown)).close()  # any model's: the wall from the start
    assert start_end(run.events) == [("start", 0.0, None), ("end", 0.0, 7.8)]


def test_a_fire_hidden_for_seconds_by_someone_in_front_of_it_stays_one_alarm():
    fire = Detection("fire", 0.7, (100, 100, 160, 180))
    shown = lambda t: [fire] if 1 <= t < 4 or 8 <= t < 12 else []  # noqa: E731 (hidden from 4 to 8 s)

    run = Run(PpeSettings(required=[])).feed(scripted(30, shown)).close()
    assert start_end(run.events) == [("start", 1.0, None), ("end", 1.0, 11.8)]


@pytest.mark.parametrize(("label", "every", "started"), [
    ("smoke", 3, 1.0), ("smoke", 4, None), ("fire", 4, 1.0), ("fire", 16, None)])
def test_smoke_must_be_seen_in_nearly_every_frame_to_be_confirmed_fire_may_hide(
        label: str, every: int, started: float | None):
    """Seen in one frame out of ``every`` from 1 s: smoke, which stays in sight under the ceiling, is
    confirmed with gaps of two frames (0.6 s) at most; a fire low in the room, which passers-by hide,
    with gaps of 3 s."""
    def scene(t: float) -> list[Detection]:
        i = round(t * FPS)
        return [Detection(label, 0.5, (100, 100, 200, 200))] if i >= 5 and (i - 5) % every == 0 else []

    run = Run(PpeSettings(required=[])).feed(scripted(10, scene)).close()
    starts = [e.attributes["stream_time_s"] for e in run.events if e.phase == "start"]
    assert starts == ([] if started is None else [started]), start_end(run.events)
    assert all(e.kind == f"{label}.detected" for e in run.events)


def test_settings_refuse_half_a_hygiene_sequence_and_unknown_keys():
    with pytest.raises(ValidationError, match="go together"):
        PpeSettings(clean_zone="clean")
    with pytest.raises(ValidationError):
        PpeSettings(requird=["mask"])
    with pytest.raises(ValidationError, match="not fire labels"):
        PpeSettings(label_timing={"smok": TimingSettings(start_after_s=1.0)})
    assert PpeSettings(fire_labels=["fire"]).fire_timing_of("fire").confirm_gap_s == 3.0  # no smoke model
    assert PpeSettings().fire_timing.start_after_s == 1.0 and PpeSettings().timing.start_after_s == 2.0


# ---------------------------------------------------------------------- against a rendered scene's schedule

GRACE = {"ppe.missing_item": 2.0, "ppe.improper": 2.0, "hygiene.sequence_violation": 0.0,
         "fire.detected": 1.0, "smoke.detected": 1.0}


def scene_events(scene: CleanRoomScene, step: int) -> tuple[list[tuple], int]:
    """The scene's truth as perfect detections at ``fps / step`` through StreamAnalytics, the real tracker and
    the ppe rules: one (kind, scene person, items, start, end, attributes) per event; and how many frames."""
    settings = PpeSettings(required=sorted(scene.required), wash_zone="wash", clean_zone="clean")
    run = Run(settings, [(name, polygon, False) for name, polygon in scene.zones.items()])
    votes: dict[int, Counter] = {}
    frames = 0
    for truth in scene.truths():
        if truth.index % step:
            continue
        frames += 1
        result = FrameResult("cam", truth.index, int(round(truth.time_s * 1e9)), 1000.0 + truth.time_s,
                             scene.width, scene.height, [Detection(o.label, 0.9, o.box) for o in truth.objects])
        run.feed([result])
        people = [o for o in truth.objects if o.label == "person"]
        tracks = [t for t in result.tracks if t.label == "person"]
        if people and tracks:
            iou = iou_matrix(np.array([t.box for t in tracks]), np.array([o.box for o in people]))
            for i, j in enumerate(iou.argmax(axis=1)):
                if iou[i, j] > 0.5:
                    votes.setdefault(tracks[i].track_id, Counter())[people[j].track_id] += 1
    run.close()
    person_of = {track: counter.most_common(1)[0][0] for track, counter in votes.items()}
    ends = {e.attributes["episode"]: e for e in run.events if e.phase == "end"}
    out = []
    for e in run.events:
        if e.phase != "start":
            continue
        end = e.attributes.get("stream_end_s", ends[e.id].attributes["stream_end_s"] if e.id in ends else None)
        who = None if e.track_id is None else person_of.get(e.track_id, -1)
        out.append((e.kind, who, tuple(e.attributes.get("items", ())), e.attributes["stream_time_s"], end,
                    e.attributes))
    return out, frames


@pytest.mark.parametrize(("seed", "people"), [(1, 3), (19, 2)])
def test_perfect_detections_of_a_clean_room_give_the_scene_timeline(seed: int, people: int):
    scene = CleanRoomScene(seed, duration_s=20.0, people=people, fire=True, smoke=True)
    ours, frames = scene_events(scene, step=scene.fps // FPS)
    assert frames == 100
    pool = list(ours)
    compared, problems = 0, []
    for truth in scene.timeline():
        person = None if truth.kind in ("fire.detected", "smoke.detected") else truth.track_id
        items = tuple(truth.attributes.get("items", [truth.attributes["item"]] if "item" in truth.attributes else []))
        grace = GRACE[truth.kind]
        # Shorter than the grace (give or take a frame): may or may not be reported. A wash stay within a
        # frame or two of the limit: the sampling decides.
        optional = (truth.end_s - truth.start_s < grace + 0.4 and truth.kind.startswith("ppe.")) or (
            truth.kind == "hygiene.sequence_violation" and abs(truth.attributes["wash_dwell_s"] - 3.0) < 0.4)
        match = next((o for o in pool if o[:3] == (truth.kind, person, items)
                      and abs(o[3] - truth.start_s) <= grace + 0.5 and abs(o[4] - truth.end_s) <= 1.5), None)
        if match is not None:
            pool.remove(match)
            compared += 1
            if truth.kind == "hygiene.sequence_violation":
                assert match[5]["wash_dwell_s"] == pytest.approx(truth.attributes["wash_dwell_s"], abs=0.35)
        elif not optional:
            problems.append(("missed", truth.kind, person, items, round(truth.start_s, 2), round(truth.end_s, 2)))
    problems += [("extra", *o[:3], o[3], o[4]) for o in pool]
    assert problems == []
    assert compared >= 10
    kinds = Counter(o[0] for o in ours)
    assert kinds["ppe.missing_item"] and kinds["ppe.improper"] and kinds["hygiene.sequence_violation"]
    assert kinds["fire.detected"] == kinds["smoke.detected"] == 1
    assert all(o[5]["box"] for o in ours)


class BackendRun(Run):
    """A run on tracks the backend gives (nvtracker's ids under DeepStream), so a test can swap them."""

    def __init__(self, settings: PpeSettings | None = None, zones: Sequence[ZoneSpec] = ()) -> None:
        super().__init__(settings, zones)
        self.analytics.tracker = None


def tracked(i: int, people: list[tuple[int, list[Detection]]]) -> FrameResult:
    """A frame whose person tracks carry the given ids."""
    result = frame(i, [d for _, detections in people for d in detections])
    result.tracks = [Track(track_id, "person", 0.9, detections[0].box, i) for track_id, detections in people]
    return result


def test_a_missing_item_situation_stays_with_the_person_when_track_ids_change_hands():
    # A (no mask) and B (no gloves) stand apart; at 4 s the tracker swaps their ids, at 7 s back again
    def at(i: int) -> FrameResult:
        swapped = 20 <= i < 35
        a, b = person(300, 300, drop=("mask",)), person(700, 300, drop=("gloves",))
        return tracked(i, [(2, a), (1, b)] if swapped else [(1, a), (2, b)])

    run = BackendRun().feed(at(i) for i in range(50)).close()
    events = run.of("ppe.missing_item")
    assert sorted((e.phase, tuple(e.attributes["items"]), e.attributes["box"][0]) for e in events) == [
        ("end", ("gloves",), 700), ("end", ("mask",), 300), ("start", ("gloves",), 700), ("start", ("mask",), 300)]
    assert all(e.attributes["stream_time_s"] == 0.0 for e in events)


def test_two_tracks_that_continue_one_person_do_not_flood_violations():
    """A walks into the clean zone unwashed (track 1: one violation), is hidden for a second and comes
    back as track 2 (stitched: the same person). Then the tracker puts id 1 on B, who waits outside the
    clean zone. Tracks 1 and 2 both continue person 1: B is someone else, and A's one entry stays one
    violation, not one per frame."""
    a = walk([(0, 600, 550), (3, 1000, 550), (10, 1000, 550)])
    b = walk([(0, 640, 560), (10, 640, 560)])

    def at(i: int) -> FrameResult:
        t = i / FPS
        if t < 4:
            return tracked(i, [(1, a(t))])
        if t < 5:
            return tracked(i, [])
        return tracked(i, [(2, a(t))] if t < 5.6 else [(1, b(t)), (2, a(t))])

    run = BackendRun(HYGIENE, HYGIENE_ZONES).feed(at(i) for i in range(50)).close()
    violations = run.of("hygiene.sequence_violation")
    assert start_end(violations) == [("start", pytest.approx(1.6), pytest.approx(1.6))]  # feet at x=800


def test_a_glimpse_of_a_missing_item_does_not_split_the_event():
    # no gloves; the detector sees a glove on the person in four frames in a row (0.8 s)
    def scene(t: float) -> list[Detection]:
        return person(400, 300, drop=() if 20 <= round(t * FPS) < 24 else ("gloves",))

    run = Run().feed(scripted(10, scene)).close()
    assert start_end(run.of("ppe.missing_item")) == [("start", 0.0, None), ("end", 0.0, 9.8)]


def test_gloves_that_seem_worn_for_a_while_on_a_walker_do_not_split_the_event():
    """No gloves all along; walking fast, a person passes someone whose gloves fit their hands for 2.4 s
    (they seem to wear gloves, lacking nothing) and walks on without: one situation, though the person
    is by then farther from where it was last shown than anyone continues a situation by place."""
    def scene(t: float) -> list[Detection]:
        return person(50 + 130 * t, 300, drop=() if 3.0 <= t < 5.4 else ("gloves",), scale=0.5)

    run = Run().feed(scripted(10, scene)).close()
    assert [(e.phase, e.attributes["items"]) for e in run.of("ppe.missing_item")] == [
        ("start", ["gloves"]), ("end", ["gloves"])], start_end(run.events)


def test_a_walker_who_seems_to_lack_less_then_nothing_for_a_while_keeps_the_event():
    """No gloves and no helmet all along; walking fast past others, a person seems to wear a helmet for
    1 s (lacking gloves only, not yet for the grace), then everything for 1 s, then lacks both again:
    the situation reported first goes on, though the person is far from where it was last shown."""
    def scene(t: float) -> list[Detection]:
        drop = ("gloves",) if 3.0 <= t < 4.0 else () if 4.0 <= t < 5.0 else ("gloves", "helmet")
        return person(50 + 130 * t, 300, drop=drop, scale=0.5)

    run = Run().feed(scripted(10, scene)).close()
    assert [(e.phase, e.attributes["items"]) for e in run.of("ppe.missing_item")] == [
        ("start", ["gloves", "helmet"]), ("end", ["gloves", "helmet"])], start_end(run.events)


@pytest.mark.parametrize(("neighbour", "starts"), [(True, 1), (False, 2)])
def test_goggles_that_seem_worn_for_5_s_as_someone_stands_against_the_person_do_not_split_the_event(
        neighbour: bool, starts: int):
    """A has no goggles, yet seems to wear some from 3 s to 8 s (a neighbour's, or those of someone hidden
    behind): with someone standing against A that is one situation; alone, A put goggles on and took them
    off again, two."""
    def scene(t: float) -> list[Detection]:
        a = person(400, 300, drop=() if 3.0 <= t < 8.0 else ("goggles",))
        return a + (person(470, 290) if neighbour else [])

    run = Run().feed(scripted(14, scene)).close()
    events = [e for e in run.of("ppe.missing_item") if e.attributes["items"] == ["goggles"]]
    assert [e.phase for e in events] == ["start", "end"] * starts, start_end(run.events)
    assert events[1].attributes["stream_end_s"] == (13.8 if neighbour else 2.8)


def test_something_else_missing_for_less_than_the_grace_keeps_the_situation():
    # no mask all along; the gloves are missed for 1.6 s: the situation stays "mask", one event
    def scene(t: float) -> list[Detection]:
        return person(400, 300, drop=("mask", "gloves") if 4.0 <= t < 5.6 else ("mask",))

    run = Run().feed(scripted(10, scene)).close()
    assert [(e.phase, e.attributes["items"]) for e in run.events] == [("start", ["mask"]), ("end", ["mask"])]
    assert run.events[1].attributes["stream_end_s"] == 9.8


def test_when_crossing_people_swap_track_ids_their_situations_stay_with_them():
    # A (no mask) walks right, B (no gloves, further away) walks left; they pass each other at 4 s,
    # where the tracker swaps their ids: the id now on A knew B's items, and the other way round
    def at(i: int) -> FrameResult:
        t = i / FPS
        a, b = person(200 + 50 * t, 300, drop=("mask",)), person(600 - 50 * t, 250, drop=("gloves",), scale=0.8)
        return tracked(i, [(2, a), (1, b)] if t >= 4 else [(1, a), (2, b)])

    run = BackendRun().feed(at(i) for i in range(45)).close()
    starts = [e for e in run.of("ppe.missing_item") if e.phase == "start"]
    assert sorted(tuple(e.attributes["items"]) for e in starts) == [("gloves",), ("mask",)], start_end(run.events)
    ends = {e.attributes["items"][0]: e for e in run.of("ppe.missing_item") if e.phase == "end"}
    assert ends["mask"].attributes["box"][0] > 500 and ends["gloves"].attributes["box"][0] < 300  # A right, B left


def test_a_mask_under_the_nose_stays_one_event_when_crossing_people_swap_track_ids():
    # A wears the mask under the nose and no goggles, B no gloves (what tells them apart); ids swap as they
    # pass at 4 s
    def at(i: int) -> FrameResult:
        t = i / FPS
        a = person(200 + 50 * t, 300, wears=("helmet", "gloves", "gown", "mask_improper"))
        b = person(600 - 50 * t, 250, drop=("gloves",), scale=0.8)
        return tracked(i, [(2, a), (1, b)] if t >= 4 else [(1, a), (2, b)])

    run = BackendRun().feed(at(i) for i in range(45)).close()
    assert sorted((e.phase, e.attributes["items"][0]) for e in run.of("ppe.missing_item")) == [
        ("end", "gloves"), ("end", "goggles"), ("start", "gloves"), ("start", "goggles")]
    events = run.of("ppe.improper")
    assert [e.phase for e in events] == ["start", "end"], start_end(events)
    assert events[0].attributes["stream_time_s"] == 0.0 and events[1].attributes["box"][0] > 500  # on A


def test_a_situation_stays_one_event_when_the_tracker_swaps_the_ids_of_people_one_behind_the_other():
    """B (no gloves) stands just behind A (no helmet), their boxes mostly overlapping; at 4 s the tracker
    swaps their ids. The id now on A knew B, who wore a helmet: its evidence takes a moment to turn,
    and A then seems to begin lacking a helmet, while the id now on B shows nothing missing. A's
    reported situation, which nobody shows any more, is continued by A: one event, not a second one."""
    def at(i: int) -> FrameResult:
        a, b = person(300, 300, drop=("helmet",)), person(330, 270, drop=("gloves",), scale=0.95)
        return tracked(i, [(2, a), (1, b)] if i >= 20 else [(1, a), (2, b)])

    run = BackendRun().feed(at(i) for i in range(60)).close()
    helmet = [e for e in run.of("ppe.missing_item") if e.attributes["items"] == ["helmet"]]
    assert start_end(helmet) == [("start", 0.0, None), ("end", 0.0, 11.8)]
    assert helmet[1].attributes["box"][0] == 300  # on A


def test_someone_seen_beside_a_person_who_walks_out_of_sight_does_not_continue_their_situation():
    """A (no mask) stands at the door; B (no mask either) walks up beside A at 2 s; A is out of sight
    from 3 s. B, near where A's reported situation was last seen and lacking the same, is not A come
    back (both were seen at once): B's own situation starts, dated from when B was first seen."""
    def at(i: int) -> FrameResult:
        people = [] if i >= 15 else person(300, 300, drop=("mask",))
        if i >= 10:
            people += person(370, 300, drop=("mask",))
        return frame(i, people)

    run = Run().feed(at(i) for i in range(40)).close()
    starts = [e for e in run.of("ppe.missing_item") if e.phase == "start"]
    assert [(e.attributes["box"][0] // 10, e.started_at) for e in starts] == [(30, 1000.0), (37, 1002.0)]


def test_someone_hidden_behind_another_for_seconds_keeps_their_reported_situation():
    """A (no gloves) stands still; at 3 s B stops right in front of A, whom the detector then misses
    altogether, and walks on at 9.6 s. A, seen again where they stood (with a new track id), still lacks
    their gloves: one event, not an end after the end hysteresis and a second start."""
    def at(i: int) -> FrameResult:
        t = i / FPS
        people = [] if 3.0 <= t < 9.6 else [(1 if t < 3.0 else 3, person(300, 300, drop=("gloves",)))]
        if 2.6 <= t < 11.0:  # B walks in from the right, stands, walks on to the right
            people.append((2, person(300 + 250 * max(3.0 - t, t - 9.6, 0.0), 330)))
        return tracked(i, people)

    run = BackendRun().feed(at(i) for i in range(75)).close()
    gloves = run.of("ppe.missing_item")
    assert [(e.phase, e.attributes["items"]) for e in gloves] == [("start", ["gloves"]), ("end", ["gloves"])]
    assert gloves[0].attributes["stream_time_s"] == 0.0 and gloves[1].attributes["stream_end_s"] == 14.8


def test_someone_who_put_their_gloves_on_before_being_hidden_has_a_new_situation_when_they_take_them_off():
    """A lacks gloves, puts them on at 4 s, and is hidden behind B from 5 s to 11 s; seen again, A lacks
    gloves again. A lacked nothing as they vanished: their first situation ends as usual, and the
    second is a new event (only an absence someone showed as they vanished is kept for them)."""
    def at(i: int) -> FrameResult:
        t = i / FPS
        people = [] if 5.0 <= t < 11.0 else [
            (1 if t < 5.0 else 3, person(300, 300, drop=() if 4.0 <= t < 5.0 else ("gloves",)))]
        if 4.6 <= t < 12.0:  # B walks in from the right, stands, walks on to the right
            people.append((2, person(300 + 250 * max(5.0 - t, t - 11.0, 0.0), 330)))
        return tracked(i, people)

    run = BackendRun().feed(at(i) for i in range(80)).close()
    starts = [e.attributes["stream_time_s"] for e in run.of("ppe.missing_item") if e.phase == "start"]
    assert len(starts) == 2 and starts[0] == 0.0 and 11.0 <= starts[1] <= 11.4  # once B no longer hides A's hands
