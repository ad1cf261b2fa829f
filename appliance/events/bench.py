"""``appliance bench --events``: the outbox's write cost per event and sustained delivery to a local Mosquitto.

Three figures, all through the real outbox (SQLite WAL, ``synchronous=FULL``)
and the real MQTT sink (QoS 1, each event acknowledged by PUBACK before it is
marked delivered), with a real subscriber counting what arrives:

- **write**: the time ``Outbox.write`` takes per event (an event is durable when it returns);
- **catch-up**: a backlog (as after a broker outage) delivered as fast as possible;
- **sustained**: events written as fast as possible while they are delivered.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from appliance.clock import SystemClock
from appliance.config.schema import ApplianceConfig
from appliance.events.delivery import Delivery, open_outbox
from appliance.events.factory import EventFactory
from appliance.events.outbox import Outbox
from appliance.mosquitto import Mosquitto
from appliance.types import Event

DEVICE = "bench"


class Counter:
    """A QoS 1 subscriber that counts the event messages it receives."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-counter")
        subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(f"appliance/{DEVICE}/events/#", qos=1)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the counting subscriber got no SUBACK")

    def _on_message(self, *_: object) -> None:
        self.count += 1

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.count >= count

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def sample_events(count: int) -> list[Event]:
    """Events shaped like the appliance's (a PPE violation with its evidence fields), about 500 bytes of JSON."""
    factory = EventFactory(DEVICE, "line-3/2026-11-27", SystemClock())
    return [
        factory.make("ppe.missing_item", "start", f"cleanroom-{n % 4}", time.time(), severity="warning",
                     confidence=0.87, track_id=n, zone="clean", model="ppe",
                     snapshot=f"/var/lib/appliance/snapshots/{DEVICE}-{n:08d}.jpg",
                     attributes={"missing": ["mask", "gloves"], "worn": ["gown", "helmet"], "box": [412.0, 96.5,
                                 540.25, 388.0], "stream_time_s": 120.4 + n, "grace_s": 2.0})
        for n in range(count)
    ]


def run_events_bench(writes: int = 1000, backlog: int = 20000, sustained: int = 3000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="appliance-bench-events-") as folder:
        broker = Mosquitto(Path(folder) / "broker")
        broker.start()
        try:
            return _measure(Path(folder), broker.port, writes, backlog, sustained)
        finally:
            broker.stop()


def _time_writes(outbox: Outbox, count: int) -> dict[str, float]:
    took = []
    for event in sample_events(count):
        began = time.perf_counter()
        outbox.write(event)
        took.append(1000 * (time.perf_counter() - began))
    took.sort()
    return {"mean": statistics.fmean(took), "p50": took[len(took) // 2], "p99": took[int(len(took) * 0.99)]}


def _measure(folder: Path, port: int, writes: int, backlog: int, sustained: int) -> dict[str, Any]:
    config = ApplianceConfig.model_validate({
        "device": {"id": DEVICE}, "sources": [{"id": "cam", "uri": "test://ball"}],
        "mqtt": {"host": "127.0.0.1", "port": port},
        "events": {"outbox": {"path": str(folder / "outbox.sqlite"), "max_bytes": 2**30},
                   "sinks": [{"type": "mqtt", "id": "mqtt"}]},
    })
    figures: dict[str, Any] = {"write_ms": {}}
    for synchronous in ("normal", "full"):  # the default, full, last: it stays open for the delivery figures
        outbox = open_outbox(config.model_copy(update={"events": config.events.model_copy(update={
            "outbox": config.events.outbox.model_copy(update={"synchronous": synchronous})})}))
        took = figures["write_ms"][synchronous] = _time_writes(outbox, writes)
        print(f"outbox write (SQLite WAL, synchronous={synchronous.upper()}, "
              f"{outbox.bytes / outbox.backlog('mqtt')[0]:.0f}-byte events): mean {took['mean']:.3f} ms, "
              f"p50 {took['p50']:.3f} ms, p99 {took['p99']:.3f} ms per event")
        if synchronous == "normal":
            for event in sample_events(backlog - writes):  # the backlog for the catch-up, written quickly
                outbox.write(event)
            outbox.close()
    counter = Counter(port)
    try:
        delivery = Delivery.from_config(config, outbox)
        queued = outbox.backlog("mqtt")[0]
        began = time.perf_counter()
        delivery.start()
        drained = delivery.drain(300)
        elapsed = time.perf_counter() - began
        arrived = counter.wait_for(queued, 30)
        figures["catch_up"] = {"events": queued, "seconds": elapsed, "per_s": queued / elapsed,
                               "all_acknowledged": drained, "all_arrived": arrived}
        print(f"catch-up: {queued} events waiting in the outbox delivered (QoS 1, PUBACK each) in {elapsed:.2f} s: "
              f"{queued / elapsed:.0f} events/s; {counter.count} arrived at the subscriber")
        on_disk = sum(p.stat().st_size for p in folder.glob("outbox.sqlite*"))
        figures["disk"] = {"event_bytes": outbox.bytes, "file_bytes": on_disk}
        print(f"disk: {queued} events hold {outbox.bytes / 2**20:.1f} MiB of JSON (the quota counts this); "
              f"the outbox files take {on_disk / 2**20:.1f} MiB")

        fresh = sample_events(sustained)
        began = time.perf_counter()
        for event in fresh:
            outbox.write(event)
        written = time.perf_counter() - began
        drained = delivery.drain(300)
        elapsed = time.perf_counter() - began
        arrived = counter.wait_for(queued + sustained, 30)
        delivery.stop()
        figures["sustained"] = {"events": sustained, "write_per_s": sustained / written, "seconds": elapsed,
                                "per_s": sustained / elapsed, "all_acknowledged": drained, "all_arrived": arrived}
        print(f"sustained: {sustained} events written as fast as possible ({sustained / written:.0f}/s, "
              f"synchronous=FULL) while delivered: all acknowledged after {elapsed:.2f} s, "
              f"{sustained / elapsed:.0f} events/s; {counter.count - queued} arrived")
    finally:
        counter.close()
        outbox.close()
    return figures
