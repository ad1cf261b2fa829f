"""The agent's child pipeline: restarted with backoff when it exits, and never outliving the agent."""

from __future__ import annotations

import subprocess
import sys
import time

from appliance.fleet.pipeline import ChildPipeline


def wait_exit(pipeline: ChildPipeline, timeout: float = 10.0) -> int | None:
    deadline = time.monotonic() + timeout
    while pipeline.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return pipeline.exit_code()


def test_an_exited_child_is_restarted_after_a_growing_delay(tmp_path):
    pipeline = ChildPipeline(tmp_path / "current.yaml", command=[sys.executable, "-c", "raise SystemExit(3)"])
    pipeline.start()
    first = pipeline.pid
    pipeline.start()  # already started: no second child
    assert pipeline.pid == first
    assert wait_exit(pipeline) == 3
    pipeline.keep_running(now=100.0)  # schedules a restart in 1 s
    pipeline.keep_running(now=100.5)
    assert pipeline.pid == first
    pipeline.keep_running(now=101.0)
    assert pipeline.pid != first
    second = pipeline.pid
    assert wait_exit(pipeline) == 3
    pipeline.keep_running(now=200.0)  # the next delay is 2 s
    pipeline.keep_running(now=201.5)
    assert pipeline.pid == second
    pipeline.keep_running(now=202.0)
    assert pipeline.pid != second
    pipeline.stop()


def test_stop_terminates_a_running_child(tmp_path):
    pipeline = ChildPipeline(tmp_path / "c.yaml", stop_timeout_s=5,
                             command=[sys.executable, "-c", "import time; time.sleep(60)"])
    pipeline.restart()
    pid = pipeline.pid
    pipeline.stop()
    assert pipeline.exit_code() is None and pipeline.pid is None
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
