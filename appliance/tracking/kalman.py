"""Constant-velocity Kalman filter over boxes as (cx, cy, aspect, height), vectorised over tracks.

The noise model is ByteTrack's (and DeepSORT's): standard deviations proportional
to the box height.
"""

from __future__ import annotations

import numpy as np

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def boxes_to_measurements(boxes: np.ndarray) -> np.ndarray:
    """[K, 4] x1y1x2y2 → [K, 4] cx, cy, aspect (w/h), h."""
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def states_to_boxes(states: np.ndarray) -> np.ndarray:
    """[T, 8] states → [T, 4] x1y1x2y2."""
    cx, cy, a, h = states[:, 0], states[:, 1], states[:, 2], np.maximum(states[:, 3], 1e-6)
    w = a * h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = len(measurements)
    mean = np.zeros((count, 8))
    mean[:, :4] = measurements
    h = measurements[:, 3]
    std = np.stack([
        2 * STD_POSITION * h, 2 * STD_POSITION * h, np.full(count, 1e-2), 2 * STD_POSITION * h,
        10 * STD_VELOCITY * h, 10 * STD_VELOCITY * h, np.full(count, 1e-5), 10 * STD_VELOCITY * h,
    ], axis=1)
    covariance = np.zeros((count, 8, 8))
    idx = np.arange(8)
    covariance[:, idx, idx] = std ** 2
    return mean, covariance


def predict(mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = mean[:, 3]
    count = len(mean)
    std = np.stack([
        STD_POSITION * h, STD_POSITION * h, np.full(count, 1e-2), STD_POSITION * h,
        STD_VELOCITY * h, STD_VELOCITY * h, np.full(count, 1e-5), STD_VELOCITY * h,
    ], axis=1)
    motion = np.zeros((count, 8, 8))
    idx = np.arange(8)
    motion[:, idx, idx] = std ** 2
    mean = mean @ _F.T
    covariance = _F @ covariance @ _F.T + motion
    return mean, covariance


def update(mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = mean[:, 3]
    count = len(mean)
    std = np.stack([STD_POSITION * h, STD_POSITION * h, np.full(count, 1e-1), STD_POSITION * h], axis=1)
    innovation_cov = _H @ covariance @ _H.T
    idx = np.arange(4)
    innovation_cov[:, idx, idx] += std ** 2
    gain = np.linalg.solve(innovation_cov, (covariance @ _H.T).transpose(0, 2, 1)).transpose(0, 2, 1)
    innovation = measurements - mean[:, :4]
    mean = mean + np.einsum("tij,tj->ti", gain, innovation)
    covariance = covariance - gain @ innovation_cov @ gain.transpose(0, 2, 1)
    return mean, covariance
