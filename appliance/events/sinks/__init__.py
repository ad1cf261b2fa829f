"""Where events go from the outbox: an MQTT broker, an HTTP endpoint, a JSON Lines file.

A sink is driven by one delivery thread (see :mod:`appliance.events.delivery`):
``connect`` (raises :class:`SinkUnavailable` with a sentence saying why), then
``send`` batches of outbox rows, calling ``ack`` with the sequence numbers the
destination acknowledged (raising :class:`SinkUnavailable` when it fails); ``close``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from appliance.events.outbox import OutboxRow

Ack = Callable[[list[int]], None]


class SinkUnavailable(Exception):
    """The destination cannot take events now; the events wait in the outbox."""


class Sink(Protocol):
    id: str
    batch: int  # rows handed to one send()

    def connect(self) -> None: ...

    def send(self, rows: Sequence[OutboxRow], ack: Ack) -> None: ...

    def close(self) -> None: ...
