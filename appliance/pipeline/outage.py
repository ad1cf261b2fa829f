"""A camera's outage as events: ``stream.down`` start when it goes, end when it is back.

Shared by the portable backend's sources and the DeepStream backend's streams, so
both report outages identically (and the MQTT sink's retained camera status, the
alerts and the dashboard read one shape).
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.clock import Clock
from appliance.events.factory import EventFactory
from appliance.types import Event


class StreamOutage:
    """The open ``stream.down`` episode of one stream, if any."""

    def __init__(self, stream_id: str, events: EventFactory, emit: Callable[[Event], None], clock: Clock) -> None:
        self.stream_id = stream_id
        self._events = events
        self._emit = emit
        self._clock = clock
        self.current: Event | None = None

    def begin(self, reason: str, was_running: bool) -> None:
        """The stream went down; a second failure of the same outage says nothing new."""
        if self.current is None:
            self.current = self._events.make(
                "stream.down", "start", self.stream_id, self._clock.wall(), severity="warning",
                attributes={"reason": reason, "was_running": was_running},
            )
            self._emit(self.current)

    def end(self, reconnects: int) -> None:
        """The stream is producing frames again."""
        if self.current is None:
            return
        started = self.current
        self.current = None
        self._emit(self._events.make(
            "stream.down", "end", self.stream_id, started.started_at, ended_at=self._clock.wall(),
            severity="warning", attributes={"reason": started.attributes.get("reason", ""), "reconnects": reconnects},
        ))
