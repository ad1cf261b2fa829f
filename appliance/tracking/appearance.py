"""What a tracked object looks like: colour histograms of horizontal bands of its box.

Where people cross or stand close together, their boxes overlap and move alike, and
motion alone passes a track id from one person to the other. Their clothes tell
them apart: each box is cut into bands (head, torso, legs), each band's colours are
counted in a coarse RGB histogram (4 levels per channel, 64 bins), from the middle of
the box's width only (less background, fewer arms of neighbours). A description is
the square roots of the normalised counts of every band, scaled so that the
Euclidean distance of two descriptions is the root mean square of their bands'
Hellinger distances: 0 for the same colours, 1 for colours that share nothing.
"""

from __future__ import annotations

import numpy as np

LEVELS = 4  # per channel
BINS = LEVELS**3
BANDS = ((0.0, 0.35), (0.35, 0.7), (0.7, 1.0))  # fractions of the box's height, from its top
COLUMNS = (0.2, 0.8)  # the part of the box's width that is counted
STEP = 2  # every second pixel of every second row: ample for a histogram of 64 bins
SIZE = len(BANDS) * BINS


def describe(rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[N, SIZE] the descriptions of the ``[N, 4]`` boxes (x1, y1, x2, y2 in pixels) of the
    ``[H, W, 3]`` uint8 RGB frame. A box with a band outside the frame gets a NaN row (unknown)."""
    height, width = rgb.shape[:2]
    out = np.full((len(boxes), SIZE), np.nan)
    scale = 1.0 / np.sqrt(2.0 * len(BANDS))
    shift = 8 - int(np.log2(LEVELS))
    for row, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        w, h = x2 - x1, y2 - y1
        left, right = max(int(x1 + COLUMNS[0] * w), 0), min(int(np.ceil(x1 + COLUMNS[1] * w)), width)
        top, bottom = max(int(y1), 0), min(int(np.ceil(y2)), height)
        if right <= left or bottom <= top:
            continue
        pixels = rgb[top:bottom:STEP, left:right:STEP] >> shift
        codes = (pixels[..., 0].astype(np.int64) * LEVELS + pixels[..., 1]) * LEVELS + pixels[..., 2]
        rows = top + STEP * np.arange(len(codes))
        bands = []
        for a, b in BANDS:
            counts = np.bincount(codes[(rows >= y1 + a * h) & (rows < y1 + b * h)].ravel(), minlength=BINS)
            total = counts.sum()
            if total == 0:
                break
            bands.append(np.sqrt(counts / total))
        else:
            out[row] = np.concatenate(bands) * scale
    return out


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] how different descriptions ``a`` [A, SIZE] and ``b`` [B, SIZE] are, 0..1 (NaN: unknown)."""
    sq = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))
