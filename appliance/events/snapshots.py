"""Evidence for events: a JPEG of the full frame with the box drawn, and a crop.

Images are converted and encoded by GStreamer (``video_convert_sample``) in a
background thread, so the batcher never waits for a JPEG. Retention keeps at
most ``max_count`` events' snapshots and none older than ``max_age_s``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.pipeline import planes
from appliance.pipeline.gst import Gst, GstVideo
from appliance.types import Box

log = logging.getLogger(__name__)

BOX_COLOUR = np.array([255, 40, 40], dtype=np.uint8)
CONVERT_TIMEOUT_NS = 2 * Gst.SECOND


@dataclass(frozen=True)
class SourceImage:
    """A decoded frame at source resolution, as GStreamer gave it (any raw format)."""

    buffer: Gst.Buffer
    caps: Gst.Caps

    @property
    def size(self) -> tuple[int, int]:
        structure = self.caps.get_structure(0)
        return structure.get_value("width"), structure.get_value("height")

    def sample(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """The RGB values of the pixels at rows ``ys`` and columns ``xs`` (index arrays that broadcast,
        within the frame), read straight from the frame's planes where its format allows (8-bit YUV or
        RGB in system memory), else from the whole frame converted."""
        layout = planes.layout_of(self.caps.to_string())
        return self.rgb()[ys, xs] if layout is None else planes.read_rgb(self.buffer, layout, ys, xs)

    def rgb(self) -> np.ndarray:
        sample = Gst.Sample.new(self.buffer, self.caps, None, None)
        converted = GstVideo.video_convert_sample(sample, Gst.Caps.from_string("video/x-raw,format=RGB"),
                                                  CONVERT_TIMEOUT_NS)
        structure = converted.get_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        buffer = converted.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if not ok:
            raise RuntimeError("cannot map a converted frame")
        try:
            rows = np.frombuffer(info.data, dtype=np.uint8, count=info.size).reshape(height, -1)
            return rows[:, : width * 3].reshape(height, width, 3).copy()
        finally:
            buffer.unmap(info)


def encode_jpeg(rgb: np.ndarray) -> bytes:
    height, width = rgb.shape[:2]
    caps = Gst.Caps.from_string(f"video/x-raw,format=RGB,width={width},height={height},framerate=0/1")
    stride = (width * 3 + 3) // 4 * 4  # GStreamer's RGB rows are 4-byte aligned
    rows = np.zeros((height, stride), dtype=np.uint8)
    rows[:, : width * 3] = rgb.reshape(height, width * 3)
    sample = Gst.Sample.new(Gst.Buffer.new_wrapped(rows.tobytes()), caps, None, None)
    jpeg = GstVideo.video_convert_sample(sample, Gst.Caps.from_string("image/jpeg"), CONVERT_TIMEOUT_NS)
    buffer = jpeg.get_buffer()
    ok, info = buffer.map(Gst.MapFlags.READ)
    try:
        return bytes(info.data)
    finally:
        buffer.unmap(info)


def draw_box(rgb: np.ndarray, box: Box, thickness: int = 3) -> None:
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, x2 = np.clip([x1, x2], 0, width - 1)
    y1, y2 = np.clip([y1, y2], 0, height - 1)
    t = thickness
    rgb[y1:y1 + t, x1:x2 + 1] = BOX_COLOUR
    rgb[max(y2 - t + 1, 0):y2 + 1, x1:x2 + 1] = BOX_COLOUR
    rgb[y1:y2 + 1, x1:x1 + t] = BOX_COLOUR
    rgb[y1:y2 + 1, max(x2 - t + 1, 0):x2 + 1] = BOX_COLOUR


def crop_around(rgb: np.ndarray, box: Box, margin: float = 0.2) -> np.ndarray:
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = int(max(0, x1 - mx)), int(max(0, y1 - my))
    right, bottom = int(min(width, x2 + mx + 1)), int(min(height, y2 + my + 1))
    return rgb[top:max(bottom, top + 1), left:max(right, left + 1)]


class SnapshotStore:
    def __init__(self, directory: Path, max_count: int = 1000, max_age_s: float = 7 * 86400) -> None:
        self.directory = directory
        self.max_count = max_count
        self.max_age_s = max_age_s
        directory.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[tuple[str, SourceImage, Box | None] | None] = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._work, name="snapshots", daemon=True)
        self._thread.start()

    def path_for(self, event_id: str) -> Path:
        return self.directory / f"{event_id}.jpg"

    def schedule(self, event_id: str, image: SourceImage, box: Box | None) -> str | None:
        """Queues the snapshot of an event; returns the path it will have (None when too busy)."""
        try:
            self._queue.put_nowait((event_id, image, box))
        except queue.Full:
            log.warning("snapshot queue full: event %s goes without a snapshot", event_id)
            return None
        return str(self.path_for(event_id))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            event_id, image, box = job
            try:
                self._write(event_id, image, box)
                self.prune()
            except Exception:
                log.exception("snapshot of event %s failed", event_id)

    def _write(self, event_id: str, image: SourceImage, box: Box | None) -> None:
        rgb = image.rgb()
        crop = crop_around(rgb, box).copy() if box is not None else None
        if box is not None:
            draw_box(rgb, box)
        _atomic_write(self.path_for(event_id), encode_jpeg(rgb))
        if crop is not None:
            _atomic_write(self.directory / f"{event_id}.crop.jpg", encode_jpeg(crop))

    def prune(self, now: float | None = None) -> None:
        """Retention: the newest ``max_count`` events, none older than ``max_age_s``."""
        now = time.time() if now is None else now
        frames = sorted(self.directory.glob("*.jpg"), key=lambda p: p.stat().st_mtime, reverse=True)
        frames = [p for p in frames if not p.name.endswith(".crop.jpg")]
        for index, path in enumerate(frames):
            if index >= self.max_count or now - path.stat().st_mtime > self.max_age_s:
                path.unlink(missing_ok=True)
                path.with_name(path.name[:-4] + ".crop.jpg").unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
