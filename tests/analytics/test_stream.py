"""StreamAnalytics with a backend that tracks (nvtracker on DeepStream): its ids are kept."""

from __future__ import annotations

from appliance.analytics.defects import DefectRules, DefectSettings
from appliance.analytics.stream import StreamAnalytics
from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.metrics import ApplianceMetrics
from appliance.types import Detection, Event, FrameResult, Track


def test_tracks_from_the_backend_are_used_as_they_are() -> None:
    metrics = ApplianceMetrics()
    events: list[Event] = []
    analytics = StreamAnalytics(
        "cam", None, [DefectRules(DefectSettings(inspection_line="inspect"), "cam", metrics)],
        EventFactory("dev", "v1", ManualClock()), events.append, lines=[("inspect", [(0.5, 0), (0.5, 1)], True)],
    )
    for i in range(10):  # nvtracker's id 4711 on a vial crossing x = 320
        x = 250 + 16 * i
        box = (x - 25.0, 75.0, x + 25.0, 125.0)
        result = FrameResult("cam", i, i * 200_000_000, 0.0, 640, 360, [Detection("vial", 0.9, box)],
                             [Track(4711, "vial", 0.9, box, i)])
        analytics.process(result)
        assert [t.track_id for t in result.tracks] == [4711]
    assert metrics.registry.get_sample_value(
        "appliance_parts_inspected_total", {"stream": "cam", "line": "inspect", "result": "ok"}) == 1
