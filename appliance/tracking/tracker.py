"""A ByteTrack-style tracker: Kalman motion, IoU association with scipy's assignment
solver, high-confidence detections first, then low-confidence ones to keep tracks
alive through partial occlusion.

Labels that may change on one object (a rodent that rears) are grouped so that
the track survives the change; the track's label is its latest detection's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from appliance.tracking import kalman
from appliance.types import Detection, Track


@dataclass(frozen=True)
class TrackerSettings:
    high_confidence: float = 0.5  # detections that may start and first-match tracks
    low_confidence: float = 0.1  # second-chance detections
    new_track_confidence: float = 0.6
    match_iou: float = 0.2  # first association: IoU at least this
    low_match_iou: float = 0.5
    max_lost_frames: int = 30  # a lost track is kept this many analyzed frames
    label_groups: tuple[tuple[str, ...], ...] = ()


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _match(iou: np.ndarray, threshold: float) -> tuple[list[tuple[int, int]], set[int], set[int]]:
    """Optimal pairs with IoU ≥ threshold; the unmatched rows and columns."""
    rows, cols = set(range(iou.shape[0])), set(range(iou.shape[1]))
    if iou.size == 0:
        return [], rows, cols
    r, c = linear_sum_assignment(-iou)
    pairs = [(i, j) for i, j in zip(r, c) if iou[i, j] >= threshold]
    for i, j in pairs:
        rows.discard(i)
        cols.discard(j)
    return pairs, rows, cols


class Tracker:
    """Tracks the detections of one stream, frame after frame."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._group = {label: index for index, group in enumerate(self.settings.label_groups) for label in group}
        self._next_id = 1
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 8, 8))
        self._ids: list[int] = []
        self._labels: list[str] = []
        self._confidences: list[float] = []
        self._ages: list[int] = []
        self._lost: list[int] = []  # frames since last matched

    def _group_of(self, label: str) -> object:
        return self._group.get(label, label)

    def _same_group(self, track_labels: Sequence[str], det_labels: Sequence[str]) -> np.ndarray:
        t = np.array([hash(self._group_of(label)) for label in track_labels])
        d = np.array([hash(self._group_of(label)) for label in det_labels])
        if len(t) == 0 or len(d) == 0:
            return np.zeros((len(t), len(d)), dtype=bool)
        return t[:, None] == d[None, :]

    def update(self, detections: Sequence[Detection]) -> list[Track]:
        """Advances one analyzed frame; returns the tracks matched in it."""
        s = self.settings
        if len(self._ids):
            self._mean, self._cov = kalman.predict(self._mean, self._cov)
        boxes = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
        scores = np.array([d.confidence for d in detections])
        labels = [d.label for d in detections]
        high = np.flatnonzero(scores >= s.high_confidence)
        low = np.flatnonzero((scores >= s.low_confidence) & (scores < s.high_confidence))

        predicted = kalman.states_to_boxes(self._mean) if len(self._ids) else np.zeros((0, 4))
        all_tracks = np.arange(len(self._ids))
        matches: dict[int, int] = {}  # track index -> detection index

        def associate(track_idx: np.ndarray, det_idx: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
            iou = iou_matrix(predicted[track_idx], boxes[det_idx])
            same = self._same_group([self._labels[t] for t in track_idx], [labels[d] for d in det_idx])
            iou = np.where(same, iou, 0.0)
            pairs, free_tracks, free_dets = _match(iou, threshold)
            for i, j in pairs:
                matches[int(track_idx[i])] = int(det_idx[j])
            return (track_idx[sorted(free_tracks)] if len(track_idx) else track_idx,
                    det_idx[sorted(free_dets)] if len(det_idx) else det_idx)

        remaining_tracks, remaining_high = associate(all_tracks, high, s.match_iou)
        active = np.array([t for t in remaining_tracks if self._lost[t] == 0], dtype=int)
        associate(active, low, s.low_match_iou)

        if matches:
            t_idx = np.array(list(matches.keys()))
            d_idx = np.array(list(matches.values()))
            mean, cov = kalman.update(self._mean[t_idx], self._cov[t_idx],
                                      kalman.boxes_to_measurements(boxes[d_idx]))
            self._mean[t_idx], self._cov[t_idx] = mean, cov
        for t in range(len(self._ids)):
            if t in matches:
                d = matches[t]
                self._labels[t] = labels[d]
                self._confidences[t] = float(scores[d])
                self._lost[t] = 0
            else:
                self._lost[t] += 1
            self._ages[t] += 1

        matched_ids = {self._ids[t] for t in matches}
        self._keep([t for t in range(len(self._ids)) if self._lost[t] <= s.max_lost_frames])

        new = [int(d) for d in remaining_high if scores[d] >= s.new_track_confidence]
        if new:
            mean, cov = kalman.initiate(kalman.boxes_to_measurements(boxes[new]))
            self._mean = np.concatenate([self._mean, mean])
            self._cov = np.concatenate([self._cov, cov])
            for d in new:
                self._ids.append(self._next_id)
                matched_ids.add(self._next_id)
                self._next_id += 1
                self._labels.append(labels[d])
                self._confidences.append(float(scores[d]))
                self._ages.append(0)
                self._lost.append(0)

        out = []
        for t, track_id in enumerate(self._ids):
            if track_id in matched_ids:
                box = kalman.states_to_boxes(self._mean[t:t + 1])[0]
                out.append(Track(track_id, self._labels[t], self._confidences[t],
                                 tuple(float(v) for v in box), self._ages[t]))
        return out

    def _keep(self, keep: list[int]) -> None:
        self._mean = self._mean[keep]
        self._cov = self._cov[keep]
        for name in ("_ids", "_labels", "_confidences", "_ages", "_lost"):
            values = getattr(self, name)
            setattr(self, name, [values[t] for t in keep])
