from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from appliance.inference.engine import ModelMismatch, TensorSpec
from appliance.inference.onnx_engine import DYNAMIC_MAX_BATCH, OnnxRuntimeEngine, declared_input_size, load_engine
from tests.inference.onnx_models import REPO, identity_model, model_config, switch_model

Frames = Callable[..., np.ndarray]


def _switch(tmp_path: Path, batch: int | str = "N") -> Path:
    dark = np.arange(5 * 6, dtype=np.float32).reshape(5, 6)
    return switch_model(tmp_path / "m.onnx", dark, dark + 100, batch=batch)


def test_dynamic_batch_model(tmp_path: Path, frames: Frames) -> None:
    engine = OnnxRuntimeEngine(model_config(_switch(tmp_path)), threads=2)
    assert engine.name == "test-model"
    assert engine.input == TensorSpec("images", (None, 3, 64, 64), "float32")
    assert engine.outputs == (TensorSpec("output0", (None, 5, 6), "float32"),)
    assert engine.max_batch == DYNAMIC_MAX_BATCH
    out = engine.infer(frames(3, [0.0, 1.0, 0.0]))
    assert isinstance(out, list) and len(out) == 1 and out[0].shape == (3, 5, 6)
    base = np.arange(30, dtype=np.float32).reshape(5, 6)
    np.testing.assert_array_equal(out[0], np.stack([base, base + 100, base]))
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.infer(frames(1, [0.0]))


def test_fixed_batch_one_runs_items_one_by_one(tmp_path: Path, frames: Frames) -> None:
    engine = OnnxRuntimeEngine(model_config(_switch(tmp_path, batch=1)))
    assert engine.max_batch == 1 and engine.input.shape == (1, 3, 64, 64)
    out = engine.infer(frames(3, [1.0, 0.0, 1.0]))
    base = np.arange(30, dtype=np.float32).reshape(5, 6)
    np.testing.assert_array_equal(out[0], np.stack([base + 100, base, base + 100]))


def test_fixed_batch_pads_the_last_chunk(tmp_path: Path, frames: Frames) -> None:
    engine = OnnxRuntimeEngine(model_config(_switch(tmp_path, batch=2)))
    assert engine.max_batch == 2
    out = engine.infer(frames(3, [1.0, 0.0, 1.0]))
    base = np.arange(30, dtype=np.float32).reshape(5, 6)
    np.testing.assert_array_equal(out[0], np.stack([base + 100, base, base + 100]))


def test_dynamic_height_and_width_are_accepted(tmp_path: Path, frames: Frames) -> None:
    path = identity_model(tmp_path / "m.onnx", ["N", 3, "H", "W"])
    engine = OnnxRuntimeEngine(model_config(path, size=64))
    batch = frames(2, [0.25, 0.5])
    np.testing.assert_array_equal(engine.infer(batch)[0], batch)


def test_declared_input_size_is_width_by_height(tmp_path: Path) -> None:
    assert declared_input_size(identity_model(tmp_path / "wide.onnx", ["N", 3, 384, 640])) == (640, 384)
    assert declared_input_size(identity_model(tmp_path / "free.onnx", ["N", 3, "H", "W"])) is None
    assert declared_input_size(identity_model(tmp_path / "flat.onnx", ["N", 10])) is None


def _mismatch(path: Path, expected: str, found: str, **config: object) -> str:
    with pytest.raises(ModelMismatch) as caught:
        OnnxRuntimeEngine(model_config(path, **config))
    message = str(caught.value)
    assert expected in message, message
    assert found in message, message
    assert str(path) in message, message
    return message


def test_wrong_input_size(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "m.onnx", ["N", 3, 32, 32])
    _mismatch(path, "[N, 3, 64, 64] float32", "[N, 3, 32, 32] float32")


def test_wrong_rank(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "m.onnx", ["N", 3, 64])
    _mismatch(path, "[N, 3, 64, 64] float32", "[N, 3, 64] float32")


def test_wrong_channels(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "m.onnx", [1, 1, 64, 64])
    _mismatch(path, "[N, 3, 64, 64] float32", "[1, 1, 64, 64] float32")


@pytest.mark.parametrize(("elem", "name"), [(TensorProto.FLOAT16, "float16"), (TensorProto.UINT8, "uint8")])
def test_wrong_dtype(tmp_path: Path, elem: int, name: str) -> None:
    path = identity_model(tmp_path / "m.onnx", ["N", 3, 64, 64], elem=elem)
    _mismatch(path, "[N, 3, 64, 64] float32", f"[N, 3, 64, 64] {name}")


def test_wrong_input_name(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "m.onnx", ["N", 3, 64, 64], name="input")
    message = _mismatch(path, "[N, 3, 64, 64] float32", "[N, 3, 64, 64] float32", input_name="images")
    assert "'images'" in message and "'input'" in message
    OnnxRuntimeEngine(model_config(path, input_name="input"))  # the right name loads


def test_garbage_file(tmp_path: Path) -> None:
    # In a fresh interpreter, as the appliance runs: ONNX Runtime's C++ error path can
    # abort a process that imported the `onnx` package before GStreamer (as the tests do).
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00not an onnx model at all" * 10)
    code = (
        "import sys\n"
        "from appliance.config.schema import ModelConfig\n"
        "from appliance.inference.engine import ModelMismatch\n"
        "from appliance.inference.onnx_engine import OnnxRuntimeEngine\n"
        f"model = ModelConfig.model_validate({{'id': 'm', 'onnx': {str(path)!r}, 'labels': ['a'],\n"
        "    'input': {'width': 64, 'height': 64}})\n"
        "try:\n"
        "    OnnxRuntimeEngine(model)\n"
        "except ModelMismatch as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "not a valid ONNX model" in done.stdout
    assert str(path) in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_load_engine_checks_outputs_against_labels(tmp_path: Path) -> None:
    # a YOLOv8 head for 2 classes ([N, 6, anchors]) configured with 3 labels
    path = switch_model(tmp_path / "m.onnx", np.zeros((6, 10)), np.zeros((6, 10)))
    with pytest.raises(ModelMismatch) as caught:
        load_engine(model_config(path, labels=["a", "b", "c"]))
    message = str(caught.value)
    assert "[N, 7, anchors]" in message and "[?, 6, 10]" in message and str(path) in message
    engine = load_engine(model_config(path, labels=["a", "b"]))
    assert engine.outputs[0].shape == (None, 6, 10)
