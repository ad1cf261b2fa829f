"""Engine naming, rebuild decisions and calibration frames, without TensorRT."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from appliance.inference.calibration import CalibrationError, calibration_batches, calibration_inputs
from appliance.inference.engine import ModelMismatch
from appliance.inference.engine_builder import (
    EngineSpec,
    Platform,
    check_engine,
    decide,
    plan_engine,
    plan_engines,
    stale_engines,
)
from appliance.media import make_clip
from appliance.pipeline.gst import Gst
from tests.deepstream.site import site_config
from tests.support import REPO

ORIN = Platform("NVIDIA Jetson Orin Nano Developer Kit", "10.3.0")
A100 = Platform("NVIDIA A100-SXM4-40GB", "10.3.0")


def built(plan) -> None:
    """What EngineBuilder leaves behind: the engine and its record."""
    plan.engine.parent.mkdir(parents=True, exist_ok=True)
    plan.engine.write_bytes(b"serialized engine")
    plan.record_path.write_text(json.dumps(plan.spec.record()))


def test_engine_names_carry_the_onnx_hash_gpu_and_tensorrt(tmp_path):
    config = site_config(tmp_path)
    plans = {p.spec.model: p for p in plan_engines(config, ORIN)}
    defects = plans["defects"]
    digest = defects.spec.onnx_sha256
    assert len(digest) == 64
    assert defects.engine == tmp_path / "engines" / (
        f"defects.{digest[:16]}.nvidia-jetson-orin-nano-developer-kit.trt10.3.0.fp16.b4.engine")
    # the dynamic batch profile: 1 .. engines.max_batch, optimised for the streams using the model
    assert defects.spec.shapes() == ((1, 3, 320, 320), (3, 3, 320, 320), (4, 3, 320, 320))
    assert plans["ppe"].spec.opt_batch == 1
    assert plan_engine(config, config.models[0], A100).engine != defects.engine
    assert defects.calibration_cache is None
    assert defects.timing_cache.name == "timing.nvidia-jetson-orin-nano-developer-kit.trt10.3.0.cache"


def test_rebuild_when_missing_changed_or_foreign_and_keep_when_up_to_date(tmp_path):
    config = site_config(tmp_path)
    model = config.models[0]
    plan = plan_engine(config, model, ORIN)
    assert decide(plan).build and "no engine" in decide(plan).reason
    built(plan)
    assert decide(plan) == decide(plan_engine(config, model, ORIN))
    assert not decide(plan).build and "up to date" in decide(plan).reason
    assert decide(plan, force=True).build
    # a record that says another TensorRT built it (a file copied in under this name)
    record = json.loads(plan.record_path.read_text())
    plan.record_path.write_text(json.dumps({**record, "tensorrt": "8.6.2"}))
    assert decide(plan).build and "tensorrt '8.6.2' (wanted '10.3.0')" in decide(plan).reason
    plan.record_path.unlink()
    assert decide(plan).build and "no readable build record" in decide(plan).reason
    built(plan)
    # the ONNX file changes: a new name, so a rebuild; the old engine is stale
    model.onnx.write_bytes(b"retrained weights")
    changed = plan_engine(config, model, ORIN)
    assert changed.engine != plan.engine and decide(changed).build
    assert stale_engines(changed) == [plan.engine]


def test_an_engine_of_another_onnx_gpu_or_tensorrt_is_refused_at_load(tmp_path):
    config = site_config(tmp_path)
    model = config.models[0]
    plan = plan_engine(config, model, ORIN)
    built(plan)
    assert check_engine(plan.engine, model, ORIN)["precision"] == "fp16"
    with pytest.raises(ModelMismatch, match=r"gpu 'NVIDIA Jetson Orin Nano Developer Kit' \(wanted 'NVIDIA A100"):
        check_engine(plan.engine, model, A100)
    model.onnx.write_bytes(b"another model")
    with pytest.raises(ModelMismatch, match="onnx_sha256"):
        check_engine(plan.engine, model, ORIN)


def test_int8_plans_a_calibration_cache_per_onnx(tmp_path):
    config = site_config(tmp_path)
    config = config.model_copy(update={"engines": config.engines.model_copy(update={"precision": "int8"})})
    plan = plan_engine(config, config.models[0], ORIN)
    assert plan.engine.name.endswith(".int8.b4.engine")
    assert plan.calibration_cache.name == f"defects.{plan.spec.onnx_sha256[:16]}.320x320.calib"
    assert EngineSpec(**{k: v for k, v in plan.spec.record().items() if k != "schema"}) == plan.spec


def test_calibration_frames_are_letterboxed_like_the_portable_backend(tmp_path):
    folder = tmp_path / "calibration"
    folder.mkdir()
    make_clip(folder / "line.mp4", width=640, height=360, fps=15, seconds=5)
    pipeline = Gst.parse_launch(f'videotestsrc num-buffers=1 pattern=white ! video/x-raw,width=100,height=200 '
                                f'! pngenc ! filesink location="{folder / "still.png"}"')
    pipeline.set_state(Gst.State.PLAYING)
    pipeline.get_bus().timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    config = site_config(tmp_path, "")
    config = config.model_copy(update={"engines": config.engines.model_copy(
        update={"calibration": config.engines.calibration.model_copy(update={"folder": folder})})})
    model = config.models[0]
    inputs = calibration_inputs(config, model)
    assert [s.uri.rsplit("/", 1)[1] for s in inputs] == ["line.mp4", "still.png"]
    batches = [b.copy() for b in calibration_batches(inputs[::-1], model, frames=8, batch_size=4)]
    assert len(batches) == 2 and batches[0].shape == (4, 3, 320, 320) and batches[0].dtype == np.float32
    still = batches[0][0]  # 100x200 white, letterboxed to 160x320 in the middle: black borders left and right
    assert still[:, :, :70].max() == 0.0 and still[:, :, 250:].max() == 0.0
    assert still[:, :, 90:230].min() > 0.9
    clip = batches[1]
    assert 0.0 < clip.mean() < 1.0 and clip[:, :, :40, :].max() == 0.0  # 640x360 -> 320x180, 70 rows of border


def test_no_calibration_frames_is_a_clear_error(tmp_path):
    config = site_config(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    config = config.model_copy(update={"engines": config.engines.model_copy(
        update={"calibration": config.engines.calibration.model_copy(update={"folder": empty})})})
    with pytest.raises(CalibrationError, match="has no images"):
        calibration_inputs(config, config.models[0])


def test_engines_build_plans_without_tensorrt_and_refuses_to_build_without_it(tmp_path):
    site_config(tmp_path)
    command = [sys.executable, "-m", "appliance", "engines", "build", "-c", str(tmp_path / "site.yaml")]
    plan = subprocess.run([*command, "--dry-run", "--gpu", ORIN.gpu, "--tensorrt", ORIN.tensorrt],
                          capture_output=True, text=True, cwd=REPO)
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert lines[0] == f"platform: {ORIN.gpu}, TensorRT 10.3.0"
    assert any(line.startswith("defects: ") and "(fp16, batch 1..4 opt 3): build: no engine" in line
               for line in lines), lines
    if importlib.util.find_spec("tensorrt") is None:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 1
        assert "cannot build engines: TensorRT is not installed" in done.stderr
        assert "Traceback" not in done.stderr
