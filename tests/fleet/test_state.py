"""The persisted fleet state and the atomic file replacement it relies on."""

from __future__ import annotations

import pytest

from appliance.fleet.state import FleetState, StateError, StateStore, atomic_write


def test_atomic_write_replaces_whole_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "current.yaml"
    target.write_text("old: 1\n")
    atomic_write(target, b"new: 2\n")
    assert target.read_bytes() == b"new: 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.yaml"]


def test_state_survives_a_new_store_and_refuses_a_corrupt_file(tmp_path):
    store = StateStore(tmp_path / "fleet")
    assert store.load() == FleetState()
    store.save(FleetState(highest_version=7, running_version=6, pending_version=7, pending_digest="ab"))
    assert StateStore(tmp_path / "fleet").load() == FleetState(7, 6, 7, "ab", None)
    store.save_last_good(b"sources: []\n")
    assert StateStore(tmp_path / "fleet").last_good() == b"sources: []\n"
    store.state_path.write_text("{not json")
    with pytest.raises(StateError, match="refusing to guess"):
        store.load()
