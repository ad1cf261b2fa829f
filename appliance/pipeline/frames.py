"""Decoded frames waiting for analysis, and the newest-frame slot of each stream."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class PixelSource(Protocol):
    """Letterboxed RGB pixels of one frame, at the model input size."""

    def copy_into(self, out: np.ndarray) -> None:
        """Write the pixels as ``[3, H, W]`` float32 in 0..1 into ``out``."""
        ...


@dataclass(slots=True)
class Frame:
    stream_id: str
    frame_number: int
    pts_ns: int
    wall_time: float
    arrived: float  # monotonic time the frame reached the appliance, decoded and scaled
    width: int  # source frame size, before letterboxing
    height: int
    pixels: PixelSource
    image: Any = None  # the frame at source resolution (a SourceImage), for event snapshots


class ArrayPixels:
    """Pixels already in memory as ``[H, W, 3]`` uint8 (tests, benchmarks)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def copy_into(self, out: np.ndarray) -> None:
        np.multiply(self.image.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=out)


class FrameSlot:
    """Holds the newest decoded frame of one stream.

    Live sources overwrite a frame nobody took yet (it is stale, and counted as
    dropped); sources that can wait (files read as fast as possible) block until
    the frame is taken, so nothing is decoded in vain.
    """

    def __init__(self, stream_id: str, wait_when_full: bool, ready: threading.Condition) -> None:
        self.stream_id = stream_id
        self.wait_when_full = wait_when_full
        self._ready = ready  # shared by all slots: the batcher waits on it
        self._frame: Frame | None = None
        self._closed = False
        self.dropped = 0
        self.busy = False  # a worker is analyzing this stream's previous frame

    def put(self, frame: Frame) -> None:
        with self._ready:
            if self.wait_when_full:
                while self._frame is not None and not self._closed:
                    self._ready.wait(0.2)
            if self._closed:
                return
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._ready.notify_all()

    def take(self) -> Frame | None:
        """Take the waiting frame (caller holds the shared condition)."""
        frame, self._frame = self._frame, None
        if frame is not None and self.wait_when_full:
            self._ready.notify_all()
        return frame

    @property
    def has_frame(self) -> bool:
        return self._frame is not None

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._frame = None
            self._ready.notify_all()

    def reopen(self) -> None:
        with self._ready:
            self._closed = False
