"""``tools/device-check`` as an integrator runs it: every check reported, a verdict, an exit code."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.support import REPO


def test_device_check_reports_each_check_and_a_verdict():
    done = subprocess.run([sys.executable, str(REPO / "tools" / "device-check"), "--seconds", "6"],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    for check in ("JetPack / L4T", "DeepStream", "tensorrt", "pyds", "numpy", "element nvinfer"):
        assert f"] {check}" in out, out
    last = out.strip().splitlines()[-1]
    assert (done.returncode == 0) == (last == "PASS"), out
    if importlib.util.find_spec("pyds") is None:  # this machine, without DeepStream
        assert "[FAIL] pyds" in out and "[FAIL] element nvinfer" in out
        assert last == "FAIL: fix the checks above before the pipelines can run" and done.returncode == 1
