"""The ``appliance`` command as an integrator runs it: exit codes, messages, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO, free_port, metric, scrape, wait_for_port

APPLIANCE = [sys.executable, "-m", "appliance"]


def write_config(tmp_path: Path, blob_model: Path, port: int, extra_source: str = "") -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(f"""\
device: {{id: cli-test}}
backend: portable
models:
  - id: blobs
    onnx: {blob_model}
    labels: {blob_model.with_suffix('.labels')}
    input: {{width: 320, height: 320}}
sources:
  - id: pattern
    uri: test://ball?width=320&height=240&fps=10
    analyze_fps: 5
{extra_source}results:
  jsonl: out/results.jsonl
metrics:
  port: {port}
""")
    return config


def test_validate_accepts_the_demo_config(demo_media):
    done = subprocess.run([*APPLIANCE, "validate", str(REPO / "pipelines" / "demo.yaml")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo.yaml: ok" in done.stdout


def test_validate_reports_every_problem_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - id: a\n    uri: ftp://x\n    analyze_fps: fast\n  - id: a\n    uri: test://ball\n")
    done = subprocess.run([*APPLIANCE, "validate", str(bad)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith(f"{bad}:3: sources.0.uri: unsupported URI scheme 'ftp'") for line in lines), lines
    assert any(line.startswith(f"{bad}:4: sources.0.analyze_fps:") for line in lines), lines
    assert any(line.startswith(f"{bad}:5: sources.1.id: duplicate source id 'a'") for line in lines), lines


def test_run_refuses_a_mismatched_model_with_both_shapes(tmp_path, blob_model):
    config = write_config(tmp_path, blob_model, free_port())
    config.write_text(config.read_text().replace("{width: 320, height: 320}", "{width: 640, height: 640}"))
    done = subprocess.run([*APPLIANCE, "run", "-c", str(config), "--duration", "1"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "[N, 3, 640, 640]" in done.stderr and "320, 320]" in done.stderr


def test_run_shuts_down_cleanly_on_sigterm(tmp_path, blob_model):
    port = free_port()
    config = write_config(tmp_path, blob_model, port)
    process = subprocess.Popen([*APPLIANCE, "run", "-c", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, timeout=20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            analyzed = metric(scrape(port), "appliance_stream_frames_analyzed_total", stream="pattern")
            if analyzed and analyzed >= 3:
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "received SIGTERM, shutting down" in stderr
    results = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(results) >= 3  # relative output paths resolve against the config file


def test_run_stops_after_duration(tmp_path, blob_model):
    config = write_config(tmp_path, blob_model, free_port())
    began = time.monotonic()
    done = subprocess.run([*APPLIANCE, "run", "-c", str(config), "--duration", "2"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert 2 <= time.monotonic() - began < 30
    assert "backend: portable" in done.stderr
