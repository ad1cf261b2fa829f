"""What the device remembers across reboots: the highest version it accepted, the
version it runs, an apply in progress, and the last config that proved healthy.

Every file is replaced atomically (write a temporary file, fsync it, rename it over
the old one, fsync the directory), so a power cut or SIGKILL leaves either the old
or the new file whole, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "state.json"
LAST_GOOD_FILE = "last_good.yaml"


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data``: write, fsync, rename, fsync the directory."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FleetState:
    #: The highest bundle version ever accepted (applied or rolled back); older or equal ones are refused.
    highest_version: int = 0
    #: The version of the config that runs and proved healthy (0: the provisioned config).
    running_version: int = 0
    #: A bundle between its acceptance and its commit or rollback, with the sha256 of its config.
    pending_version: int | None = None
    pending_digest: str | None = None
    pending_bundle: str | None = None


class StateStore:
    """The agent's files in its state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_path = directory / STATE_FILE
        self.last_good_path = directory / LAST_GOOD_FILE

    def load(self) -> FleetState:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return FleetState()
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.state_path}: unreadable fleet state ({exc}); refusing to guess versions") from exc
        known = FleetState.__dataclass_fields__
        return FleetState(**{key: value for key, value in data.items() if key in known})

    def save(self, state: FleetState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.state_path, json.dumps(asdict(state), indent=1).encode() + b"\n")

    def last_good(self) -> bytes | None:
        try:
            return self.last_good_path.read_bytes()
        except FileNotFoundError:
            return None

    def save_last_good(self, config: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.last_good_path, config)


class StateError(RuntimeError):
    """The persisted state cannot be read: the agent stops rather than accept a replay."""
