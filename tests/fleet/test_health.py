"""The health window, judged on an injected clock (no sleeping)."""

from __future__ import annotations

from appliance.clock import ManualClock
from appliance.fleet.health import HealthWatch, PipelineSample, StreamSample


def sample(version: str | None = None, **streams: tuple[bool, float]) -> PipelineSample:
    return PipelineSample({name: StreamSample(up, analyzed) for name, (up, analyzed) in streams.items()}, version)


def test_the_window_opens_when_the_pipeline_first_answers():
    clock = ManualClock()
    watch = HealthWatch(["a", "b"], window_s=10, clock=clock, startup_s=60)
    assert watch.observe(None, None) is None  # still starting
    clock.advance(20)
    assert watch.observe(sample(a=(True, 0), b=(False, 0)), None) is None  # answered: the window opens now
    clock.advance(9.9)
    assert watch.observe(sample(a=(True, 4), b=(True, 3)), None) is None
    clock.advance(0.1)
    verdict = watch.observe(sample(a=(True, 9), b=(True, 8)), None)
    assert verdict is not None and verdict.healthy


def test_a_stream_without_frames_fails_at_the_end_of_the_window():
    clock = ManualClock()
    watch = HealthWatch(["a", "cam"], window_s=10, clock=clock)
    assert watch.observe(sample(a=(True, 0), cam=(False, 0)), None) is None
    clock.advance(10)
    verdict = watch.observe(sample(a=(True, 45), cam=(False, 0)), None)
    assert verdict is not None and not verdict.healthy
    assert verdict.reason == "stream cam produced no frames in the 10 s health window"


def test_a_stream_missing_from_the_metrics_fails():
    clock = ManualClock()
    watch = HealthWatch(["a", "b"], window_s=1, clock=clock)
    watch.observe(sample(a=(True, 1)), None)
    clock.advance(1)
    verdict = watch.observe(sample(a=(True, 5)), None)
    assert verdict is not None and "stream b produced no frames" in verdict.reason


def test_a_stream_down_at_the_end_fails():
    clock = ManualClock()
    watch = HealthWatch(["a"], window_s=3, clock=clock)
    watch.observe(sample(a=(True, 1)), None)
    clock.advance(3)
    verdict = watch.observe(sample(a=(False, 12)), None)
    assert verdict is not None and not verdict.healthy and "down at the end" in verdict.reason


def test_a_crash_fails_at_once_and_silence_fails_after_the_startup_time():
    clock = ManualClock()
    crashed = HealthWatch(["a"], window_s=60, clock=clock)
    clock.advance(2)
    verdict = crashed.observe(None, 1)
    assert verdict is not None and verdict.reason == "pipeline exited with code 1 after 2.0 s"
    silent = HealthWatch(["a"], window_s=5, clock=clock, startup_s=30)
    clock.advance(29)
    assert silent.observe(None, None) is None
    clock.advance(1)
    verdict = silent.observe(None, None)
    assert verdict is not None and verdict.reason == "pipeline metrics did not answer within 30 s of its start"


def test_frames_must_advance_during_the_window_and_on_the_new_version():
    """A hot reload keeps the counters: frames counted before the window prove nothing."""
    clock = ManualClock()
    watch = HealthWatch(["a"], window_s=5, clock=clock, startup_s=30, version="v2")
    assert watch.observe(sample("v1", a=(True, 500)), None) is None  # the old config still runs
    clock.advance(10)
    assert watch.observe(sample("v2", a=(True, 510)), None) is None  # reloaded: the window opens
    clock.advance(5)
    verdict = watch.observe(sample("v2", a=(True, 510)), None)
    assert verdict is not None and not verdict.healthy and "produced no frames" in verdict.reason
    never = HealthWatch(["a"], window_s=5, clock=clock, startup_s=30, version="v3")
    clock.advance(30)
    verdict = never.observe(sample("v2", a=(True, 600)), None)
    assert verdict is not None
    assert verdict.reason == "pipeline metrics did not report version 'v3' within 30 s of its start"
