"""Config of event delivery: the MQTT broker, the outbox and the sinks that read from it.

The broker (``mqtt:`` at the top level of the config) is the one that carries
events and fleet config; an ``mqtt`` sink publishes to it. Relative paths resolve
against the config file's directory, as everywhere else in the schema.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from appliance.config.base import Identifier, Strict

TOPIC_FIELDS = ("device", "kind", "stream", "phase", "severity")


def _resolve(value: Path, info: ValidationInfo) -> Path:
    from appliance.config.schema import resolve_path  # schema imports this module

    return resolve_path(value, info)


def _existing_file(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    path = _resolve(value, info)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


class TlsConfig(Strict):
    """TLS to the broker: ``ca`` verifies the broker; ``cert`` + ``key`` are this device's client certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False  # true: do not check the broker's host name against its certificate

    _files = field_validator("ca", "cert", "key")(_existing_file)

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together (the client certificate and its private key)")
        return self


class BrokerReconnect(Strict):
    """Backoff between connection attempts: initial, doubling, capped."""

    initial_s: Annotated[float, Field(gt=0.0, le=60.0)] = 1.0
    max_s: Annotated[float, Field(gt=0.0, le=600.0)] = 30.0

    @model_validator(mode="after")
    def _ordered(self) -> BrokerReconnect:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must not be below initial_s")
        return self


class MqttBrokerConfig(Strict):
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None  # default: the device id
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    username: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    reconnect: BrokerReconnect = BrokerReconnect()

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_text(cls, value: object) -> object:
        return str(value) if isinstance(value, (int, float)) else value  # YAML reads 5 as a number

    @model_validator(mode="after")
    def _credentials(self) -> MqttBrokerConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        return self


class OutboxConfig(Strict):
    """The on-device SQLite outbox every event is written to before it counts as emitted."""

    path: Annotated[Path, Field(validate_default=True)] = Path("var/outbox.sqlite")
    max_bytes: Annotated[int, Field(ge=4096)] = 256 * 2**20  # event JSON held; the file adds SQLite's overhead
    # full: an event is on disk when it counts as emitted (survives a power cut); normal: it survives a crash
    # or SIGKILL of the appliance, but a power cut may lose the last commits (see appliance/events/outbox.py)
    synchronous: Literal["full", "normal"] = "full"
    # pipeline: `appliance run` delivers; agent: `appliance agent` does (appliance-agent.service, no GPU), so
    # events keep flowing while the pipeline restarts. Both processes share the outbox file (SQLite locking).
    delivered_by: Literal["pipeline", "agent"] = "pipeline"

    @field_validator("path")
    @classmethod
    def _path(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)


class SinkBackoff(Strict):
    initial_s: Annotated[float, Field(gt=0.0, le=60.0)] = 1.0
    max_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> SinkBackoff:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must not be below initial_s")
        return self


class MqttSinkConfig(Strict):
    """Publishes each event to the top-level ``mqtt`` broker; also the retained device and camera status."""

    type: Literal["mqtt"]
    id: Identifier = "mqtt"
    topic: str = "appliance/{device}/events/{kind}"
    qos: Literal[0, 1, 2] = 1
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = 200
    status: bool = True  # retained appliance/{device}/status and appliance/{device}/cameras/{stream}/status

    @field_validator("topic")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_topic_template(value)


class WebhookSinkConfig(Strict):
    """POSTs each event as JSON; a 2xx answer acknowledges it."""

    type: Literal["webhook"]
    id: Identifier = "webhook"
    url: str
    timeout_s: Annotated[float, Field(gt=0.0, le=300.0)] = 5.0
    retries: Annotated[int, Field(ge=0, le=100)] = 5  # quick retries of one event before the sink backs off
    backoff: SinkBackoff = SinkBackoff()
    headers: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook url must be http:// or https:// with a host, e.g. https://mes.local/events")
        return value


class JsonlSinkConfig(Strict):
    """Appends each event as one JSON line, fsynced; rotates to ``<path>.1`` … at ``max_bytes``."""

    type: Literal["jsonl"]
    id: Identifier = "jsonl"
    path: Path
    max_bytes: Annotated[int, Field(ge=1024)] = 64 * 2**20
    keep: Annotated[int, Field(ge=0, le=1000)] = 5  # rotated files kept

    @field_validator("path")
    @classmethod
    def _path(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)


SinkConfig = Annotated[MqttSinkConfig | WebhookSinkConfig | JsonlSinkConfig, Field(discriminator="type")]


def check_topic_template(template: str) -> str:
    """A topic template may name only ``{device}``, ``{kind}``, ``{stream}``, ``{phase}``, ``{severity}``."""
    if not template or any(c in template for c in "#+\0"):
        raise ValueError("topic template must be a non-empty topic without wildcards (# +)")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"bad topic template: {exc}") from None
    unknown = sorted(set(names) - set(TOPIC_FIELDS))
    if unknown:
        raise ValueError(f"unknown topic field(s) {', '.join(unknown)} (use {', '.join(TOPIC_FIELDS)})")
    return template

