"""Stays in zones and crossings of lines by any tracked object (``rules.presence``), with a real tracker
and an injected clock: frames are fed with their stream times, nothing sleeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from appliance.analytics.presence import PresenceRules, PresenceSettings
from appliance.analytics.stream import StreamAnalytics
from appliance.clock import ManualClock
from appliance.config.loader import ConfigError, load_config
from appliance.events.factory import EventFactory
from appliance.metrics import ApplianceMetrics
from appliance.tracking.tracker import Tracker
from appliance.types import Detection, Event, FrameResult

W, H, FPS = 1280, 720, 5
ZONES = [("bench", [(400, 300), (800, 300), (800, 600), (400, 600)], False),
         ("door", [(1000, 300), (1200, 300), (1200, 600), (1000, 600)], False)]
LINES = [("aisle", [(900, 100), (900, 700)], False)]  # a→b downwards: its right (+1 side) is the left half


class Rig:
    def __init__(self, settings: PresenceSettings) -> None:
        self.metrics = ApplianceMetrics()
        self.events: list[Event] = []
        self.analytics = StreamAnalytics("cam", Tracker(), [PresenceRules(settings, "cam", self.metrics)],
                                         EventFactory("dev", "v1", ManualClock()), self.events.append,
                                         zones=ZONES, lines=LINES)

    def feed(self, seconds: float, scene: Callable[[float], list[Detection]], start: float = 0.0) -> Rig:
        for i in range(int(round(start * FPS)), int(round((start + seconds) * FPS))):
            t = i / FPS
            self.analytics.process(FrameResult("cam", i, round(t * 1e9), 1000.0 + t, W, H, scene(t)))
        return self

    def close(self) -> Rig:
        self.analytics.close()
        return self

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"stream": "cam", **labels})


def walker(points: Sequence[tuple[float, float, float]], label: str = "person") -> Callable[[float], list[Detection]]:
    """A 60 x 160 box whose bottom centre (the feet) is at (x, y) at time t, linearly between (t, x, y)."""
    times = [p[0] for p in points]

    def scene(t: float) -> list[Detection]:
        x, y = float(np.interp(t, times, [p[1] for p in points])), float(np.interp(t, times, [p[2] for p in points]))
        return [Detection(label, 0.9, (x - 30, y - 160, x + 30, y))]
    return scene


def times(event: Event) -> tuple[float, float | None]:
    return event.attributes["stream_time_s"], event.attributes.get("stream_end_s")


def test_a_stay_in_a_zone_is_one_event_from_entering_to_leaving_with_its_dwell():
    # feet reach the bench zone (x=400) at 1.0 s, leave it (x=800) at 7.0 s
    walk = walker([(0, 200, 450), (1, 400, 450), (2, 600, 450), (6, 600, 450), (7, 800, 450), (9, 1000, 450)])
    rig = Rig(PresenceSettings(zones=["bench"])).feed(4, walk)
    assert [e.phase for e in rig.of("zone.presence")] == ["start"]  # emitted after the grace, while inside
    assert rig.sample("appliance_zone_objects", zone="bench") == 1
    rig.feed(6, walk, start=4).close()
    start, end = rig.of("zone.presence")
    assert (start.phase, end.phase) == ("start", "end") and start.zone == end.zone == "bench"
    assert start.severity == "info" and start.attributes["label"] == "person"
    assert times(start)[0] == pytest.approx(1.2, abs=0.01)  # the first analyzed frame inside
    assert times(end)[0] == times(start)[0]
    assert times(end)[1] == pytest.approx(7.0, abs=0.21)  # the last frame inside (the tracker lags a little)
    assert end.attributes["dwell_s"] == pytest.approx(times(end)[1] - times(start)[0])
    assert start.track_id == end.track_id
    assert rig.sample("appliance_zone_objects", zone="bench") == 0


def test_a_box_jittering_on_the_zone_edge_neither_enters_nor_leaves():
    def jitter(t: float) -> list[Detection]:  # feet 5 px either side of the edge, a frame outside now and then
        x = 398 if int(t * FPS) % 7 == 3 else 405
        return [Detection("person", 0.9, (x - 30, 290, x + 30, 450))]

    rig = Rig(PresenceSettings()).feed(10, jitter).close()
    assert [(e.phase, e.zone) for e in rig.of("zone.presence")] == [("start", "bench"), ("end", "bench")]
    def moment(t: float) -> list[Detection]:  # inside one frame in five, outside the zone otherwise
        x = 405 if int(t * FPS) % 5 == 0 else 340
        return [Detection("person", 0.9, (x - 30, 290, x + 30, 450))]

    assert Rig(PresenceSettings()).feed(10, moment).close().of("zone.presence") == []


def test_a_stay_longer_than_the_zone_allows_raises_one_alert():
    stay = walker([(0, 200, 450), (1, 500, 450), (20, 500, 450)])
    rig = Rig(PresenceSettings(max_dwell_s={"bench": 5.0})).feed(20, stay).close()
    alerts = rig.of("zone.dwell_exceeded")
    assert len(alerts) == 1 and alerts[0].zone == "bench" and alerts[0].severity == "warning"
    assert alerts[0].attributes["max_dwell_s"] == 5.0
    assert alerts[0].attributes["dwell_s"] == pytest.approx(5.0, abs=0.21)
    assert Rig(PresenceSettings(max_dwell_s={"bench": 30.0})).feed(20, stay).close().of("zone.dwell_exceeded") == []


def test_crossing_a_line_counts_each_way_and_passing_beside_it_does_not():
    there_and_back = walker([(0, 700, 450), (2, 1100, 450), (4, 700, 450)])
    rig = Rig(PresenceSettings(zones=[])).feed(4, there_and_back).close()
    crossings = rig.of("line.crossed")
    assert [(e.attributes["line"], e.attributes["direction"]) for e in crossings] == [("aisle", 1), ("aisle", -1)]
    assert times(crossings[0])[0] == pytest.approx(1.2, abs=0.01)  # the first frame past x=900
    assert rig.sample("appliance_line_crossings_total", line="aisle", direction="1") == 1
    assert rig.sample("appliance_line_crossings_total", line="aisle", direction="-1") == 1
    below = walker([(0, 700, 715), (2, 1100, 715)])  # feet below the segment's end (y=700)
    assert Rig(PresenceSettings()).feed(2, below).close().of("line.crossed") == []


def test_only_the_labels_zones_and_lines_named_are_watched():
    walk = walker([(0, 200, 450), (2, 600, 450), (4, 1100, 450), (8, 1100, 450)], label="cart")
    assert Rig(PresenceSettings(labels=["person"])).feed(8, walk).close().events == []
    rig = Rig(PresenceSettings(labels=["cart"], zones=["door"], lines=[])).feed(8, walk).close()
    assert {(e.kind, e.zone) for e in rig.events} == {("zone.presence", "door")}


def test_a_rule_naming_an_unknown_zone_or_line_is_a_config_error(tmp_path: Path):
    path = tmp_path / "appliance.yaml"
    path.write_text("""\
sources:
  - id: cam1
    uri: test://smpte
    zones: [{id: bench, polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}]
    lines: [{id: aisle, points: [[0.7, 0.0], [0.7, 1.0]]}]
    rules:
      presence:
        zones: [bench, door]
        lines: [gate]
        max_dwell_s: {bench: 60}
""", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:8: sources.0.rules.presence.zones.1: unknown zone 'door' (this source defines: bench)"]
    path.write_text(path.read_text(encoding="utf-8").replace("[bench, door]", "[bench]"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:9: sources.0.rules.presence.lines.0: unknown line 'gate' (this source defines: aisle)"]
