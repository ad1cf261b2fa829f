#!/usr/bin/env python3
"""Evaluate the demo detectors on held-out scenes and write their model cards.

    python tools/evaluate_models.py [defects|ppe|animals|hazards|all] [--engines engines/] [--scenes 8]
                                    [--onset-scenes 24] [--confidence 0.25] [--threads 1]

For each model: runs ``<engines>/<model>.onnx`` through the appliance's own ONNX
Runtime engine and ``yolov8`` parser on frames of held-out scene seeds (9000 and up,
never used in training), and writes ``<engines>/<model>.md`` (classes, input, the
training command and seed, mAP50, per-class AP50 / precision / recall at the
operating threshold, latency at batch 1 and 4, file size) and ``<model>.labels``.
For the models that find fire and smoke (``EVAL_ONSETS``), the card also says how
soon each is found as it starts, on every frame of its first seconds in held-out
scenes of their own (``tools.training.evaluate.onset_delays``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.training.data import (  # noqa: E402
    EVAL_ONSETS,
    EVAL_RECIPES,
    HELD_OUT_SEED,
    MODEL_LABELS,
    MODELS,
    held_out_frames,
)
from tools.training.detector import num_anchors  # noqa: E402
from tools.training.evaluate import (  # noqa: E402
    Onset,
    Report,
    evaluate,
    held_out_onsets,
    onnx_input_size,
    operating_class_confidence,
    operating_confidence,
)

PURPOSE = {
    "defects": "parts on a conveyor (vial, blister, tablet), their defects (crack, chip, missing cap, stain) "
               "and tools at a check station (their state, clean, dirty or damaged, is the `tool_states` "
               "classifier's: `engines/tool_states.md`)",
    "ppe": "people, their protective equipment (helmet, mask worn or under the nose, gloves, gown, goggles), "
           "fire and smoke in a clean room",
    "animals": "rodents in a cage seen from above, day and night, and whether each one is rearing",
    "hazards": "fire and smoke in a clean room, from their first moments (a young plume is small and faint); "
               "it runs beside the `ppe` detector, and the ppe rules take fire and smoke from it "
               "(`rules.ppe.fire_model`)",
}


#: why a model's boxes must fit, not just overlap
FIT_MATTERS = {"ppe": "; the rules place an item by where it lies in a person's box, and the item classifier "
                      "crops the person's box"}


def training_meta(path: Path) -> dict[str, object]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == "appliance.training":
            return dict(json.loads(entry.value))
    return {}


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def budget_note(meta: dict[str, object]) -> str:
    """What the time budget did to the run: nothing, its schedule, or its length."""
    if not meta.get("budget_limited"):
        return ""
    if meta.get("iterations") == meta.get("planned_iterations"):
        return ("; all planned iterations, with the learning-rate schedule following the clock at times "
                "(the weights depend on the machine's speed)")
    return ", shortened to fit the time budget"


def onset_lines(model: str, onsets: list[Onset], scenes: int) -> list[str]:
    """The card's table of how soon what starts in ``model``'s onset scenes (fire, smoke) is found."""
    source, kinds = EVAL_ONSETS[model]
    window = source.onset_s
    lines = [
        "",
        f"As they start: every frame of the first {window:g} s of each fire and smoke in {scenes} held-out "
        f"scenes of their own (`{source.name}`, seeds {HELD_OUT_SEED}..{HELD_OUT_SEED + scenes - 1}: smoke, "
        "fire and its smoke, or fire alone), and how long after the truth first shows it the model first finds it "
        "at the operating threshold, on a box touching the truth's. The ppe rules then confirm it over a "
        "second.",
        "",
        "| class | onsets | found within 0.5 s | within 1 s | median | p90 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in dict.fromkeys(kinds.values()):
        delays = [math.inf if o.delay_s is None else o.delay_s for o in onsets if o.label == label]
        if not delays:
            continue

        def seconds(value: float) -> str:
            return f"> {window:g} s" if math.isinf(value) else f"{value:.1f} s"

        within = [sum(d <= limit for d in delays) / len(delays) for limit in (0.5, 1.0)]
        lines.append(f"| {label} | {len(delays)} | {within[0]:.2f} | {within[1]:.2f} | "
                     f"{seconds(float(np.percentile(delays, 50, method='inverted_cdf')))} | "
                     f"{seconds(float(np.percentile(delays, 90, method='inverted_cdf')))} |")
    return lines


def write_card(report: Report, meta: dict[str, object], scenes: int, command: str, out: Path,
               onsets: list[Onset] | None = None, onset_scenes: int = 0) -> Path:
    size = report.path.stat().st_size
    recipe = EVAL_RECIPES[report.model]
    sources = ", ".join(f"{s.name} ({s.duration_s:g} s, every {s.every}th frame)" for s in recipe.sources)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    batch, crop = config.get("batch", "?"), config.get("crop")  # type: ignore[union-attr]
    width, height = onnx_input_size(report.path)
    lines = [
        f"# {report.model}: demo detector",
        "",
        f"Detects {PURPOSE.get(report.model, report.model)}. Trained by `tools/train_demo_models.py` on generated "
        "scenes (`tools/scenes/`) only; it knows these synthetic scenes, not real camera footage.",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{report.path.name}` ({size / 1e6:.2f} MB) |",
        f"| classes ({len(report.labels)}) | {', '.join(f'`{x}`' for x in report.labels)} (`{report.model}.labels`) |",
        f"| input | `images` [N, 3, {height}, {width}] float32, RGB 0..1, letterboxed (black borders), dynamic N |",
        f"| output | `output0` [N, {4 + len(report.labels)}, {num_anchors(height, width)}]: cx, cy, w, h "
        "(input pixels), then one sigmoid score per class (Ultralytics YOLOv8 raw layout; parser `yolov8`) |",
        f"| parameters | {meta.get('parameters', '?')} |",
        f"| training command | `{meta.get('command', '?')}` |",
        f"| training seed | {meta.get('seed', '?')} (scene seeds {meta.get('training_seeds', '?')}, "
        f"{meta.get('frames', '?')} frames) |",
        f"| training | {meta.get('iterations', '?')} iterations of batch {batch}"
        f"{f' ({crop[0]}x{crop[1]} crops)' if crop else ''} in {meta.get('train_seconds', '?')} s "
        f"({meta.get('total_seconds', '?')} s with rendering and export)"
        f"{budget_note(meta)} |",
        f"| evaluation command | `{command}` |",
        f"| evaluation data | held-out scene seeds {HELD_OUT_SEED}..{HELD_OUT_SEED + scenes - 1} (never used in "
        f"training): {sources}; {report.scores.images} frames |",
        f"| **mAP50** | **{_pct(report.map50)}** (all-point AP at IoU 0.5, mean over the classes present) |",
        f"| mAP75 | {_pct(report.scores.map75)} (at IoU 0.75: how well the boxes fit"
        f"{FIT_MATTERS.get(report.model, '')}) |",
        f"| operating threshold | confidence {report.scores.thresholds}, NMS IoU 0.45 |",
        f"| latency (ONNX Runtime CPU, {report.threads} thread) | "
        f"batch 1: {report.latency_ms.get(1, float('nan')):.1f} ms, "
        f"batch 4: {report.latency_ms.get(4, float('nan')):.1f} ms (median; {platform.machine()}, "
        f"{os.cpu_count()} cores, shared) |",
        "",
        "Per class (precision and recall at the operating threshold):",
        "",
        "| class | truth boxes | AP50 | AP75 | precision | recall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in report.scores.classes:
        lines.append(f"| {c.label} | {c.truth} | {_pct(c.ap50)} | {_pct(c.ap75)} | {_pct(c.precision)} "
                     f"| {_pct(c.recall)} |")
    if onsets:
        lines += onset_lines(report.model, onsets, onset_scenes)
    lines += [
        "",
        "Measured through the appliance's own `OnnxRuntimeEngine` and `yolov8` parser "
        "(`tools/training/evaluate.py`). Numbers are for the generated scenes only.",
        f"Written {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    path = out / f"{report.model}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="all", choices=[*MODELS, "all"])
    parser.add_argument("--engines", type=Path, default=REPO / "engines")
    parser.add_argument("--scenes", type=int, default=8, help="held-out scene seeds per model")
    parser.add_argument("--confidence", type=float, default=None,
                        help="operating threshold (default: the model's, tools/training/evaluate.py)")
    parser.add_argument("--onset-scenes", type=int, default=24,
                        help="held-out scenes of their own for how soon fire and smoke are found as they start")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    command = "python tools/evaluate_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for model in MODELS if args.model == "all" else (args.model,):
        path = args.engines / f"{model}.onnx"
        labels = MODEL_LABELS[model]
        (args.engines / f"{model}.labels").write_text("\n".join(labels) + "\n", encoding="utf-8")
        frames = ((image, objects) for _, image, objects in held_out_frames(model, args.scenes))
        confidence = operating_confidence(model) if args.confidence is None else args.confidence
        own = operating_class_confidence(model) if args.confidence is None else {}
        report = evaluate(model, path, labels, frames, confidence, args.threads, class_confidence=own)
        onsets = None
        if model in EVAL_ONSETS and args.onset_scenes > 0:
            onsets = held_out_onsets(model, path, labels, args.onset_scenes, confidence, args.threads, own)
        card = write_card(report, training_meta(path), args.scenes, command.strip(), args.engines, onsets,
                          args.onset_scenes)
        print(f"{model}: mAP50 {report.map50:.3f} mAP75 {report.scores.map75:.3f} on {report.scores.images} frames; "
              f"latency b1 {report.latency_ms.get(1, float('nan')):.1f} ms "
              f"b4 {report.latency_ms.get(4, float('nan')):.1f} ms; {path.stat().st_size / 1e6:.2f} MB; card {card}")
        for c in report.scores.classes:
            print(f"  {c.label:14s} n={c.truth:4d} AP50 {_pct(c.ap50)} AP75 {_pct(c.ap75)} "
                  f"P {_pct(c.precision)} R {_pct(c.recall)}")
        if onsets:
            print("\n".join(line for line in onset_lines(model, onsets, args.onset_scenes) if line.startswith("|")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
