"""Zones (polygons) and lines (segments) of a camera view, in source pixels.

Config coordinates may be normalised (0..1 of the frame) or pixels; ``for_frame``
turns them into pixels once the frame size is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Anchor = Literal["center", "bottom"]


def anchor_points(boxes: np.ndarray, anchor: Anchor) -> np.ndarray:
    """[K, 4] boxes → [K, 2] points: the centre, or the bottom centre (feet of a person)."""
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = (boxes[:, 1] + boxes[:, 3]) / 2 if anchor == "center" else boxes[:, 3]
    return np.stack([x, y], axis=1)


def _scaled(points: Sequence[tuple[float, float]], normalized: bool, width: int, height: int) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return array * np.array([width, height]) if normalized else array


@dataclass(frozen=True)
class Zone:
    id: str
    polygon: np.ndarray  # [V, 2] pixels

    @classmethod
    def for_frame(cls, zone_id: str, points: Sequence[tuple[float, float]], normalized: bool,
                  width: int, height: int) -> Zone:
        return cls(zone_id, _scaled(points, normalized, width, height))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Even-odd rule, vectorised over points and edges: [K, 2] → [K] bool."""
        if len(points) == 0:
            return np.zeros(0, dtype=bool)
        x, y = points[:, 0:1], points[:, 1:2]
        x1, y1 = self.polygon[:, 0], self.polygon[:, 1]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        straddles = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        return np.count_nonzero(straddles & (x < cross_x), axis=1) % 2 == 1


class ZoneTable:
    """All zones' edges in one table: which zones each point lies in, in one pass (the even-odd rule of
    ``Zone.contains``, for every zone at once)."""

    def __init__(self, zones: Mapping[str, Zone]) -> None:
        self.zones = zones
        self.ids = list(zones)
        starts = [zone.polygon for zone in zones.values()]
        edges = np.concatenate([np.concatenate([a, np.roll(a, -1, axis=0)], axis=1) for a in starts]
                               ) if starts else np.zeros((0, 4))
        self._x1, self._y1, self._x2, self._y2 = (edges[:, k][None, :] for k in range(4))
        rise = self._y2 - self._y1
        flat = rise == 0  # never straddles a point's height
        self._slope = np.where(flat, 0.0, (self._x2 - self._x1) / np.where(flat, 1.0, rise))
        owner = np.repeat(np.arange(len(starts)), [len(a) for a in starts])
        self._onehot = np.zeros((len(edges), len(starts)))
        self._onehot[np.arange(len(edges)), owner] = 1.0

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[K, 2] points → [K, zones] bool."""
        x, y = points[:, 0:1], points[:, 1:2]
        straddles = (self._y1 > y) != (self._y2 > y)
        crossed = straddles & (x < self._x1 + (y - self._y1) * self._slope)
        return (crossed @ self._onehot).astype(np.int64) % 2 == 1


@dataclass(frozen=True)
class Line:
    """A counting line from ``a`` to ``b``. Crossing from its right side to its left
    (seen looking from a to b) is direction +1, the other way −1."""

    id: str
    a: np.ndarray
    b: np.ndarray

    @classmethod
    def for_frame(cls, line_id: str, points: Sequence[tuple[float, float]], normalized: bool,
                  width: int, height: int) -> Line:
        pts = _scaled(points, normalized, width, height)
        return cls(line_id, pts[0], pts[1])

    def side(self, points: np.ndarray) -> np.ndarray:
        d = self.b - self.a
        return np.sign(d[0] * (points[:, 1] - self.a[1]) - d[1] * (points[:, 0] - self.a[0]))

    def crossings(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """[K] direction (+1, −1) of each movement before→after that crosses the segment, else 0."""
        if len(before) == 0:
            return np.zeros(0, dtype=int)
        s0, s1 = self.side(before), self.side(after)
        # The movement's own line must separate a and b too, or it passed beside the segment.
        move = after - before
        ta = np.sign(move[:, 0] * (self.a[1] - before[:, 1]) - move[:, 1] * (self.a[0] - before[:, 0]))
        tb = np.sign(move[:, 0] * (self.b[1] - before[:, 1]) - move[:, 1] * (self.b[0] - before[:, 0]))
        crossed = (s0 != 0) & (s0 != s1) & (s1 != 0) & (ta != tb)
        # image y grows downwards: the right of a→b is where side() is positive
        return np.where(crossed, np.where(s0 > 0, 1, -1), 0).astype(int)
