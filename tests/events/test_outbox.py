"""The SQLite outbox: durable writes, per-sink delivery state, the quota."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from appliance.clock import ManualClock
from appliance.events.factory import EventFactory
from appliance.events.outbox import Outbox, OutboxError
from appliance.metrics import ApplianceMetrics
from appliance.types import Event


def make_events(count: int, kind: str = "ppe.missing_item", padding: int = 0) -> list[Event]:
    factory = EventFactory("pack-line-3", "v1", ManualClock(), boot_id="boot")
    return [factory.make(kind, "start", "cam-1", 1_700_000_000.0 + i, attributes={"n": i, "pad": "x" * padding})
            for i in range(count)]


def dropped(metrics: ApplianceMetrics, reason: str) -> float:
    return metrics.registry.get_sample_value("appliance_events_dropped_total", {"reason": reason}) or 0.0


def test_events_wait_for_each_sink_until_it_acknowledges(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", ["mqtt", "file"], 2**20)
    events = make_events(5)
    seqs = [outbox.write(e) for e in events]
    assert [r.id for r in outbox.pending("mqtt", 10)] == [e.id for e in events]
    outbox.delivered("mqtt", seqs[:3])
    assert [r.id for r in outbox.pending("mqtt", 10)] == [e.id for e in events[3:]]
    assert len(outbox.pending("file", 10)) == 5  # the other sink still waits for all of them
    assert outbox.pending("mqtt", 10)[0].event() == events[3].to_json()
    assert outbox.backlog("mqtt")[0] == 2
    records = outbox.records()
    assert [r.pending_for for r in records] == [("file",)] * 3 + [("file", "mqtt")] * 2


def test_the_same_event_is_stored_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", ["mqtt"], 2**20)
    event = make_events(1)[0]
    assert outbox.write(event) == outbox.write(event)
    assert outbox.backlog("mqtt")[0] == 1


def test_pending_events_survive_a_reopen_and_a_removed_sink_is_forgotten(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, ["mqtt", "old"], 2**20)
    for event in make_events(4):
        outbox.write(event)
    outbox.close()
    with caplog.at_level(logging.WARNING):
        reopened = Outbox(path, ["mqtt"], 2**20)
    assert reopened.backlog("mqtt")[0] == 4
    assert reopened.backlog("old")[0] == 0
    assert "sink old is no longer configured; its 4 undelivered events" in caplog.text
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert reopened._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL on the writer's connection


def test_quota_removes_delivered_events_first(tmp_path: Path) -> None:
    metrics = ApplianceMetrics()
    events = make_events(40, padding=200)
    size = len(Outbox.encode(events[0]).encode())
    outbox = Outbox(tmp_path / "outbox.sqlite", ["mqtt"], 20 * size + 100, metrics)
    seqs = [outbox.write(e) for e in events[:20]]
    outbox.delivered("mqtt", seqs[:10])
    for event in events[20:30]:
        outbox.write(event)
    assert outbox.bytes <= outbox.max_bytes
    assert dropped(metrics, "quota") == 0
    kept = {r.row.id for r in outbox.records(limit=100)}
    assert {e.id for e in events[10:30]} <= kept  # every undelivered event is still there
    assert metrics.registry.get_sample_value("appliance_outbox_bytes") == outbox.bytes
    for event in events[30:40]:  # no delivered event is left: the oldest undelivered go
        outbox.write(event)
    assert [r.row.id for r in outbox.records(limit=100)] == [e.id for e in events[20:40]]
    assert dropped(metrics, "quota") == 10


def test_quota_then_drops_the_oldest_undelivered_and_says_which(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    metrics = ApplianceMetrics()
    events = make_events(30, padding=200)
    size = len(Outbox.encode(events[0]).encode())
    outbox = Outbox(tmp_path / "outbox.sqlite", ["mqtt", "file"], 10 * size + size // 2, metrics)
    with caplog.at_level(logging.WARNING, logger="appliance.events.outbox"):
        for event in events:
            outbox.write(event)
    kept = [r.row.id for r in outbox.records(limit=100)]
    assert kept == [e.id for e in events[-10:]]  # the newest that fit
    assert dropped(metrics, "quota") == 20
    logged = [r.getMessage() for r in caplog.records if "dropped undelivered event" in r.getMessage()]
    assert len(logged) == 20
    for event, line in zip(events[:20], logged):
        assert f"dropped undelivered event {event.id} (ppe.missing_item), pending for " in line
        assert "mqtt" in line and "file" in line


def test_an_event_larger_than_the_quota_is_refused_and_counted(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    metrics = ApplianceMetrics()
    outbox = Outbox(tmp_path / "outbox.sqlite", ["mqtt"], 4096, metrics)
    big = make_events(1, padding=5000)[0]
    assert outbox.write(big) == -1
    assert dropped(metrics, "too_large") == 1
    assert big.id in caplog.text
    assert outbox.backlog("mqtt")[0] == 0


def test_a_file_that_is_not_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        Outbox(path, ["mqtt"], 2**20)


def test_replay_queues_delivered_events_again(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", ["mqtt"], 2**20)
    seqs = [outbox.write(e) for e in make_events(3)]
    outbox.delivered("mqtt", seqs)
    assert outbox.queue_again("mqtt", seqs[1:]) == 2
    assert [r.seq for r in outbox.pending("mqtt", 10)] == seqs[1:]
