"""``appliance engines build``: TensorRT engines for the configured models.

::

    appliance engines build -c site.yaml            # builds what is missing or out of date
    appliance engines build -c site.yaml --force    # rebuilds everything
    appliance engines build -c site.yaml --prune    # also deletes stale engines of these models
    appliance engines build -c site.yaml --dry-run --gpu "Orin" --tensorrt 10.3.0   # plan only, no TensorRT

Exit status: 0 when every engine is ready, 1 when one could not be built (or
TensorRT is missing), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_engines_command(commands: argparse._SubParsersAction, default_config: Path) -> None:
    engines = commands.add_parser("engines", help="TensorRT engines of the configured models")
    actions = engines.add_subparsers(dest="engines_command", required=True)
    build = actions.add_parser("build", help="build missing or out-of-date engines")
    build.add_argument("-c", "--config", type=Path, default=default_config, help="config file (default: the demo)")
    build.add_argument("--force", action="store_true", help="rebuild even engines that are up to date")
    build.add_argument("--prune", action="store_true", help="delete stale engines of these models")
    build.add_argument("--dry-run", action="store_true", help="print the plan and decisions, build nothing")
    build.add_argument("--gpu", help="GPU model to plan for (default: this machine's)")
    build.add_argument("--tensorrt", help="TensorRT version to plan for (default: the installed one)")
    build.set_defaults(handler=run_engines_build)


def run_engines_build(args: argparse.Namespace) -> int:
    from appliance.config.loader import ConfigError, load_config
    from appliance.inference.calibration import CalibrationError, calibration_batches, calibration_inputs
    from appliance.inference.engine import ModelMismatch
    from appliance.inference.engine_builder import (
        EngineBuilder,
        Platform,
        TensorRTUnavailable,
        decide,
        detect_platform,
        plan_engines,
        stale_engines,
    )

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        if args.gpu and args.tensorrt:
            platform = Platform(args.gpu, args.tensorrt)
        else:
            found = detect_platform()
            platform = Platform(args.gpu or found.gpu, args.tensorrt or found.tensorrt)
    except TensorRTUnavailable as exc:
        print(f"{args.config}: cannot build engines: {exc}", file=sys.stderr)
        return 1
    print(f"platform: {platform.gpu}, TensorRT {platform.tensorrt}")
    builder: EngineBuilder | None = None
    failed = 0
    for plan in plan_engines(config, platform):
        decision = decide(plan, force=args.force)
        spec = plan.spec
        print(f"{spec.model}: {plan.engine} ({spec.precision}, batch {spec.min_batch}..{spec.max_batch} "
              f"opt {spec.opt_batch}): {'build' if decision.build else 'keep'}: {decision.reason}")
        for stale in stale_engines(plan):
            print(f"{spec.model}: stale engine {stale}" + (" (deleted)" if args.prune and not args.dry_run else ""))
            if args.prune and not args.dry_run:
                stale.unlink(missing_ok=True)
                Path(str(stale) + ".json").unlink(missing_ok=True)
        if not decision.build or args.dry_run:
            continue
        model = next(m for m in config.models if m.id == spec.model)
        try:
            builder = builder or EngineBuilder()
            calibration = None
            if spec.precision == "int8":
                settings = config.engines.calibration
                calibration = calibration_batches(
                    calibration_inputs(config, model), model, settings.frames, settings.batch_size)
            builder.build(plan, calibration)
            print(f"{spec.model}: built {plan.engine}")
        except (TensorRTUnavailable, ModelMismatch, CalibrationError, RuntimeError, ValueError, OSError) as exc:
            failed += 1
            print(f"{args.config}: models.{spec.model}: cannot build engine: {exc}", file=sys.stderr)
    return 1 if failed else 0
