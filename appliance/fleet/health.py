"""Is the pipeline healthy on its new config? Judged from its own /metrics over a window.

The window opens when the pipeline first answers on /metrics with the new config's
version (``appliance_config_info{version}``; it must within ``startup_s``), so a
slow start-up — or a reload that has not happened yet — does not eat into it.
Healthy means, at the end of the window: the pipeline never exited, and every
configured stream analyzed frames during the window
(``appliance_stream_frames_analyzed_total`` advanced) and is up
(``appliance_stream_up`` == 1). A crash is judged at once, the rest when the window
is over.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from appliance.clock import Clock
from appliance.config.schema import MetricsConfig


@dataclass(frozen=True)
class StreamSample:
    up: bool
    analyzed: float


@dataclass(frozen=True)
class PipelineSample:
    """One scrape of the pipeline (None where /metrics did not answer)."""

    streams: dict[str, StreamSample]
    config_version: str | None = None


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


class HealthWatch:
    """Feed it samples with :meth:`observe`; it answers a :class:`Verdict` once it can."""

    def __init__(self, streams: list[str], window_s: float, clock: Clock, startup_s: float = 120.0,
                 version: str | None = None) -> None:
        self.streams = list(streams)
        self.version = version  # the config version the pipeline must report (None: any)
        self.window_s = window_s
        self.startup_s = startup_s
        self.clock = clock
        self.started = clock.monotonic()
        self.opened: float | None = None  # when the pipeline first answered
        self._first: dict[str, StreamSample] = {}  # each stream's first sample in the window
        self._last: dict[str, StreamSample] = {}

    def observe(self, sample: PipelineSample | None, exit_code: int | None) -> Verdict | None:
        now = self.clock.monotonic()
        if exit_code is not None:
            return Verdict(False, f"pipeline exited with code {exit_code} after {now - self.started:.1f} s")
        if sample is not None and (self.version is None or sample.config_version == self.version):
            if self.opened is None:
                self.opened = now
            for stream, value in sample.streams.items():
                self._first.setdefault(stream, value)
            self._last.update(sample.streams)
        if self.opened is None:
            if now - self.started >= self.startup_s:
                waited = "did not answer" if self.version is None else f"did not report version {self.version!r}"
                return Verdict(False, f"pipeline metrics {waited} within {self.startup_s:g} s of its start")
            return None
        if now - self.opened < self.window_s:
            return None
        return self._judge()

    def _judge(self) -> Verdict:
        window = f"{self.window_s:g} s"
        for stream in self.streams:
            last = self._last.get(stream)
            first = self._first.get(stream)
            if last is None or first is None or last.analyzed <= first.analyzed:
                return Verdict(False, f"stream {stream} produced no frames in the {window} health window")
            if not last.up:
                return Verdict(False, f"stream {stream} was down at the end of the {window} health window")
        return Verdict(True, f"every stream produced frames for {window}")


def metrics_url(metrics: MetricsConfig) -> str:
    address = "127.0.0.1" if metrics.address in ("0.0.0.0", "", "::") else metrics.address
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{metrics.port}{metrics.path}"


def scrape_streams(url: str, timeout: float = 2.0) -> PipelineSample | None:
    """Stream up/analyzed values and the config version from the pipeline's /metrics;
    None if it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError, ValueError):
        return None
    up: dict[str, float] = {}
    analyzed: dict[str, float] = {}
    version = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "appliance_config_info":
                version = sample.labels.get("version")
            stream = sample.labels.get("stream")
            if stream is None:
                continue
            if sample.name == "appliance_stream_up":
                up[stream] = sample.value
            elif sample.name == "appliance_stream_frames_analyzed_total":
                analyzed[stream] = sample.value
    streams = {s: StreamSample(up.get(s, 0.0) == 1.0, analyzed.get(s, 0.0)) for s in up.keys() | analyzed.keys()}
    return PipelineSample(streams, version)
