"""The portable tracker: ids kept through motion, short occlusion and label changes."""

from __future__ import annotations

import numpy as np

from appliance.tracking.tracker import Tracker, TrackerSettings, iou_matrix
from appliance.types import Detection


def det(x: float, y: float, label: str = "part", score: float = 0.9, size: float = 40) -> Detection:
    return Detection(label, score, (x, y, x + size, y + size))


def test_iou_matrix_matches_hand_computed_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 20, 20]], float)
    b = np.array([[5, 5, 15, 15], [100, 100, 110, 110]], float)
    iou = iou_matrix(a, b)
    assert iou[0, 0] == 25 / 175
    assert iou[1, 0] == 100 / 400
    assert iou[0, 1] == 0


def test_two_moving_objects_keep_their_ids():
    tracker = Tracker()
    ids_seen: dict[int, list[float]] = {}
    for frame in range(30):
        tracks = tracker.update([det(10 + 8 * frame, 50), det(400 - 8 * frame, 200)])
        assert len(tracks) == 2
        for t in tracks:
            ids_seen.setdefault(t.track_id, []).append(t.box[1])
    assert len(ids_seen) == 2
    assert sorted(round(ys[0]) for ys in ids_seen.values()) == [50, 200]
    assert all(np.ptp(ys) < 2 for ys in ids_seen.values())  # each id stays on its own row


def test_id_survives_a_short_occlusion_and_motion_is_predicted():
    tracker = Tracker()
    first = None
    for frame in range(10):
        (track,) = tracker.update([det(10 + 10 * frame, 50)])
        first = first or track.track_id
    for _ in range(5):  # hidden for five frames
        assert tracker.update([]) == []
    (track,) = tracker.update([det(10 + 10 * 15, 50)])  # reappears where it would be
    assert track.track_id == first


def test_lost_track_is_forgotten_after_its_limit():
    tracker = Tracker(TrackerSettings(max_lost_frames=3))
    (track,) = tracker.update([det(10, 10)])
    for _ in range(5):
        tracker.update([])
    (again,) = tracker.update([det(10, 10)])
    assert again.track_id != track.track_id


def test_low_confidence_detections_keep_a_track_alive_but_never_start_one():
    tracker = Tracker()
    (track,) = tracker.update([det(10, 10, score=0.9)])
    (kept,) = tracker.update([det(12, 10, score=0.3)])
    assert kept.track_id == track.track_id
    assert tracker.update([det(300, 300, score=0.3)]) == []


def test_label_groups_let_a_rearing_rodent_keep_its_track():
    grouped = Tracker(TrackerSettings(label_groups=(("rodent", "rearing"),)))
    (a,) = grouped.update([det(50, 50, "rodent")])
    (b,) = grouped.update([det(52, 50, "rearing")])
    assert a.track_id == b.track_id and b.label == "rearing"
    plain = Tracker()
    (c,) = plain.update([det(50, 50, "rodent")])
    (d,) = plain.update([det(52, 50, "rearing")])
    assert c.track_id != d.track_id


def test_a_part_moving_its_own_width_per_frame_keeps_its_id():
    # a conveyor at a few analyzed frames per second: no overlap between frames
    tracker = Tracker()
    ids = {tracker.update([det(10 + 45 * frame, 100)])[0].track_id for frame in range(10)}
    assert len(ids) == 1


def test_two_parts_side_by_side_on_a_fast_belt_do_not_swap():
    tracker = Tracker()
    history: dict[int, list[float]] = {}
    for frame in range(10):
        tracks = tracker.update([det(10 + 45 * frame, 100), det(10 + 45 * frame, 200)])
        for t in tracks:
            history.setdefault(t.track_id, []).append(t.box[1])
    assert len(history) == 2
    assert all(max(ys) - min(ys) < 5 for ys in history.values())


def test_a_track_knows_the_box_of_the_detection_it_matched():
    tracker = Tracker()
    for step in range(6):  # a box walking 12 px a frame, its height wobbling: the estimate is smoothed
        box = (100.0 + 12 * step, 50.0, 140.0 + 12 * step, 130.0 + (6 if step % 2 else 0))
        (track,) = tracker.update([Detection("part", 0.9, box), Detection("part", 0.2, (400, 400, 420, 420))])
        assert track.detected == box and track.seen_box == box
    assert track.box != track.detected  # the estimate is not the measurement
    (born,) = Tracker().update([Detection("part", 0.9, (0, 0, 10, 10))])
    assert born.detected == (0, 0, 10, 10)  # a new track: the detection it was born of
