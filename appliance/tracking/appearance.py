"""What a tracked object looks like: colour histograms of horizontal bands of its box.

Where people cross or stand close together, their boxes overlap and move alike, and
motion alone passes a track id from one person to the other. Their clothes tell
them apart: each box is cut into bands (head, torso, legs), each band's colours are
counted in a coarse RGB histogram (4 levels per channel, 64 bins; each channel's
value shared between its two nearest levels, so that a shift of a few levels, from
the light or the codec, moves counts a little rather than from one bin to another),
from the middle of the box's width only (less background, fewer arms of neighbours),
on a fixed grid of pixels per band (a large box costs no more than a small one). A
description is the square roots of the normalised counts of every band, scaled so
that the Euclidean distance of two descriptions is the root mean square of their
bands' Hellinger distances: 0 for the same colours, 1 for colours that share nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEVELS = 4  # per channel
BINS = LEVELS**3
BANDS = ((0.0, 0.35), (0.35, 0.7), (0.7, 1.0))  # fractions of the box's height, from its top
COLUMNS = (0.2, 0.8)  # the part of the box's width that is counted
ROWS_PER_BAND, COLUMNS_SAMPLED = 10, 12  # pixels sampled per band of a box, whatever its size: ample for 64 bins
SIZE = len(BANDS) * BINS

# the sampled rows, as fractions of the box's height: evenly spread over each band in turn
_ROWS = np.concatenate([top + (bottom - top) * (np.arange(ROWS_PER_BAND) + 0.5) / ROWS_PER_BAND
                        for top, bottom in BANDS])
_COLUMNS = COLUMNS[0] + (COLUMNS[1] - COLUMNS[0]) * (np.arange(COLUMNS_SAMPLED) + 0.5) / COLUMNS_SAMPLED
_SCALE = 1.0 / np.sqrt(2.0 * len(BANDS))
# [256, levels] how a channel's value is shared between the levels (two at most, by nearness), and
# [256 x 256, levels x levels] the same for a pair of channels' values
_CENTRES = np.clip((np.arange(256) + 0.5) * (LEVELS / 256.0) - 0.5, 0.0, LEVELS - 1.0)
_SHARES = np.maximum(1.0 - np.abs(_CENTRES[:, None] - np.arange(LEVELS)[None, :]), 0.0).astype(np.float32)
_PAIR_SHARES = (_SHARES[:, None, :, None] * _SHARES[None, :, None, :]).reshape(256 * 256, LEVELS * LEVELS)


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
    ys = np.floor(b[:, 1:2] + (b[:, 3:4] - b[:, 1:2]) * _ROWS).astype(np.intp)[:, :, None]  # [N, rows, 1]
    xs = np.floor(b[:, 0:1] + (b[:, 2:3] - b[:, 0:1]) * _COLUMNS).astype(np.intp)[:, None, :]  # [N, 1, columns]
    inside = ys.min() >= 0 and ys.max() < height and xs.min() >= 0 and xs.max() < width
    pixels = sample(ys, xs) if inside else sample(ys.clip(0, height - 1), xs.clip(0, width - 1))
    pixels = pixels.reshape(count, len(BANDS), ROWS_PER_BAND * COLUMNS_SAMPLED, 3)
    red = np.take(_SHARES, pixels[..., 0], axis=0)  # [N, bands, pixels, red level]
    if not inside:
        valid = ((ys >= 0) & (ys < height)) & ((xs >= 0) & (xs < width))
        red *= valid.reshape(count, len(BANDS), -1, 1)
    pairs = (pixels[..., 1].astype(np.intp) << 8) | pixels[..., 2]
    green_blue = np.take(_PAIR_SHARES, pairs, axis=0)  # [N, bands, pixels, g x b]
    counts = (np.swapaxes(red, 2, 3) @ green_blue).reshape(count, len(BANDS), BINS)
    totals = counts.sum(axis=2, keepdims=True)
    out = np.sqrt(counts / np.maximum(totals, 1)) * _SCALE
    out[(totals == 0).any(axis=(1, 2))] = np.nan
    return out.reshape(count, SIZE)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] how different descriptions ``a`` [A, SIZE] and ``b`` [B, SIZE] are, 0..1 (NaN: unknown)."""
    sq = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))
