"""The JSON Lines file sink: one event per line, acknowledged once the file is fsynced.

At ``max_bytes`` the file is rotated: ``events.jsonl`` → ``events.jsonl.1`` →
``events.jsonl.2`` … keeping ``keep`` rotated files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from appliance.config.delivery import JsonlSinkConfig
from appliance.events.outbox import OutboxRow
from appliance.events.sinks import Ack, SinkUnavailable


class JsonlSink:
    batch = 500

    def __init__(self, config: JsonlSinkConfig) -> None:
        self.id = config.id
        self.config = config
        self._file: BinaryIO | None = None
        self._size = 0

    def connect(self) -> None:
        path = self.config.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkUnavailable(f"cannot create the directory {path.parent}: {exc.strerror or exc}") from exc
        try:
            self._file = path.open("ab")
        except OSError as exc:
            raise SinkUnavailable(f"cannot open {path}: {exc.strerror or exc}") from exc
        self._size = self._file.tell()

    def send(self, rows: Sequence[OutboxRow], ack: Ack) -> None:
        if self._file is None:
            raise SinkUnavailable("not open")
        try:
            for row in rows:
                line = row.body.encode() + b"\n"
                if self._size and self._size + len(line) > self.config.max_bytes:
                    self._rotate()
                self._file.write(line)
                self._size += len(line)
            self._sync()
        except OSError as exc:
            raise SinkUnavailable(f"cannot write {self.config.path}: {exc.strerror or exc}") from exc
        ack([row.seq for row in rows])

    def _sync(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())

    def _rotate(self) -> None:
        assert self._file is not None
        self._sync()
        self._file.close()
        self._file = None
        path = self.config.path
        if self.config.keep == 0:
            path.unlink(missing_ok=True)
        else:
            for index in range(self.config.keep - 1, 0, -1):
                older = _rotated(path, index)
                if older.exists():
                    older.replace(_rotated(path, index + 1))
            path.replace(_rotated(path, 1))
        _fsync_directory(path.parent)
        self._file = path.open("ab")
        self._size = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _rotated(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
