"""The anomaly parser end to end: tiny ONNX models in anomalib's layout -> engine -> parser.

The models compute ``anomaly_map`` as the per-pixel maximum over RGB and
``pred_score`` as the maximum over the whole image, so every output value is
known exactly from the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from appliance.inference.anomaly import AnomalyParser, AnomalyResult, map_to_source
from appliance.inference.engine import ModelMismatch, TensorSpec
from appliance.inference.letterbox import Letterbox
from appliance.inference.onnx_engine import OnnxRuntimeEngine
from tests.inference.onnx_models import model_config, save_model

SIZE = 64


def anomalib_like(
    path: Path,
    score_shape: str = "[N]",
    map_shape: str = "[N,1,H,W]",
    score_name: str = "pred_score",
    map_name: str = "anomaly_map",
    extra_first: bool = True,
) -> Path:
    """Input ``input [N, 3, 64, 64]``; ``anomaly_map`` = max over RGB, ``pred_score`` = max of the image.

    With ``extra_first`` the outputs come as ``pred_label`` (bool), ``anomaly_map``,
    ``pred_score``: not the order the parser reads them in, and one it ignores.
    """
    keep_map = 1 if map_shape == "[N,1,H,W]" else 0
    nodes = [
        helper.make_node("ReduceMax", ["input"], [map_name], axes=[1], keepdims=keep_map),
        helper.make_node("ReduceMax", ["input"], ["score_flat"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Greater", ["score_flat", "half"], ["pred_label"]),
    ]
    if score_shape == "[N]":
        nodes.append(helper.make_node("Identity", ["score_flat"], [score_name]))
        score_dims: list[int | str] = ["N"]
    else:
        nodes.append(helper.make_node("Unsqueeze", ["score_flat", "axis1"], [score_name]))
        score_dims = ["N", 1]
    map_dims: list[int | str] = ["N", 1, SIZE, SIZE] if keep_map else ["N", SIZE, SIZE]
    outputs = [
        helper.make_tensor_value_info(map_name, TensorProto.FLOAT, map_dims),
        helper.make_tensor_value_info(score_name, TensorProto.FLOAT, score_dims),
    ]
    if extra_first:
        outputs.insert(0, helper.make_tensor_value_info("pred_label", TensorProto.BOOL, ["N"]))
    else:
        nodes.pop(2)
    inits = [
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
    ]
    return save_model(
        path, nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])], outputs, inits
    )


def _batch() -> np.ndarray:
    """Three items: a dim ramp, black with one hot pixel, a bright flat grey."""
    batch = np.zeros((3, 3, SIZE, SIZE), np.float32)
    batch[0] = np.linspace(0, 0.25, SIZE, dtype=np.float32)[None, None, :]
    batch[1, 2, 40, 17] = 0.875
    batch[2] = 0.625
    batch[2, 0, :4, :4] = 0.75
    return batch


def _engine(path: Path) -> OnnxRuntimeEngine:
    # ModelConfig's parser list has no "anomaly" yet; OnnxRuntimeEngine checks the input only.
    return OnnxRuntimeEngine(model_config(path, ["anomaly"], input_name="input"))


@pytest.mark.parametrize("score_shape", ["[N]", "[N,1]"])
@pytest.mark.parametrize("map_shape", ["[N,1,H,W]", "[N,H,W]"])
def test_both_anomalib_layouts_parse_exactly(tmp_path: Path, score_shape: str, map_shape: str) -> None:
    engine = _engine(anomalib_like(tmp_path / "m.onnx", score_shape, map_shape))
    names = [o.name for o in engine.outputs]
    assert names == ["pred_label", "anomaly_map", "pred_score"]
    parser = AnomalyParser(threshold=0.5, model_name="test-model")
    parser.check(engine.outputs)
    batch = _batch()
    results = parser.parse(engine.infer(batch), names)
    assert len(results) == 3 and all(isinstance(r, AnomalyResult) for r in results)
    assert [r.score for r in results] == [0.25, 0.875, 0.75]
    assert all(isinstance(r.score, float) for r in results)
    for result, item in zip(results, batch, strict=True):
        assert result.anomaly_map.shape == (SIZE, SIZE) and result.anomaly_map.dtype == np.float32
        np.testing.assert_array_equal(result.anomaly_map, item.max(axis=0))
    assert [parser.is_anomalous(r) for r in results] == [False, True, True]


def test_parse_takes_a_mapping_by_name() -> None:
    parser = AnomalyParser(0.5, "m")
    amap = np.zeros((2, 1, 8, 8), np.float32)
    amap[1, 0, 3, 4] = 2.0
    results = parser.parse({"anomaly_map": amap, "pred_score": np.array([[0.125], [2.0]], np.float32)})
    assert [r.score for r in results] == [0.125, 2.0]
    np.testing.assert_array_equal(results[1].anomaly_map, amap[1, 0])


def test_parse_needs_names_for_a_list() -> None:
    parser = AnomalyParser(0.5, "m")
    outputs = [np.zeros(1, np.float32), np.zeros((1, 1, 4, 4), np.float32)]
    with pytest.raises(ValueError, match="need their names"):
        parser.parse(outputs)
    with pytest.raises(ValueError, match="2 outputs but 1 names"):
        parser.parse(outputs, ["pred_score"])


def test_missing_output_names_are_refused_with_expected_and_found(tmp_path: Path) -> None:
    path = anomalib_like(tmp_path / "m.onnx", score_name="output", map_name="heatmap", extra_first=False)
    engine = _engine(path)
    parser = AnomalyParser(0.5, "test-model")
    with pytest.raises(ModelMismatch) as caught:
        parser.check(engine.outputs)
    message = str(caught.value)
    assert "model 'test-model'" in message
    assert "expected outputs 'pred_score' [N] or [N, 1] and 'anomaly_map' [N, 1, H, W] or [N, H, W]" in message
    assert "found 'heatmap' [?, 1, 64, 64] float32, 'output' [?] float32" in message
    with pytest.raises(ModelMismatch, match="found 'heatmap', 'output'"):
        parser.parse(engine.infer(_batch()), [o.name for o in engine.outputs])


@pytest.mark.parametrize(
    ("outputs", "found"),
    [
        ([TensorSpec("pred_score", (None, 2), "float32"), TensorSpec("anomaly_map", (None, 1, 64, 64), "float32")],
         "'pred_score' [?, 2] float32"),
        ([TensorSpec("pred_score", (None,), "float32"), TensorSpec("anomaly_map", (None, 3, 64, 64), "float32")],
         "'anomaly_map' [?, 3, 64, 64] float32"),
        ([TensorSpec("pred_score", (None,), "float32"), TensorSpec("anomaly_map", (None, 64), "float32")],
         "'anomaly_map' [?, 64] float32"),
        ([TensorSpec("pred_score", (2,), "float32"), TensorSpec("anomaly_map", (4, 1, 64, 64), "float32")],
         "'pred_score' [2] float32"),
        ([TensorSpec("pred_score", (None,), "bool"), TensorSpec("anomaly_map", (None, 1, 64, 64), "float32")],
         "'pred_score' [?] bool"),
        ([], "no outputs"),
    ],
)
def test_wrong_shapes_are_refused(outputs: list[TensorSpec], found: str) -> None:
    with pytest.raises(ModelMismatch, match="expected outputs") as caught:
        AnomalyParser(0.5, "m").check(outputs)
    assert found in str(caught.value)


def test_parse_refuses_outputs_that_do_not_fit() -> None:
    parser = AnomalyParser(0.5, "m")
    with pytest.raises(ModelMismatch, match=r"'pred_score' \[3\], 'anomaly_map' \[2, 1, 4, 4\]"):
        parser.parse({"pred_score": np.zeros(3, np.float32), "anomaly_map": np.zeros((2, 1, 4, 4), np.float32)})


def test_threshold_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        AnomalyParser(float("nan"), "m")


def _hot(size: tuple[int, int], x: slice, y: slice) -> np.ndarray:
    amap = np.zeros(size, np.float32)
    amap[y, x] = 1.0
    return amap


def test_map_to_source_crops_the_borders_and_scales() -> None:
    lb = Letterbox.compute(640, 480, 64, 64)  # image rows 8..56 of the input, 10 source px per input px
    assert (lb.scaled_w, lb.scaled_h, lb.pad_x, lb.pad_y) == (64, 48, 0, 8)
    amap = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)  # value = row * 64 + column
    out = map_to_source(amap, lb)
    assert out.shape == (480, 640) and out.dtype == np.float32
    rows, cols = np.divmod(out.astype(np.int64), 64)
    np.testing.assert_array_equal(rows, (np.arange(480) // 10 + 8)[:, None] + np.zeros((1, 640), np.int64))
    np.testing.assert_array_equal(cols, (np.arange(640) // 10)[None, :] + np.zeros((480, 1), np.int64))
    assert rows.min() == 8 and rows.max() == 55  # nothing from the border rows 0..7 and 56..63

    hot = map_to_source(_hot((64, 64), slice(20, 24), slice(30, 34)), lb)
    expected = _hot((480, 640), slice(200, 240), slice(220, 260))  # (30 - 8) * 10 = 220
    np.testing.assert_array_equal(hot, expected)


def test_map_to_source_portrait_frame_and_a_smaller_map() -> None:
    lb = Letterbox.compute(360, 480, 64, 64)  # 3:4 -> 48 x 64 at x = 8, 7.5 source px per input px
    assert (lb.scaled_w, lb.scaled_h, lb.pad_x, lb.pad_y) == (48, 64, 8, 0)
    hot = map_to_source(_hot((64, 64), slice(8, 14), slice(0, 2)), lb)
    np.testing.assert_array_equal(hot, _hot((480, 360), slice(0, 45), slice(0, 15)))
    # a 32 x 32 map covers the same 64 x 64 input: map pixel (x 4..6, y 0) = input (x 8..13, y 0..1)
    small = map_to_source(_hot((32, 32), slice(4, 7), slice(0, 1))[None], lb)
    np.testing.assert_array_equal(small, hot)


def test_map_to_source_refuses_a_batch() -> None:
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        map_to_source(np.zeros((2, 1, 64, 64), np.float32), Letterbox.compute(64, 64, 64, 64))


def test_load_engine_checks_an_anomaly_model_against_the_anomaly_layout() -> None:
    from appliance.inference.onnx_engine import load_engine

    engines = Path(__file__).resolve().parents[2] / "engines"
    engine = load_engine(model_config(engines / "anomaly.onnx", ["anomaly"], 64, parser="anomaly"))
    try:
        assert {o.name for o in engine.outputs} >= {"pred_score", "anomaly_map"}
    finally:
        engine.close()
    with pytest.raises(ModelMismatch, match=r"expected outputs 'pred_score'.*found 'output0'"):
        load_engine(model_config(engines / "blobs.onnx", ["anomaly"], 320, parser="anomaly"))
