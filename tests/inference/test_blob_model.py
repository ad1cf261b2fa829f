"""The demo's hand-built detector really finds bright objects where they are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest

from appliance.config.schema import ModelConfig
from appliance.inference.letterbox import Letterbox
from appliance.inference.onnx_engine import load_engine
from appliance.inference.parsers import make_parser
from appliance.types import Detection

FRAME_W, FRAME_H = 1280, 720
Detect = Callable[[list[np.ndarray]], list[list[Detection]]]


@pytest.fixture(scope="module")
def detect(blob_tool: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Detect:
    path = blob_tool.build_blob_model(tmp_path_factory.mktemp("blobs") / "blobs.onnx")
    config = ModelConfig.model_validate({
        "id": "blobs", "onnx": str(path), "labels": str(path.with_suffix(".labels")),
        "input": {"width": 320, "height": 320}, "parser": "yolov8",
    })
    engine = load_engine(config)
    parser = make_parser("yolov8", config.label_names(), 0.3, 0.45, 100, "blobs")
    letterbox = Letterbox.compute(FRAME_W, FRAME_H, 320, 320)

    def run(images: list[np.ndarray]) -> list[list[Detection]]:
        batch = np.stack([letterbox.apply(image).transpose(2, 0, 1) / 255.0 for image in images])
        return parser.parse(engine.infer(batch.astype(np.float32)), [letterbox] * len(images))

    return run


def _disks(disks: list[tuple[float, float, float]], color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    image = np.zeros((FRAME_H, FRAME_W, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:FRAME_H, 0:FRAME_W] + 0.5
    for cx, cy, r in disks:
        image[(xs - cx) ** 2 + (ys - cy) ** 2 <= r * r] = color
    return image


def test_model_file_and_labels(blob_tool: ModuleType, tmp_path: Path) -> None:
    path = blob_tool.build_blob_model(tmp_path / "out" / "blobs.onnx")
    assert path.stat().st_size < 1_000_000
    assert path.with_suffix(".labels").read_text() == "bright_object\n"
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "images" and dims == ["N", 3, 320, 320]
    out = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out == ["N", 5, 400 + 100 + 25]
    with pytest.raises(ValueError):
        blob_tool.build_blob_model(tmp_path / "two.onnx", labels=["a", "b"])


def test_repo_model_was_generated() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert (repo / "engines" / "blobs.onnx").is_file()
    assert (repo / "engines" / "blobs.labels").read_text().split() == ["bright_object"]


@pytest.mark.parametrize(
    ("cx", "cy", "r"),
    [(700, 300, 60), (100, 650, 20), (640, 360, 200), (1000, 150, 35), (333, 444, 12)],
)
def test_finds_a_white_disk(detect: Detect, cx: float, cy: float, r: float) -> None:
    [found] = detect([_disks([(cx, cy, r)])])
    assert len(found) == 1, found
    det = found[0]
    assert det.label == "bright_object" and det.model == "blobs"
    assert det.confidence >= 0.9
    tolerance = max(4.0, 0.06 * r)  # a few source pixels (one input pixel is 4)
    np.testing.assert_allclose(det.box, (cx - r, cy - r, cx + r, cy + r), atol=tolerance)


def test_finds_each_disk_and_nothing_on_black(detect: Detect) -> None:
    disks = [(200, 200, 40), (900, 500, 40), (1100, 150, 25)]
    found = detect([_disks(disks), np.zeros((FRAME_H, FRAME_W, 3), np.uint8), _disks([(640, 360, 30)], (255, 40, 40))])
    assert len(found) == 3
    boxes = sorted(d.box for d in found[0])
    want = sorted((cx - r, cy - r, cx + r, cy + r) for cx, cy, r in disks)
    assert len(boxes) == 3
    np.testing.assert_allclose(boxes, want, atol=4.0)
    assert found[1] == []
    [red] = found[2]  # a coloured ball counts too (brightness is the brightest channel)
    np.testing.assert_allclose(red.box, (610, 330, 670, 390), atol=4.0)


def test_disk_cut_by_the_frame_edge(detect: Detect) -> None:
    [found] = detect([_disks([(1250, 300, 80)])])
    assert len(found) == 1
    x1, y1, x2, y2 = found[0].box
    assert x2 == pytest.approx(1280, abs=1.0)  # clipped to the frame
    assert y1 == pytest.approx(220, abs=6.0) and y2 == pytest.approx(380, abs=6.0)
    assert 1170 - 6 < x1 < 1170 + 30  # the visible part starts at 1170; spread estimate is rough
