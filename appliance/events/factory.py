"""Makes Events with ids that are unique per device and stable across redelivery."""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import Any

from appliance.clock import Clock
from appliance.types import Event


class EventFactory:
    """Ids are ``<device>-<boot>-<sequence>``: a new boot id each start, a counter within it."""

    def __init__(self, device_id: str, config_version: str, clock: Clock, boot_id: str | None = None) -> None:
        self.device_id = device_id
        self.config_version = config_version
        self._clock = clock
        self._boot = boot_id or uuid.uuid4().hex[:12]
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()

    def next_id(self) -> str:
        with self._lock:
            return f"{self.device_id}-{self._boot}-{next(self._sequence):08d}"

    def make(
        self,
        kind: str,
        phase: str,
        stream_id: str,
        started_at: float,
        *,
        ended_at: float | None = None,
        severity: str = "info",
        attributes: dict[str, Any] | None = None,
        event_id: str | None = None,
        **fields: Any,
    ) -> Event:
        return Event(
            id=event_id or self.next_id(),
            kind=kind,
            phase=phase,
            stream_id=stream_id,
            device_id=self.device_id,
            started_at=started_at,
            ended_at=ended_at,
            severity=severity,
            attributes=attributes or {},
            config_version=self.config_version,
            **fields,
        )
