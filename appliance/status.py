"""``appliance status``: the running appliance at a glance, for a person without Grafana.

Reads ``/metrics`` twice (rates are the difference over ``--interval``) and
``/readyz`` of the appliance at ``--url``, and prints its streams (state, frame
rates, last frame age, reconnects), models and outbox as tables. Exit status: 0
ready, 1 not ready, 2 unreachable.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from appliance.clock import Clock, SystemClock

DEFAULT_URL = "http://127.0.0.1:9108"
Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """Samples of one /metrics read: {sample name: {sorted labels: value}}."""

    at: float  # wall time of the read
    samples: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def parse(cls, text: str, at: float) -> Scrape:
        scrape = cls(at)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                scrape.samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
        return scrape

    def by(self, name: str, label: str) -> dict[str, float]:
        """{value of ``label``: sample value} of a series family (summed over the other labels)."""
        out: dict[str, float] = defaultdict(float)
        for labels, value in self.samples.get(name, {}).items():
            out[dict(labels).get(label, "")] += value
        return dict(out)

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for labels in self.samples.get(name, {})]


class Unreachable(Exception):
    pass


def fetch(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(HTTP status, body); an error status with a body (503 from /readyz) is an answer, not a failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"{url}: {reason}") from exc


def rate(before: dict[str, float], after: dict[str, float], key: str, seconds: float) -> float | None:
    if key not in after or seconds <= 0:
        return None
    return max(0.0, after[key] - before.get(key, 0.0)) / seconds


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned text columns, two spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in (header, *rows)]
    return "\n".join(lines)


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _stream_states(readiness: dict[str, Any] | None) -> dict[str, tuple[bool, str]]:
    """{stream id: (ok, detail)} from the /readyz body."""
    states = {}
    for check in (readiness or {}).get("checks", []):
        name = str(check.get("name", ""))
        if name.startswith("stream:"):
            states[name.removeprefix("stream:")] = (bool(check.get("ok")), str(check.get("detail", "")))
    return states


def render(first: Scrape, second: Scrape, readiness: dict[str, Any] | None) -> str:
    seconds = second.at - first.at
    info = (second.labels_of("appliance_config_info") or [{}])[0]
    build = (second.labels_of("appliance_build_info") or [{}])[0]
    ready = "unknown (no /readyz)" if readiness is None else str(readiness.get("status", "unknown"))
    out = [
        f"device {info.get('device', '?')}  site {info.get('site') or '-'}  config {info.get('version', '?')}"
        f"  build {build.get('version', '?')}  {ready}"
    ]
    out += [f"  problem: {problem}" for problem in (readiness or {}).get("problems", [])]

    out.append(_host_line(first, second))

    decoded = [s.by("appliance_stream_frames_decoded_total", "stream") for s in (first, second)]
    analyzed = [s.by("appliance_stream_frames_analyzed_total", "stream") for s in (first, second)]
    dropped = [s.by("appliance_stream_frames_dropped_total", "stream") for s in (first, second)]
    up = second.by("appliance_stream_up", "stream")
    target = second.by("appliance_stream_target_fps", "stream")
    last = second.by("appliance_stream_last_frame_timestamp_seconds", "stream")
    reconnects = second.by("appliance_stream_reconnects_total", "stream")
    states = _stream_states(readiness)
    rows = []
    for stream in sorted(up):
        _, detail = states.get(stream, (up[stream] == 1, "running" if up[stream] == 1 else "down"))
        rows.append([
            stream, detail.split(",")[0], "yes" if up[stream] == 1 else "no",
            _number(rate(decoded[0], decoded[1], stream, seconds)),
            _number(rate(analyzed[0], analyzed[1], stream, seconds)),
            _number(target.get(stream)),
            _age(second.at - last[stream] if stream in last else None),
            f"{reconnects.get(stream, 0):.0f}",
            _number(rate(dropped[0], dropped[1], stream, seconds)),
        ])
    out += ["", table(["STREAM", "STATE", "UP", "DECODED/s", "ANALYZED/s", "TARGET/s", "LAST FRAME",
                       "RECONNECTS", "DROPPED/s"], rows)]

    models = {m.get("model", ""): m for m in second.labels_of("appliance_model_info")}
    counts = [s.by("appliance_inference_latency_seconds_count", "model") for s in (first, second)]
    sums = [s.by("appliance_inference_latency_seconds_sum", "model") for s in (first, second)]
    frames = [s.by("appliance_inference_batch_size_sum", "model") for s in (first, second)]
    errors = second.by("appliance_inference_errors_total", "model")
    rows = []
    for model in sorted(set(models) | set(errors)):
        batches = counts[1].get(model, 0.0) - counts[0].get(model, 0.0)
        latency = (sums[1].get(model, 0.0) - sums[0].get(model, 0.0)) / batches * 1000 if batches else None
        mean_batch = (frames[1].get(model, 0.0) - frames[0].get(model, 0.0)) / batches if batches else None
        meta = models.get(model, {})
        rows.append([model, meta.get("file", "-"), meta.get("sha256", "-"),
                     _number(batches / seconds if seconds > 0 else None), _number(latency), _number(mean_batch),
                     f"{errors.get(model, 0):.0f}"])
    out += ["", table(["MODEL", "FILE", "SHA256", "BATCHES/s", "LATENCY ms", "BATCH", "ERRORS"], rows)]

    pending = second.by("appliance_outbox_pending_events", "sink")
    if pending:
        oldest = second.by("appliance_outbox_oldest_pending_age_seconds", "sink")
        delivered = [s.by("appliance_events_delivered_total", "sink") for s in (first, second)]
        failures = second.by("appliance_events_delivery_failures_total", "sink")
        rows = [[sink, f"{pending[sink]:.0f}", _number(oldest.get(sink), 0) + " s",
                 _number(rate(delivered[0], delivered[1], sink, seconds)),
                 f"{delivered[1].get(sink, 0):.0f}", f"{failures.get(sink, 0):.0f}"] for sink in sorted(pending)]
        out += ["", table(["OUTBOX SINK", "PENDING", "OLDEST", "DELIVERED/s", "DELIVERED", "FAILURES"], rows)]
        size = sum(second.by("appliance_outbox_bytes", "").values())
        dropped_events = sum(second.by("appliance_events_dropped_total", "reason").values())
        out.append(f"outbox {size / 1024 / 1024:.1f} MiB, {dropped_events:.0f} events dropped")
    else:
        out += ["", "outbox: none reported"]
    return "\n".join(out)


def _host_line(first: Scrape, second: Scrape) -> str:
    """CPU busy over the interval, memory in use, the hottest thermal zone and the GPUs, where reported."""
    parts = []
    cpu = [s.by("appliance_host_cpu_seconds_total", "mode") for s in (first, second)]
    spent = sum(cpu[1].values()) - sum(cpu[0].values())
    if spent > 0:
        idle = cpu[1].get("idle", 0.0) - cpu[0].get("idle", 0.0)
        parts.append(f"CPU {100 * (1 - idle / spent):.0f} % busy")
    total = sum(second.by("appliance_host_memory_total_bytes", "").values())
    if total:
        available = sum(second.by("appliance_host_memory_available_bytes", "").values())
        parts.append(f"memory {(total - available) / 2**30:.1f} of {total / 2**30:.1f} GiB in use")
    zones = second.samples.get("appliance_host_temperature_celsius", {})
    if zones:
        labels, celsius = max(zones.items(), key=lambda item: item[1])
        parts.append(f"hottest zone {dict(labels).get('type', '?')} {celsius:.0f} °C")
    busy = second.by("appliance_gpu_utilization_ratio", "gpu")
    used = second.by("appliance_gpu_memory_used_bytes", "gpu")
    for gpu in sorted(set(busy) | set(used)):
        memory = f", {used[gpu] / 2**30:.1f} GiB" if gpu in used else ""
        parts.append(f"GPU {gpu} {100 * busy.get(gpu, 0.0):.0f} % busy{memory}")
    return "host: " + ("; ".join(parts) if parts else "not reported")


def read_status(url: str, interval: float, clock: Clock,
                sleep: Callable[[float], None] = time.sleep) -> tuple[bool | None, str]:
    """(ready, text) of the appliance at ``url``; ``ready`` is None where it has no /readyz."""
    base = url.rstrip("/")
    first = Scrape.parse(_metrics(base), clock.wall())
    sleep(interval)
    began = clock.monotonic()
    text = _metrics(base)
    took = clock.monotonic() - began
    second = Scrape.parse(text, clock.wall())
    status, body = fetch(base + "/readyz")
    readiness = _json_object(body) if status in (200, 503) else None
    ready = None if readiness is None else readiness.get("status") == "ready"
    series = sum(len(values) for values in second.samples.values())
    cost = f"/metrics: {series} samples, {len(text.encode()) / 1024:.1f} KiB, answered in {took * 1000:.1f} ms"
    return ready, render(first, second, readiness) + "\n" + cost


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _metrics(base: str) -> str:
    status, body = fetch(base + "/metrics")
    if status != 200:
        raise Unreachable(f"{base}/metrics answered HTTP {status}")
    return body


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the appliance's metrics server (default {DEFAULT_URL})")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between the two reads for rates")


def run_status(args: argparse.Namespace, clock: Clock | None = None) -> int:
    try:
        ready, text = read_status(args.url, args.interval, clock or SystemClock())
    except Unreachable as exc:
        print(f"appliance not reachable: {exc}")
        return 2
    except ValueError as exc:  # something else answers at that address
        print(f"{args.url} does not serve appliance metrics: {exc}")
        return 2
    print(text)
    return 0 if ready else 1
