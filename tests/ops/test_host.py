"""Host collectors: thermal zones and tegrastats lines from fixture text, CPU and memory from this machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from appliance.clock import ManualClock, SystemClock
from appliance.host import (
    MIB,
    HostCollector,
    NvmlGpus,
    TegrastatsGpu,
    parse_millicelsius,
    parse_tegrastats,
    read_thermal_zones,
)
from tests.ops.conftest import wait_until

# Lines as tegrastats prints them on a Jetson Nano (JetPack 4), a Xavier NX and an Orin (JetPack 6).
NANO = ("RAM 1858/3956MB (lfb 156x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
        "CPU [12%@1479,4%@1479,9%@1479,3%@1479] EMC_FREQ 5%@1600 GR3D_FREQ 37%@921 APE 25 "
        "PLL@36C CPU@38.5C PMIC@50C GPU@37C AO@45C thermal@37.75C POM_5V_IN 2914/2914")
XAVIER = ("RAM 3349/7765MB (lfb 87x4MB) SWAP 0/3882MB (cached 0MB) CPU [9%@1190,6%@1190,off,off,2%@1190,3%@1190] "
          "EMC_FREQ 0% GR3D_FREQ 0%@[305,305] APE 150 MTS fg 0% bg 0% AO@39C GPU@39.5C PMIC@50C AUX@38.5C")
ORIN = ("11-27-2026 08:00:01 RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
        "CPU [1%@729,0%@729,0%@729,0%@729,off,off] GR3D_FREQ 64% cpu@45.5C soc2@44.2C soc0@44.8C "
        "gpu@44.5C tj@45.5C soc1@44.5C VDD_IN 4473mW/4473mW VDD_CPU_GPU_CV 480mW/480mW VDD_SOC 1439mW/1439mW")


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def thermal_fixture(root: Path, zones: dict[str, tuple[str, str | None]]) -> Path:
    """``zones``: directory name -> (type, temp file text; None: a temp file that cannot be read)."""
    for name, (kind, temp) in zones.items():
        zone = root / name
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        if temp is None:
            (zone / "temp").mkdir()  # reading a directory fails like a sensor that is switched off
        else:
            (zone / "temp").write_text(temp + "\n")
    (root / "cooling_device0").mkdir()
    return root


def test_thermal_zones_are_read_in_zone_order_and_bad_ones_skipped(tmp_path):
    root = thermal_fixture(tmp_path / "thermal", {
        "thermal_zone10": ("tj-therm", "51250"),
        "thermal_zone2": ("GPU-therm", "44500"),
        "thermal_zone0": ("CPU-therm", "45000"),
        "thermal_zone3": ("PMIC-Die", None),
        "thermal_zone4": ("AO-therm", "garbage"),
        "thermal_zone5": ("cv0-therm", "-40000"),
    })
    readings = read_thermal_zones(root)
    assert [(r.zone, r.kind, r.celsius) for r in readings] == [
        ("thermal_zone0", "CPU-therm", 45.0),
        ("thermal_zone2", "GPU-therm", 44.5),
        ("thermal_zone5", "cv0-therm", -40.0),
        ("thermal_zone10", "tj-therm", 51.25),
    ]
    assert read_thermal_zones(tmp_path / "absent") == []
    assert parse_millicelsius("37750") == 37.75
    assert parse_millicelsius("") is None


def test_tegrastats_lines_of_three_jetson_generations():
    nano, xavier, orin = parse_tegrastats(NANO), parse_tegrastats(XAVIER), parse_tegrastats(ORIN)
    assert (nano.ram_used_bytes, nano.ram_total_bytes, nano.gpu_utilization) == (1858 * MIB, 3956 * MIB, 0.37)
    assert (xavier.ram_used_bytes, xavier.gpu_utilization) == (3349 * MIB, 0.0)
    assert (orin.ram_used_bytes, orin.ram_total_bytes, orin.gpu_utilization) == (2448 * MIB, 7620 * MIB, 0.64)
    assert parse_tegrastats("tegrastats: cannot open /sys/kernel/debug") is None
    assert parse_tegrastats("") is None


def test_host_collector_reports_cpu_memory_and_fixture_temperatures(tmp_path):
    root = thermal_fixture(tmp_path / "thermal", {"thermal_zone0": ("CPU-therm", "45000")})
    registry = CollectorRegistry()
    HostCollector(None, root).register(registry)
    found = samples(registry)
    modes = {dict(labels)["mode"] for name, labels in found if name == "appliance_host_cpu_seconds_total"}
    assert {"user", "system", "idle"} <= modes
    assert found[("appliance_host_cpus", ())] >= 1
    total = found[("appliance_host_memory_total_bytes", ())]
    assert 0 < found[("appliance_host_memory_available_bytes", ())] <= total
    assert found[("appliance_host_temperature_celsius", (("type", "CPU-therm"), ("zone", "thermal_zone0")))] == 45.0
    assert found[("appliance_process_resident_memory_bytes", ())] > 0
    assert not any(name.startswith("appliance_gpu_") for name, _ in found)


def test_without_thermal_zones_or_gpu_those_series_are_absent_without_error(tmp_path):
    registry = CollectorRegistry()
    HostCollector(None, tmp_path / "no-thermal").register(registry)
    names = {name for name, _ in samples(registry)}
    assert "appliance_host_cpus" in names
    assert not any(n.startswith(("appliance_host_temperature", "appliance_gpu_")) for n in names)


def test_gpu_series_exist_exactly_where_a_gpu_source_was_found():
    host = HostCollector.detect(SystemClock())
    try:
        registry = CollectorRegistry()
        host.register(registry)
        gpu_series = any(name.startswith("appliance_gpu_") for name, _ in samples(registry))
        assert gpu_series == (host.gpus is not None and bool(host.gpus.read()))
    finally:
        host.close()


def test_nvml_reads_a_discrete_gpu():
    gpus = NvmlGpus.open()
    if gpus is None:
        pytest.skip("no NVIDIA GPU with a driver (NVML) on this machine")
    try:
        readings = gpus.read()
        assert readings and all(r.memory_total_bytes and r.memory_total_bytes > 0 for r in readings)
        assert all(r.utilization is None or 0.0 <= r.utilization <= 1.0 for r in readings)
    finally:
        gpus.close()


def test_tegrastats_process_lines_become_gpu_series_and_go_stale(tmp_path):
    script = tmp_path / "tegrastats.py"
    script.write_text(f"import sys, time\nprint({ORIN!r}, flush=True)\ntime.sleep(30)\n")
    clock = ManualClock()
    gpu = TegrastatsGpu([sys.executable, str(script)], clock, max_age_s=5.0)
    try:
        readings = wait_until(gpu.read, timeout=10)
        assert len(readings) == 1
        reading = readings[0]
        assert (reading.gpu, reading.utilization, reading.memory_used_bytes) == ("0", 0.64, 2448 * MIB)
        registry = CollectorRegistry()
        HostCollector(gpu, tmp_path / "no-thermal").register(registry)
        found = samples(registry)
        assert found[("appliance_gpu_utilization_ratio", (("gpu", "0"),))] == 0.64
        assert found[("appliance_gpu_memory_total_bytes", (("gpu", "0"),))] == 7620 * MIB
        assert ("appliance_gpu_temperature_celsius", (("gpu", "0"),)) not in found  # tegrastats: thermal zones
        clock.advance(6.0)  # no new line since: tegrastats hung or died, report nothing rather than old values
        assert gpu.read() == []
        assert not any(name.startswith("appliance_gpu_") for name, _ in samples(registry))
    finally:
        gpu.close()
