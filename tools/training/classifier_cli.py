"""What the crop classifiers' training commands share (``tools/train_tool_state_model.py``,
``tools/train_ppe_item_model.py``): the training arguments, the run's settings from them,
the metadata written into the ONNX file (read back by ``--evaluate-only``), and the
closing log line."""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.training.steps import ClassifierTrainConfig, ClassifierTrainResult


def add_training_arguments(parser: argparse.ArgumentParser, defaults: ClassifierTrainConfig, minutes: float,
                           out: Path) -> None:
    """``--seed --minutes --out --steps --batch-size --threads --evaluate-only``."""
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"training seed (default {defaults.seed})")
    parser.add_argument("--minutes", type=float, default=minutes,
                        help=f"wall-clock cap on training (default {minutes:g})")
    parser.add_argument("--out", type=Path, default=out, help="output folder (default engines/)")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help=f"torch threads (default {defaults.threads}; the result depends on it)")
    parser.add_argument("--evaluate-only", action="store_true", help="measure the model in --out, rewrite its card")


def check_train_seeds(parser: argparse.ArgumentParser, train_seeds: int, held_out: int) -> None:
    """Refuse training seeds that reach the held-out ones."""
    if not 1 <= train_seeds < held_out:
        parser.error(f"--train-seeds must be in 1..{held_out - 1} (seeds from {held_out} on are held out for "
                     "evaluation)")


def run_settings(args: argparse.Namespace, config_type: type[ClassifierTrainConfig]) -> ClassifierTrainConfig:
    return config_type(seed=args.seed, steps=args.steps, batch_size=args.batch_size, threads=args.threads,
                       max_seconds=args.minutes * 60.0)


def run_metadata(script: str, own_arguments: str, args: argparse.Namespace, result: ClassifierTrainResult,
                 train_crops: str) -> dict[str, str]:
    """The ONNX metadata of a run: the command that repeats it (``script`` with the shared arguments and
    its ``own_arguments``), the steps done, and ``train_crops`` (what it was trained on)."""
    config = result.config
    return {
        "training_command": f"python {script} --seed {args.seed} --minutes {args.minutes:g} --steps {args.steps} "
                            f"--batch-size {args.batch_size} --threads {args.threads} {own_arguments}",
        "seed": str(args.seed),
        "steps": str(result.steps_done),
        "steps_planned": str(config.steps),
        "stopped_early": str(result.stopped_early).lower(),
        "batch_size": str(config.batch_size),
        "threads": str(config.threads),
        "train_crops": train_crops,
    }


def model_metadata(path: Path) -> dict[str, str]:
    """The metadata a run wrote into the ONNX file at ``path``."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def trained_line(result: ClassifierTrainResult, path: Path) -> str:
    return (f"trained {result.steps_done} steps in {result.seconds:.0f} s"
            f"{' (stopped early by --minutes)' if result.stopped_early else ''}; wrote {path}")
