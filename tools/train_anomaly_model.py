#!/usr/bin/env python3
"""Train the anomaly model on good part/tool crops and write ``engines/anomaly.onnx``.

    python tools/train_anomaly_model.py [--seed 0] [--minutes 8] [--out engines/]

Good crops only (``tools.scenes.production.sample_patches`` with
``defective_fraction=0``): ``--per-seed`` crops from each of the scene seeds
``0 .. --train-seeds - 1`` for training, and as many from each of the seeds
``5000 .. 5000 + --calibration-seeds - 1`` to normalise the scores (their 99th
percentile becomes 0.5). Many seeds, because a seed fixes its backgrounds (belt
and mat textures and colours). Seeds from 9000 on are held out for
``tools/evaluate_anomaly_model.py``. ``--seed`` seeds the training itself
(weights, batch order, synthetic anomalies). The model and the normalisation are
described in ``tools/training/anomaly.py``.

Training runs a fixed number of steps (``--steps``), so the same command gives the
same model byte for byte (deterministic kernels, 2 threads); ``--minutes`` is a
wall-clock cap that stops early (and says so, in the log and in the ONNX
metadata) on a machine too slow for the steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# OpenMP threads that spin while they wait collapse on a shared machine (measured on 2 busy
# cores: 0.98 s per step spinning, 0.48 s passive); must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tools.training import anomaly as training  # noqa: E402

CALIBRATION_SEED = 5000
HELD_OUT = training.HELD_OUT_SEED
LABELS = "anomaly\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-clock cap on training (default 8)")
    parser.add_argument("--out", type=Path, default=REPO / "engines", help="output folder (default engines/)")
    parser.add_argument("--steps", type=int, default=training.TrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=training.TrainConfig.batch_size)
    parser.add_argument("--width", type=int, default=training.TrainConfig.width)
    parser.add_argument("--threads", type=int, default=training.TrainConfig.threads,
                        help="torch threads (default 2; the result depends on it)")
    parser.add_argument("--train-seeds", type=int, default=100, help="scene seeds 0..N-1 (default 100)")
    parser.add_argument("--calibration-seeds", type=int, default=20, help="scene seeds 5000.. (default 20)")
    parser.add_argument("--per-seed", type=int, default=30, help="good crops per scene seed (default 30)")
    args = parser.parse_args(argv)
    if not 1 <= args.train_seeds <= CALIBRATION_SEED or not 1 <= args.calibration_seeds <= HELD_OUT - CALIBRATION_SEED:
        parser.error(f"--train-seeds must be in 1..{CALIBRATION_SEED} and --calibration-seeds in "
                     f"1..{HELD_OUT - CALIBRATION_SEED} (seeds from {HELD_OUT} on are held out for evaluation)")

    from tools.scenes.production import sample_patches

    started = time.monotonic()
    train_seeds = range(args.train_seeds)
    calibration_seeds = range(CALIBRATION_SEED, CALIBRATION_SEED + args.calibration_seeds)
    train_images = training.good_images_of_seeds(sample_patches, train_seeds, args.per_seed)
    calibration = training.good_images_of_seeds(sample_patches, calibration_seeds, args.per_seed)
    print(f"{len(train_images)} training and {len(calibration)} calibration crops "
          f"({time.monotonic() - started:.0f} s)", flush=True)
    config = training.TrainConfig(
        seed=args.seed, steps=args.steps, batch_size=args.batch_size, width=args.width, threads=args.threads,
        max_seconds=args.minutes * 60.0,
    )
    result = training.train(train_images, config, log=lambda line: print(line, flush=True))
    p99 = training.calibrate(result, calibration)
    command = (
        f"python tools/train_anomaly_model.py --seed {args.seed} --minutes {args.minutes:g} --steps {args.steps} "
        f"--batch-size {args.batch_size} --width {args.width} --threads {args.threads} "
        f"--train-seeds {args.train_seeds} --calibration-seeds {args.calibration_seeds} --per-seed {args.per_seed}"
    )
    metadata = {
        "training_command": command,
        "seed": str(args.seed),
        "steps": str(result.steps_done),
        "steps_planned": str(config.steps),
        "stopped_early": str(result.stopped_early).lower(),
        "batch_size": str(config.batch_size),
        "width": str(config.width),
        "threads": str(config.threads),
        "train_crops": f"{len(train_images)} good, sample_patches seeds 0-{args.train_seeds - 1}",
        "calibration_crops": f"{len(calibration)} good, sample_patches seeds "
                             f"{CALIBRATION_SEED}-{CALIBRATION_SEED + args.calibration_seeds - 1}",
        "calibration_p99_raw": f"{p99:.6g}",
        "normalisation": "pred_score = max(blurred probability map) / (2 * calibration_p99_raw)",
    }
    path = training.export_onnx(result.model, args.out / "anomaly.onnx", metadata)
    (args.out / "anomaly.labels").write_text(LABELS, encoding="utf-8")
    print(f"trained {result.steps_done} steps in {result.seconds:.0f} s"
          f"{' (stopped early by --minutes)' if result.stopped_early else ''}; "
          f"final loss {sum(result.losses[-100:]) / max(len(result.losses[-100:]), 1):.5f}; "
          f"calibration p99 {p99:.5g}")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {args.out / 'anomaly.labels'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
