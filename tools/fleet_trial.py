#!/usr/bin/env python3
"""A fleet config push on this machine, end to end, timed.

Starts a Mosquitto on 127.0.0.1, a device (``appliance agent`` running ``appliance run``
on a test pattern with ``engines/blobs.onnx``), then pushes signed bundles as an
operator does and times each from the push to the device's report: good bundles
(applied after the health window), forged ones (rejected) and one whose camera never
produces frames (rolled back). The tests in ``tests/fleet/`` drive the same device.

Run ``python tools/fleet_trial.py [--rounds 3] [--window 5]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.fleet.bundle import BundleBody, Targets, envelope_id, sign  # noqa: E402
from appliance.fleet.keys import generate, load_private  # noqa: E402
from appliance.loopback import free_port  # noqa: E402
from appliance.mosquitto import Mosquitto  # noqa: E402

APPLIANCE = [sys.executable, "-m", "appliance"]
GOOD_URI = "test://ball?width=320&height=240&fps=10"
DEVICE = "dev-1"


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


class TrialDevice:
    """One device's files (config, fleet state) and its ``appliance agent`` process."""

    def __init__(self, root: Path, broker_port: int, public_key: Path, model: Path, window_s: float) -> None:
        self.root = root
        self.config_dir = root / "config"
        self.config_dir.mkdir(parents=True)
        self.current = self.config_dir / "current.yaml"
        self.state_file = root / "fleet" / "state.json"
        self.broker_port = broker_port
        self.public_key = public_key
        self.model = model
        self.window_s = window_s
        self.pipeline_port = free_port()
        self.agent_port = free_port()
        self.log = root / "agent.log"
        self._process: subprocess.Popen[bytes] | None = None

    def config(self, label: str, uri: str = GOOD_URI) -> str:
        return f"""\
version: "{label}"
device: {{id: {DEVICE}}}
backend: portable
models:
  - {{id: blobs, onnx: {self.model}, labels: {self.model.with_suffix('.labels')},
     input: {{width: 320, height: 320}}}}
sources:
  - {{id: pattern, uri: "{uri}", analyze_fps: 5, reconnect: {{initial_s: 0.5, max_s: 1, stall_timeout_s: 1}}}}
inference: {{workers: 1}}
metrics: {{port: {self.pipeline_port}}}
mqtt: {{host: 127.0.0.1, port: {self.broker_port}}}
fleet:
  public_key: {self.public_key}
  groups: [line-3]
  state_dir: {self.root / 'fleet'}
  pipeline: child
  health: {{startup_s: 30, window_s: {self.window_s:g}, poll_s: 0.25, stop_timeout_s: 5}}
  metrics: {{port: {self.agent_port}}}
"""

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen([*APPLIANCE, "agent", "-c", str(self.current)], cwd=REPO,
                                             stdout=log, stderr=log)

    def kill(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(10)
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def pipeline_version(self) -> str | None:
        """The ``version`` of the config the running pipeline loaded (None while none answers)."""
        info = scrape(self.pipeline_port, "appliance_config_info")
        return info[0].get("version") if info else None

    def agent_metric(self, name: str, **labels: str) -> float | None:
        for sample_labels, value in scrape_values(self.agent_port, name):
            if sample_labels == labels:
                return value
        return None


def scrape_values(port: int, name: str) -> list[tuple[dict[str, str], float]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return []
    return [(dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name]


def scrape(port: int, name: str) -> list[dict[str, str]]:
    return [labels for labels, _ in scrape_values(port, name)]


class TrialOperator:
    """Signs bundles with the fleet's key, publishes them retained, and collects the device's reports."""

    def __init__(self, key: Path, broker_port: int) -> None:
        self.key = load_private(key)
        self.reports: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._seen = 0
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"operator-{time.monotonic_ns()}")
        self.client.on_connect = lambda client, *_: client.subscribe(f"fleet/{DEVICE}/config/reported", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker_port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the operator could not subscribe to the reports")

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._lock:
            self.reports.append(json.loads(message.payload))

    def bundle(self, version: int, config: str, devices: tuple[str, ...] = (DEVICE,), groups: tuple[str, ...] = (),
               expires_in: timedelta = timedelta(hours=1), key: Any = None) -> bytes:
        now = datetime.now(timezone.utc)
        body = BundleBody(version=version, created_at=now, expires_at=now + expires_in,
                          targets=Targets(devices=list(devices), groups=list(groups)), config=config)
        return sign(body, key or self.key)

    def push(self, envelope: bytes, topic: str = f"fleet/{DEVICE}/config/desired") -> None:
        with self._lock:
            self._seen = len(self.reports)  # reports from before this push do not answer it
        self.client.publish(topic, envelope, qos=1, retain=True).wait_for_publish(10)

    def report(self, envelope: bytes, timeout: float) -> dict[str, Any] | None:
        """The report about ``envelope`` (by its bundle id) since its last push, waiting up to ``timeout``."""
        wanted = envelope_id(envelope)

        def found() -> dict[str, Any] | None:
            with self._lock:
                return next((r for r in self.reports[self._seen:] if r.get("bundle") == wanted), None)

        wait_until(lambda: found() is not None, timeout, interval=0.02)
        return found()

    def count(self) -> int:
        with self._lock:
            return len(self.reports)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="good and forged bundles pushed (default 3 each)")
    parser.add_argument("--window", type=float, default=5.0, help="health window of the device in s (default 5)")
    args = parser.parse_args()
    timings: dict[str, list[float]] = {"applied": [], "rejected (bad signature)": [], "rolled_back": []}
    last: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-trial-") as folder:
        tmp = Path(folder)
        broker = Mosquitto(tmp / "mosquitto")
        broker.start()
        generate(tmp / "fleet.key", tmp / "fleet.pub")
        generate(tmp / "rogue.key", tmp / "rogue.pub")
        device = TrialDevice(tmp / "device", broker.port, tmp / "fleet.pub", REPO / "engines" / "blobs.onnx",
                             args.window)
        device.current.write_text(device.config("v0"))
        operator = TrialOperator(tmp / "fleet.key", broker.port)
        rogue = load_private(tmp / "rogue.key")
        try:
            device.start()
            if not wait_until(lambda: device.pipeline_version() == "v0", 60):
                raise RuntimeError(f"the device did not start:\n{device.log.read_text()}")
            pushes = []
            for round_ in range(args.rounds):
                pushes.append(("applied", operator.bundle(round_ + 1, device.config(f"v{round_ + 1}"))))
                pushes.append(("rejected (bad signature)", operator.bundle(100, device.config("x"), key=rogue)))
            dead = device.config("dead", uri=f"rtsp://127.0.0.1:{free_port()}/cam")
            pushes.append(("rolled_back", operator.bundle(args.rounds + 1, dead)))
            for expected, envelope in pushes:
                started = time.monotonic()
                operator.push(envelope)
                report = operator.report(envelope, timeout=args.window + 90)
                if report is None or not expected.startswith(report["status"]):
                    raise RuntimeError(f"expected {expected}, got {report}:\n{device.log.read_text()}")
                timings[expected].append(time.monotonic() - started)
                last = report
        finally:
            operator.close()
            device.stop()
            broker.stop()
    print(f"fleet push to report on 127.0.0.1, health window {args.window:g} s:")
    print(f"{'decision':<26}{'pushes':>7}{'median s':>10}{'max s':>8}")
    for decision, values in timings.items():
        print(f"{decision:<26}{len(values):>7}{statistics.median(values):>10.2f}{max(values):>8.2f}")
    print(f"the last report: {json.dumps(last)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
