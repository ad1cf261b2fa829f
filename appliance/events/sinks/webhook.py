"""The webhook sink: an HTTP POST of each event's JSON; a 2xx answer acknowledges it.

A failed POST (no answer within ``timeout_s``, a refused connection, an answer
other than 2xx) is tried again up to ``retries`` times, after a backoff that
doubles from ``backoff.initial_s`` up to ``backoff.max_s``; then the sink is
reported unavailable and the delivery thread backs off before trying again. The
event stays in the outbox all along.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Sequence

from appliance.config.delivery import WebhookSinkConfig
from appliance.events.outbox import OutboxRow
from appliance.events.sinks import Ack, SinkUnavailable
from appliance.pipeline.backoff import Backoff

ANSWER_EXCERPT = 200


class WebhookSink:
    batch = 50

    def __init__(self, config: WebhookSinkConfig, stop: threading.Event) -> None:
        self.id = config.id
        self.config = config
        self._stop = stop
        self._headers = {"Content-Type": "application/json", "User-Agent": "appliance", **config.headers}

    def connect(self) -> None:
        """Nothing to open: every POST is on its own."""

    def send(self, rows: Sequence[OutboxRow], ack: Ack) -> None:
        for row in rows:
            self._post(row)
            ack([row.seq])

    def _post(self, row: OutboxRow) -> None:
        backoff = Backoff(self.config.backoff.initial_s, self.config.backoff.max_s)
        attempt = 0
        while True:
            problem = self._attempt(row)
            if problem is None:
                return
            attempt += 1
            if attempt > self.config.retries or self._stop.wait(backoff.next_delay()):
                raise SinkUnavailable(f"POST of event {row.id} to {self.config.url} failed "
                                      f"{attempt} time(s), last: {problem}")

    def _attempt(self, row: OutboxRow) -> str | None:
        """None when the endpoint acknowledged the event, else what went wrong."""
        request = urllib.request.Request(self.config.url, data=row.body.encode(), headers=self._headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as answer:
                answer.read()
                return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            excerpt = exc.read(ANSWER_EXCERPT).decode(errors="replace").strip()
            return f"HTTP {exc.code} {exc.reason}" + (f": {excerpt}" if excerpt else "")
        except urllib.error.URLError as exc:
            return f"{exc.reason}"
        except (TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Nothing held open."""
