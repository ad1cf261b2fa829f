"""Snapshots: the frame with the box drawn and a crop, as JPEG; retention by count and age."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from appliance.analytics.base import Finding, FrameView
from appliance.analytics.stream import StreamAnalytics
from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.events.snapshots import SnapshotStore, SourceImage, crop_around, draw_box
from appliance.pipeline import planes
from appliance.pipeline.gst import Gst, GstVideo
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


def patchwork(formats: str, width: int = 320, height: int = 240) -> tuple[np.ndarray, SourceImage]:
    """A frame of 16-pixel squares of random colours, RGB and converted by GStreamer to ``formats``."""
    squares = np.random.default_rng(3).integers(0, 256, (-(-height // 16), -(-width // 16), 3), dtype=np.uint8)
    rgb = np.ascontiguousarray(np.repeat(np.repeat(squares, 16, axis=0), 16, axis=1)[:height, :width])
    caps = Gst.Caps.from_string(f"video/x-raw,format=RGB,width={width},height={height},framerate=5/1")
    rows = np.zeros((height, -(-width * 3 // 4) * 4), np.uint8)  # GStreamer's RGB rows are 4-byte aligned
    rows[:, : width * 3] = rgb.reshape(height, -1)
    sample = GstVideo.video_convert_sample(Gst.Sample.new(Gst.Buffer.new_wrapped(rows.tobytes()), caps, None, None),
                                           Gst.Caps.from_string(f"video/x-raw,format={formats}"), Gst.SECOND)
    return rgb, SourceImage(sample.get_buffer(), sample.get_caps())


@pytest.mark.parametrize("formats", ["I420", "NV12", "YUY2", "Y444", "BGRx"])
def test_pixels_are_read_from_the_planes_without_converting_the_frame(formats: str, monkeypatch):
    rgb, image = patchwork(formats)
    monkeypatch.setattr(SourceImage, "rgb", lambda self: pytest.fail("the whole frame was converted"))
    ys, xs = (np.arange(15) * 16 + 8)[:, None], (np.arange(20) * 16 + 8)[None, :]  # the squares' centres
    sampled = image.sample(ys, xs)
    assert image.size == (320, 240) and sampled.shape == (15, 20, 3)
    assert np.abs(sampled.astype(int) - rgb[ys, xs]).max() <= 4  # 8-bit Y'CbCr rounding


@pytest.mark.parametrize("formats", ["I420", "NV12", "YUY2", "Y444", "RGB", "BGRx"])
@pytest.mark.parametrize("size", [(320, 240), (322, 242)])  # subsampled formats' odd half rows and columns too
def test_a_whole_frame_reads_as_its_pixels_do(formats: str, size: tuple[int, int]):
    """The model input's reader (``read_frame``, every pixel, float 0..1) and the crops' (``read_rgb``)."""
    _, image = patchwork(formats, *size)
    layout = planes.layout_of(image.caps.to_string())
    out = np.zeros((3, size[1], size[0]), np.float32)
    planes.read_frame(image.buffer, layout, out)
    pixels = planes.read_rgb(image.buffer, layout, np.arange(size[1])[:, None], np.arange(size[0])[None, :])
    # the same exact conversion, summed in another order: a level apart at most where it rounds a half
    assert np.abs(out * 255.0 - pixels.transpose(2, 0, 1)).max() <= 1.0 + 1e-3
    assert np.mean(np.abs(out * 255.0 - pixels.transpose(2, 0, 1)) > 0.5) < 0.001


def test_frames_that_cannot_be_read_by_their_planes_are_converted_whole():
    assert planes.layout_of("video/x-raw(memory:NVMM),format=NV12,width=64,height=48") is None
    assert planes.layout_of("video/x-raw,format=I420_10LE,width=64,height=48") is None
    rgb, image = patchwork("I420_10LE")
    ys, xs = (np.arange(15) * 16 + 8)[:, None], (np.arange(20) * 16 + 8)[None, :]
    assert np.abs(image.sample(ys, xs).astype(int) - rgb[ys, xs]).max() <= 4


def test_pixels_of_a_frame_with_padded_rows_are_read_by_its_video_meta():
    rgb, image = patchwork("I420")
    ok, mapped = image.buffer.map(Gst.MapFlags.READ)
    planes = np.frombuffer(mapped.data, dtype=np.uint8)
    image.buffer.unmap(mapped)
    y, u, v = (planes[:76800].reshape(240, 320), planes[76800:96000].reshape(120, 160),
               planes[96000:].reshape(120, 160))
    padded = [np.pad(plane, ((0, 0), (0, 64))) for plane in (y, u, v)]  # rows 64 bytes longer, as decoders align
    data = b"".join(plane.tobytes() for plane in padded)
    buffer = Gst.Buffer.new_wrapped(data)
    GstVideo.buffer_add_video_meta_full(buffer, GstVideo.VideoFrameFlags.NONE, GstVideo.VideoFormat.I420, 320, 240, 3,
                                        [0, 384 * 240, 384 * 240 + 224 * 120, 0], [384, 224, 224, 0])
    ys, xs = (np.arange(15) * 16 + 8)[:, None], (np.arange(20) * 16 + 8)[None, :]
    sampled = SourceImage(buffer, image.caps).sample(ys, xs)
    assert np.abs(sampled.astype(int) - rgb[ys, xs]).max() <= 4


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
