"""Snapshots: the frame with the box drawn and a crop, as JPEG; retention by count and age."""

from __future__ import annotations

import os
import time

import numpy as np

from appliance.analytics.base import Finding, FrameView
from appliance.analytics.stream import StreamAnalytics
from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.events.snapshots import SnapshotStore, SourceImage, crop_around, draw_box
from appliance.pipeline.gst import Gst
from appliance.tracking.tracker import Tracker
from appliance.types import Detection, FrameResult


def i420_frame(width: int = 320, height: int = 240) -> SourceImage:
    pipeline = Gst.parse_launch(
        f"videotestsrc num-buffers=1 pattern=white ! video/x-raw,format=I420,width={width},height={height}"
        " ! appsink name=out"
    )
    pipeline.set_state(Gst.State.PLAYING)
    sample = pipeline.get_by_name("out").emit("pull-sample")
    pipeline.set_state(Gst.State.NULL)
    return SourceImage(sample.get_buffer(), sample.get_caps())


def decode_jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's SOF0/SOF2 marker."""
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC2):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise ValueError("no frame header")


def test_source_image_converts_to_rgb():
    rgb = i420_frame().rgb()
    assert rgb.shape == (240, 320, 3)
    assert rgb.mean() > 240  # white


def test_box_is_drawn_on_its_edges_only():
    rgb = np.zeros((100, 100, 3), np.uint8)
    draw_box(rgb, (10, 20, 50, 60), thickness=2)
    assert (rgb[20, 30] == [255, 40, 40]).all() and (rgb[59, 30] == [255, 40, 40]).all()
    assert (rgb[40, 10] == [255, 40, 40]).all() and (rgb[40, 49] == [255, 40, 40]).all()
    assert rgb[40, 30].sum() == 0  # inside stays untouched
    assert crop_around(rgb, (10, 20, 50, 60), margin=0.25).shape == (61, 61, 3)


class NewTrackRule:
    """A rule double: reports a start for every new track."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def observe(self, view: FrameView) -> list[Finding]:
        found = []
        for track in view.tracks:
            if track.track_id not in self.seen:
                self.seen.add(track.track_id)
                found.append(Finding("test.seen", "start", view.t, track_id=track.track_id, box=track.box))
        return found

    def close(self) -> list[Finding]:
        return []


def test_start_events_get_a_snapshot_and_a_crop(tmp_path):
    store = SnapshotStore(tmp_path / "shots")
    emitted = []
    analytics = StreamAnalytics("cam", Tracker(), [NewTrackRule()], EventFactory("dev", "1", ManualClock()),
                                emitted.append, snapshots=store)
    result = FrameResult("cam", 1, 0, 1000.0, 320, 240, [Detection("part", 0.9, (100, 50, 200, 150))])
    analytics.process(result, i420_frame())
    store.close()
    (event,) = emitted
    assert event.snapshot == str(tmp_path / "shots" / f"{event.id}.jpg")
    full = (tmp_path / "shots" / f"{event.id}.jpg").read_bytes()
    crop = (tmp_path / "shots" / f"{event.id}.crop.jpg").read_bytes()
    assert full[:2] == b"\xff\xd8" and decode_jpeg_size(full) == (320, 240)
    assert decode_jpeg_size(crop) == (141, 141)  # the box with a 20 % margin


def test_retention_keeps_the_newest_by_count_and_drops_old_ones(tmp_path):
    store = SnapshotStore(tmp_path, max_count=3, max_age_s=3600)
    now = time.time()
    for index in range(6):
        for suffix in (".jpg", ".crop.jpg"):
            path = tmp_path / f"e{index}{suffix}"
            path.write_bytes(b"x")
            age = 7200 if index == 5 else 600 - index * 60  # e5 newest name but two hours old
            os.utime(path, (now - age, now - age))
    store.prune(now)
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "e2.crop.jpg", "e2.jpg", "e3.crop.jpg", "e3.jpg", "e4.crop.jpg", "e4.jpg",
    ]
