#!/usr/bin/env python3
"""Train the tool-state classifier and write ``engines/tool_states.{onnx,labels,md}``.

    python tools/train_tool_state_model.py [--seed 0] [--minutes 25] [--out engines/]
    python tools/train_tool_state_model.py --evaluate-only [--out engines/]

Crops of tools at the check station (``tools.scenes.production.sample_tool_views``):
``--per-seed`` tools of each of the seeds ``1 .. --train-seeds``, ``--views`` boxes
each (jittered like a detector's), for training; the model card's accuracy comes
from ``--eval-seeds`` held-out seeds from 9000 on, run through the appliance's own
crop (``appliance.analytics.inspection.CropClassifier``), engine (ONNX Runtime) and
parser (``classify``). The model is described in ``tools/training/tool_states.py``.

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
from tools.training import tool_states as training  # noqa: E402

NAME = "tool_states"


def evaluate(path: Path, seeds: range, per_seed: int, latency_runs: int = 100) -> dict[str, object]:
    """Accuracy, per-state precision/recall and the confusion matrix on held-out tools (boxes
    jittered like a detector's, seeded), and the engine's latency at batch 1 and 4."""
    from appliance.analytics.inspection import CropClassifier
    from appliance.config.schema import ModelConfig
    from appliance.inference.classify import ClassifierParser
    from appliance.inference.onnx_engine import load_engine
    from tools.scenes.production import sample_tool_views
    from tools.training.evaluate import engine_latency_ms

    states = list(training.STATES)
    config = ModelConfig(id=NAME, onnx=path, labels=states, input={"width": training.SIZE, "height": training.SIZE},
                         parser="classify", confidence=0.5)
    engine = load_engine(config, threads=1)
    classifier = CropClassifier(engine, ClassifierParser(states, NAME), training.MARGIN, config.confidence)
    confusion = np.zeros((len(states), len(states)), dtype=np.int64)
    unsure = 0
    for seed in seeds:
        rng = np.random.default_rng([seed, 32])
        for frame, box, state in sample_tool_views(seed, per_seed):
            verdict = classifier.classify(np.ascontiguousarray(frame[:, :, ::-1]), training.jitter(box, rng))
            confusion[states.index(state), states.index(verdict.label)] += 1
            unsure += verdict.confidence < config.confidence
    sample = np.random.default_rng(0).random((1, 3, training.SIZE, training.SIZE), dtype=np.float32)
    latency = engine_latency_ms(engine, sample, latency_runs)
    engine.close()
    total = int(confusion.sum())
    per_state = {
        s: {"tools": int(confusion[i].sum()),
            "precision": float(confusion[i, i] / max(confusion[:, i].sum(), 1)),
            "recall": float(confusion[i, i] / max(confusion[i].sum(), 1))}
        for i, s in enumerate(states)
    }
    return {"tools": total, "accuracy": float(np.trace(confusion) / max(total, 1)), "per_state": per_state,
            "confusion": confusion.tolist(), "unsure": int(unsure), "latency_ms": latency,
            "seeds": f"{seeds.start}-{seeds.stop - 1}", "per_seed": per_seed}


def card(path: Path, meta: dict[str, str], scores: dict[str, object], eval_command: str) -> str:
    states = list(training.STATES)
    per_state: dict[str, dict[str, float]] = scores["per_state"]  # type: ignore[assignment]
    confusion: list[list[int]] = scores["confusion"]  # type: ignore[assignment]
    latency: dict[int, float] = scores["latency_ms"]  # type: ignore[assignment]
    size = training.SIZE
    lines = [
        "# tool_states: the state of a tool at the check station",
        "",
        "A small CNN (`tools/training/tool_states.py`) that names the state of one tool from its crop: `clean`, "
        "`dirty` (residue on it) or `damaged` (bent or broken tip, a notch). The `defects` detector finds the "
        "`tool`; the tool-station rules (`rules.defects.tool_check`) crop each tool they follow and ask this model, "
        "frame by frame, and the `tool.verified` audit record carries the majority of its verdicts. Its layout is "
        "Ultralytics' `-cls` one, read by the appliance's `classify` parser (`appliance/inference/classify.py`), "
        "so another classifier of tool states plugs in the same way.",
        "",
        "## Interface",
        "",
        "| tensor | shape | meaning |",
        "|---|---|---|",
        f"| input `{training.INPUT_NAME}` | `[N, 3, {size}, {size}]` float32, dynamic N | RGB 0..1: the square crop "
        f"around the tool's box ({training.MARGIN:g} of its longer side on each side, at least {size} px), outside "
        "the box painted out, averaged down (`appliance.analytics.inspection.crop_input`) |",
        f"| output `{training.OUTPUT_NAME}` | `[N, {len(states)}]` float32 | probabilities of "
        + ", ".join(f"`{s}`" for s in states) + f" (`{NAME}.labels`) |",
        "",
        "ONNX opset 17, IR 8, built with `onnx.helper` from the trained weights with batch norm folded in (Conv, "
        f"Relu, GlobalAveragePool, Gemm, Softmax); {path.stat().st_size / 1e6:.2f} MB.",
        "",
        "## Training",
        "",
        f"    {meta['training_command']}",
        "",
        f"Seed {meta['seed']}; {meta['steps']} steps of batch {meta['batch_size']} (planned {meta['steps_planned']}, "
        f"stopped early: {meta['stopped_early']}); {meta['threads']} torch threads. Training crops: "
        f"{meta['train_crops']}. Each crop is cut around the tool's true box with every edge moved by up to "
        f"{training.BOX_JITTER:g} of the box's size, as a detector's box would be; in training each crop is turned "
        "by a random quarter turn, flipped, and its brightness, contrast and noise varied. Cross-entropy weighted "
        "against the states' frequencies (half the tools are clean), label smoothing 0.05.",
        "",
        "## Accuracy on held-out tools",
        "",
        f"{scores['tools']} tools of `sample_tool_views` seeds {scores['seeds']} ({scores['per_seed']} per seed, "
        "seeds training never saw), each cut around its true box jittered as in training, through the appliance's "
        "crop, ONNX Runtime engine and `classify` parser; measured by",
        "",
        f"    {eval_command}",
        "",
        f"**Accuracy {scores['accuracy']:.3f}.**",
        "",
        "| state | tools | precision | recall |",
        "|---|---|---|---|",
        *(f"| {s} | {int(v['tools'])} | {v['precision']:.3f} | {v['recall']:.3f} |" for s, v in per_state.items()),
        "",
        "Confusion (rows: the truth, columns: the verdict):",
        "",
        "| truth | " + " | ".join(states) + " |",
        "|---|" + "---|" * len(states),
        *("| " + s + " | " + " | ".join(str(c) for c in confusion[i]) + " |" for i, s in enumerate(states)),
        "",
        f"{scores['unsure']} of the {scores['tools']} verdicts were below the suggested `confidence: 0.5` (such a "
        "verdict does not vote). The rules vote over every analyzed frame while the tool lies at the station, so "
        "one frame's mistake rarely decides the record.",
    ]
    if latency:
        lines += ["", "## Latency", "",
                  f"ONNX Runtime on CPU, 1 thread ({platform.machine()}, {os.cpu_count()} cores): batch 1 "
                  f"{latency[1]:.2f} ms, batch 4 {latency[4]:.2f} ms (median of 100)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_training_arguments(parser, training.TrainConfig(), 25.0, REPO / "engines")
    parser.add_argument("--train-seeds", type=int, default=300, help="scene seeds 1..N (default 300)")
    parser.add_argument("--per-seed", type=int, default=6, help="tools per seed (default 6)")
    parser.add_argument("--views", type=int, default=2, help="jittered boxes per training tool (default 2)")
    parser.add_argument("--eval-seeds", type=int, default=100, help="held-out seeds 9000.. (default 100)")
    args = parser.parse_args(argv)
    cli.check_train_seeds(parser, args.train_seeds, training.HELD_OUT_SEED)
    path = args.out / f"{NAME}.onnx"
    eval_seeds = range(training.HELD_OUT_SEED, training.HELD_OUT_SEED + args.eval_seeds)
    eval_command = f"python tools/train_tool_state_model.py --evaluate-only --eval-seeds {args.eval_seeds}"
    if args.evaluate_only:
        meta = cli.model_metadata(path)
    else:
        started = time.monotonic()
        images, states = training.crops(range(1, args.train_seeds + 1), args.per_seed, args.views,
                                        log=lambda line: print(line, flush=True))
        print(f"{len(images)} training crops, per state {np.bincount(states).tolist()} "
              f"({time.monotonic() - started:.0f} s)", flush=True)
        config = cli.run_settings(args, training.TrainConfig)
        result = training.train(images, states, config, log=lambda line: print(line, flush=True))
        counts = dict(zip(training.STATES, np.bincount(states, minlength=len(training.STATES)).tolist()))
        meta = cli.run_metadata(
            "tools/train_tool_state_model.py",
            f"--train-seeds {args.train_seeds} --per-seed {args.per_seed} --views {args.views}", args, result,
            f"{len(images)} ({json.dumps(counts)}), sample_tool_views seeds 1-{args.train_seeds}, "
            f"{args.per_seed} tools per seed, {args.views} boxes per tool")
        training.export_onnx(result.model, path, meta)
        (args.out / f"{NAME}.labels").write_text("\n".join(training.STATES) + "\n", encoding="utf-8")
        print(cli.trained_line(result, path), flush=True)
    scores = evaluate(path, eval_seeds, args.per_seed)
    (args.out / f"{NAME}.md").write_text(card(path, meta, scores, eval_command), encoding="utf-8")
    print(f"accuracy {scores['accuracy']:.3f} on {scores['tools']} held-out tools; "
          f"per state {json.dumps(scores['per_state'])}; wrote {args.out / (NAME + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
