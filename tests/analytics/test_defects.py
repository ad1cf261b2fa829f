"""The defects rules: parts counted once at the inspection line, their defects, drift, tool verification.

Everything runs through ``StreamAnalytics`` with a real ``Tracker``; stream time comes from ``pts_ns``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
from pydantic import ValidationError

from appliance.analytics.defects import DefectRules, DefectSettings, DriftSettings
from appliance.analytics.stream import StreamAnalytics
from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.metrics import ApplianceMetrics
from appliance.tracking.tracker import Tracker, TrackerSettings
from appliance.types import Box, Detection, Event, FrameResult
from tools.scenes.production import TOOL_ZONE, ProductionLineScene, ToolStationScene

W, H = 640, 360
LINE_X = 0.6 * W  # 384
LINES = [("inspect", [(0.6, 0.0), (0.6, 1.0)], True)]
MAT = [("mat", [(150, 62), (490, 62), (490, 298), (150, 298)], False)]
TOOL_GROUP = (("tool_clean", "tool_dirty", "tool_damaged"),)


class Rig:
    """One stream: a real tracker, the defect rules, the events they emit and the metrics."""

    def __init__(self, settings: DefectSettings, tracker: TrackerSettings | None = None) -> None:
        self.metrics = ApplianceMetrics()
        self.rules = DefectRules(settings, "cam", self.metrics)
        self.events: list[Event] = []
        self.analytics = StreamAnalytics(
            "cam", Tracker(tracker or TrackerSettings()), [self.rules],
            EventFactory("dev", "v1", ManualClock()), self.events.append, zones=MAT, lines=LINES,
        )
        self.frame = 0

    def feed(self, frames: Iterable[tuple[float, Sequence[Detection]]]) -> None:
        for t, detections in frames:
            self.analytics.process(FrameResult("cam", self.frame, round(t * 1e9), 1_700_000_000.0 + t, W, H,
                                               list(detections)))
            self.frame += 1

    def close(self) -> None:
        self.analytics.close()

    def of(self, kind: str, phase: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (phase is None or e.phase == phase)]

    def parts(self, result: str, line: str = "inspect") -> float | None:
        return self.metrics.registry.get_sample_value(
            "appliance_parts_inspected_total", {"stream": "cam", "line": line, "result": result})

    def rate(self, line: str = "inspect") -> float | None:
        return self.metrics.registry.get_sample_value("appliance_defect_rate_ratio", {"stream": "cam", "line": line})


def part(cx: float, cy: float, label: str = "vial", w: float = 60, h: float = 80) -> Detection:
    return Detection(label, 0.9, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))


def defect(cx: float, cy: float, label: str = "crack", confidence: float = 0.8, size: float = 14) -> Detection:
    return Detection(label, confidence, (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2))


def frames_at(fps: float, xs: Sequence[float], y: float = 180, t0: float = 0.0, **kw) -> list[tuple[float, list]]:
    return [(t0 + i / fps, [part(x, y, **kw)]) for i, x in enumerate(xs)]


# -- settings -----------------------------------------------------------------

def test_settings_defaults_and_validation() -> None:
    s = DefectSettings.model_validate({"inspection_line": "inspect", "drift": {"limit": 0.25}})
    assert s.part_labels == ("vial", "blister", "tablet")
    assert s.defect_labels == ("crack", "chip", "missing_cap", "stain")
    assert s.tool_labels == {"tool_clean": "clean", "tool_dirty": "dirty", "tool_damaged": "damaged"}
    assert s.min_defect_frames == 2 and s.tool_settle_s == 1.0
    assert s.drift is not None and s.drift.window_parts == 50 and s.drift.clear_level == pytest.approx(0.2)
    assert DriftSettings(limit=0.4, clear_below=0.1).clear_level == 0.1
    for bad in ({"part_labels": ["vial", "crack"]}, {"tool_labels": {"vial": "clean"}}, {"inspection_line": "a b"},
                {"drift": {"limit": 0.3, "clear_below": 0.5}}, {"drift": {"window_parts": 10, "min_parts": 20}},
                {"min_defect_frames": 0}, {"ok_states": ["ok"]}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            DefectSettings.model_validate(bad)


# -- parts at the line --------------------------------------------------------

def test_each_part_is_counted_once_when_it_crosses_the_line() -> None:
    rig = Rig(DefectSettings(inspection_line="inspect"))
    # three good parts on three rows at 100 px/s, 5 analyzed frames/s; one moves right to left
    frames = []
    for i in range(25):
        t = i / 5
        frames.append((t, [part(200 + 100 * t, 80), part(100 + 100 * t, 180, "tablet", 40, 40),
                           part(600 - 100 * t, 280, "blister")]))
    rig.feed(frames)
    assert rig.of("defect.part") == []
    assert rig.parts("ok") == 3 and rig.parts("defective") == 0
    assert rig.rate() == 0.0


def test_a_part_jittering_across_the_line_is_counted_once() -> None:
    rig = Rig(DefectSettings(inspection_line="inspect"))
    xs = [330, 350, 370, 380, LINE_X, 390, 378, 392, 379, 395, 381, 400, 420, 440]  # stops on it, then jitters
    frames = frames_at(5, xs)
    for _, dets in frames:  # with a crack, so that the count is visible as an event
        x1, y1, x2, y2 = dets[0].box
        dets.append(defect((x1 + x2) / 2, (y1 + y2) / 2 - 20))
    rig.feed(frames)
    events = rig.of("defect.part")
    assert len(events) == 1
    assert rig.parts("defective") == 1 and rig.parts("ok") == 0
    # the anchor on the line itself is skipped: the crossing is between 380 (t=0.6) and 390 (t=1.0)
    assert 0.6 < events[0].attributes["stream_time_s"] < 1.0


def test_a_cracked_part_raises_one_defect_event_at_its_crossing() -> None:
    rig = Rig(DefectSettings(inspection_line="inspect"))
    xs = [200 + 40 * i for i in range(10)]  # 200 px/s: the centre reaches 384 at t = 0.92
    frames = frames_at(5, xs, y=170)
    for k, (_, dets) in enumerate(frames):
        x1, y1, x2, y2 = dets[0].box
        # the crack lies on the vial; below new_track_confidence, so it never gets a track: detections count
        dets.append(defect(x1 + 15, y1 + 20, confidence=0.45 + 0.01 * k))
    rig.feed(frames)
    events = rig.of("defect.part")
    assert len(events) == 1
    e = events[0]
    assert e.phase == "start" and e.severity == "warning"
    assert e.attributes["defect"] == "crack" and e.attributes["part"] == "vial"
    assert e.attributes["line"] == "inspect" and e.attributes["direction"] == 1
    assert e.attributes["defects"] == {"crack": 6}  # t = 0, 0.2 … 1.0: up to and with the crossing frame
    # the track's box lags the detection a little while the Kalman filter learns the speed
    assert e.attributes["stream_time_s"] == pytest.approx(0.92, abs=0.03)
    assert e.attributes["stream_end_s"] == e.attributes["stream_time_s"]
    assert e.confidence == pytest.approx(0.50)
    assert e.started_at == pytest.approx(1_700_000_000.0 + e.attributes["stream_time_s"], abs=1e-3)
    box = e.attributes["box"]
    assert box[0] < LINE_X < box[2]
    assert rig.parts("defective") == 1 and rig.parts("ok") == 0
    assert rig.rate() == 1.0


def test_direction_and_most_frequent_kind_are_reported() -> None:
    rig = Rig(DefectSettings(inspection_line="inspect"))
    xs = [560 - 40 * i for i in range(10)]  # right to left
    frames = frames_at(5, xs, y=170, label="blister")
    for k, (_, dets) in enumerate(frames):
        x1, y1, _, _ = dets[0].box
        dets.append(defect(x1 + 15, y1 + 20, "stain" if k % 3 else "crack"))
    rig.feed(frames)
    (e,) = rig.of("defect.part")
    assert e.attributes["direction"] == -1 and e.attributes["part"] == "blister"
    assert e.attributes["defect"] == "stain" and set(e.attributes["defects"]) == {"stain", "crack"}


def test_a_defect_seen_in_one_frame_only_leaves_the_part_ok() -> None:
    rig = Rig(DefectSettings(inspection_line="inspect"))
    frames = frames_at(5, [200 + 40 * i for i in range(10)])
    _, dets = frames[2]
    x1, y1, _, _ = dets[0].box
    dets.append(defect(x1 + 15, y1 + 20))
    # a crack beside the part (centre outside its box) is attached to nothing
    for _, dets in frames[3:6]:
        dets.append(defect(dets[0].box[2] + 30, 180))
    rig.feed(frames)
    assert rig.of("defect.part") == []
    assert rig.parts("ok") == 1 and rig.parts("defective") == 0


def test_defects_attach_to_the_part_that_holds_them() -> None:
    rig = Rig(DefectSettings(inspection_line="inspect"))
    frames = []
    for i in range(10):
        t = i / 5
        a, b = part(200 + 200 * t, 100), part(200 + 200 * t, 260, "tablet", 50, 50)
        frames.append((t, [a, b, defect(a.box[0] + 30, a.box[3] - 15, "chip")]))
    rig.feed(frames)
    (e,) = rig.of("defect.part")
    assert e.attributes["part"] == "vial" and e.attributes["defect"] == "chip"
    assert rig.parts("ok") == 1 and rig.parts("defective") == 1
    assert rig.rate() == 0.5


@pytest.mark.parametrize(("handover_s", "counted"), [(1.0, 1), (0.0, 2)])
def test_a_re_identified_part_is_not_counted_twice(handover_s: float, counted: int) -> None:
    # a tracker that forgets a part after one missed frame gives it a new id behind the line; the part
    # then jitters back across it: the new id takes over the part's history (and with it, its count)
    rig = Rig(DefectSettings(inspection_line="inspect", handover_s=handover_s), TrackerSettings(max_lost_frames=0))
    xs: list[float | None] = [330, 350, 370, 390, None, 400, 360, 400, 420]
    rig.feed((i / 5, [part(x, 180, w=120)] if x is not None else []) for i, x in enumerate(xs))
    assert rig.parts("ok") == counted


def test_a_missing_inspection_line_counts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(DefectSettings(inspection_line="elsewhere"))
    rig.feed(frames_at(5, [200 + 40 * i for i in range(10)]))
    assert rig.parts("ok", "elsewhere") == 0
    assert "elsewhere" in caplog.text


# -- drift --------------------------------------------------------------------

def parade(flags: Sequence[bool]) -> list[tuple[float, list[Detection]]]:
    """One part after another crossing the line, each seen in 2 frames on one of three rows (run it with
    ``SHORT_MEMORY``, or the tracker revives a part's lost track for the next part on its row)."""
    frames = []
    for k, bad in enumerate(flags):
        y = 60 + 120 * (k % 3)
        for step, x in enumerate((370, 398)):
            dets = [part(x, y, w=80, h=60)]
            if bad:
                dets.append(defect(x, y, "stain"))
            frames.append(((2 * k + step) / 5, dets))
    return frames


SHORT_MEMORY = TrackerSettings(max_lost_frames=3)

# rate over the last 10 once 5 are in: 3/8 = .375 > .3 starts (part 8); falls to .2 (parts 16-18), between
# the limit and clear_below, climbs to .4 (part 20) and ends at .1 < .15 (part 29)
DRIFT_FLAGS = [False] * 5 + [True] * 3 + [False] * 8 + [True] * 4 + [False] * 9


def test_drift_starts_once_and_ends_once_with_hysteresis() -> None:
    drift = DriftSettings(window_parts=10, min_parts=5, limit=0.3, clear_below=0.15)
    rig = Rig(DefectSettings(inspection_line="inspect", drift=drift), SHORT_MEMORY)
    rates = []
    frames = parade(DRIFT_FLAGS)
    for k in range(len(DRIFT_FLAGS)):
        rig.feed(frames[2 * k:2 * k + 2])
        rates.append(rig.rate())
    assert rates[:8] == [0.0] * 5 + [1 / 6, 2 / 7, 0.375]
    assert rates[15:20] == pytest.approx([0.2, 0.2, 0.2, 0.3, 0.4]) and rates[-1] == pytest.approx(0.1)
    starts, ends = rig.of("defect.rate_drift", "start"), rig.of("defect.rate_drift", "end")
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0].attributes["rate"] == 0.375 and starts[0].attributes["window"] == 8
    assert starts[0].attributes["limit"] == 0.3 and starts[0].attributes["line"] == "inspect"
    assert ends[0].attributes["rate"] == 0.1 and ends[0].attributes["episode"] == starts[0].id
    # part 8 crosses between t = 2.8 and 3.0, part 29 between 11.2 and 11.4
    assert 2.8 < starts[0].attributes["stream_time_s"] < 3.0
    assert 11.2 < ends[0].attributes["stream_end_s"] < 11.4
    assert rig.parts("defective") == 7 and rig.parts("ok") == len(DRIFT_FLAGS) - 7


def test_without_hysteresis_the_same_parts_flap() -> None:
    drift = DriftSettings(window_parts=10, min_parts=5, limit=0.3, clear_below=0.3)
    rig = Rig(DefectSettings(inspection_line="inspect", drift=drift), SHORT_MEMORY)
    rig.feed(parade(DRIFT_FLAGS))
    assert len(rig.of("defect.rate_drift", "start")) == 2 and len(rig.of("defect.rate_drift", "end")) == 2


def test_close_ends_open_drift_and_tool_episodes() -> None:
    drift = DriftSettings(window_parts=4, min_parts=2, limit=0.4)
    rig = Rig(DefectSettings(inspection_line="inspect", tool_zone="mat", drift=drift), SHORT_MEMORY)
    rig.feed(parade([True, True]))
    rig.feed((4.0 + i / 5, [Detection("tool_clean", 0.9, (200, 100, 260, 200))]) for i in range(10))
    assert len(rig.of("defect.rate_drift", "start")) == 1 and len(rig.of("tool.verified", "start")) == 1
    rig.close()
    assert len(rig.of("defect.rate_drift", "end")) == 1
    (end,) = rig.of("tool.verified", "end")
    assert end.attributes["stream_end_s"] == pytest.approx(5.8)
    rig.close()  # nothing left to end
    assert len(rig.of("defect.rate_drift")) == 2 and len(rig.of("tool.verified")) == 2


# -- tools ----------------------------------------------------------------------

TOOL_BOX: Box = (200.0, 100.0, 260.0, 220.0)


def presentation(labels: Sequence[str], t0: float = 1.0, box: Box = TOOL_BOX, fps: float = 5
                 ) -> list[tuple[float, list[Detection]]]:
    return [(t0 + i / fps, [Detection(label, 0.9, box)]) for i, label in enumerate(labels)]


def empty(t0: float, t1: float, fps: float = 5) -> list[tuple[float, list[Detection]]]:
    return [(t0 + i / fps, []) for i in range(round((t1 - t0) * fps))]


@pytest.mark.parametrize("groups", [(), TOOL_GROUP], ids=["label-split-tracks", "label-grouped-tracks"])
def test_a_tool_gives_one_start_and_one_end_with_the_majority_state(groups) -> None:
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(label_groups=groups))
    labels = ["tool_dirty"] * 21
    labels[3] = "tool_clean"  # one frame misclassified (before the start)
    labels[12] = "tool_clean"  # and one after
    rig.feed(presentation(labels) + empty(5.2, 8.0))
    starts, ends = rig.of("tool.verified", "start"), rig.of("tool.verified", "end")
    assert len(starts) == 1 and len(ends) == 1
    start, end = starts[0], ends[0]
    assert start.attributes["state"] == "dirty" and start.severity == "warning"
    assert start.attributes["votes"] == {"dirty": 5, "clean": 1}  # frames 1.0 … 2.0
    assert start.attributes["stream_time_s"] == 1.0 and start.zone == "mat"
    assert end.attributes["state"] == "dirty" and end.attributes["votes"] == {"dirty": 19, "clean": 2}
    assert end.attributes["stream_time_s"] == 1.0 and end.attributes["stream_end_s"] == 5.0
    assert end.attributes["episode"] == start.id and end.track_id == start.track_id
    assert end.ended_at == pytest.approx(1_700_000_005.0)


def test_a_clean_tool_is_info_and_a_tie_goes_to_the_unsafe_state() -> None:
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(label_groups=TOOL_GROUP))
    rig.feed(presentation(["tool_clean"] * 10) + empty(3.0, 5.0))
    rig.feed(presentation(["tool_clean", "tool_damaged"] * 5, t0=6.0, box=(300, 100, 360, 220)) + empty(8.0, 10.0))
    first, second = rig.of("tool.verified", "end")
    assert first.attributes["state"] == "clean" and first.severity == "info"
    assert second.attributes["state"] == "damaged" and second.severity == "warning"


@pytest.mark.parametrize("groups", [(), TOOL_GROUP], ids=["label-split-tracks", "label-grouped-tracks"])
def test_two_boxes_of_different_states_on_one_tool_make_one_record(groups) -> None:
    """Class-wise NMS keeps a clean and a damaged box on the same tool: one record, one vote a
    frame, for the surer box."""
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(label_groups=groups))
    shifted = (TOOL_BOX[0] + 2, TOOL_BOX[1], TOOL_BOX[2] + 2, TOOL_BOX[3])
    frames = [(1.0 + i / 5, [Detection("tool_clean", 0.6, TOOL_BOX), Detection("tool_damaged", 0.8, shifted)])
              for i in range(15)]
    rig.feed(frames + empty(4.0, 6.0))
    starts, ends = rig.of("tool.verified", "start"), rig.of("tool.verified", "end")
    assert len(starts) == 1 and len(ends) == 1, [(e.phase, e.attributes["state"]) for e in rig.of("tool.verified")]
    assert ends[0].attributes["state"] == "damaged" and ends[0].attributes["votes"] == {"damaged": 15}


def test_a_tool_must_lie_still_and_inside_the_zone() -> None:
    rig = Rig(DefectSettings(tool_zone="mat", tool_settle_s=1.0))
    moving = [(1.0 + i / 5, [Detection("tool_clean", 0.9, (160 + 15 * i, 100, 220 + 15 * i, 220))]) for i in range(8)]
    rig.feed(moving)
    assert rig.of("tool.verified") == []  # never still for 1 s
    rig.feed(presentation(["tool_clean"] * 6, t0=2.6, box=(265, 100, 325, 220)))  # then lies still
    (start,) = rig.of("tool.verified", "start")
    assert start.attributes["stream_time_s"] == 1.0  # the presentation began when the tool appeared
    outside = Rig(DefectSettings(tool_zone="mat"))
    outside.feed(presentation(["tool_clean"] * 15, box=(10, 10, 60, 60)) + empty(4.0, 6.0))
    assert outside.of("tool.verified") == []


@pytest.mark.parametrize("gap_s", [0.6, 1.4])
def test_a_re_identified_tool_gives_no_second_record(gap_s: float) -> None:
    # a tracker that drops a lost track at once: the tool comes back under a new id
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(max_lost_frames=0))
    first = presentation(["tool_damaged"] * 10)  # 1.0 … 2.8
    back = 2.8 + gap_s
    moved = (TOOL_BOX[0] + 4, TOOL_BOX[1] + 3, TOOL_BOX[2] + 4, TOOL_BOX[3] + 3)
    rig.feed(first + empty(3.0, back) + presentation(["tool_damaged"] * 10, t0=back, box=moved)
             + empty(back + 2.0, back + 4.0))
    assert len({e.track_id for e in rig.of("tool.verified")}) == 1
    assert len(rig.of("tool.verified", "start")) == 1
    assert len(rig.of("tool.verified", "end")) == 1
    (end,) = rig.of("tool.verified", "end")
    if gap_s < 1.0:  # one record over both sightings
        assert end.attributes["votes"] == {"damaged": 20}
        assert end.attributes["stream_end_s"] == pytest.approx(back + 1.8)
    else:  # ended before the tool came back: the comeback is swallowed
        assert end.attributes["stream_end_s"] == pytest.approx(2.8)


@pytest.mark.parametrize(("gap_s", "box"), [(0.6, (360, 150, 420, 270)), (2.0, TOOL_BOX)])
def test_another_tool_or_a_late_return_is_a_new_record(gap_s: float, box: Box) -> None:
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(max_lost_frames=0))
    back = 2.8 + gap_s
    rig.feed(presentation(["tool_clean"] * 10) + empty(3.0, back) + presentation(["tool_dirty"] * 10, t0=back, box=box)
             + empty(back + 2.0, back + 4.0))
    assert [e.attributes["state"] for e in rig.of("tool.verified", "end")] == ["clean", "dirty"]


@pytest.mark.parametrize("back", [3.6, 4.4])  # gone less than tool_lost_s, and more
def test_a_tracker_reviving_an_id_on_another_tool_gives_a_new_record(back: float) -> None:
    # the tracker keeps a lost track for 30 frames and matches it to a new tool that half overlaps
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(label_groups=TOOL_GROUP))
    other = (TOOL_BOX[0] + 25, TOOL_BOX[1] - 10, TOOL_BOX[2] + 40, TOOL_BOX[3] - 25)
    rig.feed(presentation(["tool_clean"] * 10) + empty(3.0, back)
             + presentation(["tool_damaged"] * 10, t0=back, box=other) + empty(back + 2.0, back + 4.0))
    ends = rig.of("tool.verified", "end")
    assert [e.attributes["state"] for e in ends] == ["clean", "damaged"]
    assert [e.track_id for e in ends] == [1, 1]  # one tracker id, two presentations
    assert ends[1].attributes["stream_time_s"] == pytest.approx(back)
    assert ends[1].attributes["votes"] == {"damaged": 10}


def test_a_tool_is_audited_once_it_lies_still_even_where_the_tracker_s_box_still_settles() -> None:
    # a long tool lying across the mat, then a short upright one where it lay: the tracker revives the
    # first one's id and its smoothed box takes seconds to shrink to the new tool; the detector's box
    # is still from the first frame, and the audit comes after tool_settle_s (1 s) of it
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(label_groups=TOOL_GROUP))
    across = (140.0, 140.0, 340.0, 180.0)
    upright = (220.0, 100.0, 260.0, 220.0)
    rig.feed(presentation(["tool_clean"] * 10, box=across) + empty(3.0, 3.6)
             + presentation(["tool_dirty"] * 20, t0=3.6, box=upright) + empty(7.6, 9.0))
    starts = rig.of("tool.verified", "start")
    assert [e.attributes["state"] for e in starts] == ["clean", "dirty"]
    assert starts[1].attributes["stream_time_s"] == pytest.approx(3.6)
    assert starts[1].attributes["stream_reported_s"] <= 3.6 + 1.0 + 0.2  # within a frame of settling
    assert starts[1].attributes["box"] == pytest.approx(upright)


def test_a_tool_the_detector_misses_for_a_few_frames_stays_one_record() -> None:
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(label_groups=TOOL_GROUP))
    rig.feed(presentation(["tool_dirty"] * 10) + empty(3.0, 3.6)
             + presentation(["tool_dirty"] * 10, t0=3.6) + empty(5.6, 8.0))
    (end,) = rig.of("tool.verified", "end")
    assert end.attributes["votes"] == {"dirty": 20}


# -- the generated production line and tool station ----------------------------

def truth_frames(scene, fps: int = 5) -> list[tuple[float, list[Detection]]]:
    step = scene.fps // fps
    return [(i / scene.fps, [Detection(o.label, 0.9, o.box) for o in scene.truth(i).objects])
            for i in range(0, scene.n_frames, step)]


@pytest.mark.parametrize("seed", [6])
def test_production_line_scene_matches_its_timeline(seed: int) -> None:
    scene = ProductionLineScene(seed, duration_s=40.0, defect_rate=0.3)
    frames = truth_frames(scene)
    rig = Rig(DefectSettings(inspection_line="inspect"), TrackerSettings(max_lost_frames=10))  # max_lost_s: 2 s
    rig.feed(frames)
    last = frames[-1][0]
    expected = [e for e in scene.timeline() if 0 < e.start_s <= last]
    want = sorted((e.start_s, e.attributes["defect"], e.attributes["part"]) for e in expected
                  if e.kind == "defect.part")
    got = sorted((e.attributes["stream_time_s"], e.attributes["defect"], e.attributes["part"])
                 for e in rig.of("defect.part"))
    assert len(want) >= 5
    assert [(d, p) for _, d, p in got] == [(d, p) for _, d, p in want]
    for (t_got, _, _), (t_want, _, _) in zip(got, want):
        assert abs(t_got - t_want) <= 1 / 5 + 0.1
    assert rig.parts("ok") + rig.parts("defective") == len(expected)
    assert rig.parts("defective") == len(want)


@pytest.mark.parametrize("seed", [0, 2])
def test_tool_station_scene_matches_its_timeline(seed: int) -> None:
    scene = ToolStationScene(seed, duration_s=40.0)
    assert MAT[0][1] == [(TOOL_ZONE[0], TOOL_ZONE[1]), (TOOL_ZONE[2], TOOL_ZONE[1]), (TOOL_ZONE[2], TOOL_ZONE[3]),
                         (TOOL_ZONE[0], TOOL_ZONE[3])]
    rig = Rig(DefectSettings(tool_zone="mat"), TrackerSettings(max_lost_frames=10))
    rig.feed(truth_frames(scene))
    rig.close()
    expected = scene.timeline()
    starts, ends = rig.of("tool.verified", "start"), rig.of("tool.verified", "end")
    assert [e.attributes["state"] for e in starts] == [e.attributes["state"] for e in expected]
    assert [e.attributes["state"] for e in ends] == [e.attributes["state"] for e in expected]
    for got, want in zip(ends, expected):
        assert abs(got.attributes["stream_time_s"] - want.start_s) <= 1 / 5 + 0.1
        assert abs(got.attributes["stream_end_s"] - want.end_s) <= 1 / 5 + 0.1
