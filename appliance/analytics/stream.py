"""Per-stream analytics: tracking, then each use case's rules, then Events."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from appliance.analytics.base import Finding, FrameView, Rules
from appliance.analytics.geometry import Line, Zone
from appliance.events.factory import EventFactory
from appliance.events.snapshots import SnapshotStore, SourceImage
from appliance.tracking import appearance
from appliance.tracking.tracker import Tracker
from appliance.types import Event, FrameResult

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]
ZoneSpec = tuple[str, Sequence[tuple[float, float]], bool]  # id, points, normalized


class StreamAnalytics:
    """Owns one stream's tracker and rules. Called with the stream's results in frame order.

    Without a tracker, the tracks the backend put in each result are used as they are."""

    def __init__(
        self,
        stream_id: str,
        tracker: Tracker | None,
        rules: Sequence[Rules],
        events: EventFactory,
        emit: EventSink,
        zones: Sequence[ZoneSpec] = (),
        lines: Sequence[ZoneSpec] = (),
        model: str = "",
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.tracker = tracker
        self.rules = list(rules)
        self._events = events
        self._emit = emit
        self._zone_specs = list(zones)
        self._line_specs = list(lines)
        self._model = model
        self._snapshots = snapshots
        self._size: tuple[int, int] | None = None
        self._zones: dict[str, Zone] = {}
        self._lines: dict[str, Line] = {}
        self._last_t: float | None = None
        self._last_wall = 0.0
        self._episodes: dict[tuple[str, object], str] = {}  # (kind, episode key) -> start event id

    def process(self, result: FrameResult, image: SourceImage | None = None) -> list[Event]:
        """Tracks and applies the rules to one analyzed frame; ``image`` is the
        full-resolution frame, for the snapshots of events that start in it."""
        t = result.pts_ns / 1e9
        if self._last_t is not None and t < self._last_t - 0.5:
            log.info("stream %s: time restarted (loop or reconnect); closing open events", self.stream_id)
            emitted = self.close()
            if self.tracker is not None:
                self.tracker = Tracker(self.tracker.settings)
        else:
            emitted = []
        self._last_t = t
        self._last_wall = result.wall_time
        if self._size != (result.width, result.height):
            self._layout(result.width, result.height)
        view = FrameView(result, t, self._zones, self._lines, image)
        if self.tracker is not None:  # None: the backend tracked them (nvtracker on DeepStream)
            result.tracks = self.tracker.update(result.detections, self._looks(view))
        for rules in self.rules:
            emitted.extend(self._publish(rules.observe(view), t, result.wall_time, image))
        return emitted

    def _looks(self, view: FrameView) -> np.ndarray | None:
        """What the detections of the tracker's ``appearance_labels`` look like (NaN rows for the
        others); None where there are none, or no pixels."""
        labels = self.tracker.settings.appearance_labels if self.tracker is not None else ()
        if not labels or view.image is None:
            return None
        detections = view.result.detections
        rows = [k for k, d in enumerate(detections) if d.label in labels]
        if not rows:
            return None
        looks = np.full((len(detections), appearance.SIZE), np.nan)
        looks[rows] = appearance.describe_sampled(view.sample, view.image.size,
                                                  np.array([detections[k].box for k in rows]))
        return looks

    def close(self) -> list[Event]:
        emitted: list[Event] = []
        t = self._last_t if self._last_t is not None else 0.0
        for rules in self.rules:
            emitted.extend(self._publish(rules.close(), t, self._last_wall))
        return emitted

    def _layout(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._zones = {z: Zone.for_frame(z, pts, norm, width, height) for z, pts, norm in self._zone_specs}
        self._lines = {z: Line.for_frame(z, pts, norm, width, height) for z, pts, norm in self._line_specs}

    def _publish(self, findings: list[Finding], t: float, wall: float, image: SourceImage | None = None) -> list[Event]:
        events = []
        for f in findings:
            event_id = self._events.next_id()
            snapshot = None
            if f.phase == "start" and image is not None and self._snapshots is not None:
                snapshot = self._snapshots.schedule(event_id, image, f.box)
            attributes = dict(f.attributes)
            attributes["stream_time_s"] = round(f.began, 3)
            attributes["stream_reported_s"] = round(t, 3)
            if f.ended is not None:
                attributes["stream_end_s"] = round(f.ended, 3)
            if f.box is not None:
                attributes["box"] = [round(v, 1) for v in f.box]
            episode_key = (f.kind, f.episode)
            if f.episode is not None and f.phase != "start" and episode_key in self._episodes:
                attributes["episode"] = self._episodes[episode_key]
            event = self._events.make(
                f.kind, f.phase, self.stream_id, wall - (t - f.began),
                ended_at=None if f.ended is None else wall - (t - f.ended),
                severity=f.severity, attributes=attributes, confidence=f.confidence,
                track_id=f.track_id, zone=f.zone, model=self._model, event_id=event_id, snapshot=snapshot,
            )
            if f.episode is not None:
                if f.phase == "start":
                    self._episodes[episode_key] = event.id
                elif f.phase == "end":
                    self._episodes.pop(episode_key, None)
            self._emit(event)
            events.append(event)
        return events
