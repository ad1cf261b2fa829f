"""Letterbox geometry: where a source frame lands inside the model input.

The portable backend scales frames with GStreamer's ``videoscale add-borders=true``
into square-pixel caps of the model input size. This module reproduces that
element's geometry exactly (GStreamer 1.22, ``gst_video_scale_fixate_caps`` with
square pixels on both sides), so boxes found in model-input pixels map back to the
right source pixels:

* the display aspect ratio ``n/d`` is ``src_w/src_h`` reduced;
* ``to_h = dst_w * d // n``; when it fits (``to_h <= dst_h``) the image fills the
  width and the remaining rows are borders, else ``to_w = dst_h * n // d`` and the
  remaining columns are borders;
* the image sits at ``(borders_w // 2, borders_h // 2)``; borders are black.

A test checks this against the real element.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """A ``src_w x src_h`` frame scaled to ``scaled_w x scaled_h`` at ``(pad_x, pad_y)``
    inside a ``dst_w x dst_h`` model input."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    scaled_w: int
    scaled_h: int
    pad_x: int
    pad_y: int

    @classmethod
    def compute(cls, src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
        """The geometry ``videoscale add-borders=true`` uses for these sizes."""
        if min(src_w, src_h, dst_w, dst_h) <= 0:
            raise ValueError(f"frame sizes must be positive: {src_w}x{src_h} -> {dst_w}x{dst_h}")
        divisor = gcd(src_w, src_h)
        num, den = src_w // divisor, src_h // divisor
        to_h = dst_w * den // num
        if to_h <= dst_h:
            scaled_w, scaled_h = dst_w, to_h
        else:
            scaled_w, scaled_h = dst_h * num // den, dst_h
        # Extreme aspect ratios floor to 0 in GStreamer too; keep one row/column so
        # the mapping stays finite.
        scaled_w, scaled_h = max(scaled_w, 1), max(scaled_h, 1)
        return cls(
            src_w, src_h, dst_w, dst_h, scaled_w, scaled_h,
            (dst_w - scaled_w) // 2, (dst_h - scaled_h) // 2,
        )

    @property
    def scale_x(self) -> float:
        """Model-input pixels per source pixel, horizontally."""
        return self.scaled_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.scaled_h / self.src_h

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """``[K, 4]`` x1y1x2y2 boxes in model-input pixels -> source pixels, clipped to the frame."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty(b.shape, dtype=np.float32)
        out[:, 0::2] = np.clip((b[:, 0::2] - self.pad_x) / self.scale_x, 0.0, self.src_w)
        out[:, 1::2] = np.clip((b[:, 1::2] - self.pad_y) / self.scale_y, 0.0, self.src_h)
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """``[K, 4]`` x1y1x2y2 boxes in source pixels -> model-input pixels (not clipped)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty(b.shape, dtype=np.float32)
        out[:, 0::2] = b[:, 0::2] * self.scale_x + self.pad_x
        out[:, 1::2] = b[:, 1::2] * self.scale_y + self.pad_y
        return out

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Letterbox an ``[src_h, src_w, C]`` image in numpy: ``[dst_h, dst_w, C]`` float32.

        Area-averaged scaling with black borders: the same placement as
        ``videoscale``, not bit-identical pixels (GStreamer filters differently).
        For tests and benchmarks, not the video path.
        """
        if image.shape[:2] != (self.src_h, self.src_w):
            raise ValueError(
                f"image is {image.shape[1]}x{image.shape[0]}, letterbox expects {self.src_w}x{self.src_h}"
            )
        pixels = image.reshape(self.src_h, self.src_w, -1)
        scaled = _area_resize(_area_resize(pixels, 0, self.scaled_h), 1, self.scaled_w)
        out = np.zeros((self.dst_h, self.dst_w, pixels.shape[2]), dtype=np.float32)
        out[self.pad_y:self.pad_y + self.scaled_h, self.pad_x:self.pad_x + self.scaled_w] = scaled
        return out.reshape((self.dst_h, self.dst_w) + image.shape[2:])


def _area_resize(pixels: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Resize one axis to ``size`` by area averaging (each output pixel averages the
    source span it covers), from the running sum: no loops, no matrices."""
    count = pixels.shape[axis]
    data = np.moveaxis(pixels, axis, 0).astype(np.float64)
    running = np.concatenate([np.zeros((1,) + data.shape[1:]), np.cumsum(data, axis=0)])
    edges = np.arange(size + 1, dtype=np.float64) * (count / size)
    index = np.minimum(np.floor(edges).astype(np.intp), count - 1)
    frac = (edges - index).reshape((-1,) + (1,) * (data.ndim - 1))
    at_edges = running[index] + frac * data[index]  # running sum at fractional positions
    out = (at_edges[1:] - at_edges[:-1]) * (size / count)
    return np.moveaxis(out.astype(np.float32), 0, axis)
