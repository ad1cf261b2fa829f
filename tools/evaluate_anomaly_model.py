#!/usr/bin/env python3
"""Evaluate ``engines/anomaly.onnx`` on held-out crops and write its model card.

    python tools/evaluate_anomaly_model.py [--model engines/anomaly.onnx] [--seeds 9000 9001 9002 9003]
                                           [--count 400] [--card engines/anomaly.md]

The crops come from ``tools.scenes.production.sample_patches`` with seeds that
training never sees (>= 9000), half of them defective. The model runs through the
appliance's own path: ``load_engine`` with ``parser: anomaly`` (ONNX Runtime on the
CPU, its outputs checked against the anomaly layout) and ``AnomalyParser``.

Measured and written to the card (``engines/anomaly.md``, and
``engines/anomaly.labels`` next to the model):

* image AUROC (rank-based, ties count half) over all crops, and per defect kind
  (that kind's crops against all good ones);
* false alarms and recall at a few thresholds on ``pred_score``;
* latency at batch 1 and 4 (median and 90th percentile of ``--runs`` timed runs
  after warm-up, one ONNX Runtime thread);
* file size, and the training command and seed (from the model's metadata).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from appliance.config.schema import ModelConfig  # noqa: E402
from appliance.inference.anomaly import AnomalyParser  # noqa: E402
from appliance.inference.engine import Engine  # noqa: E402
from appliance.inference.onnx_engine import load_engine  # noqa: E402
from tools.training.anomaly import HELD_OUT_SEED, auroc, to_batch  # noqa: E402
from tools.training.evaluate import infer_times_ms  # noqa: E402

THRESHOLDS = (0.4, 0.5, 0.6, 0.8, 1.0)
DEFAULT_THRESHOLD = 0.5
EVALUATE_COMMAND = "python tools/evaluate_anomaly_model.py"


def engine_for(path: Path, threads: int = 1) -> Engine:
    """The 64x64 anomaly model as the appliance loads it: ``load_engine`` with ``parser: anomaly``,
    which checks its outputs against the anomaly layout."""
    config = ModelConfig.model_validate(
        {"id": "anomaly", "onnx": str(path), "labels": ["anomaly"], "input": {"width": 64, "height": 64},
         "input_name": "input", "parser": "anomaly"}
    )
    return load_engine(config, threads=threads)


def score(engine: Engine, parser: AnomalyParser, images: np.ndarray, batch: int = 64) -> np.ndarray:
    names = [o.name for o in engine.outputs]
    scores: list[float] = []
    for start in range(0, len(images), batch):
        results = parser.parse(engine.infer(images[start:start + batch]), names)
        scores += [r.score for r in results]
    return np.asarray(scores, dtype=np.float64)


def latency(engine: Engine, batch: int, runs: int, warmup: int = 10) -> tuple[float, float]:
    """Median and 90th percentile of ``engine.infer`` on ``batch`` random crops, in ms."""
    data = np.random.default_rng(0).random((batch, 3, 64, 64), dtype=np.float32)
    times = infer_times_ms(engine, data, runs, warmup)
    return float(np.median(times)), float(np.percentile(times, 90))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "engines" / "anomaly.onnx")
    parser.add_argument("--seeds", type=int, nargs="+", default=[9000, 9001, 9002, 9003])
    parser.add_argument("--count", type=int, default=400, help="crops per seed, half defective (default 400)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per batch size (default 200)")
    parser.add_argument("--card", type=Path, default=None, help="model card (default: MODEL with suffix .md)")
    args = parser.parse_args(argv)
    if min(args.seeds) < HELD_OUT_SEED:
        parser.error(f"evaluation seeds must be >= {HELD_OUT_SEED} (lower ones are for training)")
    card_path = args.card or args.model.with_suffix(".md")

    from tools.scenes.production import sample_patches

    patches = [item for seed in args.seeds for item in sample_patches(seed, args.count, 64, 0.5)]
    images = to_batch([p for p, _, _ in patches])
    defective = np.array([d for _, d, _ in patches], dtype=bool)
    kinds = np.array([k for _, _, k in patches])

    engine = engine_for(args.model)
    anomaly_parser = AnomalyParser(DEFAULT_THRESHOLD, "anomaly")
    scores = score(engine, anomaly_parser, images)

    overall = auroc(scores, defective)
    per_kind = {}
    for kind in sorted(set(kinds[defective].tolist())):
        keep = (kinds == kind) | ~defective
        per_kind[kind] = (auroc(scores[keep], defective[keep]), int((kinds == kind).sum()))
    rates = [
        (t, float((scores[~defective] >= t).mean()), float((scores[defective] >= t).mean())) for t in THRESHOLDS
    ]
    fp_default = float((scores[~defective] >= DEFAULT_THRESHOLD).mean())
    tp_default = float((scores[defective] >= DEFAULT_THRESHOLD).mean())
    timings = {b: latency(engine, b, args.runs) for b in (1, 4)}
    engine.close()

    meta = {p.key: p.value for p in onnx.load(str(args.model), load_external_data=False).metadata_props}
    size = args.model.stat().st_size
    seeds_text = ", ".join(str(s) for s in args.seeds)
    eval_command = (f"{EVALUATE_COMMAND} --seeds {' '.join(str(s) for s in args.seeds)} --count {args.count} "
                    f"--runs {args.runs}")
    good_scores = scores[~defective]
    lines = [
        "# anomaly: parts and tools, trained on good crops only",
        "",
        "A small U-Net (`tools/training/anomaly.py`, about 220 k weights) that marks, per pixel, what does "
        "not look like a good part or tool in a 64x64 crop. It is trained on good crops only: generic "
        "synthetic anomalies (a blob or a stroke of random colour, a region copied from elsewhere, a region "
        "replaced by background) are pasted into good crops and the network learns to find them (the "
        "discriminative half of DRAEM; CutPaste). No defective crop, and none of the plant's defect kinds, "
        "is used in training. Outputs use anomalib's names, so the appliance's `AnomalyParser` "
        "(`appliance/inference/anomaly.py`, parser kind `anomaly`) reads this model and real anomalib "
        "exports alike.",
        "",
        "## Interface",
        "",
        "| tensor | shape | meaning |",
        "|---|---|---|",
        "| input `input` | `[N, 3, 64, 64]` float32, dynamic N | RGB 0..1, the crop letterboxed to 64x64 |",
        "| output `pred_score` | `[N]` float32 | higher = more anomalous; `max(anomaly_map)` |",
        "| output `anomaly_map` | `[N, 1, 64, 64]` float32 | per-pixel anomaly in model-input pixels |",
        "",
        "ONNX opset 17, IR 8, built with `onnx.helper` from the trained weights with batch norm folded in "
        "(Conv, Relu, Resize nearest, Concat, Sigmoid, Pad, ReduceMax). Labels: `anomaly.labels` (one line, "
        "`anomaly`).",
        "",
        "**Score and normalisation.** The network's per-pixel anomaly probability, smoothed with a 7x7 "
        "Gaussian (sigma 1.5), is the map; the score is its maximum. Both are divided by `2 * p99`, where "
        "`p99` is the 99th percentile of the raw scores of good *calibration* crops (scene seeds not used for "
        "training): a good crop scores 0.5 or less about 99 % of the time. Scores are not clipped (they can "
        "exceed 1).",
        "",
        "## Training",
        "",
        f"    {meta.get('training_command', '(not recorded in the model)')}",
        "",
        f"Seed {meta.get('seed', '?')}; {meta.get('steps', '?')} steps of batch {meta.get('batch_size', '?')} "
        f"(planned {meta.get('steps_planned', '?')}, stopped early: {meta.get('stopped_early', '?')}); "
        f"width {meta.get('width', '?')}, {meta.get('threads', '?')} torch threads. Training crops: "
        f"{meta.get('train_crops', '?')}. Calibration crops: {meta.get('calibration_crops', '?')}, raw p99 "
        f"{meta.get('calibration_p99_raw', '?')}. Half of each batch gets one synthetic anomaly, placed "
        "mostly on the part or its outline; the loss is a per-pixel focal loss. Deterministic: the same "
        "command gives the same file byte for byte (deterministic kernels, fixed thread count), unless the "
        "`--minutes` cap stops it early.",
        "",
        "## Accuracy on held-out crops",
        "",
        f"{len(patches)} crops of `sample_patches` seeds {seeds_text} ({int(defective.sum())} defective, "
        f"{int((~defective).sum())} good); measured by",
        "",
        f"    {eval_command}",
        "",
        f"**Image AUROC {overall:.4f}** (all defect kinds against all good crops).",
        "",
        "| defect kind | crops | AUROC vs. good |",
        "|---|---|---|",
        *[f"| {k} | {n} | {a:.4f} |" for k, (a, n) in per_kind.items()],
        "",
        *_limits(per_kind),
        f"Good crops' scores: median {np.median(good_scores):.3f}, 99th percentile "
        f"{np.percentile(good_scores, 99):.3f}, max {good_scores.max():.3f}.",
        "",
        "| threshold on `pred_score` | good crops flagged | defective crops flagged |",
        "|---|---|---|",
        *[f"| {t:.1f} | {fp * 100:.1f} % | {tp * 100:.1f} % |" for t, fp, tp in rates],
        "",
        f"**Suggested threshold: {DEFAULT_THRESHOLD}** (`confidence: {DEFAULT_THRESHOLD}` in the model's config, "
        "`parser: anomaly`): 1 % of the good calibration crops score above it by "
        f"construction; on these held-out crops it flags {fp_default * 100:.1f} % of the good ones and "
        f"{tp_default * 100:.1f} % of the defective ones. Raise it where false alarms cost more than misses.",
        "",
        "## Latency and size",
        "",
        "| batch | median | p90 |",
        "|---|---|---|",
        *[f"| {b} | {m:.2f} ms | {p:.2f} ms |" for b, (m, p) in timings.items()],
        "",
        f"ONNX Runtime {ort.__version__}, CPU execution provider, 1 intra-op thread, through the `infer` of the "
        "engine the appliance loads (`load_engine` with `parser: anomaly`, which checks the outputs against the "
        f"anomaly layout), on {platform.machine()} ({_cpu_name()}), a 2-core machine shared with other jobs "
        "while measuring: treat as an upper bound.",
        "",
        f"File size: {size / 1e6:.2f} MB ({size} bytes).",
        "",
    ]
    card_path.write_text("\n".join(lines), encoding="utf-8")
    args.model.with_suffix(".labels").write_text("anomaly\n", encoding="utf-8")
    print(f"AUROC {overall:.4f}; " + ", ".join(f"{k} {a:.4f}" for k, (a, _) in per_kind.items()))
    for b, (m, p) in timings.items():
        print(f"latency batch {b}: median {m:.2f} ms, p90 {p:.2f} ms")
    print(f"size {size / 1e6:.2f} MB; wrote {card_path}")
    return 0


def _limits(per_kind: dict[str, tuple[float, int]]) -> list[str]:
    """A paragraph on the kinds the model finds less reliably (AUROC under 0.95), if any."""
    weak = {kind: value for kind, (value, _) in per_kind.items() if value < 0.95}
    if not weak:
        return []
    text = f"Weaker: {', '.join(f'{kind} ({value:.2f})' for kind, value in weak.items())}."
    shapes = [SHAPE_DEFECTS[kind] for kind in weak if kind in SHAPE_DEFECTS]
    if shapes:
        text += (f" Defects that are something *missing or out of shape* ({', '.join(shapes)}) leave no foreign "
                 "mark on the part; the network has to know the part's shape to see them, and the synthetic "
                 "anomalies teach that only partly.")
    return [text, ""]


# the defect kinds that are a part's shape gone wrong, not a mark on it
SHAPE_DEFECTS = {"missing_cap": "a vial without its cap", "tool_damaged": "a bent or broken tool tip"}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
