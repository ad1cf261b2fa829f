"""What a rule sees each analyzed frame, and what it reports.

Rules work in stream time (seconds of the stream's timestamps), which keeps grace
times right whether a file is read in real time or as fast as possible, and lets
tests drive them frame by frame without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from appliance.analytics.geometry import Line, Zone
from appliance.analytics.lifecycle import Timing
from appliance.config.base import Strict
from appliance.types import Box, FrameResult, Track


class TimingSettings(Strict):
    """Grace before an event starts, hysteresis before it ends, optional updates."""

    start_after_s: float = 2.0
    end_after_s: float = 1.0
    update_every_s: float | None = None
    confirm_gap_s: float | None = None  # a condition not reported yet is forgotten unseen this long (end_after_s)

    def timing(self) -> Timing:
        return Timing(self.start_after_s, self.end_after_s, self.update_every_s, self.confirm_gap_s)


class Picture(Protocol):
    """A frame at source resolution (``events.snapshots.SourceImage`` in the pipeline)."""

    @property
    def size(self) -> tuple[int, int]: ...  # width, height

    def rgb(self) -> np.ndarray: ...

    def sample(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray: ...  # [..., 3] RGB at (ys, xs)


@dataclass
class FrameView:
    result: FrameResult  # with its tracks filled in
    t: float  # stream time, seconds
    zones: dict[str, Zone]
    lines: dict[str, Line]
    image: Picture | None = None  # the full-resolution frame, where the backend keeps it
    _rgb: np.ndarray | None = field(default=None, init=False, repr=False)

    def rgb(self) -> np.ndarray | None:
        """The frame as RGB pixels, converted on the first call only (rules rarely need pixels)."""
        if self._rgb is None and self.image is not None:
            self._rgb = self.image.rgb()
        return self._rgb

    def sample(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """The RGB values of the pixels at (``ys``, ``xs``): from the converted frame where it is, else
        read from the frame as it came (``image`` must be set)."""
        assert self.image is not None
        return self._rgb[ys, xs] if self._rgb is not None else self.image.sample(ys, xs)

    @property
    def tracks(self) -> list[Track]:
        return self.result.tracks

    def track_boxes(self) -> np.ndarray:
        return np.array([t.box for t in self.result.tracks], dtype=np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class Finding:
    """An event as a rule reports it; the stream turns it into an ``Event``."""

    kind: str
    phase: str  # start | update | end
    began: float  # stream time the situation began
    ended: float | None = None  # stream time it ended (end phase, or point events)
    track_id: int | None = None
    severity: str = "warning"
    confidence: float | None = None
    zone: str | None = None
    box: Box | None = None  # where to look, for the snapshot
    attributes: dict[str, Any] = field(default_factory=dict)
    episode: str | None = None  # a stable key: start, updates and end of one situation share it


class Rules(Protocol):
    def observe(self, view: FrameView) -> list[Finding]: ...

    def close(self) -> list[Finding]:
        """End whatever is open (the stream stopped, or its time started again)."""
        ...
