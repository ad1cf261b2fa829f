"""Fixtures of the fleet tests: a real Mosquitto on 127.0.0.1 and the fleet's key pairs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.fleet.keys import generate
from appliance.mosquitto import Mosquitto


@dataclass(frozen=True)
class FleetKeys:
    private: Path
    public: Path
    rogue_private: Path  # a key the devices do not pin


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "mosquitto")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def fleet_keys(tmp_path: Path) -> FleetKeys:
    folder = tmp_path / "keys"
    folder.mkdir()
    generate(folder / "fleet.key", folder / "fleet.pub")
    generate(folder / "rogue.key", folder / "rogue.pub")
    return FleetKeys(folder / "fleet.key", folder / "fleet.pub", folder / "rogue.key")
