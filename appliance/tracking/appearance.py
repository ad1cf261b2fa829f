"""What a tracked object looks like: colour histograms of horizontal bands of its box.

Where people cross or stand close together, their boxes overlap and move alike, and
motion alone passes a track id from one person to the other. Their clothes tell
them apart: each box is cut into bands (head, torso, legs), each band's colours are
counted in a coarse RGB histogram (4 levels per channel, 64 bins), from the middle of
the box's width only (less background, fewer arms of neighbours), on a fixed grid of
pixels per box (a large box costs no more than a small one). A description is
the square roots of the normalised counts of every band, scaled so that the
Euclidean distance of two descriptions is the root mean square of their bands'
Hellinger distances: 0 for the same colours, 1 for colours that share nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEVELS = 4  # per channel
BINS = LEVELS**3
BANDS = ((0.0, 0.35), (0.35, 0.7), (0.7, 1.0))  # fractions of the box's height, from its top
COLUMNS = (0.2, 0.8)  # the part of the box's width that is counted
GRID = (48, 16)  # pixels sampled per box, rows x columns, whatever its size: ample for 64 bins a band
SIZE = len(BANDS) * BINS

_SHIFT = 8 - (LEVELS - 1).bit_length()
_ROWS = (np.arange(GRID[0]) + 0.5) / GRID[0]  # the sampled rows, as fractions of the box's height
_COLUMNS = COLUMNS[0] + (COLUMNS[1] - COLUMNS[0]) * (np.arange(GRID[1]) + 0.5) / GRID[1]
_BAND_OF_ROW = np.searchsorted([a for a, _ in BANDS[1:]], _ROWS, side="right")
_SCALE = 1.0 / np.sqrt(2.0 * len(BANDS))


def describe(rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[N, SIZE] the descriptions of the ``[N, 4]`` boxes (x1, y1, x2, y2 in pixels) of the
    ``[H, W, 3]`` uint8 RGB frame, all at once. A box with a band outside the frame gets a NaN row
    (unknown)."""
    height, width = rgb.shape[:2]
    return describe_sampled(lambda ys, xs: rgb[ys, xs], (width, height), boxes)


def describe_sampled(sample: Callable[[np.ndarray, np.ndarray], np.ndarray], size: tuple[int, int],
                     boxes: np.ndarray) -> np.ndarray:
    """Like :func:`describe`, for a frame of ``size`` (width, height) that gives the RGB values of the
    pixels at the rows and columns of two index arrays that broadcast (``sample``): only the grid's
    pixels are read."""
    width, height = size
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    count = len(b)
    ys = np.floor(b[:, 1:2] + (b[:, 3:4] - b[:, 1:2]) * _ROWS).astype(np.intp)  # [N, rows]
    xs = np.floor(b[:, 0:1] + (b[:, 2:3] - b[:, 0:1]) * _COLUMNS).astype(np.intp)  # [N, columns]
    valid = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
    pixels = sample(np.clip(ys, 0, height - 1)[:, :, None], np.clip(xs, 0, width - 1)[:, None, :]) >> _SHIFT
    codes = (pixels[..., 0].astype(np.intp) * LEVELS + pixels[..., 1]) * LEVELS + pixels[..., 2]
    slots = (np.arange(count)[:, None, None] * len(BANDS) + _BAND_OF_ROW[None, :, None]) * BINS + codes
    counts = np.bincount(slots[valid], minlength=count * SIZE).reshape(count, len(BANDS), BINS)
    totals = counts.sum(axis=2, keepdims=True)
    out = np.sqrt(counts / np.maximum(totals, 1)) * _SCALE
    out[(totals == 0).any(axis=(1, 2))] = np.nan
    return out.reshape(count, SIZE)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] how different descriptions ``a`` [A, SIZE] and ``b`` [B, SIZE] are, 0..1 (NaN: unknown)."""
    sq = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))
