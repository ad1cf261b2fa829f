"""The shared types: the contract between the backends and everything after parsing.

Boxes are ``(x1, y1, x2, y2)`` in source pixel coordinates (the camera's frame,
not the model input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    confidence: float
    box: Box
    model: str = ""


@dataclass(slots=True)  # not frozen: a frozen dataclass is three times slower to make, and a frame has dozens
class Track:
    track_id: int
    label: str
    confidence: float
    box: Box  # the tracker's estimate (smoothed)
    age_frames: int = 0
    detected: Box | None = None  # the box of the detection it matched in this frame, where known

    @property
    def seen_box(self) -> Box:
        """Where the object was seen in this frame: the detection's box if known (a crop for a
        second-stage model is cut around it), else the tracker's estimate."""
        return self.detected if self.detected is not None else self.box


@dataclass(slots=True)
class FrameResult:
    stream_id: str
    frame_number: int
    pts_ns: int
    wall_time: float
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to the results log (``appliance.frame/1``)."""
        return {
            "schema": "appliance.frame/1",
            "stream_id": self.stream_id,
            "frame_number": self.frame_number,
            "pts_ns": self.pts_ns,
            "wall_time": round(self.wall_time, 6),
            "width": self.width,
            "height": self.height,
            "detections": [
                {
                    "label": d.label,
                    "confidence": round(d.confidence, 4),
                    "box": [round(v, 1) for v in d.box],
                    "model": d.model,
                }
                for d in self.detections
            ],
            "tracks": [
                {
                    "track_id": t.track_id,
                    "label": t.label,
                    "confidence": round(t.confidence, 4),
                    "box": [round(v, 1) for v in t.box],
                    "age_frames": t.age_frames,
                }
                for t in self.tracks
            ],
        }


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, with evidence (``appliance.event/1``).

    ``id`` is stable across redelivery; ``kind`` is dotted (``stream.down``,
    ``ppe.missing_item``); ``phase`` is ``start``, ``update`` or ``end``.
    """

    id: str
    kind: str
    phase: str
    stream_id: str
    device_id: str
    started_at: float
    ended_at: float | None = None
    severity: str = "info"
    confidence: float | None = None
    track_id: int | None = None
    zone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    snapshot: str | None = None
    config_version: str = ""
    model: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"schema": "appliance.event/1", **asdict(self)}
