"""Host metrics: CPU, memory, temperatures and the GPU, read when /metrics is scraped.

Each part is absent, without error, where its hardware or tool is not there: no
``/sys/class/thermal`` zones, no NVIDIA driver (NVML) on a discrete GPU, no
``tegrastats`` on a Jetson. On a Jetson the GPU shares the system memory, so the
GPU memory series carry the unified memory that ``tegrastats`` reports.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.clock import Clock, SystemClock

log = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")
TEGRASTATS_INTERVAL_MS = 1000
TEGRASTATS_MAX_AGE_S = 5.0  # a sample older than this is not reported


# -- thermal zones ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThermalReading:
    zone: str  # the directory name, e.g. thermal_zone0
    kind: str  # what the driver calls it, e.g. CPU-therm, GPU-therm, x86_pkg_temp
    celsius: float


def read_thermal_zones(root: Path = THERMAL_ROOT) -> list[ThermalReading]:
    """Every readable thermal zone under ``root``; zones that refuse a read are skipped."""
    readings = []
    for zone in sorted(root.glob("thermal_zone*"), key=_zone_number):
        try:
            kind = (zone / "type").read_text(encoding="ascii").strip()
            raw = (zone / "temp").read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):  # a sensor that is switched off answers EINVAL/ENODATA
            continue
        celsius = parse_millicelsius(raw)
        if celsius is not None and kind:
            readings.append(ThermalReading(zone.name, kind, celsius))
    return readings


def parse_millicelsius(text: str) -> float | None:
    """A thermal ``temp`` file holds millidegrees Celsius as an integer."""
    try:
        return int(text) / 1000.0
    except ValueError:
        return None


def _zone_number(path: Path) -> int:
    digits = path.name.removeprefix("thermal_zone")
    return int(digits) if digits.isdigit() else -1


# -- GPUs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuReading:
    gpu: str  # index, as a label
    utilization: float | None  # 0..1
    memory_used_bytes: float | None
    memory_total_bytes: float | None
    celsius: float | None = None


class GpuSource(Protocol):
    def read(self) -> list[GpuReading]: ...

    def close(self) -> None: ...


class NvmlGpus:
    """Discrete NVIDIA GPUs through NVML (the ``nvidia-ml-py`` bindings)."""

    def __init__(self, nvml: Any, handles: Sequence[Any]) -> None:
        self._nvml = nvml
        self._handles = list(handles)

    @classmethod
    def open(cls) -> NvmlGpus | None:
        """NVML with at least one GPU, or None where there is no driver or no GPU."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            log.debug("no NVML: %s", exc)
            return None
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as exc:
            log.warning("NVML cannot list GPUs: %s", exc)
            handles = []
        if not handles:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def read(self) -> list[GpuReading]:
        nvml = self._nvml
        readings = []
        for index, handle in enumerate(self._handles):
            utilization = used = total = celsius = None
            try:
                utilization = nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
            except nvml.NVMLError:
                pass
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                used, total = float(memory.used), float(memory.total)
            except nvml.NVMLError:
                pass
            try:
                celsius = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            except nvml.NVMLError:
                pass
            readings.append(GpuReading(str(index), utilization, used, total, celsius))
        return readings

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass


@dataclass(frozen=True, slots=True)
class TegrastatsSample:
    ram_used_bytes: float | None
    ram_total_bytes: float | None
    gpu_utilization: float | None  # 0..1, from GR3D_FREQ


_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%")
MIB = 1024 * 1024


def parse_tegrastats(line: str) -> TegrastatsSample | None:
    """One line of ``tegrastats`` output (Jetson Nano to Orin); None if it has neither RAM nor GPU load."""
    ram = _RAM.search(line)
    gpu = _GR3D.search(line)
    if ram is None and gpu is None:
        return None
    return TegrastatsSample(
        ram_used_bytes=float(ram.group(1)) * MIB if ram else None,
        ram_total_bytes=float(ram.group(2)) * MIB if ram else None,
        gpu_utilization=int(gpu.group(1)) / 100.0 if gpu else None,
    )


class TegrastatsGpu:
    """The Jetson's integrated GPU, from a ``tegrastats`` process that prints a line per interval."""

    def __init__(self, command: Sequence[str], clock: Clock, max_age_s: float = TEGRASTATS_MAX_AGE_S) -> None:
        self._clock = clock
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._latest: tuple[float, TegrastatsSample] | None = None
        self._process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._read_lines, name="tegrastats", daemon=True)
        self._reader.start()

    @classmethod
    def open(cls, clock: Clock) -> TegrastatsGpu | None:
        program = shutil.which("tegrastats")
        if program is None:
            return None
        try:
            return cls([program, "--interval", str(TEGRASTATS_INTERVAL_MS)], clock)
        except OSError as exc:
            log.warning("cannot start tegrastats: %s", exc)
            return None

    def _read_lines(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            sample = parse_tegrastats(line)
            if sample is not None:
                with self._lock:
                    self._latest = (self._clock.monotonic(), sample)

    def read(self) -> list[GpuReading]:
        with self._lock:
            latest = self._latest
        if latest is None or self._clock.monotonic() - latest[0] > self._max_age_s:
            return []
        sample = latest[1]
        return [GpuReading("0", sample.gpu_utilization, sample.ram_used_bytes, sample.ram_total_bytes)]

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=2)


# -- the collector ------------------------------------------------------------------------------


class HostCollector(Collector):
    """Yields the host's series at each scrape (no thread of its own, except tegrastats')."""

    def __init__(self, gpus: GpuSource | None = None, thermal_root: Path = THERMAL_ROOT) -> None:
        self.gpus = gpus
        self._thermal_root = thermal_root

    @classmethod
    def detect(cls, clock: Clock | None = None, thermal_root: Path = THERMAL_ROOT) -> HostCollector:
        """NVML where a discrete GPU answers, else tegrastats where it exists, else no GPU."""
        gpus: GpuSource | None = NvmlGpus.open() or TegrastatsGpu.open(clock or SystemClock())
        log.info("host metrics: GPU from %s", type(gpus).__name__ if gpus else "nowhere (no NVML, no tegrastats)")
        return cls(gpus, thermal_root)

    def register(self, registry: CollectorRegistry) -> HostCollector:
        """Adds these series, and the appliance process's own (``appliance_process_*``), to ``registry``."""
        try:
            registry.register(self)
            ProcessCollector(namespace="appliance", registry=registry)
        except ValueError:  # a second appliance on the same registry: the first one's collectors serve
            log.debug("host metrics already registered")
        return self

    def close(self) -> None:
        if self.gpus is not None:
            self.gpus.close()

    def collect(self) -> Iterator[Metric]:
        yield from self._cpu_and_memory()
        yield from self._temperatures()
        if self.gpus is not None:
            yield from self._gpu()

    def _cpu_and_memory(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            "appliance_host_cpu_seconds", "CPU time of all cores together, by mode", labels=["mode"]
        )
        for mode, seconds in psutil.cpu_times()._asdict().items():
            cpu.add_metric([mode], seconds)
        yield cpu
        yield GaugeMetricFamily("appliance_host_cpus", "Logical CPUs of the host", value=psutil.cpu_count() or 0)
        memory = psutil.virtual_memory()
        yield GaugeMetricFamily("appliance_host_memory_total_bytes", "Memory of the host", value=memory.total)
        yield GaugeMetricFamily(
            "appliance_host_memory_available_bytes", "Memory available without swapping", value=memory.available
        )

    def _temperatures(self) -> Iterator[Metric]:
        readings = read_thermal_zones(self._thermal_root)
        if not readings:
            return
        family = GaugeMetricFamily(
            "appliance_host_temperature_celsius", "Temperature of a thermal zone", labels=["zone", "type"]
        )
        for reading in readings:
            family.add_metric([reading.zone, reading.kind], reading.celsius)
        yield family

    def _gpu(self) -> Iterator[Metric]:
        try:
            readings = self.gpus.read() if self.gpus is not None else []
        except Exception:  # a GPU that fell off the bus must not take /metrics down with it
            log.exception("reading the GPU failed")
            return
        columns = (
            ("appliance_gpu_utilization_ratio", "GPU busy fraction (0..1)", "utilization"),
            ("appliance_gpu_memory_used_bytes", "GPU memory in use (unified memory on Jetson)", "memory_used_bytes"),
            ("appliance_gpu_memory_total_bytes", "GPU memory (unified memory on Jetson)", "memory_total_bytes"),
            ("appliance_gpu_temperature_celsius", "GPU temperature (NVML)", "celsius"),
        )
        for name, documentation, field in columns:
            family = GaugeMetricFamily(name, documentation, labels=["gpu"])
            for reading in readings:
                value = getattr(reading, field)
                if value is not None:
                    family.add_metric([reading.gpu], value)
            if family.samples:
                yield family
