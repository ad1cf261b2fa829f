"""``appliance bench``: throughput, latency and efficiency of the portable backend.

Efficiency is measured against the machine's compute bound: the analyzed-frame
rate the machine would reach if every CPU-second went to necessary work only —
decoding every frame, preprocessing and inferring every analyzed one — with each
of those per-frame CPU costs measured alone, on the same clip and model, in the
same run:

    bound = cores / (every × decode + preprocess + inference)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.app import Appliance
from appliance.config.schema import ApplianceConfig, ModelConfig
from appliance.events.snapshots import SourceImage
from appliance.inference.onnx_engine import OnnxRuntimeEngine, declared_input_size
from appliance.loopback import free_port, wait_for_port
from appliance.media import ensure_clip
from appliance.pipeline.gst import Gst
from appliance.pipeline.sources import InputSize, SamplePixels, letterbox_chain
from appliance.types import FrameResult

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "appliance" / "bench"


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", default="1,2,4,8", help="stream counts to run (default 1,2,4,8)")
    parser.add_argument("--clip", type=Path, default=None, help="H.264 clip (default: a generated 1080p30 clip)")
    parser.add_argument("--model", type=Path, default=REPO / "engines" / "blobs.onnx")
    parser.add_argument("--input-size", type=int, default=None,
                        help="square model input (default: the size the model declares, else 320)")
    parser.add_argument("--every", type=int, default=3, help="analyze every Nth frame (default 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                        help="instead: run 4 looped streams this long and report memory growth")
    parser.add_argument("--live", type=int, nargs="?", const=0, default=None, metavar="STREAMS",
                        help="instead: RTSP cameras offered twice the analyzable rate (or STREAMS of them); "
                             "reports the age of frames when analyzed")
    parser.add_argument("--seconds", type=float, default=30, help="length of the --live run (default 30)")
    parser.add_argument("--analytics", action="store_true",
                        help="instead: time tracking + rules + event creation per frame with 30 tracked objects")
    parser.add_argument("--events", action="store_true",
                        help="instead: outbox write cost per event and sustained delivery to a local Mosquitto")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")


@dataclass
class Costs:
    """CPU-seconds per frame of each necessary step, measured alone."""

    decode: float
    preprocess: float
    inference: float
    cores: int
    every: int

    @property
    def bound_fps(self) -> float:
        return self.cores / (self.every * self.decode + self.preprocess + self.inference)


@dataclass
class RunFigures:
    streams: int
    analyzed_fps: float
    latency_p50_ms: float
    latency_p99_ms: float
    cpu_percent: float
    peak_rss_mib: float
    efficiency: float


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_of_pipeline(description: str, repeats: int = 3) -> tuple[float, int, tuple[int, int]]:
    """The least CPU-seconds a pipeline took to run to its end over ``repeats`` runs,
    the frames its sink (named ``out``) rendered, and their size."""
    best = float("inf")
    frames = 0
    size = (0, 0)
    for _ in range(repeats):
        pipeline = Gst.parse_launch(description)
        began = _cpu_seconds()
        pipeline.set_state(Gst.State.PLAYING)
        message = pipeline.get_bus().timed_pop_filtered(
            Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR
        )
        best = min(best, _cpu_seconds() - began)
        sink = pipeline.get_by_name("out")
        frames = int(sink.get_property("stats").get_value("rendered"))
        caps = sink.get_static_pad("sink").get_current_caps()
        if caps is not None:
            structure = caps.get_structure(0)
            size = (structure.get_value("width"), structure.get_value("height"))
        pipeline.set_state(Gst.State.NULL)
        if message.type == Gst.MessageType.ERROR:
            raise RuntimeError(message.parse_error()[0].message)
    return best, frames, size


def _cpu_per_call(work, runs: int = 200, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = _cpu_seconds()
        for _ in range(runs):
            work()
        best = min(best, (_cpu_seconds() - began) / runs)
    return best


def measure_costs(clip: Path, model: ModelConfig, every: int) -> Costs:
    """Each necessary step alone: decoding the clip; letterboxing a frame of its size
    (GStreamer's convert and scale, then the conversion to RGB into the input tensor); one inference."""
    decode_cpu, decoded, (width, height) = _cpu_of_pipeline(
        f'filesrc location="{clip}" ! qtdemux ! h264parse ! avdec_h264 ! fakesink name=out sync=false'
    )
    size = model.input
    frames = f"videotestsrc pattern=black num-buffers=300 ! video/x-raw,format=I420,width={width},height={height}"
    raw_cpu, _, _ = _cpu_of_pipeline(f"{frames} ! fakesink name=out sync=false")
    scaled_cpu, scaled, _ = _cpu_of_pipeline(
        f"{frames} ! {letterbox_chain(InputSize(size.width, size.height))} ! fakesink name=out sync=false"
    )
    batch = np.zeros((1, 3, size.height, size.width), dtype=np.float32)
    noise = np.random.default_rng(0).integers(16, 240, 3 * size.height * size.width, dtype=np.uint8)
    caps = Gst.Caps.from_string(f"video/x-raw,format=Y444,width={size.width},height={size.height},colorimetry=bt601")
    pixels = SamplePixels(Gst.Sample.new(Gst.Buffer.new_wrapped(noise.tobytes()), caps, None, None))
    engine = OnnxRuntimeEngine(model, threads=1)
    try:
        copy_cpu = _cpu_per_call(lambda: pixels.copy_into(batch[0]))
        inference_cpu = _cpu_per_call(lambda: engine.infer(batch))
    finally:
        engine.close()
    preprocess = max(0.0, scaled_cpu - raw_cpu) / scaled + copy_cpu
    return Costs(decode_cpu / decoded, preprocess, inference_cpu, os.cpu_count() or 1, every)


class Monitor:
    """CPU time, wall time and resident memory (sampled) over a run."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.rss: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Monitor:
        self._cpu0, self._wall0 = _cpu_seconds(), time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._wall0
        self.cpu = _cpu_seconds() - self._cpu0
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.rss.append((time.monotonic() - self._wall0, _rss_mib()))
            if self._done.wait(self.interval):
                return

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu / self.wall / (os.cpu_count() or 1)

    @property
    def peak_rss(self) -> float:
        return max(mib for _, mib in self.rss)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values) or [0.0]
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _config(model: ModelConfig, sources: list[dict[str, Any]], workers: int) -> ApplianceConfig:
    return ApplianceConfig.model_validate({
        "device": {"id": "bench"},
        "backend": "portable",
        "models": [model.model_dump()],
        "sources": sources,
        "inference": {"workers": workers, "threads_per_worker": 1},
        "metrics": {"enabled": False},
    })


def _run(config: ApplianceConfig, seconds: float, rss_interval: float = 0.25) -> tuple[list[float], Monitor, Appliance]:
    """Runs the appliance; returns each result's decode-to-result latency and the monitor."""
    latencies: list[float] = []

    def on_result(result: FrameResult, image: object = None) -> None:
        latencies.append(time.time() - result.wall_time)

    app = Appliance(config, on_result=on_result)
    with Monitor(rss_interval) as monitor:
        app.start()
        try:
            app.run(duration=seconds)
        finally:
            app.stop()
    return latencies, monitor, app


def run_streams(clip: Path, model: ModelConfig, streams: int, fps: int, every: int, workers: int,
                bound_fps: float) -> RunFigures:
    sources = [
        {"id": f"s{i}", "uri": f"file://{clip}", "realtime": False, "analyze_fps": fps / every}
        for i in range(streams)
    ]
    latencies, monitor, _ = _run(_config(model, sources, workers), seconds=600)
    rate = len(latencies) / monitor.wall
    return RunFigures(
        streams=streams,
        analyzed_fps=rate,
        latency_p50_ms=1000 * statistics.median(latencies or [0.0]),
        latency_p99_ms=1000 * _percentile(latencies, 0.99),
        cpu_percent=monitor.cpu_percent,
        peak_rss_mib=monitor.peak_rss,
        efficiency=rate / bound_fps,
    )


def run_soak(clip: Path, model: ModelConfig, streams: int, fps: int, every: int, workers: int,
             seconds: float) -> dict[str, float]:
    """Looped files for ``seconds``: resident memory after warm-up against the end."""
    sources = [
        {"id": f"s{i}", "uri": f"file://{clip}", "loop": True, "realtime": False, "analyze_fps": fps / every}
        for i in range(streams)
    ]
    latencies, monitor, _ = _run(_config(model, sources, workers), seconds=seconds, rss_interval=1.0)
    warm_up = min(60.0, seconds / 5)
    after_warm_up = [mib for t, mib in monitor.rss if t >= warm_up]
    start, end = after_warm_up[0], after_warm_up[-1]
    return {
        "seconds": monitor.wall, "streams": streams, "analyzed_fps": len(latencies) / monitor.wall,
        "rss_after_warm_up_mib": start, "rss_end_mib": end, "rss_peak_mib": monitor.peak_rss,
        "rss_growth_percent": 100 * (end - start) / start,
    }


def histogram_quantile(app: Appliance, family: str, q: float) -> float:
    """Prometheus's histogram_quantile over all label sets of a histogram family."""
    buckets: dict[float, float] = {}
    for metric in app.metrics.registry.collect():
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total == 0:
        return 0.0
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(buckets[bound] - below, 1e-12)
        lower, below = bound, buckets[bound]
    return lower


def run_live(model: ModelConfig, workers: int, streams: int | None, seconds: float) -> dict[str, float]:
    """RTSP cameras at real time, offered about twice what the machine can analyze:
    the age of a frame when its analysis starts must stay bounded (stale frames dropped)."""
    fps = 30
    clip = ensure_clip(CACHE / "live-360p30.mp4", width=640, height=360, fps=fps, seconds=max(60, seconds + 30),
                       noise=0.1, bitrate_kbps=1500, key_interval=fps)
    costs = measure_costs(clip, model, every=1)
    count = streams or min(16, math.ceil(2 * costs.bound_fps / fps))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "appliance.rtsp_server", "--file", str(clip), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        sources = [{"id": f"cam{i}", "uri": f"rtsp://127.0.0.1:{port}/cam", "analyze_fps": fps} for i in range(count)]
        latencies, monitor, app = _run(_config(model, sources, workers), seconds=seconds)
    finally:
        server.kill()
        server.wait()
    inference = histogram_quantile(app, "appliance_inference_latency_seconds", 0.5)
    offered = count * fps
    return {
        "streams": count, "offered_fps": offered, "bound_fps": costs.bound_fps,
        "analyzed_fps": len(latencies) / monitor.wall,
        "frame_age_p50_ms": 1000 * histogram_quantile(app, "appliance_frame_age_seconds", 0.5),
        "frame_age_p99_ms": 1000 * histogram_quantile(app, "appliance_frame_age_seconds", 0.99),
        "inference_p50_ms": 1000 * inference,
        "age_limit_ms": 1000 * (2 / fps + inference),
        "cpu_percent": monitor.cpu_percent,
    }


ANALYTICS_SCENES: dict[str, tuple[list[str], dict[str, Any]]] = {
    # use case: (labels of the 30 objects, the source's rules)
    "defects": (["vial", "blister", "tablet", "crack"], {"defects": {"inspection_line": "inspection"}}),
    "ppe": (["person", "helmet", "mask", "gloves", "gown"], {"ppe": {"wash_zone": "wash", "clean_zone": "clean"}}),
    # the same, the people also tracked by their looks (the frame's pixels: a still 1080p frame here)
    "ppe+looks": (["person", "helmet", "mask", "gloves", "gown"], {
        "ppe": {"wash_zone": "wash", "clean_zone": "clean"}, "tracker": {"appearance_labels": ["person"]}}),
    # the same, each person's items named by the item classifier from their crop (6 people a frame)
    "ppe+items": (["person", "helmet", "mask", "gloves", "gown"], {
        "ppe": {"wash_zone": "wash", "clean_zone": "clean", "item_check": {"model": "ppe_items"}},
        "tracker": {"appearance_labels": ["person"]}}),
    "animals": (["rodent", "rearing"], {"animals": {"cage_zone": "cage", "expected_animals": 30},
                                        "tracker": {"label_groups": [["rodent", "rearing"]]}}),
    "presence": (["person", "cart"], {"presence": {"max_dwell_s": {"wash": 5.0}}}),  # every zone and line
}


ITEM_MODEL = {"id": "ppe_items", "onnx": str(REPO / "engines" / "ppe_items.onnx"),
              "labels": str(REPO / "engines" / "ppe_items.labels"), "input": {"width": 64, "height": 128},
              "parser": "attributes", "confidence": 0.5}


def run_analytics(objects: int = 30, frames: int = 600, repeats: int = 5) -> dict[str, float]:
    """Per-frame time of tracking + rules + event creation, each use case alone, over ``repeats``
    runs over the same frames, each with fresh analytics: the best run's (as ``timeit`` reports:
    slower runs are slowed by whatever else the machine does), printed with the median."""
    from appliance.analytics.assembly import analytics_for, tracker_for
    from appliance.clock import SystemClock
    from appliance.events.factory import EventFactory
    from appliance.inference.onnx_engine import load_engine
    from appliance.metrics import ApplianceMetrics
    from appliance.types import Detection

    figures = {}
    rng = np.random.default_rng(0)
    warm = 50
    for use_case, (labels, rules) in ANALYTICS_SCENES.items():
        crops = "item_check" in rules.get("ppe", {})
        config = ApplianceConfig.model_validate({"models": [ITEM_MODEL] if crops else [], "sources": [{
            "id": "bench", "uri": "test://ball", "analyze_fps": 5, "rules": rules,
            "lines": [{"id": "inspection", "points": [[0.5, 0], [0.5, 1]]}],
            "zones": [{"id": z, "polygon": p} for z, p in (
                ("wash", [[0, 0.5], [0.3, 0.5], [0.3, 1], [0, 1]]), ("clean", [[0.7, 0.5], [1, 0.5], [1, 1], [0.7, 1]]),
                ("cage", [[0, 0], [1, 0], [1, 1], [0, 1]]))],
        }]})
        start = rng.uniform([0, 0], [1800, 1000], (objects, 2))
        speed = rng.uniform(-8, 8, (objects, 2))
        label_of = [labels[i % len(labels)] for i in range(objects)]
        results = []
        for f in range(frames):
            xy = (start + f * speed) % [1800, 1000]
            detections = [Detection(label_of[i], 0.9, (x, y, x + 60, y + 80)) for i, (x, y) in enumerate(xy.tolist())]
            results.append(FrameResult("bench", f, int(f * 2e8), time.time(), 1920, 1080, detections))
        # looks are described, and crops read, from the frame's planes, as in the pipeline
        picture = _source_frame() if rules.get("tracker", {}).get("appearance_labels") or crops else None
        second_stage = {m.id: load_engine(m, threads=1) for m in config.models}
        whole, tracking = [], []
        for _ in range(repeats):
            events: list[object] = []
            analytics = analytics_for(config, config.sources[0], EventFactory("bench", "1", SystemClock()),
                                      events.append, ApplianceMetrics(), second_stage=second_stage)
            tracker = tracker_for(config.sources[0])
            for r in results[:warm]:
                analytics.process(r, picture)  # type: ignore[arg-type]
                tracker.update(r.detections)
            began = time.perf_counter()
            for r in results[warm:]:
                analytics.process(r, picture)  # type: ignore[arg-type]
            whole.append((time.perf_counter() - began) / (frames - warm))
            began = time.perf_counter()
            for r in results[warm:]:
                tracker.update(r.detections)
            tracking.append((time.perf_counter() - began) / (frames - warm))
        for engine in second_stage.values():
            engine.close()
        figures[use_case] = min(whole) * 1000
        print(f"analytics {use_case:9} {objects} tracked objects: {min(whole) * 1000:.3f} ms per frame, best of "
              f"{repeats} runs (median {float(np.median(whole)) * 1000:.3f}; tracking {min(tracking) * 1000:.3f} ms, "
              f"median {float(np.median(tracking)) * 1000:.3f}; {len(events)} events)")
    figures["frame_to_rgb"] = _rgb_conversion_ms(repeats)
    print(f"analytics snapshots: a 1920x1080 I420 frame to RGB (looks need no conversion) "
          f"{figures['frame_to_rgb']:.3f} ms, best of {repeats} x 20")
    return figures


def _source_frame() -> SourceImage:
    """A 1080p I420 frame of noise, as a decoder gives it."""
    width, height = 1920, 1080
    caps = Gst.Caps.from_string(f"video/x-raw,format=I420,width={width},height={height},framerate=5/1")
    data = np.random.default_rng(0).integers(0, 256, width * height * 3 // 2, dtype=np.uint8).tobytes()
    return SourceImage(Gst.Buffer.new_wrapped(data), caps)


def _rgb_conversion_ms(repeats: int = 5, runs: int = 20) -> float:
    """What a source frame's conversion to RGB costs (``SourceImage.rgb``, as for a snapshot)."""
    image = _source_frame()
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(runs):
            image.rgb()
        best = min(best, (time.perf_counter() - began) / runs)
    return best * 1000


def run_bench(args: argparse.Namespace) -> int:
    fps = 30
    labels = args.model.with_suffix(".labels")
    width, height = ((args.input_size, args.input_size) if args.input_size
                     else declared_input_size(args.model) or (320, 320))
    model = ModelConfig.model_validate({
        "id": "bench", "onnx": str(args.model), "labels": str(labels),
        "input": {"width": width, "height": height}, "parser": "yolov8",
    })
    report: dict[str, Any] = {}
    if args.live is not None:
        live = run_live(model, args.workers, args.live or None, args.seconds)
        report["live"] = live
        print(f"live: {live['streams']} RTSP cameras at {fps} fps offer {live['offered_fps']:.0f} frames/s; "
              f"the machine can analyze {live['bound_fps']:.0f}/s; analyzed {live['analyzed_fps']:.1f}/s")
        print(f"frame age when analyzed: p50 {live['frame_age_p50_ms']:.1f} ms, p99 {live['frame_age_p99_ms']:.1f} ms "
              f"(limit: 2 frame intervals + one inference = {live['age_limit_ms']:.1f} ms)")
    clip = args.clip or ensure_clip(
        CACHE / "bench-1080p30.mp4", width=1920, height=1080, fps=fps, seconds=10, noise=0.12,
        bitrate_kbps=6000, key_interval=60,
    )
    if args.soak:
        soak = run_soak(clip, model, 4, fps, args.every, args.workers, args.soak)
        report["soak"] = soak
        print(f"soak: 4 streams for {soak['seconds']:.0f} s at {soak['analyzed_fps']:.1f} analyzed/s; RSS "
              f"{soak['rss_after_warm_up_mib']:.0f} MiB after warm-up, {soak['rss_end_mib']:.0f} MiB at the end "
              f"({soak['rss_growth_percent']:+.1f} %)")
    if args.analytics:
        report["analytics"] = run_analytics()
    if args.events:
        from appliance.events.bench import run_events_bench

        report["events"] = run_events_bench()
    if args.live is None and not args.soak and not args.analytics and not args.events:
        report.update(_throughput(args, clip, model, fps))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _throughput(args: argparse.Namespace, clip: Path, model: ModelConfig, fps: int) -> dict[str, Any]:
    print(f"clip {clip.name}, model {args.model.name} at {model.input.width}x{model.input.height}, "
          f"analyzing 1 frame in {args.every}, "
          f"{os.cpu_count()} cores, {args.workers} workers")
    costs = measure_costs(clip, model, args.every)
    print(f"measured alone (CPU ms per frame): decode {1000 * costs.decode:.2f}, "
          f"preprocess {1000 * costs.preprocess:.2f}, inference {1000 * costs.inference:.2f}; "
          f"compute bound {costs.bound_fps:.1f} analyzed frames/s")
    print(f"{'streams':>7} {'analyzed/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU %':>6} {'RSS MiB':>8} "
          f"{'efficiency':>10}")
    figures = []
    for count in [int(n) for n in args.streams.split(",") if n.strip()]:
        f = run_streams(clip, model, count, fps, args.every, args.workers, costs.bound_fps)
        figures.append(f)
        print(f"{f.streams:>7} {f.analyzed_fps:>10.1f} {f.latency_p50_ms:>8.1f} {f.latency_p99_ms:>8.1f} "
              f"{f.cpu_percent:>6.0f} {f.peak_rss_mib:>8.0f} {f.efficiency:>10.2f}")
    return {"costs": asdict(costs), "bound_fps": costs.bound_fps, "runs": [asdict(f) for f in figures]}
