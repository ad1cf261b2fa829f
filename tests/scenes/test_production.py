"""The production-line and tool-station scene generators: determinism, truth and timeline."""

from __future__ import annotations

import numpy as np
import pytest

from tools.scenes.common import frames_digest
from tools.scenes.production import (
    DEFECT_LABELS,
    PART_DEFECTS,
    PART_KINDS,
    ProductionLineScene,
    ToolStationScene,
    sample_patches,
)

TOOL_LABELS = {"tool_clean", "tool_dirty", "tool_damaged"}
DEFECT_KINDS = {"crack", "chip", "missing_cap", "stain"}


def test_labels_and_protocol() -> None:
    assert DEFECT_LABELS == ("vial", "blister", "tablet", "crack", "chip", "missing_cap", "stain", "tool_clean",
                             "tool_dirty", "tool_damaged")
    for scene in (ProductionLineScene(1, duration_s=2.0), ToolStationScene(1, duration_s=2.0)):
        assert scene.labels == DEFECT_LABELS
        assert (scene.width, scene.height, scene.fps, scene.duration_s) == (640, 360, 15, 2.0)
        assert isinstance(scene.name, str) and scene.name


@pytest.mark.parametrize("make", [
    lambda seed: ProductionLineScene(seed, duration_s=2.0),
    lambda seed: ToolStationScene(seed, duration_s=2.0),
])
def test_same_seed_same_frames(make) -> None:
    first = frames_digest(make(3), limit=30)
    assert frames_digest(make(3), limit=30) == first
    assert frames_digest(make(4), limit=30) != first


def test_frames_and_truth() -> None:
    scene = ProductionLineScene(5, duration_s=2.0, defect_rate=0.5)
    count = 0
    for image, truth in scene.frames():
        assert image.shape == (360, 640, 3) and image.dtype == np.uint8
        assert truth.objects == scene.truth(truth.index).objects
        assert truth.time_s == pytest.approx(truth.index / 15)
        count += 1
    assert count == 30
    assert float(image.std()) > 10  # not a flat picture


@pytest.mark.parametrize("seed", [0, 11, 12])
def test_truth_boxes(seed: int) -> None:
    scene = ProductionLineScene(seed, defect_rate=0.5)
    parts = {p.track_id: p for p in scene.parts}
    defect_ids = {p.defect_track_id: p for p in scene.parts if p.defect_track_id is not None}
    seen = set()
    for index in range(scene.n_frames):
        for obj in scene.truth(index).objects:
            x1, y1, x2, y2 = obj.box
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
            seen.add(obj.label)
            if obj.label in PART_KINDS:
                assert parts[obj.track_id].kind == obj.label
                if 0 < x1 and x2 < 640:  # not clipped
                    assert 18 <= min(x2 - x1, y2 - y1) and max(x2 - x1, y2 - y1) <= 122
            else:
                assert obj.label in DEFECT_KINDS
                part = defect_ids[obj.track_id]
                assert obj.attributes == {"part_track_id": part.track_id}
                assert obj.label == part.defect and obj.label in PART_DEFECTS[part.kind]
                assert min(x2 - x1, y2 - y1) >= 10
    assert set(PART_KINDS) <= seen
    assert seen & DEFECT_KINDS


def _centres(scene: ProductionLineScene) -> dict[int, list[tuple[int, float]]]:
    centres: dict[int, list[tuple[int, float]]] = {}
    for index in range(scene.n_frames):
        for obj in scene.truth(index).objects:
            if obj.label in PART_KINDS and 0 < obj.box[0] and obj.box[2] < scene.width:
                centres.setdefault(obj.track_id, []).append((index, (obj.box[0] + obj.box[2]) / 2))
    return centres


@pytest.mark.parametrize("seed", [2, 8])
def test_inspection_events_match_crossings(seed: int) -> None:
    scene = ProductionLineScene(seed, defect_rate=0.4)
    events = scene.timeline()
    centres = _centres(scene)
    line = scene.inspection_x
    crossings = {}
    for track_id, track in centres.items():
        before = [i for i, x in track if x < line]
        after = [i for i, x in track if x >= line]
        if before and after:
            crossings[track_id] = min(after)
    by_id = {}
    for event in events:
        assert event.kind in ("defect.part", "part.passed")
        assert event.start_s == event.end_s
        assert event.track_id not in by_id  # counted once
        by_id[event.track_id] = event
    assert set(crossings) <= set(by_id)
    parts = {p.track_id: p for p in scene.parts}
    defective = 0
    for track_id, event in by_id.items():
        part = parts[track_id]
        if part.defect:
            defective += 1
            assert event.kind == "defect.part"
            assert event.attributes == {"defect": part.defect, "part": part.kind}
        else:
            assert event.kind == "part.passed" and event.attributes == {"part": part.kind}
        if track_id in crossings:
            assert abs(event.start_s * scene.fps - crossings[track_id]) <= 1.0
    assert defective > 0 and len(by_id) - defective > 0


def test_defect_rate_and_speed() -> None:
    clean = ProductionLineScene(6, duration_s=20.0, defect_rate=0.0)
    assert clean.timeline() and all(e.kind == "part.passed" for e in clean.timeline())
    bad = ProductionLineScene(6, duration_s=20.0, defect_rate=1.0)
    assert bad.timeline() and all(e.kind == "defect.part" for e in bad.timeline())
    fixed = ProductionLineScene(6, duration_s=4.0, speed_px_s=90.0)
    assert np.allclose(np.diff(fixed.belt_pos), 90.0 / 15)
    speeds = {round(ProductionLineScene(seed, duration_s=1.0).speed_px_s) for seed in range(4)}
    assert len(speeds) > 1


@pytest.mark.parametrize("seed", [1, 9])
def test_tool_station_timeline_matches_truth(seed: int) -> None:
    scene = ToolStationScene(seed)
    events = scene.timeline()
    assert len(events) >= 4
    covered = set()
    for event in events:
        assert event.kind == "tool.verified"
        assert event.attributes["state"] in ("clean", "dirty", "damaged")
        assert 3.0 - 1e-6 <= event.end_s - event.start_s <= 6.0 + 1e-6
        frames = range(round(event.start_s * scene.fps), round(event.end_s * scene.fps))
        for index in frames:
            objects = scene.truth(index).objects
            assert [o.label for o in objects] == [f"tool_{event.attributes['state']}"]
            assert objects[0].track_id == event.track_id
            x1, y1, x2, y2 = objects[0].box
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360 and min(x2 - x1, y2 - y1) >= 20
            covered.add(index)
    for index in set(range(scene.n_frames)) - covered:
        assert scene.truth(index).objects == []
    for a, b in zip(events, events[1:]):
        assert a.end_s < b.start_s


def test_tool_states_all_occur() -> None:
    states = {e.attributes["state"] for seed in range(4) for e in ToolStationScene(seed).timeline()}
    assert states == {"clean", "dirty", "damaged"}


def test_sample_patches() -> None:
    patches = sample_patches(7, 40, size=64, defective_fraction=0.5)
    assert len(patches) == 40
    for image, defective, kind in patches:
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert (kind == "") != defective
        if defective:
            assert kind in DEFECT_KINDS | {"tool_dirty", "tool_damaged"}
    assert sum(d for _, d, _ in patches) == 20
    again = sample_patches(7, 40, size=64, defective_fraction=0.5)
    assert all(np.array_equal(a[0], b[0]) and a[1:] == b[1:] for a, b in zip(patches, again))
    other = sample_patches(8, 40, size=64, defective_fraction=0.5)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(patches, other))
    good = sample_patches(7, 12, size=32, defective_fraction=0.0)
    assert len(good) == 12 and not any(d for _, d, _ in good) and good[0][0].shape == (32, 32, 3)
