"""Fixtures of the delivery tests: a real Mosquitto on 127.0.0.1 (plain and TLS), certificates made at test time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.mosquitto import Mosquitto
from tests.events.broker import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mosquitto(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto", pki.broker)
    broker.start()
    yield broker
    broker.stop()
