"""Constant-velocity Kalman filter over boxes as (cx, cy, aspect, height), vectorised over tracks.

The noise model is ByteTrack's (and DeepSORT's): standard deviations proportional
to the box height, per frame of a 30 fps stream. Where frames are further apart (a few
analyzed frames per second), a velocity changes more from one to the next: ``steps``,
the frame interval in 30-fps frames, scales the velocity's process noise, so that a
person who stops is not predicted to walk on for seconds.

With a constant-velocity motion, a measurement of the positions only, and noises
that are diagonal, each of the four coordinates is filtered on its own: the 8x8
covariance of a track is four independent 2x2 blocks (position, velocity). They
are kept as ``[3, 4, T]`` — the position variance, the position-velocity covariance
and the velocity variance of each coordinate — and every step is element-wise,
the same numbers as the 8x8 matrix algebra at a fraction of its cost.

Every array is in columns, one per track (states ``[8, T]``, boxes ``[4, T]``): the
planes a step works on are contiguous rows, which numpy runs through in one loop.
"""

from __future__ import annotations

import numpy as np

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160

PP, PV, VV = 0, 1, 2  # covariance planes: var(position), cov(position, velocity), var(velocity)


def boxes_to_measurements(boxes: np.ndarray) -> np.ndarray:
    """[4, K] columns x1, y1, x2, y2 → [4, K] cx, cy, aspect (w/h), h."""
    out = np.empty(boxes.shape)
    size = boxes[2:] - boxes[:2]  # w, h
    out[:2] = boxes[:2] + size / 2
    out[3] = np.maximum(size[1], 1e-6)
    out[2] = size[0] / out[3]
    return out


def states_to_boxes(states: np.ndarray) -> np.ndarray:
    """[8, T] states → [4, T] columns x1, y1, x2, y2."""
    half = np.empty((2, states.shape[1]))
    half[1] = np.maximum(states[3], 1e-6) / 2
    half[0] = states[2] * half[1]
    out = np.empty((4, states.shape[1]))
    out[:2] = states[:2] - half
    out[2:] = states[:2] + half
    return out


_BY_HEIGHT = np.array([1.0, 1.0, 0.0, 1.0])[:, None]  # cx, cy and h scale with the height; the aspect does not
_ASPECT = np.array([0.0, 0.0, 1.0, 0.0])[:, None]


def _variance(h: np.ndarray, factor: float, aspect: float) -> np.ndarray:
    """[4, T] variances: of ``factor * h`` for cx, cy, h; of ``aspect`` for the aspect ratio."""
    return (h * h) * (factor * factor * _BY_HEIGHT) + aspect * aspect * _ASPECT


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks at ``[4, T]`` measurements: ``[8, T]`` states (still) and ``[3, 4, T]`` covariances."""
    count = measurements.shape[1]
    mean = np.zeros((8, count))
    mean[:4] = measurements
    h = measurements[3]
    covariance = np.zeros((3, 4, count))
    covariance[PP] = _variance(h, 2 * STD_POSITION, 1e-2)
    covariance[VV] = _variance(h, 10 * STD_VELOCITY, 1e-5)
    return mean, covariance


def predict(mean: np.ndarray, covariance: np.ndarray, steps: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One frame on (``steps`` 30-fps frames later): positions move by their velocities; uncertainty grows."""
    h = mean[3]
    pp, pv, vv = covariance
    predicted = np.empty(covariance.shape)
    # var(p + v), cov(p + v, v), var(v); plus the process noise
    predicted[PV] = pv + vv
    predicted[PP] = pp + pv + predicted[PV] + _variance(h, STD_POSITION, 1e-2)
    predicted[VV] = vv + _variance(h, steps * STD_VELOCITY, 1e-5)
    moved = mean.copy()
    moved[:4] += mean[4:]
    return moved, predicted


_GAIN_OF, _SCALED = [0, 0, 1], [PP, PV, PV]  # each plane's correction: gain x plane


def update(mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corrects ``[8, T]`` states with ``[4, T]`` measured positions."""
    innovation_var = covariance[PP] + _variance(mean[3], STD_POSITION, 1e-1)
    gains = covariance[:2] / innovation_var  # [2, 4, T]: of the position, of the velocity
    corrected = mean + (gains * (measurements - mean[:4])).reshape(8, -1)
    # var(p) (1 - gain_p), cov(p, v) (1 - gain_p), var(v) - gain_v cov(p, v)
    updated = covariance - gains[_GAIN_OF] * covariance[_SCALED]
    return corrected, updated
