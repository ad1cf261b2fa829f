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
import os
import resource
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.app import Appliance
from appliance.config.schema import ApplianceConfig, ModelConfig
from appliance.inference.onnx_engine import OnnxRuntimeEngine
from appliance.media import ensure_clip
from appliance.pipeline.frames import ArrayPixels
from appliance.pipeline.gst import Gst
from appliance.types import FrameResult

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "appliance" / "bench"


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", default="1,2,4,8", help="stream counts to run (default 1,2,4,8)")
    parser.add_argument("--clip", type=Path, default=None, help="H.264 clip (default: a generated 1080p30 clip)")
    parser.add_argument("--model", type=Path, default=REPO / "engines" / "blobs.onnx")
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--every", type=int, default=3, help="analyze every Nth frame (default 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
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


def _cpu_of_pipeline(description: str) -> tuple[float, int]:
    """CPU-seconds a pipeline takes to run to its end, and the frames its sink rendered."""
    pipeline = Gst.parse_launch(description)
    began = _cpu_seconds()
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    spent = _cpu_seconds() - began
    frames = int(pipeline.get_by_name("out").get_property("stats").get_value("rendered"))
    pipeline.set_state(Gst.State.NULL)
    if message.type == Gst.MessageType.ERROR:
        raise RuntimeError(message.parse_error()[0].message)
    return spent, frames


def measure_costs(clip: Path, model: ModelConfig, every: int, fps: int) -> Costs:
    demux = f'filesrc location="{clip}" ! qtdemux ! h264parse ! avdec_h264'
    decode_cpu, decoded = _cpu_of_pipeline(f"{demux} ! fakesink name=out sync=false")
    size = model.input
    scaled_cpu, analyzed = _cpu_of_pipeline(
        f"{demux} ! videorate drop-only=true max-rate={fps // every} ! videoscale add-borders=true"
        f" ! videoconvert ! video/x-raw,format=RGB,width={size.width},height={size.height},pixel-aspect-ratio=1/1"
        f" ! fakesink name=out sync=false"
    )
    engine = OnnxRuntimeEngine(model, threads=1)
    batch = np.zeros((1, 3, size.height, size.width), dtype=np.float32)
    pixels = ArrayPixels(np.random.default_rng(0).integers(0, 255, (size.height, size.width, 3), dtype=np.uint8))
    for _ in range(5):
        engine.infer(batch)
    runs = 200
    began = _cpu_seconds()
    for _ in range(runs):
        pixels.copy_into(batch[0])
    copy_cpu = (_cpu_seconds() - began) / runs
    began = _cpu_seconds()
    for _ in range(runs):
        engine.infer(batch)
    inference_cpu = (_cpu_seconds() - began) / runs
    engine.close()
    preprocess = max(0.0, (scaled_cpu - decode_cpu)) / max(1, analyzed) + copy_cpu
    return Costs(decode_cpu / decoded, preprocess, inference_cpu, os.cpu_count() or 1, every)


def run_streams(clip: Path, model: ModelConfig, streams: int, fps: int, every: int, workers: int,
                bound_fps: float) -> RunFigures:
    config = ApplianceConfig.model_validate({
        "device": {"id": "bench"},
        "backend": "portable",
        "models": [model.model_dump()],
        "sources": [
            {"id": f"s{i}", "uri": f"file://{clip}", "realtime": False, "analyze_fps": fps / every}
            for i in range(streams)
        ],
        "inference": {"workers": workers, "threads_per_worker": 1},
        "metrics": {"enabled": False},
    })
    latencies: list[float] = []

    def on_result(result: FrameResult) -> None:
        latencies.append(time.time() - result.wall_time)

    app = Appliance(config, on_result=on_result)
    peak = [_rss_mib()]
    done = threading.Event()

    def sample_rss() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], _rss_mib())

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    cpu0, wall0 = _cpu_seconds(), time.monotonic()
    app.start()
    try:
        app.run(duration=600)
    finally:
        wall = time.monotonic() - wall0
        cpu = _cpu_seconds() - cpu0
        app.stop()
        done.set()
    rate = len(latencies) / wall
    ordered = sorted(latencies) or [0.0]
    return RunFigures(
        streams=streams,
        analyzed_fps=rate,
        latency_p50_ms=1000 * statistics.median(ordered),
        latency_p99_ms=1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        cpu_percent=100 * cpu / wall / (os.cpu_count() or 1),
        peak_rss_mib=peak[0],
        efficiency=rate / bound_fps,
    )


def run_bench(args: argparse.Namespace) -> int:
    fps = 30
    clip = args.clip or ensure_clip(
        CACHE / "bench-1080p30.mp4", width=1920, height=1080, fps=fps, seconds=10, noise=0.12,
        bitrate_kbps=6000, key_interval=60,
    )
    labels = args.model.with_suffix(".labels")
    model = ModelConfig.model_validate({
        "id": "bench", "onnx": str(args.model), "labels": str(labels),
        "input": {"width": args.input_size, "height": args.input_size}, "parser": "yolov8",
    })
    print(f"clip {clip} (1080p{fps}), model {args.model.name} at {args.input_size}, "
          f"analyzing 1 frame in {args.every}, {os.cpu_count()} cores, {args.workers} workers")
    costs = measure_costs(clip, model, args.every, fps)
    print(f"measured alone (CPU ms per frame): decode {1000 * costs.decode:.2f}, "
          f"preprocess {1000 * costs.preprocess:.2f}, inference {1000 * costs.inference:.2f}; "
          f"compute bound {costs.bound_fps:.1f} analyzed frames/s")
    header = f"{'streams':>7} {'analyzed/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU %':>6} {'RSS MiB':>8} {'efficiency':>10}"
    print(header)
    figures = []
    for count in [int(n) for n in args.streams.split(",") if n.strip()]:
        f = run_streams(clip, model, count, fps, args.every, args.workers, costs.bound_fps)
        figures.append(f)
        print(f"{f.streams:>7} {f.analyzed_fps:>10.1f} {f.latency_p50_ms:>8.1f} {f.latency_p99_ms:>8.1f} "
              f"{f.cpu_percent:>6.0f} {f.peak_rss_mib:>8.0f} {f.efficiency:>10.2f}")
    if args.json:
        report: dict[str, Any] = {"costs": asdict(costs), "bound_fps": costs.bound_fps,
                                  "runs": [asdict(f) for f in figures]}
        args.json.write_text(json.dumps(report, indent=2))
    return 0
