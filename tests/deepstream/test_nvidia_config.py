"""The ``engines:`` and ``deepstream:`` sections: defaults, paths, and errors as file:line: key: reason."""

from __future__ import annotations

import subprocess
import sys

from appliance.config.loader import load_config
from tests.support import REPO


def test_bad_values_are_reported_with_their_line_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""\
sources:
  - id: a
    uri: test://ball
engines:
  precision: fp8
  calibration:
    folder: nowhere/
deepstream:
  muxer: {width: 1281}
  preview: {encoder: omxh264enc}
""")
    done = subprocess.run([sys.executable, "-m", "appliance", "validate", str(bad)], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert f"{bad}:5: engines.precision: Input should be 'fp16' or 'int8' (got 'fp8')" in lines
    assert f"{bad}:7: engines.calibration.folder: calibration folder not found: {tmp_path / 'nowhere'}" in lines
    assert f"{bad}:9: deepstream.muxer.width: Input should be a multiple of 2 (got 1281)" in lines
    assert any(line.startswith(f"{bad}:10: deepstream.preview.encoder:") for line in lines), lines


def test_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "calib").mkdir()
    site = tmp_path / "site.yaml"
    site.write_text("""\
sources: [{id: a, uri: test://ball}]
engines: {cache_dir: engines, calibration: {folder: calib}}
deepstream: {config_dir: generated, preview: {enabled: true, file: out/preview.mkv}}
""")
    config = load_config(site)
    assert config.engines.cache_dir == tmp_path / "engines"
    assert config.engines.calibration.folder == tmp_path / "calib"
    assert config.deepstream.config_dir == tmp_path / "generated"
    assert config.deepstream.preview.file == tmp_path / "out" / "preview.mkv"
    assert (config.engines.runtime, config.engines.precision, config.deepstream.tracker.width) == (
        "onnxruntime", "fp16", 640)
