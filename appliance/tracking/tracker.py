"""A ByteTrack-style tracker: Kalman motion, association with scipy's assignment
solver, high-confidence detections first, then low-confidence ones to keep tracks
alive through partial occlusion.

Association scores a track against a detection by IoU with the track's predicted
box, or, when they do not overlap, by how close their centres are (within
``match_distance`` box diagonals): at a few analyzed frames per second a part on
a fast conveyor moves its own width between frames, before the Kalman filter
knows its velocity.

Labels that may change on one object (a rodent that rears) are grouped so that
the track survives the change; the track's label is its latest detection's.

Where the caller says what detections look like (``looks``: see
``appliance.tracking.appearance``), each track keeps a running average of its
detections' looks, and a match loses ``appearance_weight`` times how different the two
look (never below a bare match): where two people's boxes fit one track about as well,
the one dressed like it wins. A detection that is the only fit still matches, so
light, pose and a neighbour's arm in the box cannot break a track.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from appliance.tracking import appearance, kalman
from appliance.types import Detection, Track

_BARE_MATCH = 1e-3  # the least score of a pair that fits by position, however different they look


@dataclass(frozen=True)
class TrackerSettings:
    high_confidence: float = 0.5  # detections that may start and first-match tracks
    low_confidence: float = 0.1  # second-chance detections
    new_track_confidence: float = 0.6
    match_iou: float = 0.2  # first association: IoU at least this …
    match_distance: float = 1.0  # … or centres this many box diagonals apart at most
    low_match_iou: float = 0.5
    max_lost_frames: int = 30  # a lost track is kept this many analyzed frames
    frame_steps: float = 1.0  # the interval between analyzed frames, in frames of a 30 fps stream
    label_groups: tuple[tuple[str, ...], ...] = ()
    appearance_labels: tuple[str, ...] = ()  # the labels whose looks the caller describes
    appearance_weight: float = 2.0  # score lost per unit of looks' distance (0..1), where looks are given
    appearance_rate: float = 0.3  # how far a track's looks move towards each matched detection's


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_scores(a: np.ndarray, b: np.ndarray, iou_needed: float, reach: float) -> np.ndarray:
    """[A, B] how well boxes ``a`` (tracks) and ``b`` (detections), ``[4, A]`` and ``[4, B]`` columns
    x1, y1, x2, y2, match: ``1 + IoU`` where they overlap by ``iou_needed`` at least; else the
    closeness of their centres, 1 at the same centre falling to 0 at ``reach`` times the mean box
    diagonal (0 when ``reach`` is 0)."""
    if a.shape[1] == 0 or b.shape[1] == 0:
        return np.zeros((a.shape[1], b.shape[1]))
    # x and y at once: planes [axis, track, detection] (few numpy calls: on a few dozen boxes, each
    # call's fixed cost outweighs its arithmetic)
    size_a, size_b = a[2:] - a[:2], b[2:] - b[:2]  # w, h
    overlap = np.minimum(a[2:, :, None], b[2:, None, :]) - np.maximum(a[:2, :, None], b[:2, None, :])
    np.maximum(overlap, 0.0, out=overlap)
    inter = overlap[0] * overlap[1]
    union = np.add.outer(size_a[0] * size_a[1], size_b[0] * size_b[1]) - inter
    iou = inter / np.maximum(union, 1e-9)
    if reach <= 0:
        near = 0.0
    else:  # centre distance over reach x mean diagonal (doubled centres over summed diagonals)
        d = (a[:2] + a[2:])[:, :, None] - (b[:2] + b[2:])[:, None, :]
        scale = np.add.outer(reach * np.hypot(size_a[0], size_a[1]), reach * np.hypot(size_b[0], size_b[1]))
        near = np.maximum(1 - np.sqrt(d[0] * d[0] + d[1] * d[1]) / np.maximum(scale, 1e-9), 0.0)
    return np.where(iou >= iou_needed, 1 + iou, near)


class Tracker:
    """Tracks the detections of one stream, frame after frame."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._group_codes: dict[str, int] = {}
        for group in self.settings.label_groups:
            code = len(self._group_codes)
            for label in group:
                self._group_codes[label] = code
        self._mixed = len(set(self._group_codes.values())) > 1  # labels of several groups may be seen
        self._next_id = 1
        self._mean = np.zeros((8, 0))  # a column per track
        self._cov = np.zeros((3, 4, 0))  # per coordinate: var(pos), cov(pos, vel), var(vel)
        self._ids = np.zeros(0, dtype=np.int64)
        self._groups = np.zeros(0, dtype=np.int64)
        self._labels: list[str] = []
        self._confidences = np.zeros(0)
        self._ages = np.zeros(0, dtype=np.int64)
        self._lost = np.zeros(0, dtype=np.int64)  # frames since last matched
        self._looks: np.ndarray | None = None  # [T, F] each track's looks (NaN rows: unknown), once given

    def _group(self, label: str) -> int:
        code = self._group_codes.get(label)
        if code is None:
            code = self._group_codes[label] = len(self._group_codes) + 1_000_000
            self._mixed = len(set(self._group_codes.values())) > 1
        return code

    def update(self, detections: Sequence[Detection], looks: np.ndarray | None = None) -> list[Track]:
        """Advances one analyzed frame; returns the tracks matched in it. ``looks``: [detections, F]
        what each detection looks like (NaN rows: unknown), or None."""
        s = self.settings
        if looks is not None and self._looks is None:
            self._looks = np.full((len(self._ids), looks.shape[1]), np.nan)
        compare = looks is not None and s.appearance_weight > 0
        described = ~np.isnan(looks[:, 0]) if looks is not None else None  # the detections whose looks are known
        count = len(self._ids)
        if count:
            self._mean, self._cov = kalman.predict(self._mean, self._cov, self.settings.frame_steps)
        boxes = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4).T  # [4, detections]
        scores = np.array([d.confidence for d in detections], dtype=np.float64)
        labels = [d.label for d in detections]
        codes = self._group_codes
        groups = np.array([codes[label] if label in codes else self._group(label) for label in labels],
                          dtype=np.int64)
        predicted = kalman.states_to_boxes(self._mean)
        matched_det = np.full(count, -1, dtype=np.int64)

        def associate(track_idx: np.ndarray, det_idx: np.ndarray, iou_needed: float, reach: float) -> np.ndarray:
            """Matches what it can; returns the detections left over."""
            if len(track_idx) == 0 or len(det_idx) == 0:
                return det_idx
            # overlap first; a close centre alone ranks below any accepted overlap
            score = match_scores(predicted.take(track_idx, axis=1), boxes.take(det_idx, axis=1),
                                 iou_needed, reach)
            if self._mixed:
                score[self._groups[track_idx][:, None] != groups[det_idx][None, :]] = 0
            if compare:  # between the tracks and detections whose looks are known
                rows_known = (~np.isnan(self._looks[track_idx, 0])).nonzero()[0]  # type: ignore[index]
                cols_known = described[det_idx].nonzero()[0]  # type: ignore[index]
                if len(rows_known) and len(cols_known):
                    both = np.ix_(rows_known, cols_known)
                    apart = appearance.distances(self._looks[track_idx[rows_known]],  # type: ignore[index]
                                                 looks[det_idx[cols_known]])
                    known = score[both]
                    fit = known > 0
                    known[fit] = np.maximum(known[fit] - s.appearance_weight * apart[fit], _BARE_MATCH)
                    score[both] = known
            rows, cols = linear_sum_assignment(-score)
            ok = score[rows, cols] > 0
            matched_det[track_idx[rows[ok]]] = det_idx[cols[ok]]
            used = np.zeros(len(det_idx), dtype=bool)
            used[cols[ok]] = True
            return det_idx[~used]

        all_tracks = np.arange(count)
        high = (scores >= s.high_confidence).nonzero()[0]
        low = ((scores >= s.low_confidence) & (scores < s.high_confidence)).nonzero()[0]
        remaining_high = associate(all_tracks, high, s.match_iou, s.match_distance)
        unmatched_recent = ((matched_det < 0) & (self._lost == 0)).nonzero()[0]
        associate(unmatched_recent, low, s.low_match_iou, 0.0)

        hit = matched_det >= 0
        if hit.any():
            t_idx, d_idx = hit.nonzero()[0], matched_det[hit]
            measured = kalman.boxes_to_measurements(boxes.take(d_idx, axis=1))
            if len(t_idx) == count:  # every track seen (the usual case): no selecting
                self._mean, self._cov = kalman.update(self._mean, self._cov, measured)
            else:
                self._mean[:, t_idx], self._cov[:, :, t_idx] = kalman.update(
                    self._mean.take(t_idx, axis=1), self._cov.take(t_idx, axis=2), measured)
            self._confidences[t_idx] = scores[d_idx]
            self._groups[t_idx] = groups[d_idx]
            if looks is not None:
                told = described[d_idx]  # type: ignore[index]
                self._remember_looks(t_idx[told], looks[d_idx[told]])
            for t, d in zip(t_idx.tolist(), d_idx.tolist()):
                self._labels[t] = labels[d]
        self._lost = np.where(hit, 0, self._lost + 1)
        self._ages += 1

        keep = self._lost <= s.max_lost_frames
        if not keep.all():
            self._select(keep)
            hit = hit[keep]

        new = remaining_high[scores[remaining_high] >= s.new_track_confidence]
        if len(new):
            mean, cov = kalman.initiate(kalman.boxes_to_measurements(boxes[:, new]))
            self._mean = np.concatenate([self._mean, mean], axis=1)
            self._cov = np.concatenate([self._cov, cov], axis=2)
            self._ids = np.concatenate([self._ids, np.arange(self._next_id, self._next_id + len(new))])
            self._next_id += len(new)
            self._groups = np.concatenate([self._groups, groups[new]])
            self._labels.extend(labels[d] for d in new.tolist())
            self._confidences = np.concatenate([self._confidences, scores[new]])
            self._ages = np.concatenate([self._ages, np.zeros(len(new), dtype=np.int64)])
            self._lost = np.concatenate([self._lost, np.zeros(len(new), dtype=np.int64)])
            if self._looks is not None:
                born = looks[new] if looks is not None else np.full((len(new), self._looks.shape[1]), np.nan)
                self._looks = np.concatenate([self._looks, born])
            hit = np.concatenate([hit, np.ones(len(new), dtype=bool)])

        shown = hit.nonzero()[0]
        out_boxes = kalman.states_to_boxes(self._mean.take(shown, axis=1)).T.tolist()
        ids, ages = self._ids[shown].tolist(), self._ages[shown].tolist()
        confidences = self._confidences[shown].tolist()
        # the detection each shown track matched (matched tracks are never dropped), or was born of
        found = boxes[:, np.concatenate([matched_det[matched_det >= 0], new])].T.tolist()
        labels = [self._labels[t] for t in shown.tolist()]
        return list(map(Track, ids, labels, confidences, map(tuple, out_boxes), ages, map(tuple, found)))

    def _remember_looks(self, tracks: np.ndarray, seen: np.ndarray) -> None:
        """Moves the tracks' looks towards what their detections looked like (``seen``: known; a track's
        unknown looks are taken as they are)."""
        old = self._looks[tracks]  # type: ignore[index]
        moved = old + self.settings.appearance_rate * (seen - old)
        self._looks[tracks] = np.where(np.isnan(old[:, :1]), seen, moved)  # type: ignore[index]

    def _select(self, keep: np.ndarray) -> None:
        self._mean, self._cov = self._mean[:, keep], self._cov[:, :, keep]
        self._ids, self._groups = self._ids[keep], self._groups[keep]
        self._confidences, self._ages, self._lost = self._confidences[keep], self._ages[keep], self._lost[keep]
        if self._looks is not None:
            self._looks = self._looks[keep]
        self._labels = [label for label, k in zip(self._labels, keep.tolist()) if k]
