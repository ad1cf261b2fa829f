#!/usr/bin/env python3
"""Train the demo detectors on generated scenes and export them to ONNX (YOLOv8 raw layout).

    python tools/train_demo_models.py [defects|ppe|animals|hazards|all] [--seed 0] [--minutes N] [--out engines/]

Per model: render the training frames (scene seeds 1..N, never the held-out seeds
>= 9000), train (``tools.training.train``), export ``<out>/<model>.onnx`` (opset 17,
``images`` [N,3,H,W] -> ``output0`` [N,4+nc,A] (H x W from the model's plan), checked with onnx.checker and
against the torch output) and ``<out>/<model>.labels``. The training command, seed,
iterations and times are stored in the ONNX metadata; ``tools/evaluate_models.py``
measures the model and writes its card. ``--minutes`` bounds the whole run of one
model (rendering, training, export).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.training.data import MODEL_LABELS, MODELS, render  # noqa: E402
from tools.training.detector import DetectorConfig, count_parameters, export_onnx  # noqa: E402
from tools.training.train import TrainConfig, train  # noqa: E402

#: per model: training scene seeds, the planned iteration count, batch, crop (height, width) and
#: model input (width, height): crops centred on objects give ~4x more object views per CPU
#: second than whole frames
PLANS: dict[str, dict[str, object]] = {
    "defects": {"seeds": 100, "iterations": 2500, "batch": 32, "crop": (128, 160), "input": (640, 384)},
    "ppe": {"seeds": 45, "iterations": 2000, "batch": 24, "crop": (160, 192), "input": (480, 288)},
    "animals": {"seeds": 50, "iterations": 2400, "batch": 32, "crop": (128, 160), "input": (480, 288)},
    "hazards": {"seeds": 70, "iterations": 3000, "batch": 24, "crop": (160, 192), "input": (480, 288)},
}
EXPORT_RESERVE_S = 45.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_one(model: str, seed: int, minutes: float, out: Path, command: str,
              iterations: int | None = None, seeds: int | None = None, device: str = "cpu",
              plan: dict[str, object] | None = None) -> Path:
    import onnx

    plan = plan or PLANS[model]
    size: tuple[int, int] = plan["input"]  # type: ignore[assignment]
    start = time.monotonic()
    n_seeds = int(seeds or plan["seeds"])  # type: ignore[call-overload]
    log(f"{model}: rendering scenes, training seeds 1..{n_seeds}")
    frames = render(model, list(range(1, n_seeds + 1)), size, log=lambda m: log(f"{model}: {m}"))
    render_s = time.monotonic() - start
    log(f"{model}: {len(frames)} frames in {render_s:.0f} s; objects {frames.class_counts()}")
    left_min = max(0.5, (minutes * 60.0 - render_s - EXPORT_RESERVE_S) / 60.0)
    config = TrainConfig(iterations=int(iterations or plan["iterations"]),  # type: ignore[call-overload]
                         batch=int(plan["batch"]), crop=plan["crop"],  # type: ignore[arg-type, call-overload]
                         seed=seed, minutes=left_min, lr=4e-3, warmup=60, device=device)
    model_config = DetectorConfig(len(MODEL_LABELS[model]))
    result = train(frames, config, model_config, log=lambda m: log(f"{model}: {m}"))
    log(f"{model}: trained {result.iterations} iterations in {result.seconds:.0f} s"
        f"{' (budget-limited)' if result.budget_limited else ''}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{model}.onnx"
    diff = export_onnx(result.model.cpu(), path, size)
    total_s = time.monotonic() - start
    log(f"{model}: exported {path} ({path.stat().st_size / 1e6:.2f} MB), max |ORT - torch| = {diff:.2e}")
    (out / f"{model}.labels").write_text("\n".join(MODEL_LABELS[model]) + "\n", encoding="utf-8")
    meta = {
        "command": command,
        "seed": seed,
        "training_seeds": f"1..{n_seeds}",
        "frames": len(frames),
        "objects": frames.class_counts(),
        "iterations": result.iterations,
        "planned_iterations": result.planned_iterations,
        "budget_limited": result.budget_limited,
        "train_seconds": round(result.seconds, 1),
        "render_seconds": round(render_s, 1),
        "total_seconds": round(total_s, 1),
        "parameters": count_parameters(result.model),
        "config": config.to_dict(),
        "network": model_config.to_dict(),
        "final_loss": round(float(sum(result.losses[-50:]) / max(1, len(result.losses[-50:]))), 4),
        "ort_torch_max_diff": diff,
    }
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in (("appliance.training", json.dumps(meta)), ("names", json.dumps(list(MODEL_LABELS[model]))),
                       ("stride", "32"), ("task", "detect"), ("imgsz", json.dumps([size[1], size[0]]))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "appliance tools/train_demo_models.py"
    onnx.save(proto, str(path))
    log(f"{model}: done in {total_s:.0f} s")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="all", choices=[*MODELS, "all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=25.0, help="budget per model (render + train + export)")
    parser.add_argument("--out", type=Path, default=REPO / "engines")
    parser.add_argument("--iterations", type=int, default=None, help="override the planned iteration count")
    parser.add_argument("--seeds", type=int, default=None, help="override the number of training scene seeds")
    parser.add_argument("--device", default="cpu", help="torch device to train on (the shipped pack: cpu)")
    args = parser.parse_args(argv)
    command = "python tools/train_demo_models.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for model in MODELS if args.model == "all" else (args.model,):
        train_one(model, args.seed, args.minutes, args.out, command, args.iterations, args.seeds, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
