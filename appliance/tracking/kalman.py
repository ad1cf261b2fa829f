"""Constant-velocity Kalman filter over boxes as (cx, cy, aspect, height), vectorised over tracks.

The noise model is ByteTrack's (and DeepSORT's): standard deviations proportional
to the box height, per frame of a 30 fps stream. Where frames are further apart (a few
analyzed frames per second), a velocity changes more from one to the next: ``steps``,
the frame interval in 30-fps frames, scales the velocity's process noise, so that a
person who stops is not predicted to walk on for seconds.

With a constant-velocity motion, a measurement of the positions only, and noises
that are diagonal, each of the four coordinates is filtered on its own: the 8x8
covariance of a track is four independent 2x2 blocks (position, velocity). They
are kept as ``[T, 3, 4]`` — the position variance, the position-velocity covariance
and the velocity variance of each coordinate — and every step is element-wise,
the same numbers as the 8x8 matrix algebra at a fraction of its cost.
"""

from __future__ import annotations

import numpy as np

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160

PP, PV, VV = 0, 1, 2  # covariance planes: var(position), cov(position, velocity), var(velocity)


def boxes_to_measurements(boxes: np.ndarray) -> np.ndarray:
    """[K, 4] x1y1x2y2 → [K, 4] cx, cy, aspect (w/h), h."""
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def states_to_boxes(states: np.ndarray) -> np.ndarray:
    """[T, 8] states → [T, 4] x1y1x2y2."""
    cx, cy, a, h = states[:, 0], states[:, 1], states[:, 2], np.maximum(states[:, 3], 1e-6)
    half_w, half_h = a * h / 2, h / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


_BY_HEIGHT = np.array([1.0, 1.0, 0.0, 1.0])  # cx, cy and h scale with the height; the aspect does not
_ASPECT = np.array([0.0, 0.0, 1.0, 0.0])


def _variance(h: np.ndarray, factor: float, aspect: float) -> np.ndarray:
    """[T, 4] variances: of ``factor * h`` for cx, cy, h; of ``aspect`` for the aspect ratio."""
    return (h[:, None] * (factor * _BY_HEIGHT) + aspect * _ASPECT) ** 2


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks at ``[T, 4]`` measurements: ``[T, 8]`` states (still) and ``[T, 3, 4]`` covariances."""
    count = len(measurements)
    mean = np.zeros((count, 8))
    mean[:, :4] = measurements
    h = measurements[:, 3]
    covariance = np.zeros((count, 3, 4))
    covariance[:, PP] = _variance(h, 2 * STD_POSITION, 1e-2)
    covariance[:, VV] = _variance(h, 10 * STD_VELOCITY, 1e-5)
    return mean, covariance


def predict(mean: np.ndarray, covariance: np.ndarray, steps: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One frame on (``steps`` 30-fps frames later): positions move by their velocities; uncertainty grows."""
    h = mean[:, 3]
    pp, pv, vv = covariance[:, PP], covariance[:, PV], covariance[:, VV]
    predicted = np.empty_like(covariance)
    predicted[:, PP] = pp + 2 * pv + vv + _variance(h, STD_POSITION, 1e-2)
    predicted[:, PV] = pv + vv
    predicted[:, VV] = vv + _variance(h, steps * STD_VELOCITY, 1e-5)
    moved = mean.copy()
    moved[:, :4] += mean[:, 4:]
    return moved, predicted


def update(mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corrects ``[T, 8]`` states with ``[T, 4]`` measured positions."""
    pp, pv, vv = covariance[:, PP], covariance[:, PV], covariance[:, VV]
    innovation_var = pp + _variance(mean[:, 3], STD_POSITION, 1e-1)
    gain_p, gain_v = pp / innovation_var, pv / innovation_var
    innovation = measurements - mean[:, :4]
    corrected = mean.copy()
    corrected[:, :4] += gain_p * innovation
    corrected[:, 4:] += gain_v * innovation
    updated = np.empty_like(covariance)
    updated[:, PP] = pp * (1 - gain_p)
    updated[:, PV] = pv * (1 - gain_p)
    updated[:, VV] = vv - gain_v * pv
    return corrected, updated
