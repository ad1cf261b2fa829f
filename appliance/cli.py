"""The ``appliance`` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "pipelines" / "demo.yaml"

log = logging.getLogger("appliance")


def _cmd_validate(args: argparse.Namespace) -> int:
    from appliance.config.loader import validate_files

    problems = validate_files(args.files)
    for problem in problems:
        print(problem)
    if not problems:
        for name in args.files:
            print(f"{name}: ok")
    return 1 if problems else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from appliance.app import Appliance
    from appliance.config.loader import ConfigError, load_config
    from appliance.inference.engine import ModelMismatch
    from appliance.pipeline.backend import BackendUnavailable
    from appliance.signals import stop_on_signals

    try:
        config = load_config(args.config)
        appliance = Appliance(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ModelMismatch, BackendUnavailable, ValueError) as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 1
    stop = stop_on_signals("shutting down")
    reload = threading.Event()  # SIGHUP: take the config file again, without a restart where possible
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reload.set())
    try:
        appliance.start()
    except OSError as exc:  # the metrics port is taken, for example
        print(f"{args.config}: cannot start: {exc}", file=sys.stderr)
        appliance.stop()
        return 1
    try:
        appliance.run(duration=args.duration, stop=stop, reload=reload, load=lambda: load_config(args.config))
    finally:
        appliance.stop()
    log.info("stopped")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from appliance.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="Shop-floor vision appliance")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pipeline until SIGINT/SIGTERM or --duration")
    run.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="config file (default: the demo)")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser("validate", help="check config files; print file:line: key: reason")
    validate.add_argument("files", nargs="+", type=Path)
    validate.set_defaults(handler=_cmd_validate)

    bench = commands.add_parser("bench", help="measure throughput, latency and efficiency")
    from appliance.bench import add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(handler=_cmd_bench)
    from appliance.engines_command import add_engines_command

    add_engines_command(commands, DEFAULT_CONFIG)
    from appliance.fleet.commands import add_agent_arguments, add_fleet_arguments

    add_fleet_arguments(commands.add_parser("fleet", help="operators: keygen, sign and push config bundles"))
    add_agent_arguments(commands.add_parser("agent", help="on the device: apply pushed config bundles"))
    from appliance.status import add_status_arguments, run_status

    status = commands.add_parser("status", help="streams, models and outbox of the running appliance")
    add_status_arguments(status)
    status.set_defaults(handler=run_status)
    from appliance.events.commands import add_events_arguments, run_events

    events = commands.add_parser("events", help="the event outbox: list, tail, replay")
    add_events_arguments(events, DEFAULT_CONFIG)
    events.set_defaults(handler=run_events)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
