"""systemd notification over a real unix datagram socket, and the frame watchdog."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance.app import Appliance
from appliance.clock import ManualClock
from appliance.inference.onnx_engine import load_engine
from appliance.watchdog import FrameWatchdog, SystemdNotifier, watchdog_interval
from tests.ops.conftest import PATTERN, appliance_config, wait_until


class NotifySocket:
    """What systemd listens on: a unix datagram socket; collects the notifications."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, text in list(self.messages) for line in text.splitlines()]

    def times_of(self, line: str) -> list[float]:
        return [at for at, text in list(self.messages) if line in text.splitlines()]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()


def test_notifications_reach_a_path_socket_and_an_abstract_one(notify_socket):
    assert SystemdNotifier(notify_socket.address).notify("READY=1", "STATUS=running 2 streams")
    abstract = NotifySocket(f"@appliance-test-{uuid.uuid4().hex}")
    try:
        assert SystemdNotifier.from_environment({"NOTIFY_SOCKET": abstract.address}).notify("WATCHDOG=1")
        assert wait_until(lambda: abstract.lines() == ["WATCHDOG=1"], timeout=5)
    finally:
        abstract.close()
    assert wait_until(lambda: notify_socket.lines() == ["READY=1", "STATUS=running 2 streams"], timeout=5)


def test_without_systemd_or_with_a_gone_socket_nothing_is_sent_and_nothing_breaks(tmp_path):
    assert not SystemdNotifier.from_environment({}).enabled
    assert SystemdNotifier.from_environment({}).notify("READY=1") is False
    assert SystemdNotifier(str(tmp_path / "nobody-listens.sock")).notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_watchdog_is_fed_only_while_frames_advance(notify_socket):
    clock = ManualClock()
    frames = {"analyzed": 0, "running": 2}
    dog = FrameWatchdog(SystemdNotifier(notify_socket.address), 5.0, clock,
                        lambda: frames["analyzed"], lambda: frames["running"])
    frames["analyzed"] = 10
    clock.advance(4.9)
    assert not dog.tick()  # not due yet
    clock.advance(0.2)
    assert dog.tick()  # due, and frames advanced
    clock.advance(6.0)
    assert not dog.tick() and dog.withheld  # due, but no frame analyzed since: a frozen pipeline
    clock.advance(6.0)
    assert not dog.tick()
    frames["analyzed"] = 11
    assert dog.tick() and not dog.withheld  # frames move again
    clock.advance(5.0)
    frames["running"] = 0
    assert dog.tick()  # every camera is down and reconnecting: a restart would not help
    assert wait_until(lambda: notify_socket.lines() == ["WATCHDOG=1"] * 3, timeout=5)


class FreezableEngine:
    """The real ONNX engine, with a switch that makes inference hang (a frozen pipeline)."""

    def __init__(self, engine, frozen: threading.Event, released: threading.Event) -> None:
        self._engine = engine
        self._frozen = frozen
        self._released = released
        self.name, self.input, self.outputs = engine.name, engine.input, engine.outputs
        self.max_batch = engine.max_batch

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._frozen.is_set():
            self._released.wait()
        return self._engine.infer(batch)

    def close(self) -> None:
        self._engine.close()


def test_appliance_notifies_ready_feeds_the_watchdog_stops_feeding_when_frozen_and_says_stopping(
    tmp_path, blob_model, notify_socket, monkeypatch
):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a feed every 0.5 s while frames advance
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    frozen, released = threading.Event(), threading.Event()
    config = appliance_config(tmp_path, blob_model, [PATTERN], inference={"workers": 1})
    app = Appliance(config, make_engine=lambda model: FreezableEngine(load_engine(model), frozen, released))
    stop = threading.Event()
    runner = threading.Thread(target=app.run, kwargs={"stop": stop})
    app.start()
    runner.start()
    try:
        assert wait_until(lambda: "READY=1" in notify_socket.lines(), timeout=5)
        assert wait_until(lambda: len(notify_socket.times_of("WATCHDOG=1")) >= 3, timeout=15)
        frozen.set()
        time.sleep(0.5)  # the batch in flight, if any, finishes
        fed_before = len(notify_socket.times_of("WATCHDOG=1"))
        time.sleep(2.5)  # five feed intervals with the inference hung
        assert len(notify_socket.times_of("WATCHDOG=1")) <= fed_before + 1
        assert app.health.watchdog.withheld
        released.set()
        assert wait_until(lambda: len(notify_socket.times_of("WATCHDOG=1")) >= fed_before + 3, timeout=10)
    finally:
        released.set()
        stop.set()
        runner.join(timeout=10)
        app.stop()
    assert wait_until(lambda: notify_socket.lines()[-2:] == ["STOPPING=1", "STATUS=stopping"], timeout=5)
    assert notify_socket.lines()[:2] == ["READY=1", "STATUS=running 1 stream"]
