"""Production-line rules: parts counted at an inspection line, their defects, defect-rate
drift, and tool verification at a check station.

Parts
    Tracks labelled as parts (``vial``, ``blister``, ``tablet``) are counted once, when
    their anchor (box centre) crosses the inspection line, in either direction. Each part
    keeps its previous anchor off the line (an anchor exactly on the line is skipped, so a
    part that stops on the line is still counted when it leaves it on the other side) and a
    ``counted`` flag, so a part that jitters back and forth is counted once. The crossing
    time is interpolated between the two analyzed frames around it.

    When the tracker gives a part a new id (fast belts at low analysis rates, a missed
    frame), the new track takes over the history of a part track that vanished less than
    ``handover_s`` ago and whose last box, moved on by its last velocity, overlaps the new
    box (IoU > ``handover_iou``): the part is neither counted twice nor loses its defects.

Defects
    Defect regions (``crack``, ``chip``, ``missing_cap``, ``stain``) are small and often do
    not keep stable tracks (a new track needs ``new_track_confidence``), so they are taken
    from the frame's **detections** (confidence ≥ ``defect_confidence``) and from its defect
    tracks; a region is attached to the part whose box contains the region's centre (the
    smallest such box; the part box widened by ``attach_margin`` of its size on every side,
    for a part box that lags its detection). A kind counts once per frame per part, so a
    region seen both as detection and as track, or twice, is not counted twice. A part is
    defective when defects were attached to it in at least ``min_defect_frames`` analyzed
    frames up to its crossing (any kind: a detector that hesitates between ``crack`` and
    ``chip`` still flags the part); the event names the most frequent kind.

Drift
    The defective fraction of the last ``window_parts`` counted parts of the line; above
    ``limit`` (with at least ``min_parts`` parts) a ``defect.rate_drift`` episode starts, and
    it ends when the fraction falls below ``clear_below`` (hysteresis).

Tools
    A tool track inside ``tool_zone`` votes for a state in each analyzed frame: the state its
    label says (``tool_labels``: ``tool_clean`` -> ``clean``, for a detector that tells the
    states apart), or, for a label of ``tool_check.labels`` (``tool``), the state a classifier
    names from the tool's crop (``tool_check.model``, a ``classify`` model whose labels are
    the states; verdicts below its ``confidence`` do not vote; on a backend that keeps no
    frames the state is ``unchecked``, a warning). A tool that
    lay still (the detector's box kept IoU ≥ ``tool_still_iou`` with where it settled: the
    tracker's smoothed box of a revived id may take seconds to fit the new tool) for
    ``tool_settle_s`` raises ``tool.verified`` start with the majority state of its frames
    so far; when it has been gone for more than ``tool_lost_s`` the end follows with the
    final majority. A new track within ``tool_merge_s`` of a tool leaving, at the same place
    (IoU > ``tool_merge_iou``), is the same tool re-identified: it continues that record, or,
    when the record has already ended, is swallowed — never a second record. So is a lost id
    the tracker revives, and only at the same place: else it is the next tool, laid down where
    the last one lay. Ties in the vote go to the state that is not ``ok`` (the audit errs on
    the safe side).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from appliance.analytics.base import Finding, FrameView
from appliance.analytics.geometry import Line
from appliance.analytics.inspection import AnomalyInspector, CropClassifier
from appliance.analytics.lifecycle import TIME_SLACK
from appliance.config.base import Identifier, Strict
from appliance.metrics import ApplianceMetrics
from appliance.tracking.tracker import iou_matrix
from appliance.types import Box, Track

log = logging.getLogger(__name__)

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
UNCHECKED = "unchecked"  # the state of a tool the classifier could not look at (no pixels)
Seconds = Annotated[float, Field(ge=0.0, le=3600.0)]


class DriftSettings(Strict):
    window_parts: Annotated[int, Field(ge=1, le=100_000)] = 50
    min_parts: Annotated[int, Field(ge=1, le=100_000)] = 20
    limit: Fraction = 0.3
    clear_below: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # default: limit * 0.8

    @model_validator(mode="after")
    def _consistent(self) -> DriftSettings:
        if self.min_parts > self.window_parts:
            raise ValueError("min_parts must not exceed window_parts")
        if self.clear_below is not None and self.clear_below > self.limit:
            raise ValueError("clear_below must not exceed limit")
        return self

    @property
    def clear_level(self) -> float:
        return self.limit * 0.8 if self.clear_below is None else self.clear_below


class AnomalyCheckSettings(Strict):
    """Each counted part's crop scored by an anomaly model (its ``confidence`` is the threshold)."""

    model: Identifier  # a model with parser: anomaly
    crop_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # each side, of the box's longer side (as trained)


class ToolCheckSettings(Strict):
    """Each tool's state named by a classifier from its crop (the detector only finds the tool)."""

    model: Identifier  # a model with parser: classify; its labels are the states
    labels: tuple[str, ...] = ("tool",)  # the detector's labels whose state the classifier names
    crop_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # each side, of the box's longer side (as trained)


class DefectSettings(Strict):
    inspection_line: Identifier | None = None  # a line of the source; None: no part counting
    part_labels: tuple[str, ...] = ("vial", "blister", "tablet")
    defect_labels: tuple[str, ...] = ("crack", "chip", "missing_cap", "stain")
    defect_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3  # defect detections below are ignored
    min_defect_frames: Annotated[int, Field(ge=1, le=1000)] = 2
    attach_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # part box widened by this of its size
    handover_s: Seconds = 1.0  # 0: a re-identified part starts afresh
    handover_iou: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    track_memory_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 30.0  # forget a part not seen this long
    drift: DriftSettings | None = None
    anomaly: AnomalyCheckSettings | None = None  # needs inspection_line: parts are looked at when counted
    tool_zone: Identifier | None = None  # None: tools anywhere in the view
    tool_labels: dict[str, str] = Field(
        default_factory=lambda: {"tool_clean": "clean", "tool_dirty": "dirty", "tool_damaged": "damaged"})
    tool_check: ToolCheckSettings | None = None
    ok_states: tuple[str, ...] = ("clean",)  # tool states reported as info; the others are warnings
    tool_settle_s: Seconds = 1.0
    tool_still_iou: Fraction = 0.7
    tool_lost_s: Seconds = 1.0
    tool_merge_s: Seconds = 1.5
    tool_merge_iou: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5

    @model_validator(mode="after")
    def _disjoint(self) -> DefectSettings:
        groups = {"part_labels": set(self.part_labels), "defect_labels": set(self.defect_labels),
                  "tool_labels": set(self.tool_labels) | set(self.tool_check.labels if self.tool_check else ())}
        names = list(groups)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                common = groups[a] & groups[b]
                if common:
                    raise ValueError(f"{a} and {b} share {', '.join(sorted(common))}")
        if self.anomaly is not None and self.inspection_line is None:
            raise ValueError("anomaly needs an inspection_line: parts are checked when they are counted there")
        unknown = set(self.ok_states) - set(self.tool_labels.values())
        if unknown and self.tool_check is None:  # else the classifier's labels are states too (checked with the models)
            raise ValueError(f"ok_states {', '.join(sorted(unknown))} is not a state of tool_labels")
        return self


@dataclass(slots=True)
class _Part:
    box: Box
    centre: tuple[float, float]
    last_seen: float
    velocity: tuple[float, float] = (0.0, 0.0)  # px/s, from the last two sightings
    anchor: tuple[float, float] | None = None  # last anchor off the inspection line
    anchor_t: float = 0.0
    anchor_signed: float = 0.0  # the anchor's signed distance from the line
    counted: bool = False
    defect_frames: int = 0  # frames with any defect attached
    kinds: dict[str, int] = field(default_factory=dict)  # defect kind -> frames
    peak: float = 0.0  # highest defect confidence


@dataclass(slots=True)
class _Tool:
    key: str
    track_id: int
    first_seen: float
    last_seen: float
    box: Box
    still_box: Box
    still_since: float
    votes: dict[str, int] = field(default_factory=dict)
    peak: float = 0.0
    track_ids: list[int] = field(default_factory=list)
    voted_at: float = -1.0  # stream time of the last frame that counted (one vote a frame)
    started: bool = False
    ended: bool = False


def _iou(a: Box, b: Box) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class DefectRules:
    """The defects use case's rules for one stream (see the module doc)."""

    def __init__(
        self,
        settings: DefectSettings,
        stream_id: str,
        metrics: ApplianceMetrics | None = None,
        inspector: AnomalyInspector | None = None,
        tool_classifier: CropClassifier | None = None,
    ) -> None:
        if (settings.tool_check is None) != (tool_classifier is None):
            raise ValueError("tool_check and a tool classifier go together")
        self.settings = settings
        self.inspector = inspector
        self.tool_classifier = tool_classifier
        self.stream_id = stream_id
        self.metrics = metrics
        self._part_labels = frozenset(settings.part_labels)
        self._defect_labels = frozenset(settings.defect_labels)
        self._tool_states = dict(settings.tool_labels)
        self._checked_tools = frozenset(settings.tool_check.labels if settings.tool_check else ())
        self._ok_states = frozenset(settings.ok_states)
        self._parts: dict[int, _Part] = {}
        self._next_prune = 0.0
        window = (settings.drift or DriftSettings()).window_parts  # without drift settings: the gauge's window
        self._window: deque[bool] = deque(maxlen=window)
        self._defective_in_window = 0
        self._drift_since: float | None = None
        self._tools: dict[int, _Tool] = {}  # track id -> record (several ids after a re-identification)
        self._tool_records: list[_Tool] = []
        self._tool_serial = 0
        self._last_t = 0.0
        self._previous_t = -math.inf  # the stream's analyzed frame before this one
        self._warned: set[str] = set()
        line = settings.inspection_line
        if metrics is not None and line is not None:
            for result in ("ok", "defective"):
                metrics.parts_inspected.labels(stream_id, line, result)

    # -- the Rules protocol ---------------------------------------------------

    def observe(self, view: FrameView) -> list[Finding]:
        t = view.t
        self._previous_t, self._last_t = self._last_t, t
        parts: list[Track] = []
        defects: list[tuple[str, float, Box]] = []
        tools: list[Track] = []
        for track in view.tracks:
            label = track.label
            if label in self._part_labels:
                parts.append(track)
            elif label in self._tool_states or label in self._checked_tools:
                tools.append(track)
            elif label in self._defect_labels:
                defects.append((label, track.confidence, track.box))
        threshold = self.settings.defect_confidence
        for d in view.result.detections:
            if d.label in self._defect_labels and d.confidence >= threshold:
                defects.append((d.label, d.confidence, d.box))
        findings: list[Finding] = []
        if parts or self._parts:
            findings.extend(self._observe_parts(view, t, parts, defects))
        if tools or self._tool_records:
            findings.extend(self._observe_tools(view, t, tools))
        return findings

    def close(self) -> list[Finding]:
        findings: list[Finding] = []
        if self._drift_since is not None:
            findings.append(self._drift_finding("end", self._drift_since, self._last_t))
            self._drift_since = None
        for record in self._tool_records:
            if record.started and not record.ended:
                findings.append(self._tool_finding("end", record))
        self._tool_records.clear()
        self._tools.clear()
        self._parts.clear()  # the tracker starts again, and so do its ids
        return findings

    # -- parts and defects ----------------------------------------------------

    def _line(self, view: FrameView) -> Line | None:
        line_id = self.settings.inspection_line
        if line_id is None:
            return None
        line = view.lines.get(line_id)
        if line is None and line_id not in self._warned:
            self._warned.add(line_id)
            log.error("stream %s: inspection line %r is not a line of the source; parts are not counted",
                      self.stream_id, line_id)
        return line

    def _observe_parts(self, view: FrameView, t: float, parts: list[Track],
                       defects: list[tuple[str, float, Box]]) -> list[Finding]:
        s = self.settings
        findings: list[Finding] = []
        states = self._states_for(t, parts)
        boxes = np.array([p.box for p in parts], dtype=np.float64).reshape(-1, 4)

        # defects: each region's centre against every part box, [D, P]
        if defects and parts:
            dbox = np.array([d[2] for d in defects], dtype=np.float64)
            dx, dy = (dbox[:, 0] + dbox[:, 2]) / 2, (dbox[:, 1] + dbox[:, 3]) / 2
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            mx, my = w * s.attach_margin, h * s.attach_margin
            inside = ((dx[:, None] >= boxes[None, :, 0] - mx) & (dx[:, None] <= boxes[None, :, 2] + mx)
                      & (dy[:, None] >= boxes[None, :, 1] - my) & (dy[:, None] <= boxes[None, :, 3] + my))
            attached = inside.any(axis=1)
            if attached.any():
                owners = np.where(inside, (w * h)[None, :], np.inf).argmin(axis=1)
                seen: dict[int, dict[str, float]] = {}
                for k, j in zip(np.flatnonzero(attached).tolist(), owners[attached].tolist()):
                    label, confidence, _ = defects[k]
                    kinds = seen.setdefault(j, {})
                    kinds[label] = max(kinds.get(label, 0.0), confidence)
                for j, kinds in seen.items():
                    state = states[j]
                    if state.counted:
                        continue
                    state.defect_frames += 1
                    for label, confidence in kinds.items():
                        state.kinds[label] = state.kinds.get(label, 0) + 1
                        state.peak = max(state.peak, confidence)

        line = self._line(view)
        if line is not None and parts:
            # signed distance (times the line's length) of each anchor from the line; its sign is Line.side's
            (ax, ay), (bx, by) = line.a.tolist(), line.b.tolist()
            dx_line, dy_line = bx - ax, by - ay
            signed = [dx_line * (st.centre[1] - ay) - dy_line * (st.centre[0] - ax) for st in states]
            movers = [j for j, st in enumerate(states)
                      if st.anchor is not None and not st.counted and st.anchor_signed * signed[j] < 0]
            if movers:  # changed sides: did they pass through the segment (Line.crossings), which way?
                before = np.array([states[j].anchor for j in movers], dtype=np.float64)
                after = np.array([states[j].centre for j in movers], dtype=np.float64)
                directions = line.crossings(before, after).tolist()
                for j, direction in zip(movers, directions):
                    state = states[j]
                    if direction == 0 or state.counted:
                        continue
                    fraction = state.anchor_signed / (state.anchor_signed - signed[j])
                    at = state.anchor_t + fraction * (t - state.anchor_t)
                    findings.extend(self._count(parts[j], state, line.id, direction, at))
                    findings.extend(self._inspect(view, parts[j], line.id, at))
            for state, value in zip(states, signed):
                if value != 0:  # an anchor right on the line waits for the next one off it
                    state.anchor, state.anchor_t, state.anchor_signed = state.centre, t, value

        if t >= self._next_prune:
            self._next_prune = t + 1.0
            stale = [i for i, st in self._parts.items() if t - st.last_seen > s.track_memory_s]
            for i in stale:
                del self._parts[i]
        return findings

    def _states_for(self, t: float, parts: list[Track]) -> list[_Part]:
        """Each part track's state: its own, taken over from a vanished track, or new."""
        s = self.settings
        states: list[_Part | None] = [self._parts.get(p.track_id) for p in parts]
        fresh = [j for j, st in enumerate(states) if st is None]
        if fresh and s.handover_s > 0:
            present = {p.track_id for p in parts}
            gone = [(i, st) for i, st in self._parts.items() if i not in present and t - st.last_seen <= s.handover_s]
            if gone:
                moved = np.array([st.box for _, st in gone], dtype=np.float64)
                shift = np.array([(st.velocity[0] * (t - st.last_seen), st.velocity[1] * (t - st.last_seen))
                                  for _, st in gone], dtype=np.float64)
                moved += np.concatenate([shift, shift], axis=1)
                overlap = iou_matrix(np.array([parts[j].box for j in fresh], dtype=np.float64), moved)
                taken: set[int] = set()
                for flat in np.argsort(overlap, axis=None)[::-1].tolist():
                    a, b = divmod(flat, len(gone))
                    if overlap[a, b] <= s.handover_iou:
                        break
                    j = fresh[a]
                    if states[j] is not None or b in taken:
                        continue
                    taken.add(b)
                    old_id, states[j] = gone[b]
                    # the old id is forgotten: a tracker that revives it has usually found another part
                    del self._parts[old_id]
        out: list[_Part] = []
        for track, state in zip(parts, states):
            box = track.box
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            if state is None:
                state = _Part(box, centre, t)
            elif t > state.last_seen:
                dt = t - state.last_seen
                state.velocity = ((centre[0] - state.centre[0]) / dt, (centre[1] - state.centre[1]) / dt)
            state.box, state.centre, state.last_seen = box, centre, t
            self._parts[track.track_id] = state
            out.append(state)
        return out

    def _count(self, track: Track, state: _Part, line_id: str, direction: int, at: float) -> list[Finding]:
        s = self.settings
        state.counted = True
        defective = state.defect_frames >= s.min_defect_frames
        findings: list[Finding] = []
        if self.metrics is not None:
            self.metrics.parts_inspected.labels(self.stream_id, line_id, "defective" if defective else "ok").inc()
        if defective:
            kind = max(state.kinds.items(), key=lambda kv: kv[1])[0]
            findings.append(Finding(
                "defect.part", "start", began=at, ended=at, track_id=track.track_id, severity="warning",
                confidence=round(state.peak, 4), box=track.box,
                attributes={"defect": kind, "defects": dict(state.kinds), "part": track.label, "line": line_id,
                            "direction": direction},
            ))
        findings.extend(self._drift(defective, line_id, at))
        return findings

    def _inspect(self, view: FrameView, track: Track, line_id: str, at: float) -> list[Finding]:
        """The second stage: the anomaly model's verdict on a part that was just counted."""
        if self.inspector is None:
            return []
        rgb = view.rgb()
        if rgb is None:
            if "pixels" not in self._warned:
                self._warned.add("pixels")
                log.error("stream %s: the backend keeps no frames; parts are not checked for anomalies",
                          self.stream_id)
            return []
        seen = self.inspector.inspect(rgb, track.seen_box)
        if self.metrics is not None:
            self.metrics.anomaly_score.labels(self.stream_id, line_id).observe(seen.score)
        if not seen.anomalous:
            return []
        return [Finding(
            "defect.anomaly", "start", began=at, ended=at, track_id=track.track_id, severity="warning",
            confidence=round(seen.score, 4), box=track.box,
            attributes={"score": round(seen.score, 4), "threshold": self.inspector.parser.threshold,
                        "part": track.label, "line": line_id, "crop": [round(v, 1) for v in seen.crop],
                        "peak": [round(v, 1) for v in seen.peak], "heat_map": seen.heat},
        )]

    # -- drift ----------------------------------------------------------------

    def _drift(self, defective: bool, line_id: str, at: float) -> list[Finding]:
        """Adds a counted part to the window; updates the rate gauge; starts or ends a drift episode."""
        drift = self.settings.drift
        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._defective_in_window -= 1
        window.append(defective)
        self._defective_in_window += defective
        rate = self._defective_in_window / len(window)
        if self.metrics is not None:
            self.metrics.defect_rate.labels(self.stream_id, line_id).set(rate)
        if drift is None:
            return []
        if self._drift_since is None:
            if len(window) >= drift.min_parts and rate > drift.limit:
                self._drift_since = at
                return [self._drift_finding("start", at, None, rate)]
        elif rate < drift.clear_level:
            began, self._drift_since = self._drift_since, None
            return [self._drift_finding("end", began, at, rate)]
        return []

    def _drift_finding(self, phase: str, began: float, ended: float | None, rate: float | None = None) -> Finding:
        drift = self.settings.drift
        assert drift is not None
        line = self.settings.inspection_line or ""
        if rate is None:
            rate = self._defective_in_window / len(self._window) if self._window else 0.0
        return Finding(
            "defect.rate_drift", phase, began=began, ended=ended, severity="warning", confidence=None,
            attributes={"rate": round(rate, 4), "window": len(self._window), "limit": drift.limit, "line": line},
            episode=f"drift:{line}",
        )

    # -- tools ----------------------------------------------------------------

    def _observe_tools(self, view: FrameView, t: float, tools: list[Track]) -> list[Finding]:
        s = self.settings
        if s.tool_zone is not None and tools:
            zone = view.zones.get(s.tool_zone)
            if zone is None:
                if s.tool_zone not in self._warned:
                    self._warned.add(s.tool_zone)
                    log.error("stream %s: tool zone %r is not a zone of the source; tools are not verified",
                              self.stream_id, s.tool_zone)
                tools = []
            else:
                boxes = np.array([tr.seen_box for tr in tools], dtype=np.float64)
                centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
                inside = zone.contains(centres)
                tools = [tr for tr, ok in zip(tools, inside) if ok]
        findings: list[Finding] = []
        # the surest first: where one tool carries two boxes of different states (class-wise NMS keeps
        # both), the frame's one vote goes to the more confident
        for track in sorted(tools, key=lambda tr: -tr.confidence):
            record = self._tools.get(track.track_id)
            if record is not None and not self._same_tool(t, track, record, revived=True):
                # the tracker revived a lost id on what is another presentation (a new tool laid down
                # where the last one lay): the id starts a new record
                record.track_ids.remove(track.track_id)
                record = None
            if record is None:
                record = self._tool_record(t, track)
            if record.voted_at == t:
                continue  # two ids of one re-identified tool in one frame: one vote
            record.voted_at = record.last_seen = t
            record.box = box = track.seen_box  # the detector's: the tracker's of a revived id may lag
            if record.ended:
                continue  # a re-identified tool whose record is closed: no second record
            state = self._tool_state(view, track)
            if state is not None:
                record.votes[state] = record.votes.get(state, 0) + 1
                record.peak = max(record.peak, track.confidence)
            if _iou(box, record.still_box) < s.tool_still_iou:
                record.still_box, record.still_since = box, t
            if not record.started and record.votes and t - record.still_since >= s.tool_settle_s - TIME_SLACK:
                record.started = True
                findings.append(self._tool_finding("start", record))
        keep: list[_Tool] = []
        for record in self._tool_records:
            gone = t - record.last_seen
            if record.started and not record.ended and gone > s.tool_lost_s:
                record.ended = True
                findings.append(self._tool_finding("end", record))
            if gone > max(s.tool_merge_s, s.tool_lost_s) and (record.ended or not record.started):
                for track_id in record.track_ids:
                    self._tools.pop(track_id, None)
            else:
                keep.append(record)
        self._tool_records = keep
        return findings

    def _tool_state(self, view: FrameView, track: Track) -> str | None:
        """The state ``track`` votes for in this frame: its label's, or the classifier's verdict on
        its crop (None: no verdict sure enough; ``unchecked``: no pixels to look at)."""
        if track.label not in self._checked_tools:
            return self._tool_states[track.label]
        classifier = self.tool_classifier
        assert classifier is not None
        rgb = view.rgb()
        if rgb is None:  # the audit still records the tool, and says it could not be checked
            if "tool pixels" not in self._warned:
                self._warned.add("tool pixels")
                log.error("stream %s: the backend keeps no frames; tools are recorded as %r", self.stream_id,
                          UNCHECKED)
            return UNCHECKED
        verdict = classifier.classify(rgb, track.seen_box)
        return verdict.label if verdict.confidence >= classifier.threshold else None

    def _same_tool(self, t: float, track: Track, record: _Tool, revived: bool = False) -> bool:
        """Whether ``track`` continues ``record``: its own id, seen in the stream's previous analyzed
        frame, or at the same place within ``tool_merge_s`` (in this very frame too: a second box of
        another state on the same tool). A tracker that revives a lost id may have put it on the next
        tool laid down where the last one lay: that is a new presentation unless it is where the
        record's tool was."""
        s = self.settings
        if revived and record.last_seen >= self._previous_t:
            return True
        gap = t - record.last_seen
        return 0 <= gap < s.tool_merge_s and _iou(track.seen_box, record.box) > s.tool_merge_iou

    def _tool_record(self, t: float, track: Track) -> _Tool:
        """The record of a tool that just appeared: a re-identified one's, or a new one."""
        s = self.settings
        best, best_iou = None, s.tool_merge_iou
        for record in self._tool_records:
            if self._same_tool(t, track, record):
                overlap = _iou(track.seen_box, record.box)
                if overlap > best_iou:
                    best, best_iou = record, overlap
        if best is None:
            self._tool_serial += 1
            best = _Tool(f"tool:{self._tool_serial}", track.track_id, t, t, track.seen_box, track.seen_box, t)
            self._tool_records.append(best)
        best.track_ids.append(track.track_id)
        self._tools[track.track_id] = best
        return best

    def _majority(self, votes: dict[str, int]) -> str:
        return max(votes.items(), key=lambda kv: (kv[1], kv[0] not in self._ok_states))[0]

    def _tool_finding(self, phase: str, record: _Tool) -> Finding:
        state = self._majority(record.votes)
        return Finding(
            "tool.verified", phase, began=record.first_seen, ended=record.last_seen if phase == "end" else None,
            track_id=record.track_id, severity="info" if state in self._ok_states else "warning",
            confidence=round(record.peak, 4), zone=self.settings.tool_zone, box=record.box,
            attributes={"state": state, "votes": dict(record.votes)}, episode=record.key,
        )
