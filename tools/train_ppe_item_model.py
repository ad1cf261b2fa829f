#!/usr/bin/env python3
"""Train the PPE item classifier and write ``engines/ppe_items.{onnx,labels,md}``.

    python tools/train_ppe_item_model.py [--seed 0] [--minutes 20] [--out engines/]
    python tools/train_ppe_item_model.py --evaluate-only [--out engines/]

Crops of the people in sight in clean-room scenes (``tools.scenes.cleanroom``): one
frame in ``--every`` of the scenes ``1 .. --train-seeds``, for training; the model
card's error rates come from ``--eval-seeds`` held-out scenes from 9000 on, run
through the appliance's own crop (``appliance.analytics.wearing.WornItems``), engine
(ONNX Runtime) and parser (``attributes``). The model is described in
``tools/training/ppe_items.py``.

Training runs a fixed number of steps (``--steps``) with deterministic kernels and a
fixed thread count, so the same command gives the same model; ``--minutes`` is a
wall-clock cap that stops early (and says so in the log, the ONNX metadata and the
card) on a machine too slow for the steps. ``--evaluate-only`` measures the model in
``--out`` again and rewrites its card.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train_anomaly_model.py

import numpy as np  # noqa: E402

from tools.training import classifier_cli as cli  # noqa: E402
from tools.training import ppe_items as training  # noqa: E402

NAME = "ppe_items"
THRESHOLD = 0.5


def evaluate(path: Path, seeds: range, every: int, latency_runs: int = 100) -> dict[str, object]:
    """Per item, the share of held-out people wearing it that the model says do not (missed) and of
    those not wearing it that it says do (false), at ``THRESHOLD``; the engine's latency at batch 1
    and 4."""
    from appliance.analytics.wearing import WornItems, array_sample
    from appliance.config.schema import ModelConfig
    from appliance.inference.classify import AttributeParser
    from appliance.inference.onnx_engine import load_engine
    from tools.scenes.cleanroom import CleanRoomScene
    from tools.training.evaluate import engine_latency_ms

    items = list(training.ITEMS)
    config = ModelConfig(id=NAME, onnx=path, labels=items, input={"width": training.WIDTH, "height": training.HEIGHT},
                         parser="attributes", confidence=THRESHOLD)
    engine = load_engine(config, threads=1)
    worn = WornItems(engine, AttributeParser(items, NAME), training.MARGIN)
    probabilities, targets, known = [], [], []
    for seed in seeds:
        rng = np.random.default_rng([seed, 42])
        scene = CleanRoomScene(seed, 40.0)
        script = [scene.worn(k) for k in range(scene.people_count)]
        for frame, truth in scene.frames():
            people = [o for o in truth.objects if o.label == "person" and o.attributes.get("in_sight")]
            if truth.index % every or not people:
                continue
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            boxes = np.array([training.jitter(o.box, rng) for o in people])
            probabilities.append(worn.probabilities(array_sample(rgb), (scene.width, scene.height), boxes))
            for person in people:
                shown = {o.label for o in truth.objects if o.attributes.get("person_track_id") == person.track_id}
                target, flags = training.labels_of(script[person.track_id][truth.index], shown)
                targets.append(target)
                known.append(flags)
    sample = np.random.default_rng(0).random((1, 3, training.HEIGHT, training.WIDTH), dtype=np.float32)
    latency = engine_latency_ms(engine, sample, latency_runs)
    engine.close()
    errors = training.item_errors(np.concatenate(probabilities), np.stack(targets), np.stack(known), THRESHOLD)
    return {"people": len(targets), "errors": errors, "latency_ms": latency,
            "seeds": f"{seeds.start}-{seeds.stop - 1}", "every": every}


def card(path: Path, meta: dict[str, str], scores: dict[str, object], eval_command: str) -> str:
    items = list(training.ITEMS)
    errors: dict[str, dict[str, float]] = scores["errors"]  # type: ignore[assignment]
    latency: dict[int, float] = scores["latency_ms"]  # type: ignore[assignment]
    lines = [
        "# ppe_items: what one person wears",
        "",
        "A small CNN (`tools/training/ppe_items.py`) that gives each protective item its own probability from "
        "one person's crop: " + ", ".join(f"`{i}`" for i in items) + " (`mask` over the nose, `mask_improper` "
        "under it). The `ppe` detector finds the `person`; the ppe rules (`rules.ppe.item_check`) crop every "
        "person they follow, in every analyzed frame, and ask this model, in place of giving the detector's "
        "items to people by where they lie. Read by the appliance's `attributes` parser "
        "(`appliance/inference/classify.py`).",
        "",
        "## Interface",
        "",
        "| tensor | shape | meaning |",
        "|---|---|---|",
        f"| input `{training.INPUT_NAME}` | `[N, 3, {training.HEIGHT}, {training.WIDTH}]` float32, dynamic N | RGB "
        f"0..1: a 1:2 window centred on the person's box, {training.MARGIN:g} of its height above and below, read "
        f"on a {training.WIDTH}x{training.HEIGHT} grid (`appliance.analytics.wearing.person_crops`) |",
        f"| output `{training.OUTPUT_NAME}` | `[N, {len(items)}]` float32 | each item's probability, in the order "
        f"of `{NAME}.labels` |",
        "",
        "ONNX opset 17, IR 8, built with `onnx.helper` from the trained weights with batch norm folded in (Conv, "
        f"Relu, Flatten, Gemm, Sigmoid); {path.stat().st_size / 1e6:.2f} MB.",
        "",
        "## Training",
        "",
        f"    {meta['training_command']}",
        "",
        f"Seed {meta['seed']}; {meta['steps']} steps of batch {meta['batch_size']} (planned {meta['steps_planned']}, "
        f"stopped early: {meta['stopped_early']}); {meta['threads']} torch threads. Training crops: "
        f"{meta['train_crops']}. Each crop is cut around the person's true box with every edge moved by up to "
        f"{training.BOX_JITTER:g} of the box's size, as a detector's box would be; in training each crop is "
        "mirrored at random, and its brightness, contrast and noise varied. Binary cross-entropy per item; an "
        "item the person wears that people in front of them hide (the truth has no box for it) counts neither "
        "way.",
        "",
        "## Errors on held-out people",
        "",
        f"{scores['people']} people in sight in one frame in {scores['every']} of clean-room scenes "
        f"{scores['seeds']} (seeds training never saw), each cut around the true box jittered as in training, "
        f"through the appliance's crop, ONNX Runtime engine and `attributes` parser, at probability "
        f"{THRESHOLD:g}; measured by",
        "",
        f"    {eval_command}",
        "",
        "| item | wearing | not wearing | missed (of those wearing) | false (of those not wearing) |",
        "|---|---:|---:|---:|---:|",
        *(f"| {i} | {e['wearing']} | {e['not_wearing']} | {e['missed']:.3f} | {e['false']:.3f} |"
          for i, e in errors.items()),
        "",
        "The rules average each item over about a second of frames, so one frame's mistake changes nothing.",
    ]
    if latency:
        lines += ["", "## Latency", "",
                  f"ONNX Runtime on CPU, 1 thread ({platform.machine()}, {os.cpu_count()} cores): batch 1 "
                  f"{latency[1]:.2f} ms, batch 4 {latency[4]:.2f} ms (median of 100)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_training_arguments(parser, training.TrainConfig(), 20.0, REPO / "engines")
    parser.add_argument("--train-seeds", type=int, default=200, help="clean-room scenes 1..N (default 200)")
    parser.add_argument("--every", type=int, default=training.EVERY,
                        help=f"one frame in N gives crops (default {training.EVERY})")
    parser.add_argument("--eval-seeds", type=int, default=40, help="held-out scenes 9000.. (default 40)")
    args = parser.parse_args(argv)
    cli.check_train_seeds(parser, args.train_seeds, training.HELD_OUT_SEED)
    path = args.out / f"{NAME}.onnx"
    eval_seeds = range(training.HELD_OUT_SEED, training.HELD_OUT_SEED + args.eval_seeds)
    eval_command = f"python tools/train_ppe_item_model.py --evaluate-only --eval-seeds {args.eval_seeds}"
    if args.evaluate_only:
        meta = cli.model_metadata(path)
    else:
        started = time.monotonic()
        images, targets, known = training.crops(range(1, args.train_seeds + 1), args.every,
                                                log=lambda line: print(line, flush=True))
        print(f"{len(images)} training crops ({time.monotonic() - started:.0f} s)", flush=True)
        config = cli.run_settings(args, training.TrainConfig)
        result = training.train(images, targets, known, config, log=lambda line: print(line, flush=True))
        wearing = dict(zip(training.ITEMS, (targets * known).sum(axis=0).astype(int).tolist()))
        meta = cli.run_metadata(
            "tools/train_ppe_item_model.py", f"--train-seeds {args.train_seeds} --every {args.every}", args, result,
            f"{len(images)} people (wearing each item: {json.dumps(wearing)}), clean-room scenes "
            f"1-{args.train_seeds}, one frame in {args.every}")
        training.export_onnx(result.model, path, meta)
        (args.out / f"{NAME}.labels").write_text("\n".join(training.ITEMS) + "\n", encoding="utf-8")
        print(cli.trained_line(result, path), flush=True)
    scores = evaluate(path, eval_seeds, args.every)
    (args.out / f"{NAME}.md").write_text(card(path, meta, scores, eval_command), encoding="utf-8")
    print(f"errors on {scores['people']} held-out people: {json.dumps(scores['errors'])}; "
          f"wrote {args.out / (NAME + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
