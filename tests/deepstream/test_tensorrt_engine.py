"""The TensorRT engine: refused clearly without TensorRT; on an NVIDIA machine, built and
compared with ONNX Runtime on the same model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from appliance.config.schema import ApplianceConfig
from appliance.inference.engine import ModelMismatch
from appliance.inference.engine_builder import EngineBuilder, detect_platform, plan_engine
from appliance.inference.onnx_engine import load_engine
from appliance.inference.tensorrt_engine import load_tensorrt_engine

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None


def blob_config(tmp_path, blob_model) -> ApplianceConfig:
    return ApplianceConfig.model_validate({
        "models": [{"id": "blobs", "onnx": str(blob_model), "labels": str(blob_model.with_suffix(".labels")),
                    "input": {"width": 320, "height": 320}}],
        "sources": [{"id": "a", "uri": "test://ball"}, {"id": "b", "uri": "test://ball"}],
        "engines": {"runtime": "tensorrt", "cache_dir": str(tmp_path / "engines"), "max_batch": 4},
    })


def test_the_tensorrt_runtime_is_refused_with_the_reason_when_it_cannot_load(tmp_path, blob_model):
    config = blob_config(tmp_path, blob_model)
    reason = ("model 'blobs': no engine .*run `appliance engines build` first" if HAVE_TENSORRT
              else "model 'blobs': engines.runtime is tensorrt, but TensorRT is not installed")
    with pytest.raises(ModelMismatch, match=reason):
        load_tensorrt_engine(config, config.models[0])


@pytest.mark.skipif(not HAVE_TENSORRT, reason="TensorRT, pycuda and an NVIDIA GPU are absent on this machine")
def test_a_built_engine_infers_like_onnx_runtime(tmp_path, blob_model):
    config = blob_config(tmp_path, blob_model)
    model = config.models[0]
    EngineBuilder().build(plan_engine(config, model, detect_platform()))
    engine = load_tensorrt_engine(config, model)
    reference = load_engine(model)
    rng = np.random.default_rng(7)
    try:
        for count in (1, 3, 4, 2):  # dynamic batch, buffers reused
            batch = rng.random((count, 3, 320, 320), dtype=np.float32)
            got, = engine.infer(batch)
            want, = reference.infer(batch)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=2e-2, rtol=2e-2)  # FP16
    finally:
        engine.close()
        reference.close()
