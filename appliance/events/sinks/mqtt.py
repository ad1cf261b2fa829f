"""The MQTT sink: QoS 1 events to ``appliance/{device}/events/{kind}``, and the retained status topics.

- ``appliance/{device}/status`` (retained): ``online`` once connected; the broker
  publishes the last will ``offline`` when the connection is lost; ``offline``
  again on a clean stop.
- ``appliance/{device}/cameras/{stream}/status`` (retained):
  ``{"state": "up"|"down", "reason": ..., "at": ...}``, from the ``stream.down``
  start and end events as they are published, so a camera that is gone is
  announced, not just silent. Re-published after every reconnect.

A batch of up to ``max_inflight`` events is published at once and each event is
acknowledged to the outbox when its PUBACK arrives. A lost connection fails the
batch; the client is thrown away and the events still unacknowledged are sent
again, from the outbox, on the next connection (duplicates carry the same id).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho

from appliance.config.delivery import MqttBrokerConfig, MqttSinkConfig
from appliance.events.outbox import OutboxRow
from appliance.events.sinks import Ack, SinkUnavailable
from appliance.mqtt import connect_client, describe_connect_error

log = logging.getLogger(__name__)

CONNACK_TIMEOUT_S = 10.0
ACK_FLUSH_S = 0.02
ONLINE, OFFLINE = "online", "offline"


def device_status_topic(device: str) -> str:
    return f"appliance/{device}/status"


def camera_status_topic(device: str, stream: str) -> str:
    return f"appliance/{device}/cameras/{stream}/status"


def camera_status(row: OutboxRow) -> dict[str, Any] | None:
    """The camera status a ``stream.down`` event announces (None for other events)."""
    if row.kind != "stream.down" or row.phase not in ("start", "end"):
        return None
    event = row.event()
    reason = str(event.get("attributes", {}).get("reason", ""))
    if row.phase == "start":
        return {"state": "down", "reason": reason, "at": event.get("started_at")}
    return {"state": "up", "reason": f"recovered from: {reason}" if reason else "recovered",
            "at": event.get("ended_at")}


class MqttSink:
    def __init__(
        self, config: MqttSinkConfig, broker: MqttBrokerConfig, device: str, stop: threading.Event,
        client_id: str | None = None,
    ) -> None:
        self.id = config.id
        self.batch = config.max_inflight
        self.config = config
        self.broker = broker
        self.device = device
        self.client_id = client_id or broker.client_id or device
        # a second client of the device (a replay) must not speak for the device's status
        self._announces = config.status and client_id is None
        self._stop = stop
        self._client: paho.Client | None = None
        self._changed = threading.Condition()
        self._acked: set[int] = set()
        self._refused: dict[int, str] = {}  # mid -> the reason of a PUBACK that refused the message (MQTT 5)
        self._connack: paho.ReasonCode | None = None
        self._lost: str | None = None
        self._cameras: dict[str, dict[str, Any]] = {}
        self._wants_severity = "{severity}" in config.topic

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        will = (device_status_topic(self.device), OFFLINE, 1, True) if self._announces else None
        client = connect_client(self.broker, self.client_id, will=will, reconnect_on_failure=False,
                                max_inflight=self.batch)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        with self._changed:
            self._connack, self._lost, self._acked, self._refused = None, None, set(), {}
        try:
            client.reconnect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            _discard(client)
            raise SinkUnavailable(describe_connect_error(exc, self.broker)) from exc
        client.loop_start()
        self._client = client
        with self._changed:
            self._changed.wait_for(lambda: self._connack is not None or self._lost is not None, CONNACK_TIMEOUT_S)
            connack, lost = self._connack, self._lost
        where = f"{self.broker.host}:{self.broker.port}"
        if connack is None or connack.is_failure:
            self.close()
            if connack is not None:
                raise SinkUnavailable(f"broker {where} refused the connection: {connack}")
            if lost is None:
                raise SinkUnavailable(f"broker {where} did not answer the MQTT CONNECT in {CONNACK_TIMEOUT_S:.0f} s")
            raise SinkUnavailable(f"broker {where} closed the connection before accepting it ({lost}; "
                                  "TLS expected, or a client certificate it does not trust?)")
        if not self._announces:
            return
        self._publish(device_status_topic(self.device), ONLINE, retain=True)
        for stream, status in self._cameras.items():
            self._publish(camera_status_topic(self.device, stream), json.dumps(status), retain=True)

    def _on_connect(self, client: paho.Client, _userdata: object, _flags: object, reason: paho.ReasonCode,
                    _properties: object) -> None:
        with self._changed:
            self._connack = reason
            self._changed.notify_all()

    def _on_disconnect(self, client: paho.Client, _userdata: object, _flags: object, reason: paho.ReasonCode,
                       _properties: object) -> None:
        with self._changed:
            self._lost = str(reason)
            self._changed.notify_all()

    def _on_publish(self, client: paho.Client, _userdata: object, mid: int, reason: paho.ReasonCode,
                    _properties: object) -> None:
        with self._changed:
            if reason.is_failure:
                self._refused[mid] = str(reason)
            self._acked.add(mid)
            self._changed.notify_all()

    # -- events --------------------------------------------------------------------------------

    def topic_for(self, row: OutboxRow) -> str:
        severity = str(row.event().get("severity", "")) if self._wants_severity else ""
        return self.config.topic.format(device=self.device, kind=row.kind, stream=row.stream_id, phase=row.phase,
                                        severity=severity)

    def send(self, rows: Sequence[OutboxRow], ack: Ack) -> None:
        waiting: dict[int, int] = {}  # mid -> outbox seq
        for row in rows:
            waiting[self._publish(self.topic_for(row), row.body, qos=self.config.qos)] = row.seq
            status = camera_status(row)
            if status is not None and self._announces and not self._is_stale(row.stream_id, status):
                self._cameras[row.stream_id] = status
                self._publish(camera_status_topic(self.device, row.stream_id), json.dumps(status), retain=True)
        timeout = 2.0 * self.broker.keepalive
        deadline = time.monotonic() + timeout
        while waiting:
            with self._changed:  # PUBACKs are handed to the outbox together, at most ACK_FLUSH_S apart
                self._changed.wait_for(lambda: waiting.keys() <= self._acked or self._lost is not None, ACK_FLUSH_S)
                done = self._acked & waiting.keys()
                self._acked -= done
                refused = {mid: self._refused.pop(mid) for mid in done if mid in self._refused}
                lost = self._lost
            if done:
                seqs = {mid: waiting.pop(mid) for mid in sorted(done)}
                ack([seq for mid, seq in seqs.items() if mid not in refused])
                deadline = time.monotonic() + timeout
                if refused:
                    mid, reason = next(iter(refused.items()))
                    row = next(r for r in rows if r.seq == seqs[mid])
                    raise SinkUnavailable(f"broker refused event {row.id} on {self.topic_for(row)}: {reason} "
                                          f"({len(refused)} refused in this batch)")
            elif lost is not None:
                raise SinkUnavailable(f"connection to {self.broker.host}:{self.broker.port} lost ({lost}); "
                                      f"{len(waiting)} events unacknowledged")
            elif self._stop.is_set():
                raise SinkUnavailable(f"stopping with {len(waiting)} events unacknowledged (sent again next time)")
            elif time.monotonic() > deadline:
                raise SinkUnavailable(f"no PUBACK from {self.broker.host}:{self.broker.port} within {timeout:.0f} s")

    def _is_stale(self, stream: str, status: dict[str, Any]) -> bool:
        """An older outage sent again (a replay) must not overwrite a camera's newer status."""
        known = self._cameras.get(stream)
        return known is not None and float(status.get("at") or 0.0) < float(known.get("at") or 0.0)

    def _publish(self, topic: str, payload: str, qos: int = 1, retain: bool = False) -> int:
        if self._client is None:
            raise SinkUnavailable("not connected")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == paho.MQTT_ERR_NO_CONN:
            raise SinkUnavailable(f"connection to {self.broker.host}:{self.broker.port} lost")
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise SinkUnavailable(f"cannot publish to {topic}: {paho.error_string(info.rc)}")
        return int(info.mid)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with self._changed:
            connected = self._lost is None and self._connack is not None and not self._connack.is_failure
        if connected:
            try:
                if self._announces:
                    info = client.publish(device_status_topic(self.device), OFFLINE, qos=1, retain=True)
                    info.wait_for_publish(timeout=2.0)
                client.disconnect()
            except (RuntimeError, ValueError, OSError) as exc:
                log.debug("sink %s: clean disconnect failed: %s", self.id, exc)
        _discard(client)


def _discard(client: paho.Client) -> None:
    client.loop_stop()
    sock = client.socket()
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
