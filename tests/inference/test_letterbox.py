from __future__ import annotations

import numpy as np
import pytest

from appliance.inference.letterbox import Letterbox

# (src_w, src_h, dst_w, dst_h) -> (pad_x, pad_y, scaled_w, scaled_h), as measured on
# GStreamer 1.22's videoscale add-borders=true (white frame, black borders).
MEASURED = {
    (1920, 1080, 320, 320): (0, 70, 320, 180),
    (640, 480, 320, 320): (0, 40, 320, 240),
    (1280, 720, 320, 320): (0, 70, 320, 180),
    (480, 640, 320, 320): (40, 0, 240, 320),
    (333, 777, 320, 320): (91, 0, 137, 320),
    (777, 333, 320, 320): (0, 91, 320, 137),
    (333, 777, 321, 320): (92, 0, 137, 320),
    (1366, 768, 320, 320): (0, 70, 320, 179),
    (1920, 1080, 640, 384): (0, 12, 640, 360),
    (1000, 1000, 320, 240): (40, 0, 240, 240),
    (1920, 1080, 320, 181): (0, 0, 320, 180),
    (100, 1000, 320, 320): (144, 0, 32, 320),
    (720, 576, 320, 320): (0, 32, 320, 256),
}


@pytest.mark.parametrize(("sizes", "placed"), MEASURED.items())
def test_compute_matches_measured_videoscale(
    sizes: tuple[int, int, int, int], placed: tuple[int, int, int, int]
) -> None:
    lb = Letterbox.compute(*sizes)
    assert (lb.pad_x, lb.pad_y, lb.scaled_w, lb.scaled_h) == placed
    assert (lb.src_w, lb.src_h, lb.dst_w, lb.dst_h) == sizes


def test_compute_refuses_empty_sizes() -> None:
    with pytest.raises(ValueError):
        Letterbox.compute(0, 720, 320, 320)


def _videoscale_image_rect(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """Where the real element puts a white frame: (x, y, w, h) of the white pixels."""
    from appliance.pipeline.gst import Gst  # `make setup` installs GStreamer: no skip

    pipeline = Gst.parse_launch(
        f"videotestsrc pattern=white num-buffers=1 ! video/x-raw,width={src_w},height={src_h} "
        "! videoscale add-borders=true ! videoconvert "
        f"! video/x-raw,format=RGB,width={dst_w},height={dst_h},pixel-aspect-ratio=1/1 "
        "! appsink name=sink sync=false"
    )
    pipeline.set_state(Gst.State.PLAYING)
    try:
        sample = pipeline.get_by_name("sink").emit("try-pull-sample", 10 * Gst.SECOND)
        assert sample is not None, "videoscale pipeline produced no frame"
        buffer = sample.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        assert ok
        stride = (dst_w * 3 + 3) // 4 * 4  # RGB rows are 4-byte aligned
        data = np.frombuffer(info.data, np.uint8)[: stride * dst_h].reshape(dst_h, stride)
        image = data[:, : dst_w * 3].reshape(dst_h, dst_w, 3).copy()
        buffer.unmap(info)
    finally:
        pipeline.set_state(Gst.State.NULL)
    white = image.min(axis=2) > 127
    ys, xs = np.nonzero(white)
    # borders are pure black, the image pure white: no blending at the edges
    assert set(np.unique(image).tolist()) <= {0, 255}
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@pytest.mark.parametrize(
    "sizes",
    [(1920, 1080, 320, 320), (640, 480, 320, 320), (1280, 720, 320, 320), (480, 640, 320, 320),
     (333, 777, 320, 320), (1366, 768, 320, 320), (333, 777, 321, 320), (1920, 1080, 640, 384)],
)
def test_compute_matches_real_videoscale(sizes: tuple[int, int, int, int]) -> None:
    lb = Letterbox.compute(*sizes)
    assert _videoscale_image_rect(*sizes) == (lb.pad_x, lb.pad_y, lb.scaled_w, lb.scaled_h)


@pytest.mark.parametrize("src", [(1920, 1080), (640, 480), (1280, 720), (480, 640), (333, 777), (1366, 768)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mapping_round_trips(src: tuple[int, int], seed: int) -> None:
    src_w, src_h = src
    lb = Letterbox.compute(src_w, src_h, 320, 320)
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 1, size=(200, 2, 2)) * np.array([src_w, src_h])
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)  # x1y1x2y2 in the frame
    there = lb.to_input(boxes)
    assert there.dtype == np.float32
    assert there[:, 0::2].min() >= lb.pad_x - 1e-3 and there[:, 0::2].max() <= lb.pad_x + lb.scaled_w + 1e-3
    assert there[:, 1::2].min() >= lb.pad_y - 1e-3 and there[:, 1::2].max() <= lb.pad_y + lb.scaled_h + 1e-3
    back = lb.to_source(there)
    assert back.dtype == np.float32 and back.shape == (200, 4)
    np.testing.assert_allclose(back, boxes, atol=1.0)
    np.testing.assert_allclose(back, boxes, atol=0.01)  # in fact float32-exact
    np.testing.assert_allclose(lb.to_input(back), there, atol=0.01)


def test_to_source_scales_and_clips() -> None:
    lb = Letterbox.compute(1280, 720, 320, 320)  # scale 1/4, image rows 70..250
    boxes = np.array([[0, 70, 320, 250], [10, 80, 20, 90], [-30, 0, 400, 330]], dtype=np.float32)
    np.testing.assert_allclose(
        lb.to_source(boxes),
        [[0, 0, 1280, 720], [40, 40, 80, 80], [0, 0, 1280, 720]],
        atol=1e-4,
    )
    assert lb.to_source(np.zeros((0, 4))).shape == (0, 4)


def test_apply_places_the_image_like_videoscale() -> None:
    lb = Letterbox.compute(333, 777, 320, 320)
    image = np.full((777, 333, 3), 255, dtype=np.uint8)
    out = lb.apply(image)
    assert out.shape == (320, 320, 3) and out.dtype == np.float32
    ys, xs = np.nonzero(out[:, :, 0] > 127)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (91, 0, 91 + 137, 320)
    np.testing.assert_allclose(out[:, 91:228], 255.0, atol=1e-3)
    assert out[:, :91].max() == 0 and out[:, 228:].max() == 0


def test_apply_keeps_a_box_where_the_mapping_says() -> None:
    lb = Letterbox.compute(1280, 720, 320, 320)
    image = np.zeros((720, 1280), dtype=np.uint8)
    image[200:400, 600:1000] = 255
    out = lb.apply(image)
    ys, xs = np.nonzero(out > 127)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
    np.testing.assert_allclose(lb.to_source(found), [[600, 200, 1000, 400]], atol=1e-3)
