"""Zones and lines for any tracked object: who enters and leaves which zone, how long they stay, who
crosses which line and which way.

A stay in a zone is one episode: ``zone.presence`` starts once the object's anchor (the bottom centre
of its box, where a person's feet are, or the centre) has been inside for the grace time, dated from
the first frame inside, and ends once it has been outside (or out of sight) for the hysteresis, dated
from the last frame inside, with the stay's ``dwell_s``. A box jittering on the zone's edge makes
neither an entry nor a leaving. A stay longer than the zone's ``max_dwell_s`` raises
``zone.dwell_exceeded`` once. A movement of the anchor through a line's segment between two analyzed
frames is a ``line.crossed`` event (at the later frame) with its direction (``Line``: +1 from the right
of a→b to its left).
The objects in each zone and the crossings per line and direction are metrics.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from appliance.analytics.base import Finding, FrameView, TimingSettings
from appliance.analytics.geometry import ZoneTable, anchor_points
from appliance.analytics.lifecycle import TIME_SLACK, EpisodeTracker, Transition
from appliance.config.base import Strict
from appliance.metrics import ApplianceMetrics
from appliance.types import Track


class PresenceSettings(Strict):
    """``sources[].rules.presence``: stays in zones and crossings of lines by tracked objects."""

    labels: list[str] = []  # the tracked labels watched (none: every label)
    zones: list[str] | None = None  # the zones watched (None: every zone of the source)
    lines: list[str] | None = None  # the lines watched (None: every line of the source)
    anchor: Literal["bottom", "center"] = "bottom"  # the point of a box that is in a zone or crosses a line
    # inside this long, out for no more than confirm_gap_s at a time, to have entered (dated from the first
    # frame inside); outside this long to have left
    timing: TimingSettings = TimingSettings(start_after_s=0.5, end_after_s=1.0, confirm_gap_s=0.3)
    max_dwell_s: dict[str, Annotated[float, Field(gt=0.0)]] = {}  # zone id -> the longest stay before an alert
    forget_after_s: Annotated[float, Field(gt=0.0)] = 5.0  # a track unseen this long crosses nothing any more


@dataclass
class _Anchor:
    point: np.ndarray  # [2] where the track's anchor was in its previous frame
    t: float


class PresenceRules:
    """The ``Rules`` of ``rules.presence`` for one stream."""

    def __init__(self, settings: PresenceSettings, stream_id: str, metrics: ApplianceMetrics | None = None) -> None:
        self.settings = settings
        self.stream_id = stream_id
        self.metrics = metrics
        self._labels = set(settings.labels)
        self._stays = EpisodeTracker(settings.timing.timing())
        self._table: ZoneTable | None = None
        self._watched: list[int] = []  # the table's columns of the watched zones
        self._anchors: dict[int, _Anchor] = {}
        self._alerted: set[Hashable] = set()  # stays whose dwell alert was raised
        self._shown: dict[str, int] = {}  # the occupancy each zone's gauge shows
        self._next_prune = -math.inf

    def observe(self, view: FrameView) -> list[Finding]:
        t = view.t
        tracks = [tr for tr in view.tracks if not self._labels or tr.label in self._labels]
        points = anchor_points(np.array([tr.box for tr in tracks], dtype=np.float64).reshape(-1, 4),
                               self.settings.anchor)
        findings = self._zones(view, t, tracks, points)
        findings += self._lines(view, t, tracks, points)
        return findings

    def close(self) -> list[Finding]:
        self._anchors.clear()
        self._next_prune = -math.inf  # the stream's time may start again
        findings = [self._stay_finding(tr) for tr in self._stays.close_all()]
        self._alerted.clear()
        self._occupancy()
        return findings

    # ------------------------------------------------------------------ zones

    def _zones(self, view: FrameView, t: float, tracks: list[Track], points: np.ndarray) -> list[Finding]:
        if self._table is None or self._table.zones is not view.zones:
            self._table = ZoneTable(view.zones)
            wanted = self.settings.zones
            self._watched = [k for k, zone_id in enumerate(self._table.ids) if wanted is None or zone_id in wanted]
        table = self._table
        active: dict[Hashable, dict[str, Any]] = {}
        confidence: dict[Hashable, float] = {}
        if len(tracks) and self._watched:
            inside = table.contains(points)[:, self._watched]
            for row, column in zip(*np.nonzero(inside)):
                track, zone_id = tracks[row], table.ids[self._watched[column]]
                key = (track.track_id, zone_id)
                active[key] = {"track": track, "zone": zone_id}
                confidence[key] = track.confidence
        findings = [self._stay_finding(tr) for tr in self._stays.step(t, active, confidence)]
        limits = self.settings.max_dwell_s
        for key, episode in self._stays.open.items() if limits else ():
            limit = limits.get(episode.payload["zone"])
            if (episode.started and limit is not None and key not in self._alerted
                    and episode.last_seen - episode.began >= limit - TIME_SLACK):
                self._alerted.add(key)
                track = episode.payload["track"]
                findings.append(Finding(
                    "zone.dwell_exceeded", "start", episode.began, ended=t, track_id=track.track_id,
                    confidence=track.confidence, zone=episode.payload["zone"], box=track.box,
                    attributes={"label": track.label, "dwell_s": round(t - episode.began, 3), "max_dwell_s": limit},
                ))
        self._alerted &= set(self._stays.open)
        self._occupancy()
        return findings

    def _stay_finding(self, transition: Transition) -> Finding:
        episode = transition.episode
        track, zone_id = episode.payload["track"], episode.payload["zone"]
        attributes = {"label": track.label}
        ended = None
        if transition.phase == "end":
            ended = episode.last_seen
            attributes["dwell_s"] = round(ended - episode.began, 3)
        return Finding("zone.presence", transition.phase, episode.began, ended=ended, track_id=track.track_id,
                       severity="info", confidence=episode.peak_confidence or track.confidence, zone=zone_id,
                       box=track.box, attributes=attributes,
                       episode=f"{track.track_id}:{zone_id}:{episode.began:.3f}")

    def _occupancy(self) -> None:
        if self.metrics is None:
            return
        counts: dict[str, int] = dict.fromkeys(self._shown, 0)
        for episode in self._stays.open.values():
            if episode.started:
                zone_id = episode.payload["zone"]
                counts[zone_id] = counts.get(zone_id, 0) + 1
        for zone_id, count in counts.items():
            if self._shown.get(zone_id) != count:  # the gauge changes only on entries and leavings
                self.metrics.zone_occupancy.labels(self.stream_id, zone_id).set(count)
                self._shown[zone_id] = count

    # ------------------------------------------------------------------ lines

    def _lines(self, view: FrameView, t: float, tracks: list[Track], points: np.ndarray) -> list[Finding]:
        wanted = self.settings.lines
        lines = [line for line_id, line in view.lines.items() if wanted is None or line_id in wanted]
        findings: list[Finding] = []
        movers = [k for k, tr in enumerate(tracks) if tr.track_id in self._anchors]
        if lines and movers:
            before = np.array([self._anchors[tracks[k].track_id].point for k in movers])
            after = points[movers]
            for line in lines:
                for k, direction in zip(movers, line.crossings(before, after).tolist()):
                    if direction == 0:
                        continue
                    track = tracks[k]
                    findings.append(Finding(
                        "line.crossed", "start", t, ended=t, track_id=track.track_id, severity="info",
                        confidence=track.confidence, box=track.box,
                        attributes={"label": track.label, "line": line.id, "direction": direction},
                    ))
                    if self.metrics is not None:
                        self.metrics.line_crossings.labels(self.stream_id, line.id, str(direction)).inc()
        for k, track in enumerate(tracks):
            self._anchors[track.track_id] = _Anchor(points[k].copy(), t)
        if t >= self._next_prune:  # once a second: tracks long gone cross nothing
            self._next_prune = t + 1.0
            stale = [i for i, anchor in self._anchors.items() if t - anchor.t > self.settings.forget_after_s]
            for i in stale:
                del self._anchors[i]
        return findings
