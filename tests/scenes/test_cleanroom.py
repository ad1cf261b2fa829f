from __future__ import annotations

import math

import numpy as np
import pytest

from tools.scenes.cleanroom import (
    CLEAN_ZONE,
    FIRE_TRACK_ID,
    IN_SIGHT,
    PPE_ITEMS,
    PPE_LABELS,
    SMOKE_TRACK_ID,
    WASH_DWELL_S,
    WASH_ZONE,
    CleanRoomScene,
    zone_polygon,
)
from tools.scenes.common import FrameTruth, TimelineEvent, frames_digest

ITEM_LABELS = {"helmet", "mask", "mask_improper", "gloves", "gown", "goggles"}


@pytest.fixture(scope="module")
def scene() -> CleanRoomScene:
    # Seed 2 with three people over 20 s: missing items that change while people are in
    # view, masks under the nose, hygiene violations, fire and smoke.
    return CleanRoomScene(2, duration_s=20.0, people=3, fire=True, smoke=True)


@pytest.fixture(scope="module")
def truths(scene: CleanRoomScene) -> list[FrameTruth]:
    return list(scene.truths())


def frames_of(event: TimelineEvent, fps: int) -> range:
    return range(int(round(event.start_s * fps)), int(round(event.end_s * fps)))


def unclipped(box: tuple[float, float, float, float], scene: CleanRoomScene) -> bool:
    x1, y1, x2, y2 = box
    return x1 > 0 and y1 > 0 and x2 < scene.width and y2 < scene.height


def people_by_frame(truths: list[FrameTruth]) -> list[dict[int, tuple]]:
    return [{o.track_id: o.box for o in t.objects if o.label == "person"} for t in truths]


def apart(k: int, people: dict[int, tuple]) -> bool:
    """Nobody's box overlaps person ``k``'s: nobody can stand in front of them."""
    x1, y1, x2, y2 = people[k]
    return not any(j != k and b[0] < x2 and x1 < b[2] and b[1] < y2 and y1 < b[3] for j, b in people.items())


def test_same_seed_same_frames_and_another_seed_differs():
    a = CleanRoomScene(11, duration_s=2.0)
    b = CleanRoomScene(11, duration_s=2.0)
    c = CleanRoomScene(12, duration_s=2.0)
    assert frames_digest(a, limit=30) == frames_digest(b, limit=30)
    assert frames_digest(a, limit=30) != frames_digest(c, limit=30)
    assert a.timeline() == b.timeline()
    for (image, truth), expected in zip(a.frames(), a.truths()):
        assert image.shape == (360, 640, 3) and image.dtype == np.uint8
        assert truth == expected


def test_scene_interface_and_zones(scene: CleanRoomScene):
    assert (scene.name, scene.width, scene.height, scene.fps) == ("cleanroom", 640, 360, 15)
    assert scene.labels == PPE_LABELS == (
        "person", "helmet", "mask", "mask_improper", "gloves", "gown", "goggles", "fire", "smoke")
    assert scene.duration_s == 20.0 and scene.frame_count == 300
    assert scene.zones == {"wash": zone_polygon(WASH_ZONE), "clean": zone_polygon(CLEAN_ZONE)}
    for polygon in scene.zones.values():
        assert all(0 <= x <= 640 and 0 <= y <= 360 for x, y in polygon)
    # The seed picks the counts unless they are given; every count from 1 to 4 works.
    assert {CleanRoomScene(seed, duration_s=1.0).people_count for seed in range(12)} <= {1, 2, 3, 4}
    assert CleanRoomScene(0, duration_s=1.0, people=4).people_count == 4
    with pytest.raises(ValueError):
        CleanRoomScene(0, duration_s=1.0, people=5)


def test_truth_boxes_lie_in_the_frame_with_known_labels_and_stable_ids(scene, truths):
    labels_of: dict[int, set[str]] = {}
    for truth in truths:
        assert truth.time_s == pytest.approx(truth.index / 15)
        for o in truth.objects:
            x1, y1, x2, y2 = o.box
            assert o.label in PPE_LABELS
            assert 0 <= x1 < x2 <= scene.width and 0 <= y1 < y2 <= scene.height
            labels_of.setdefault(o.track_id, set()).add(o.label)
    for track, labels in labels_of.items():
        assert labels in ({"person"}, {"helmet"}, {"gloves"}, {"gown"}, {"goggles"}, {"fire"}, {"smoke"}) or \
            labels <= {"mask", "mask_improper"}, (track, labels)
    assert labels_of[FIRE_TRACK_ID] == {"fire"} and labels_of[SMOKE_TRACK_ID] == {"smoke"}
    assert sum(labels == {"person"} for labels in labels_of.values()) == 3


def test_a_person_is_out_of_sight_only_behind_someone(scene, truths):
    """People walk behind each other: a person whose box others cover by less than half is in sight;
    one out of sight lies mostly under someone else's box."""
    def area(b: tuple[float, ...]) -> float:
        return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])

    hidden = 0
    for truth in truths:
        people = [o for o in truth.objects if o.label == "person"]
        for person in people:
            covered = max((area((max(person.box[0], o.box[0]), max(person.box[1], o.box[1]),
                                 min(person.box[2], o.box[2]), min(person.box[3], o.box[3])))
                           for o in people if o is not person), default=0.0)
            if covered == 0.0:
                assert person.attributes["in_sight"], (truth.index, person.track_id)
            if not person.attributes["in_sight"]:
                hidden += 1  # (by one or two people: half their silhouette under one box at least)
                assert covered >= (1.0 - IN_SIGHT) * area(person.box) * 0.5, (truth.index, person.track_id)
    assert 20 <= hidden <= 200  # seed 2's three people cross now and then (66 of 900 person frames)


def test_items_lie_within_their_person_and_are_big_enough(scene, truths):
    counts: dict[str, int] = {}
    for truth in truths:
        people = {o.track_id: o.box for o in truth.objects if o.label == "person"}
        for o in truth.objects:
            if o.label not in ITEM_LABELS:
                continue
            counts[o.label] = counts.get(o.label, 0) + 1
            person = people[o.attributes["person_track_id"]]
            x1, y1, x2, y2 = o.box
            ix = max(0.0, min(x2, person[2]) - max(x1, person[0]))
            iy = max(0.0, min(y2, person[3]) - max(y1, person[1]))
            assert ix * iy >= 0.95 * (x2 - x1) * (y2 - y1)
            if unclipped(o.box, scene):
                assert x2 - x1 >= 10 and y2 - y1 >= 10, o
    assert set(counts) == ITEM_LABELS
    # Gloves come one box per hand.
    assert max(sum(1 for o in t.objects if o.label == "gloves" and o.attributes["person_track_id"] == k)
               for t in truths for k in range(scene.people_count)) == 2


def test_improper_interval_matches_the_truth(scene, truths):
    events = [e for e in scene.timeline() if e.kind == "ppe.improper"]
    assert events
    for k in range(scene.people_count):
        covered = {f for e in events if e.track_id == k for f in frames_of(e, scene.fps)}
        improper = {t.index for t in truths for o in t.objects
                    if o.label == "mask_improper" and o.attributes["person_track_id"] == k}
        proper = {t.index for t in truths for o in t.objects
                  if o.label == "mask" and o.attributes["person_track_id"] == k}
        assert improper <= covered and not proper & covered
        # Where the whole person is in view and nobody in front, the event covers exactly the improper frames.
        whole = {t.index for t, people in zip(truths, people_by_frame(truths))
                 if k in people and unclipped(people[k], scene) and apart(k, people)}
        assert covered & whole == improper & whole


def test_missing_item_intervals_match_the_truth(scene, truths):
    events = [e for e in scene.timeline() if e.kind == "ppe.missing_item"]
    assert events
    for k in range(scene.people_count):
        mine = sorted((e for e in events if e.track_id == k), key=lambda e: e.start_s)
        expected: dict[int, list[str]] = {}
        for e in mine:
            assert e.attributes["items"] == sorted(set(e.attributes["items"])) and e.attributes["items"]
            for f in frames_of(e, scene.fps):
                assert f not in expected, "events of one person overlap"
                expected[f] = e.attributes["items"]
        for a, b in zip(mine, mine[1:]):  # maximal: touching intervals differ in their items
            if math.isclose(a.end_s, b.start_s):
                assert a.attributes["items"] != b.attributes["items"]
        for truth, people in zip(truths, people_by_frame(truths)):
            if k not in people:
                assert truth.index not in expected
                continue
            if not unclipped(people[k], scene) or not apart(k, people):
                continue
            present = {"mask" if o.label == "mask_improper" else o.label for o in truth.objects
                       if o.attributes.get("person_track_id") == k}
            assert sorted(set(PPE_ITEMS) - present) == expected.get(truth.index, []), truth.index
    # Someone puts on or takes off an item while in view.
    assert any(a.track_id == b.track_id and math.isclose(a.end_s, b.start_s) for a in events for b in events)


def test_an_item_hidden_by_someone_in_front_is_left_out_of_the_truth(scene, truths):
    hidden = 0
    for k in range(scene.people_count):
        worn = scene.worn(k)
        for truth, people in zip(truths, people_by_frame(truths)):
            if k not in people or not unclipped(people[k], scene):
                continue
            present = {"mask" if o.label == "mask_improper" else o.label for o in truth.objects
                       if o.attributes.get("person_track_id") == k}
            left_out = {item for item, state in worn[truth.index].items() if state} - present
            if left_out:  # only where someone stands in front
                assert not apart(k, people), (truth.index, k, left_out)
                hidden += 1
    assert hidden >= 10


def test_required_items_are_configurable():
    scene = CleanRoomScene(2, duration_s=20.0, people=3, fire=True, smoke=True, required={"mask"})
    events = [e for e in scene.timeline() if e.kind == "ppe.missing_item"]
    assert events and all(e.attributes["items"] == ["mask"] for e in events)
    with pytest.raises(ValueError):
        CleanRoomScene(2, duration_s=1.0, required={"boots"})


def test_hygiene_violations_follow_the_zones_in_the_truth(scene, truths):
    dwell = int(math.ceil(WASH_DWELL_S * scene.fps - 1e-9))
    expected = []
    for k in range(scene.people_count):
        zones = []
        for truth in truths:
            person = [o for o in truth.objects if o.label == "person" and o.track_id == k]
            zones.append(person[0].attributes["zone"] if person else None)
        run = best = 0
        for f, zone in enumerate(zones):
            run = run + 1 if zone == "wash" else 0
            best = max(best, run)
            if f > 0 and zone == "clean" and zones[f - 1] != "clean" and best < dwell:
                expected.append((k, f / scene.fps))
            if f > 0 and zones[f - 1] == "clean" and zone != "clean":
                best = 0
    events = [e for e in scene.timeline() if e.kind == "hygiene.sequence_violation"]
    assert events and all(e.start_s == e.end_s for e in events)
    assert sorted((e.track_id, e.start_s) for e in events) == sorted(expected)


def test_fire_grows_and_fire_and_smoke_events_start_with_their_boxes(scene, truths):
    fire = [(t.index, o.box) for t in truths for o in t.objects if o.label == "fire"]
    smoke = [(t.index, o.box) for t in truths for o in t.objects if o.label == "smoke"]
    assert fire and smoke
    area = [(x2 - x1) * (y2 - y1) for _, (x1, y1, x2, y2) in fire]
    assert np.mean(area[-15:]) > 2.0 * np.mean(area[:15])
    assert all(o[1] != p[1] for o, p in zip(fire, fire[1:10]))  # it flickers
    events = {e.kind: e for e in scene.timeline() if e.kind in ("fire.detected", "smoke.detected")}
    assert events["fire.detected"].track_id == FIRE_TRACK_ID
    assert events["fire.detected"].start_s == pytest.approx(fire[0][0] / scene.fps)
    assert events["smoke.detected"].track_id == SMOKE_TRACK_ID
    assert events["smoke.detected"].start_s == pytest.approx(smoke[0][0] / scene.fps)
    assert events["fire.detected"].end_s == events["smoke.detected"].end_s == scene.duration_s
    assert [index for index, _ in fire] == sorted({index for index, _ in fire})


def test_fire_and_smoke_hidden_by_people_are_left_out_of_the_truth(scene, truths):
    people = people_by_frame(truths)
    hidden = {}
    for label in ("fire", "smoke"):
        boxes = {t.index: o.box for t in truths for o in t.objects if o.label == label}
        first, last_box, hidden[label] = min(boxes), None, 0
        for index in range(first, len(truths)):
            if index in boxes:
                last_box = boxes[index]
                continue
            hidden[label] += 1  # someone stands over where it was last seen
            x1, y1, x2, y2 = last_box
            assert any(b[0] < x2 and x1 < b[2] and b[1] < y2 and y1 < b[3] for b in people[index].values()), \
                (label, index)
    assert hidden["fire"] >= 3  # seed 2: people walk past the flame


def test_no_fire_or_smoke_when_switched_off():
    scene = CleanRoomScene(2, duration_s=20.0, people=1, fire=False, smoke=False)
    assert not any(e.kind in ("fire.detected", "smoke.detected") for e in scene.timeline())
    assert not any(o.label in ("fire", "smoke") for t in scene.truths() for o in t.objects)
