"""The on-device outbox: every event is stored here before it counts as emitted.

One SQLite database in WAL mode. ``events`` holds one row per event (its JSON,
id, kind, stream, phase and the time it was written); ``pending`` holds one row
per (sink, event) not yet acknowledged by that sink. A sink's row is deleted only
after the sink acknowledged the event (MQTT PUBACK, HTTP 2xx, file fsync), so
delivery is at-least-once and a duplicate is recognisable by its event ``id``.

Delivered events stay, for ``appliance events list|tail|replay``, until the quota
(``max_bytes`` of event JSON) needs their room: delivered events go first, then
the oldest undelivered ones, each of those logged with its id and counted in
``appliance_events_dropped_total{reason="quota"}``.

Several threads of one process share an :class:`Outbox` (one connection behind a
lock); other processes (the ``appliance events`` command) open their own, and
SQLite's locking with a busy timeout keeps them consistent.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.clock import Clock, SystemClock
from appliance.metrics import ApplianceMetrics
from appliance.types import Event

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so an order and a cursor
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    created_at REAL NOT NULL,
    size INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_seq ON pending (seq);
"""

#: How far below the quota a clean-up of delivered events goes, so it does not run at every write.
DELIVERED_HEADROOM = 0.9
BUSY_TIMEOUT_MS = 10_000


class OutboxError(ValueError):
    """The outbox cannot be opened or written (disk full, not a database, permissions).

    A ValueError, so ``appliance run`` reports it like any other unusable setting.
    """


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    kind: str
    stream_id: str
    phase: str
    created_at: float
    body: str

    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as ``appliance events list`` shows it: the row and the sinks still waiting for it."""

    row: OutboxRow
    pending_for: tuple[str, ...]


class Outbox:
    def __init__(
        self,
        path: Path,
        sinks: Sequence[str],
        max_bytes: int,
        metrics: ApplianceMetrics | None = None,
        clock: Clock | None = None,
        *,
        synchronous: str = "full",
        forget_other_sinks: bool = True,
    ) -> None:
        self.path = path
        self.sinks = tuple(sinks)
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise OutboxError(f"{path}: cannot use WAL mode (got {mode})")
            # FULL (the default): in WAL mode every commit fsyncs the write-ahead log, so
            # an event that write() returned for is on the disk and survives a power cut,
            # not only a crash or SIGKILL. The cost is one sequential append and one fsync
            # per event; readers (the sinks) never block the writer in WAL mode.
            # NORMAL (outbox.synchronous: normal, where fsync is slow): a commit is in the
            # WAL file, so it survives a crash or SIGKILL of the appliance (the OS still
            # writes it out), and the WAL is fsynced at each checkpoint; a power cut may
            # lose the commits since, but never corrupts the database. Both costs are
            # measured by `appliance bench --events`.
            if synchronous not in ("full", "normal"):
                raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
            self._synchronous = synchronous.upper()
            self._db.execute(f"PRAGMA synchronous = {self._synchronous}")
            self._db.executescript(SCHEMA)
            self._bytes = int(self._db.execute("SELECT coalesce(sum(size), 0) FROM events").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"{path}: cannot open the outbox: {exc}") from exc
        if forget_other_sinks:
            self._forget_unconfigured_sinks()
        self._publish_bytes()

    # -- writing ---------------------------------------------------------------------------------

    def write(self, event: Event | dict[str, Any]) -> int:
        """Stores one event, pending for every sink; returns its sequence number once it is durable."""
        record = event.to_json() if isinstance(event, Event) else event
        body = self.encode(record)
        size = len(body.encode())
        now = self.clock.wall()
        with self._lock:
            if size > self.max_bytes:
                self._count_drop("too_large")
                log.error("event %s (%s, %d bytes) is larger than the whole outbox quota (%d bytes): dropped",
                          record["id"], record.get("kind"), size, self.max_bytes)
                return -1
            self._make_room(size)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO events (id, kind, stream_id, phase, created_at, size, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (record["id"], record.get("kind", ""), record.get("stream_id", ""), record.get("phase", ""),
                     now, size, body),
                )
                if cursor.rowcount == 0:  # the same event again (an id is stable across redelivery)
                    self._db.execute("ROLLBACK")
                    row = self._db.execute("SELECT seq FROM events WHERE id = ?", (record["id"],)).fetchone()
                    return int(row[0])
                seq = int(cursor.lastrowid or 0)
                self._db.executemany("INSERT INTO pending (sink, seq) VALUES (?, ?)", [(s, seq) for s in self.sinks])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"{self.path}: cannot store event {record['id']}: {exc}") from exc
            self._bytes += size
            self._written.notify_all()
        self._publish_bytes()
        return seq

    @staticmethod
    def encode(event: Event | dict[str, Any]) -> str:
        """The JSON an event is stored and delivered as."""
        return json.dumps(event.to_json() if isinstance(event, Event) else event, separators=(",", ":"))

    def _make_room(self, size: int) -> None:
        """Called with the lock held: delivered events first, then the oldest undelivered."""
        if self._bytes + size <= self.max_bytes:
            return
        target = min(self.max_bytes - size, int(self.max_bytes * DELIVERED_HEADROOM))
        delivered = self._db.execute(
            "SELECT seq, size FROM events WHERE NOT EXISTS (SELECT 1 FROM pending p WHERE p.seq = events.seq)"
            " ORDER BY seq"
        )
        self._delete_until(delivered, target, undelivered=False)
        if self._bytes + size <= self.max_bytes:
            return
        oldest = self._db.execute(
            "SELECT e.seq, e.size, e.id, e.kind, group_concat(p.sink) FROM events e"
            " JOIN pending p ON p.seq = e.seq GROUP BY e.seq ORDER BY e.seq"
        )
        self._delete_until(oldest, self.max_bytes - size, undelivered=True)

    def _delete_until(self, rows: sqlite3.Cursor, target: int, *, undelivered: bool) -> None:
        doomed: list[tuple[int]] = []
        described = []
        freed = 0
        for row in rows:
            if self._bytes - freed <= target:
                break
            doomed.append((int(row[0]),))
            freed += int(row[1])
            described.append(row[2:])
        rows.close()
        if not doomed:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM pending WHERE seq = ?", doomed)
            self._db.executemany("DELETE FROM events WHERE seq = ?", doomed)
        held, self._bytes = self._bytes, self._bytes - freed
        if undelivered:
            for ident, kind, sinks in described:
                log.warning("outbox full (%d bytes of events, quota %d): dropped undelivered event %s (%s), "
                            "pending for %s", held, self.max_bytes, ident, kind, sinks)
            self._count_drop("quota", len(doomed))
        else:
            log.debug("outbox: removed %d delivered events (%d bytes) to stay under its quota", len(doomed), freed)

    def _forget_unconfigured_sinks(self) -> None:
        stale = self._db.execute(
            f"SELECT sink, count(*) FROM pending WHERE sink NOT IN ({','.join('?' * len(self.sinks))})"
            " GROUP BY sink", self.sinks,
        ).fetchall()
        for sink, count in stale:
            log.warning("outbox: sink %s is no longer configured; its %d undelivered events are not sent to it",
                        sink, count)
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM pending WHERE sink = ?", (sink,))

    # -- delivery --------------------------------------------------------------------------------

    def pending(self, sink: str, limit: int, after: int = 0) -> list[OutboxRow]:
        """The oldest events not yet acknowledged by ``sink`` (with ``seq`` above ``after``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT e.seq, e.id, e.kind, e.stream_id, e.phase, e.created_at, e.body FROM pending p"
                " JOIN events e ON e.seq = p.seq WHERE p.sink = ? AND p.seq > ? ORDER BY p.seq LIMIT ?",
                (sink, after, limit),
            ).fetchall()
        return [OutboxRow(*row) for row in rows]

    def delivered(self, sink: str, seqs: Iterable[int]) -> None:
        """``sink`` acknowledged these events."""
        done = [(sink, seq) for seq in seqs]
        if not done:
            return
        with self._lock:
            # No fsync for this commit: a mark lost to a power cut means one more delivery
            # of an event (a duplicate, recognisable by its id), never a lost event.
            self._db.execute("PRAGMA synchronous = NORMAL")
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany("DELETE FROM pending WHERE sink = ? AND seq = ?", done)
            finally:
                self._db.execute(f"PRAGMA synchronous = {self._synchronous}")

    def backlog(self, sink: str) -> tuple[int, float | None]:
        """(events pending for ``sink``, write time of the oldest of them)."""
        with self._lock:
            count, oldest = self._db.execute(
                "SELECT count(*), min(p.seq) FROM pending p WHERE p.sink = ?", (sink,)
            ).fetchone()
            if oldest is None:
                return 0, None
            created = self._db.execute("SELECT created_at FROM events WHERE seq = ?", (oldest,)).fetchone()
        return int(count), float(created[0]) if created else None

    def wait_for_write(self, timeout: float) -> None:
        """Returns when this process writes an event, or after ``timeout`` (other writers are polled)."""
        with self._written:
            self._written.wait(timeout)

    def wake(self) -> None:
        """Ends every wait_for_write now (on stop)."""
        with self._written:
            self._written.notify_all()

    # -- looking at events -------------------------------------------------------------------------

    def records(
        self, *, after: int = 0, limit: int = 100, newest: bool = False, kind: str | None = None,
        stream: str | None = None, pending_for: str | None = None, since: float | None = None,
        ids: Sequence[str] = (),
    ) -> list[EventRecord]:
        """Events in write order (or the ``newest`` ones, still in write order), with their pending sinks."""
        where: list[str] = ["e.seq > ?"]
        args: list[object] = [after]
        if kind:
            where.append("(e.kind = ? OR e.kind LIKE ?)")
            args += [kind, kind.rstrip(".*") + ".%"]
        if stream:
            where.append("e.stream_id = ?")
            args.append(stream)
        if since is not None:
            where.append("e.created_at >= ?")
            args.append(since)
        if ids:
            where.append(f"e.id IN ({','.join('?' * len(ids))})")
            args += list(ids)
        if pending_for:
            where.append("EXISTS (SELECT 1 FROM pending q WHERE q.seq = e.seq AND q.sink = ?)")
            args.append(pending_for)
        order = "DESC" if newest else "ASC"
        with self._lock:
            rows = self._db.execute(
                "SELECT e.seq, e.id, e.kind, e.stream_id, e.phase, e.created_at, e.body,"
                " (SELECT group_concat(p.sink) FROM pending p WHERE p.seq = e.seq)"
                f" FROM events e WHERE {' AND '.join(where)} ORDER BY e.seq {order} LIMIT ?",
                (*args, limit),
            ).fetchall()
        records = [EventRecord(OutboxRow(*row[:7]), tuple(sorted(row[7].split(","))) if row[7] else ())
                   for row in rows]
        return records[::-1] if newest else records

    def queue_again(self, sink: str, seqs: Iterable[int]) -> int:
        """Marks stored events pending for ``sink`` again (replay); returns how many were not already."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO pending (sink, seq) SELECT ?, seq FROM events WHERE seq = ?",
                                 [(sink, seq) for seq in seqs])
            return self._db.total_changes - before

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _publish_bytes(self) -> None:
        if self.metrics is not None:
            self.metrics.outbox_bytes.set(self._bytes)

    def _count_drop(self, reason: str, count: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.events_dropped.labels(reason).inc(count)
