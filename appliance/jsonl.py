"""Append-only JSON Lines logs (frame results, events)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class JsonlWriter:
    """Writes one JSON object per line; each line is flushed so readers see whole lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
