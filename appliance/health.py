"""Liveness and readiness of the appliance: ``/healthz`` and ``/readyz`` as JSON.

Readiness is a list of checks, each a callable that returns one or more
:class:`CheckResult`; a part of the appliance adds its own with one line
(``appliance.health.readiness.add(PathWritable("outbox", path))``). The appliance is
ready when every result is ok; the body says which are not, and why.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from appliance import __version__
from appliance.clock import Clock
from appliance.host import HostCollector
from appliance.watchdog import FrameWatchdog, SystemdNotifier, watchdog_interval

if TYPE_CHECKING:
    from appliance.config.schema import ApplianceConfig
    from appliance.metrics import ApplianceMetrics

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 16 * 1024 * 1024  # a directory with less free space than this is not writable in practice

JsonPage = tuple[int, dict[str, Any]]  # HTTP status, JSON body


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str  # what was checked, e.g. "stream:line-1", "model:defects", "outbox"
    ok: bool
    detail: str  # for a person: what is wrong, or what is fine


Check = Callable[[], Iterable[CheckResult]]


class Readiness:
    """The checks behind ``/readyz``; each is asked at every request."""

    def __init__(self, checks: Iterable[Check] = ()) -> None:
        self.checks: list[Check] = list(checks)

    def add(self, check: Check) -> None:
        self.checks.append(check)

    def evaluate(self) -> list[CheckResult]:
        results = []
        for check in self.checks:
            try:
                results.extend(check())
            except Exception as exc:  # a broken check makes the appliance not ready, it does not break /readyz
                log.exception("readiness check %r failed", check)
                results.append(CheckResult(_check_name(check), False, f"check failed: {exc}"))
        return results

    def page(self) -> JsonPage:
        results = self.evaluate()
        problems = [f"{r.name}: {r.detail}" for r in results if not r.ok]
        body = {
            "status": "not ready" if problems else "ready",
            "problems": problems,
            "checks": [asdict(r) for r in results],
        }
        return (503 if problems else 200), body


class Liveness:
    """``/healthz``: the process answers; says since when and what it runs."""

    def __init__(self, clock: Clock, device: str, config_version: str) -> None:
        self._clock = clock
        self._started = clock.monotonic()
        self._device = device
        self._config_version = config_version

    def page(self) -> JsonPage:
        return 200, {
            "status": "alive",
            "device": self._device,
            "version": __version__,
            "config_version": self._config_version,
            "uptime_s": round(self._clock.monotonic() - self._started, 3),
        }


def _check_name(check: Check) -> str:
    return str(getattr(check, "name", getattr(check, "__name__", type(check).__name__)))


# -- the appliance's own checks -------------------------------------------------------------------


class ProducingStream(Protocol):
    """What readiness needs to know of a camera stream (pipeline.sources.CameraStream)."""

    id: str
    reason: str
    reconnects: int

    @property
    def state(self) -> Any: ...  # a StreamState

    @property
    def stall_timeout_s(self) -> float: ...

    def last_frame_age(self) -> float | None: ...


class WatchedBackend(Protocol):
    """What the ops view needs of a backend (portable or DeepStream)."""

    @property
    def streams(self) -> Sequence[ProducingStream]: ...


class StreamsProducing:
    """Every configured stream is running and its last frame is fresher than its stall timeout."""

    name = "streams"

    def __init__(self, streams: Sequence[ProducingStream]) -> None:
        self._streams = list(streams)

    def __call__(self) -> list[CheckResult]:
        results = []
        for stream in self._streams:
            state = getattr(stream.state, "value", str(stream.state))
            age = stream.last_frame_age()
            fresh = age is not None and age <= stream.stall_timeout_s
            ok = state == "running" and fresh
            if ok:
                detail = f"running, last frame {age:.1f} s ago"
            elif age is None:
                detail = f"{state}, no frame yet" + (f" ({stream.reason})" if stream.reason else "")
            else:
                detail = f"{state}, last frame {age:.1f} s ago" + (f" ({stream.reason})" if stream.reason else "")
            results.append(CheckResult(f"stream:{stream.id}", ok, detail))
        return results


class ModelsLoaded:
    """Every configured model has its engines loaded (they are loaded at start-up and closed at stop)."""

    name = "models"

    def __init__(self, expected: Sequence[str], loaded: Callable[[], Iterable[str]]) -> None:
        self._expected = list(expected)
        self._loaded = loaded

    def __call__(self) -> list[CheckResult]:
        loaded = set(self._loaded())
        return [
            CheckResult(f"model:{model}", model in loaded, "loaded" if model in loaded else "not loaded")
            for model in self._expected
        ]


class PathWritable:
    """A directory (or the directory of a file) the appliance must write to exists, is writable and not full."""

    def __init__(self, name: str, path: Path, is_directory: bool = False, min_free_bytes: int = MIN_FREE_BYTES):
        self.name = name
        self._directory = Path(path) if is_directory else Path(path).parent
        self._min_free = min_free_bytes

    def __call__(self) -> list[CheckResult]:
        directory = self._directory
        if not directory.is_dir():
            return [CheckResult(self.name, False, f"{directory} does not exist")]
        if not os.access(directory, os.W_OK | os.X_OK):
            return [CheckResult(self.name, False, f"{directory} is not writable")]
        free = shutil.disk_usage(directory).free
        if free < self._min_free:
            return [CheckResult(self.name, False, f"{directory}: only {free // 1024} KiB free")]
        return [CheckResult(self.name, True, f"{directory} writable, {free // (1024 * 1024)} MiB free")]


# -- the appliance's ops view, wired into Appliance ------------------------------------------------


class ApplianceHealth:
    """Readiness, liveness, host metrics and systemd notification of a running appliance.

    ``Appliance`` makes one, serves :meth:`pages` beside /metrics, calls :meth:`started`
    once its pipelines run, :meth:`tick` from its run loop and :meth:`stopping` /
    :meth:`close` when it stops.
    """

    def __init__(self, config: ApplianceConfig, backend: WatchedBackend, metrics: ApplianceMetrics,
                 clock: Clock, loaded_models: Callable[[], Iterable[str]],
                 environ: Mapping[str, str] | None = None) -> None:
        self._backend = backend
        self._metrics = metrics
        self.readiness = Readiness([
            StreamsProducing(backend.streams),
            ModelsLoaded([m.id for m in config.models], loaded_models),
        ])
        for name, path in (("results", config.results.jsonl), ("events", config.events.jsonl)):
            if path is not None:
                self.readiness.add(PathWritable(name, path))
        if config.events.snapshots.directory is not None:
            self.readiness.add(PathWritable("snapshots", config.events.snapshots.directory, is_directory=True))
        if config.events.sinks:  # every event is written to the outbox before it counts as emitted
            self.readiness.add(PathWritable("outbox", config.events.outbox.path))
        self.liveness = Liveness(clock, config.device.id, config.version)
        self.host = HostCollector.detect(clock).register(metrics.registry)
        self.notifier = SystemdNotifier.from_environment(environ)
        self.watchdog = FrameWatchdog(
            self.notifier, watchdog_interval(environ), clock, self.frames_analyzed, self.streams_running
        )

    @property
    def pages(self) -> dict[str, Callable[[], JsonPage]]:
        return {"/healthz": self.liveness.page, "/readyz": self.readiness.page}

    def frames_analyzed(self) -> int:
        return int(sum(s.value for m in self._metrics.frames_analyzed.collect() for s in m.samples
                       if s.name.endswith("_total")))

    def streams_running(self) -> int:
        return sum(1 for s in self._backend.streams if getattr(s.state, "value", "") == "running")

    def started(self) -> None:
        count = len(self._backend.streams)
        self.notifier.notify("READY=1", f"STATUS=running {count} stream{'s' if count != 1 else ''}")
        if self.watchdog.enabled:
            log.info("systemd watchdog: fed every %.1f s while frames are analyzed", self.watchdog.interval_s)

    def tick(self) -> None:
        self.watchdog.tick()

    def stopping(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        self.host.close()
