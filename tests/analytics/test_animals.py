"""The animals rules, driven frame by frame through the real tracker and StreamAnalytics.

Stream time comes from pts_ns at 5 analyzed frames per second; nothing sleeps. The
synthetic animal's box is 50 x 24 px, so one body length (its long side) is 50 px.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from appliance.analytics.animals import STATES, AnimalRules, AnimalSettings
from appliance.analytics.base import FrameView
from appliance.analytics.geometry import Zone
from appliance.analytics.stream import StreamAnalytics, ZoneSpec
from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.tracking.tracker import Tracker, TrackerSettings, iou_matrix
from appliance.types import Detection, Event, FrameResult, Track

FPS = 5
WIDTH, HEIGHT = 640, 480
BODY = 50.0  # px: the long side of a rodent's box
CAGE: ZoneSpec = ("cage", [(40, 40), (560, 40), (560, 440), (40, 440)], False)

Scene = Callable[[float], Sequence[Detection]]


def rodent(x: float, y: float, label: str = "rodent") -> Detection:
    if label == "rearing":  # standing up: seen from above, shorter and rounder
        return Detection(label, 0.9, (x - 19, y - 16, x + 19, y + 16))
    return Detection(label, 0.9, (x - BODY / 2, y - 12, x + BODY / 2, y + 12))


def circling(t: float, speed_bl_s: float, cx: float = 320, cy: float = 240, radius: float = 150) -> Detection:
    angle = speed_bl_s * BODY / radius * t
    return rodent(cx + radius * math.cos(angle), cy + radius * math.sin(angle))


class Cage:
    """Tracker + StreamAnalytics + AnimalRules on one stream, fed at 5 analyzed frames/s."""

    def __init__(self, settings: AnimalSettings | None = None, zones: Sequence[ZoneSpec] = ()) -> None:
        self.events: list[Event] = []
        self.rules = AnimalRules(settings or AnimalSettings(), "cage1")
        tracker = Tracker(TrackerSettings(label_groups=(("rodent", "rearing"),)))
        self.analytics = StreamAnalytics("cage1", tracker, [self.rules], EventFactory("dev", "1", ManualClock()),
                                         self.events.append, zones=zones)
        self.frame = 0
        self.results: list[FrameResult] = []

    @property
    def t(self) -> float:
        return self.frame / FPS

    def run(self, seconds: float, scene: Scene) -> None:
        for _ in range(round(seconds * FPS)):
            t = self.t
            result = FrameResult("cage1", self.frame, round(t * 1e9), 1_700_000_000.0 + t, WIDTH, HEIGHT,
                                 list(scene(t)))
            self.analytics.process(result)
            self.results.append(result)
            self.frame += 1

    def close(self) -> None:
        self.analytics.close()

    def of(self, kind: str, phase: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (phase is None or e.phase == phase)]

    def warnings(self) -> set[str]:
        return {e.kind for e in self.events if e.severity == "warning"}


def walker(start: tuple[float, float], velocity: tuple[float, float], t0: float) -> Callable[[float], Detection]:
    return lambda t: rodent(start[0] + velocity[0] * (t - t0), start[1] + velocity[1] * (t - t0))


# ---------------------------------------------------------------------- immobile


def test_an_animal_that_stops_for_15_s_is_reported_immobile_10_s_later_dated_back_to_the_stop() -> None:
    cage = Cage()
    walk = walker((100, 240), (BODY, 0), 0)  # one body length per second
    cage.run(5, lambda t: [walk(t)])  # stops at x = 350 at t = 5
    cage.run(15, lambda t: [rodent(350, 240)])
    cage.run(5, lambda t: [walk(t - 15)])  # walks on from t = 20
    cage.close()

    starts, ends = cage.of("animal.immobile", "start"), cage.of("animal.immobile", "end")
    assert len(starts) == 1 and len(ends) == 1
    start, end = starts[0], ends[0]
    assert start.attributes["stream_time_s"] == pytest.approx(5.0, abs=0.25)  # began: when it stopped
    assert start.attributes["stream_reported_s"] == pytest.approx(15.0, abs=0.25)  # 10 s after it stopped
    assert start.attributes["immobile_s"] == pytest.approx(10.0, abs=0.25)
    assert start.severity == "warning" and start.track_id is not None and start.attributes["box"]
    assert end.attributes["episode"] == start.id and end.track_id == start.track_id
    assert end.attributes["stream_end_s"] == pytest.approx(20.0, abs=0.3)  # when it moved again ...
    assert 22.5 <= end.attributes["stream_reported_s"] <= 23.5  # ... reported after the 3 s hysteresis
    assert end.attributes["immobile_s"] == pytest.approx(15.0, abs=0.6)
    assert cage.warnings() == {"animal.immobile"}


@pytest.mark.parametrize(("stir_s", "events"), [(2.0, 1), (5.0, 2)])
def test_an_immobile_animal_that_stirs_for_a_moment_stays_one_event(stir_s: float, events: int) -> None:
    """Still for 15 s, then it shifts half a body length and back (a neighbour lying down against it,
    a twitch) and lies still for 12 s more: a stir shorter than the end hysteresis (3 s) is one event
    that lasts throughout; a longer one ends it, and the animal still again is a new event 10 s later."""
    cage = Cage()
    cage.run(15, lambda t: [rodent(350, 240)])
    cage.run(stir_s, lambda t: [rodent(350 + BODY / 2 * math.sin(math.pi * (t - 15) / stir_s), 240)])
    cage.run(12, lambda t: [rodent(350, 240)])
    cage.close()

    starts, ends = cage.of("animal.immobile", "start"), cage.of("animal.immobile", "end")
    assert len(starts) == len(ends) == events
    assert starts[0].attributes["stream_time_s"] == pytest.approx(0.0, abs=0.25)
    if events == 1:
        assert ends[0].attributes["stream_end_s"] == pytest.approx(27 + stir_s, abs=0.3)  # closed with the clip
        assert ends[0].attributes["immobile_s"] == pytest.approx(27 + stir_s, abs=0.3)
    else:
        assert ends[0].attributes["stream_end_s"] == pytest.approx(15.0, abs=0.6)
        assert starts[1].attributes["stream_reported_s"] == pytest.approx(
            starts[1].attributes["stream_time_s"] + 10.0, abs=0.25)
        assert starts[1].attributes["stream_time_s"] == pytest.approx(15 + stir_s, abs=0.6)


def test_a_short_pause_and_a_walking_animal_raise_nothing_and_distance_follows_the_path() -> None:
    cage = Cage()
    cage.run(20, lambda t: [circling(t, 0.8)])
    cage.run(6, lambda t: [circling(20, 0.8)])  # a 6 s pause: below the immobility alarm
    cage.run(4, lambda t: [circling(t - 6, 0.8)])
    cage.close()
    assert cage.warnings() == set()
    assert not cage.of("animal.grooming")
    summary = cage.of("animal.activity_summary")[-1].attributes
    assert summary["partial"] is True and len(summary["animals"]) == 1
    animal = summary["animals"][0]
    assert animal["distance_bl"] == pytest.approx(0.8 * 24, rel=0.1)  # 24 s at 0.8 body lengths/s
    assert animal["distance_px"] == pytest.approx(0.8 * 24 * BODY, rel=0.1)
    assert animal["seconds"]["immobile"] == pytest.approx(6, abs=1.0)
    assert animal["seconds"]["moving"] == pytest.approx(24, abs=1.0)


def test_detector_jitter_and_one_wild_box_on_a_still_animal_neither_move_it_nor_interrupt_immobility() -> None:
    cage = Cage()
    rng = np.random.default_rng(3)

    def jittery(t: float) -> list[Detection]:
        dx, dy, dw, dh = rng.normal(0.0, 0.4, 4)  # sub-pixel box noise
        if round(t * FPS) == 30:
            dx += 12  # one wild box at t = 6
        x1, y1, x2, y2 = rodent(300 + dx, 200 + dy).box
        return [Detection("rodent", 0.9, (x1 - dw, y1 - dh, x2 + dw, y2 + dh))]

    cage.run(14, jittery)
    cage.close()
    starts = cage.of("animal.immobile", "start")
    assert len(starts) == 1 and starts[0].attributes["stream_time_s"] == pytest.approx(0.0, abs=0.3)
    assert cage.warnings() == {"animal.immobile"} and not cage.of("animal.grooming")
    assert cage.of("animal.activity_summary")[-1].attributes["animals"][0]["distance_px"] <= 0.2 * BODY


# ---------------------------------------------------------------------- abnormal motion


def test_a_shaking_animal_is_seizure_like_but_not_hyperactive() -> None:
    cage = Cage()
    walk = walker((150, 240), (BODY, 0), 0)
    cage.run(3, lambda t: [walk(t)])  # arrives at x = 300 at t = 3

    def shaking(t: float) -> list[Detection]:
        n = round(t * FPS)
        return [rodent(300 + 6 * (-1) ** n, 240 + 4 * (-1) ** (n // 2))]  # 12 px back and forth, 5 times a second

    cage.run(6, shaking)
    cage.run(4, lambda t: [rodent(300, 240)])
    cage.close()

    starts, ends = cage.of("animal.seizure_like", "start"), cage.of("animal.seizure_like", "end")
    assert len(starts) == 1 and len(ends) == 1
    start = starts[0]
    assert start.attributes["stream_time_s"] == pytest.approx(3.0, abs=0.6)
    assert start.attributes["reversals_per_s"] >= 2.0
    assert start.attributes["net_bl"] < 0.6 and start.severity == "warning"
    assert ends[0].attributes["stream_end_s"] == pytest.approx(9.0, abs=1.2)
    assert "animal.hyperactive" not in cage.warnings()


def turning(t: float, x: float, y: float) -> Detection:
    """A mouse turning on the spot, between lying across (heading left) and standing up (heading up)
    and back, 45 degrees a frame, about a point 6 px behind its middle: seen from above, its box flips
    between lying and standing, and the box's centre swings a few pixels back and forth."""
    n = round(t * FPS) % 4
    heading = math.radians(180 - 45 * min(n, 4 - n))
    ux, uy = math.cos(heading), -math.sin(heading)
    cx, cy = x + 6 * ux, y + 6 * uy  # the body's middle, ahead of the pivot
    half_w = BODY / 2 * abs(ux) + 12 * abs(uy)
    half_h = BODY / 2 * abs(uy) + 12 * abs(ux)
    return Detection("rodent", 0.9, (cx - half_w, cy - half_h, cx + half_w, cy + half_h))


def test_a_mouse_turning_on_the_spot_against_another_is_not_shaking() -> None:
    cage = Cage()
    cage.run(8, lambda t: [turning(t, 300, 240), rodent(300, 290)])  # its neighbour lies still below it
    cage.close()

    assert not cage.of("animal.seizure_like")
    assert not cage.of("animal.hyperactive")


def test_a_fast_runner_is_hyperactive_even_when_the_tracker_loses_it_between_frames() -> None:
    cage = Cage()
    cage.run(3, lambda t: [circling(0, 0)])  # sits
    cage.run(8, lambda t: [circling(t - 3, 4.0, radius=200)])  # runs at 4 body lengths/s: 40 px per frame
    cage.run(3, lambda t: [circling(8, 4.0, radius=200)])
    cage.close()

    assert len({tr.track_id for r in cage.results for tr in r.tracks}) > 1  # the tracker did lose it
    starts, ends = cage.of("animal.hyperactive", "start"), cage.of("animal.hyperactive", "end")
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0].attributes["stream_time_s"] == pytest.approx(3.0, abs=0.8)
    assert starts[0].attributes["speed_bl_s"] >= 3.0
    assert ends[0].attributes["stream_end_s"] == pytest.approx(11.0, abs=0.8)
    assert "animal.seizure_like" not in cage.warnings()
    # one animal throughout: its summary is one entry, its time adds up
    animals = cage.of("animal.activity_summary")[-1].attributes["animals"]
    assert len(animals) == 1
    assert sum(animals[0]["seconds"].values()) == pytest.approx(13.8, abs=0.01)


# ---------------------------------------------------------------------- behaviours


def test_a_rearing_interval_is_an_info_episode_on_the_same_track() -> None:
    cage = Cage()
    cage.run(12, lambda t: [rodent(300, 200, "rearing" if 4 <= t < 7 else "rodent")])
    cage.close()
    starts, ends = cage.of("animal.rearing", "start"), cage.of("animal.rearing", "end")
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0].severity == "info"
    assert starts[0].attributes["stream_time_s"] == pytest.approx(4.0)
    assert ends[0].attributes["stream_end_s"] == pytest.approx(6.8)
    assert len({tr.track_id for r in cage.results for tr in r.tracks}) == 1
    assert starts[0].track_id == cage.results[0].tracks[0].track_id
    assert not cage.of("animal.immobile")  # standing up is doing something


def test_small_fast_jitter_in_place_is_grooming() -> None:
    cage = Cage()
    rng = np.random.default_rng(5)
    walk = walker((150, 240), (BODY, 0), 0)
    cage.run(3, lambda t: [walk(t)])

    def grooming(t: float) -> list[Detection]:
        x1, y1, x2, y2 = rodent(300, 240).box
        nudge = rng.uniform(-2.5, 2.5, 4)  # the head and paws move, the body stays
        return [Detection("rodent", 0.9, (x1 + nudge[0], y1 + nudge[1], x2 + nudge[2], y2 + nudge[3]))]

    cage.run(5, grooming)
    cage.run(3, lambda t: [walk(t - 5)])
    cage.close()
    starts = cage.of("animal.grooming", "start")
    assert len(starts) == 1 and starts[0].severity == "info"
    assert starts[0].attributes["stream_time_s"] == pytest.approx(3.0, abs=0.8)
    assert cage.of("animal.grooming", "end")[0].attributes["stream_end_s"] == pytest.approx(8.0, abs=0.8)
    assert cage.warnings() == set()


# ---------------------------------------------------------------------- missing


@pytest.mark.parametrize("how", ["leaves the cage zone", "leaves the view"])
def test_one_of_three_animals_missing_from_the_cage(how: str) -> None:
    cage = Cage(AnimalSettings(cage_zone="cage", expected_animals=3), zones=[CAGE])
    resting = [rodent(150, 120), rodent(150, 360)]

    def third(t: float) -> list[Detection]:
        if t < 5 or t >= 15:
            return [rodent(480, 240)]
        if how == "leaves the view":
            return []
        return [rodent(min(480 + 150 * (t - 5), 600), 240)]  # crosses x = 560 at t ≈ 5.5

    cage.run(20, lambda t: [*resting, *third(t)])
    cage.close()
    starts, ends = cage.of("animal.missing", "start"), cage.of("animal.missing", "end")
    assert len(starts) == 1 and len(ends) == 1
    start = starts[0]
    assert start.attributes["expected"] == 3 and start.attributes["seen"] == 2
    assert start.zone == "cage" and start.severity == "warning"
    left = 5.0 if how == "leaves the view" else 5.6
    assert start.attributes["stream_time_s"] == pytest.approx(left, abs=0.25)
    assert start.attributes["stream_reported_s"] == pytest.approx(left + 2.0, abs=0.25)  # missing_timing grace
    assert ends[0].attributes["stream_end_s"] == pytest.approx(14.8, abs=0.25)
    third_track = next(tr.track_id for tr in cage.results[0].tracks if tr.box[0] > 400)
    assert start.track_id == third_track  # the one that went


# ---------------------------------------------------------------------- summaries


def test_activity_summary_every_interval_adds_up_and_resets() -> None:
    cage = Cage(AnimalSettings(summary_interval_s=30.0))
    cage.run(65, lambda t: [circling(t, 0.5, cx=200, radius=120), rodent(520, 240)])
    summaries = cage.of("animal.activity_summary")
    assert len(summaries) == 2
    for summary in summaries:
        assert summary.phase == "start" and summary.severity == "info"
        a = summary.attributes
        assert a["interval_s"] == pytest.approx(30.0)
        assert a["stream_end_s"] - a["stream_time_s"] == pytest.approx(30.0)
        assert len(a["animals"]) == 2
        for animal in a["animals"]:
            assert set(animal["seconds"]) == set(STATES)
            assert sum(animal["seconds"].values()) + animal["unseen_s"] == pytest.approx(30.0, abs=0.01)
            assert animal["unseen_s"] == pytest.approx(0.0, abs=0.01)
        walker_, sitter = sorted(a["animals"], key=lambda e: -e["distance_px"])
        assert walker_["distance_bl"] == pytest.approx(15.0, rel=0.1)  # 30 s at 0.5 body lengths/s: not accumulated
        assert sitter["distance_px"] == 0.0 and sitter["seconds"]["immobile"] == pytest.approx(30.0, abs=0.01)
    assert summaries[1].attributes["stream_time_s"] == summaries[0].attributes["stream_end_s"]


def test_close_ends_open_episodes_and_reports_the_partial_interval() -> None:
    cage = Cage()
    cage.run(13, lambda t: [rodent(300, 200)])
    assert len(cage.of("animal.immobile", "start")) == 1
    cage.close()
    (end,) = cage.of("animal.immobile", "end")
    assert end.attributes["stream_end_s"] == pytest.approx(12.8)
    summary = cage.of("animal.activity_summary")[-1].attributes
    assert summary["partial"] is True and summary["interval_s"] == pytest.approx(12.8)
    # a fresh start after close: nothing carried over
    cage.run(2, lambda t: [rodent(300, 200)])
    assert len(cage.of("animal.immobile", "start")) == 1


def test_settings_are_strict_and_scale_free_defaults_are_sensible() -> None:
    settings = AnimalSettings()
    assert settings.labels == ["rodent", "rearing"] and settings.rearing_label == "rearing"
    assert settings.immobile_after_s == 10.0 and settings.summary_interval_s == 3600.0
    assert settings.immobile_speed < 1.0 < settings.hyperactive_speed  # body lengths per second
    with pytest.raises(ValueError):
        AnimalSettings(hyperactive_sped=3.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        AnimalSettings(expected_animals=0)


def test_per_frame_cost_stays_small_with_30_animals() -> None:
    """Everything is vectorised over the animals: no per-animal numpy work, no pixels. The bound is
    loose (a shared CI core, where 0.75-0.9 ms per frame was measured for 30 animals)."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(6) * 100 + 60.0, np.arange(5) * 90 + 50.0), axis=-1).reshape(-1, 2)
    velocity = rng.normal(0.0, 15.0, grid.shape)
    rules = AnimalRules(AnimalSettings(cage_zone="cage", expected_animals=30), "cage1")
    tracker = Tracker(TrackerSettings(label_groups=(("rodent", "rearing"),)))
    zones = {"cage": Zone.for_frame(*CAGE, WIDTH, HEIGHT)}
    spent = 0.0
    for frame in range(200):
        t = frame / FPS
        centres = grid + velocity * (t % 4 - 2) / 2  # back and forth in place
        labels = ["rearing" if (frame // 15 + i) % 7 == 0 else "rodent" for i in range(len(grid))]
        result = FrameResult("cage1", frame, round(t * 1e9), t, WIDTH, HEIGHT,
                             [rodent(x, y, label) for (x, y), label in zip(centres, labels)])
        result.tracks = tracker.update(result.detections)
        began = time.process_time()
        rules.observe(FrameView(result, t, zones, {}))
        if frame >= 50:
            spent += time.process_time() - began
    assert len(result.tracks) == 30
    assert spent / 150 < 0.005


# ---------------------------------------------------------------------- the cage scene generator

# Start-time tolerances, in seconds. Truth runs at 15 frames/s and the rules see every third
# frame, so any start is quantised to 0.2 s. Immobility is dated to the first of the recent
# positions (median of three frames) within 0.1 body length of where the animal rests: a slowing
# animal enters that dead band a frame or two before it stops, and the median costs one frame
# (observed on 16 scenes: -0.7 to +0.5 s). Shaking is dated to its first reversal, which needs
# two steps over the threshold (observed: +-0.35 s). Missing uses the truth's own rule, the box
# centre outside the cage zone: one analyzed frame.
TOLERANCE = {"animal.immobile": 1.0, "animal.seizure_like": 0.8, "animal.missing": 0.4}


@pytest.mark.parametrize("seed", [1, 2])
def test_cage_scene_truth_as_perfect_detections_matches_the_scene_timeline(seed: int) -> None:
    from tools.scenes.cage import CageScene

    scene = CageScene(seed, animals=4, escape=True)  # truth without rendering
    settings = AnimalSettings(cage_zone="cage", expected_animals=scene.animal_count)
    cage = Cage(settings, zones=[("cage", scene.zones["cage"], False)])
    step = scene.fps // FPS
    animal_of: dict[str, int | None] = {}  # event id -> scene animal
    owner: dict[int, int] = {}  # track id -> scene animal, as last seen
    for truth in scene.truths():
        if truth.index % step:
            continue
        before = len(cage.events)
        result = FrameResult("cage1", truth.index, round(truth.time_s * 1e9), truth.time_s, scene.width,
                             scene.height, [Detection(o.label, 0.9, o.box) for o in truth.objects])
        cage.analytics.process(result)
        if result.tracks and truth.objects:
            iou = iou_matrix(np.array([tr.box for tr in result.tracks]), np.array([o.box for o in truth.objects]))
            for tr, j in zip(result.tracks, iou.argmax(axis=1)):
                owner[tr.track_id] = truth.objects[j].track_id
        for event in cage.events[before:]:
            animal_of[event.id] = owner.get(event.track_id) if event.track_id is not None else None
    cage.close()

    kinds = set(TOLERANCE)
    expected = [e for e in scene.timeline() if e.kind in kinds
                and not (e.kind == "animal.immobile" and e.start_s + settings.immobile_after_s + 1 > scene.duration_s)
                and not (e.kind == "animal.seizure_like" and e.end_s - e.start_s < 2.0)]
    found = [e for e in cage.events if e.kind in kinds and e.phase == "start"]
    assert {e.kind for e in expected} == kinds  # the scene has all three
    unmatched = list(found)
    for truth_event in expected:
        match = [e for e in unmatched if e.kind == truth_event.kind and animal_of[e.id] == truth_event.track_id
                 and abs(e.attributes["stream_time_s"] - truth_event.start_s) <= TOLERANCE[e.kind]]
        assert match, f"not reported: {truth_event}"
        unmatched.remove(match[0])
        if truth_event.kind == "animal.missing":
            assert match[0].attributes["expected"] == truth_event.attributes["expected"]
            assert match[0].attributes["seen"] == truth_event.attributes["seen"]
    assert not unmatched, f"reported but not in the timeline: {[(e.kind, e.attributes) for e in unmatched]}"


def test_motion_is_measured_on_the_detector_s_boxes() -> None:
    """The portable tracker says which detection each track matched; tracks from a backend that does
    not (nvtracker's) take the nearest detection, or keep their own box when none is near."""
    rules = AnimalRules(AnimalSettings(), "cage1")
    seen = rodent(300, 200)
    result = FrameResult("cage1", 0, 0, 0.0, WIDTH, HEIGHT, [seen, rodent(100, 400)])
    view = FrameView(result, 0.0, {}, {})
    smoothed = (276.0, 189.0, 326.0, 213.0)
    matched = [Track(1, "rodent", 0.9, smoothed, 5, detected=seen.box)]
    assert rules._measured_boxes(view, matched).tolist() == [list(seen.box)]
    backend = [Track(1, "rodent", 0.9, smoothed, 5), Track(2, "rodent", 0.9, (500.0, 50.0, 550.0, 74.0), 5)]
    assert rules._measured_boxes(view, backend).tolist() == [list(seen.box), [500.0, 50.0, 550.0, 74.0]]
