"""The webhook sink against a real HTTP server on 127.0.0.1, and the JSON Lines file sink with rotation."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from appliance.config.schema import ApplianceConfig
from appliance.events.delivery import Delivery, open_outbox
from appliance.metrics import ApplianceMetrics
from tests.events.test_outbox import make_events


class Endpoint:
    """An HTTP endpoint that answers ``fail_first`` requests with 503, or every one with ``status``."""

    def __init__(self, fail_first: int = 0, status: int = 200, delay_s: float = 0.0) -> None:
        self.fail_first = fail_first
        self.status = status
        self.delay_s = delay_s
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.requests += 1
                time.sleep(endpoint.delay_s)
                if endpoint.requests <= endpoint.fail_first:
                    status = 503
                else:
                    status = endpoint.status
                    if status < 300:
                        endpoint.received.append(json.loads(body))
                self.send_response(status)
                answer = b"ok" if status < 300 else b"line 3 MES is in maintenance"
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    server = Endpoint(**getattr(request, "param", {}))
    yield server
    server.close()


def config_with(tmp_path: Path, *sinks: dict[str, Any]) -> ApplianceConfig:
    return ApplianceConfig.model_validate({
        "sources": [{"id": "line-1", "uri": "test://ball"}],
        "events": {"outbox": {"path": str(tmp_path / "outbox.sqlite")}, "sinks": list(sinks)},
    })


def run_delivery(config: ApplianceConfig, count: int, seconds: float) -> tuple[list[str], ApplianceMetrics, int]:
    """Writes ``count`` events, delivers for at most ``seconds``; returns the ids, metrics and what is pending."""
    metrics = ApplianceMetrics()
    outbox = open_outbox(config, metrics)
    ids = [e.id for e in make_events(count)]
    for event in make_events(count):
        outbox.write(event)
    delivery = Delivery.from_config(config, outbox, metrics)
    delivery.start()
    delivery.drain(seconds)
    delivery.stop()
    pending = outbox.backlog(config.events.sinks[0].id)[0]
    outbox.close()
    return ids, metrics, pending


@pytest.mark.parametrize("endpoint", [{"fail_first": 3}], indirect=True)
def test_webhook_retries_with_backoff_until_acknowledged(tmp_path: Path, endpoint: Endpoint) -> None:
    config = config_with(tmp_path, {"type": "webhook", "id": "mes", "url": endpoint.url, "retries": 5,
                                    "backoff": {"initial_s": 0.05, "max_s": 0.2}})
    ids, metrics, pending = run_delivery(config, 10, 20)
    assert pending == 0
    assert [e["id"] for e in endpoint.received] == ids
    assert endpoint.requests == 13
    assert metrics.registry.get_sample_value("appliance_events_delivered_total", {"sink": "mes"}) == 10


@pytest.mark.parametrize("endpoint", [{"status": 503}], indirect=True)
def test_webhook_error_answers_keep_events_in_the_outbox(tmp_path: Path, endpoint: Endpoint,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    config = config_with(tmp_path, {"type": "webhook", "id": "mes", "url": endpoint.url, "retries": 1,
                                    "backoff": {"initial_s": 0.05, "max_s": 0.1}})
    with caplog.at_level(logging.ERROR):
        _, metrics, pending = run_delivery(config, 4, 1.0)
    assert pending == 4
    assert endpoint.received == []
    assert metrics.registry.get_sample_value("appliance_events_delivery_failures_total", {"sink": "mes"}) >= 1
    assert f"to {endpoint.url} failed 2 time(s), last: HTTP 503 Service Unavailable: line 3 MES is in maintenance; " \
           "4 events wait in the outbox" in caplog.text


@pytest.mark.parametrize("endpoint", [{"delay_s": 1.0}], indirect=True)
def test_webhook_timeout(tmp_path: Path, endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    config = config_with(tmp_path, {"type": "webhook", "id": "mes", "url": endpoint.url, "retries": 0,
                                    "timeout_s": 0.2, "backoff": {"initial_s": 5, "max_s": 5}})
    with caplog.at_level(logging.ERROR):
        _, _, pending = run_delivery(config, 2, 0.6)
    assert pending == 2
    assert "timed out" in caplog.text


def test_jsonl_sink_rotates_and_keeps_every_event(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    config = config_with(tmp_path, {"type": "jsonl", "id": "archive", "path": str(path), "max_bytes": 4096,
                                    "keep": 50})
    ids, metrics, pending = run_delivery(config, 120, 20)
    assert pending == 0
    files = sorted(path.parent.glob("events.jsonl*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit()
                   else 0)
    assert len(files) > 3
    assert all(f.stat().st_size <= 4096 for f in files if f.name != "events.jsonl")
    lines = [json.loads(line)["id"] for f in files for line in f.read_text().splitlines()]
    assert lines == ids  # oldest file first, nothing lost, nothing twice


def test_jsonl_sink_keeps_only_the_configured_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    config = config_with(tmp_path, {"type": "jsonl", "path": str(path), "max_bytes": 2048, "keep": 2})
    _, _, pending = run_delivery(config, 100, 20)
    assert pending == 0
    assert sorted(p.name for p in tmp_path.glob("events.jsonl*")) == ["events.jsonl", "events.jsonl.1",
                                                                       "events.jsonl.2"]


def test_jsonl_sink_that_cannot_write_keeps_events(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = config_with(tmp_path, {"type": "jsonl", "path": str(blocker / "events.jsonl")})
    with caplog.at_level(logging.ERROR):
        _, _, pending = run_delivery(config, 3, 0.5)
    assert pending == 3
    assert f"sink jsonl: cannot create the directory {blocker}: File exists; 3 events wait" in caplog.text
