"""``appliance status`` against a running appliance, as a person runs it."""

from __future__ import annotations

import re
import subprocess
import sys

from appliance.app import Appliance
from tests.ops.conftest import PATTERN, appliance_config, wait_until
from tests.support import REPO, free_port

STATUS = [sys.executable, "-m", "appliance", "status"]


def rows(output: str) -> dict[str, list[str]]:
    """Table rows by their first cell."""
    return {line.split()[0]: line.split() for line in output.splitlines() if line.strip()}


def test_status_prints_streams_models_and_problems_and_exits_1_when_not_ready(running_appliance):
    done = subprocess.run([*STATUS, "--url", running_appliance.url, "--interval", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert out.startswith("device ops-device  site plant-t  config ops-7  build ")
    assert "  problem: stream:dead: " in out
    assert re.search(r"^host: CPU \d+ % busy; memory [\d.]+ of [\d.]+ GiB in use", out, re.MULTILINE)
    table = rows(out)
    assert table["STREAM"][:4] == ["STREAM", "STATE", "UP", "DECODED/s"]
    pattern, dead = table["pattern"], table["dead"]
    assert pattern[1:3] == ["running", "yes"]
    assert 2.0 <= float(pattern[4]) <= 8.0  # analyzed/s against a target of 5
    assert pattern[5] == "5.0"
    assert pattern[7] == "s" and float(pattern[6]) < 2.0  # last frame "0.1 s ago"
    assert dead[1] in ("waiting", "starting") and dead[2] == "no" and dead[6] == "never"
    assert int(dead[7]) >= 1  # reconnects
    assert table["blobs"][1] == "blobs.onnx" and len(table["blobs"][2]) == 12
    assert float(table["blobs"][3]) > 0  # batches/s
    assert table["OUTBOX"][:4] == ["OUTBOX", "SINK", "PENDING", "OLDEST"]
    sink = table["file"]  # the stream.down event of the dead camera went through the outbox to the file sink
    assert sink[1] == "0" and int(sink[5]) >= 1 and sink[6] == "0"
    assert re.search(r"^/metrics: \d+ samples, [\d.]+ KiB, answered in [\d.]+ ms$", out, re.MULTILINE)


def test_status_exits_0_when_ready(tmp_path, blob_model):
    app = Appliance(appliance_config(tmp_path, blob_model, [PATTERN]))
    app.start()
    try:
        url = f"http://127.0.0.1:{app.metrics_port}"
        assert wait_until(lambda: app.health.readiness.page()[0] == 200, timeout=15)
        done = subprocess.run([*STATUS, "--url", url, "--interval", "0.5"], capture_output=True, text=True,
                              cwd=REPO, timeout=30)
    finally:
        app.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert " ready" in done.stdout.splitlines()[0] and "problem" not in done.stdout


def test_status_of_an_appliance_that_is_not_there_exits_2():
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run([*STATUS, "--url", url], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.returncode == 2
    assert done.stdout.startswith(f"appliance not reachable: {url}/metrics: ")
    assert "Traceback" not in done.stderr
