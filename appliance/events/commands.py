"""``appliance events list | tail | replay``: look at the outbox and send stored events again.

They open the outbox of a config file (``events.outbox.path``) beside a running
appliance: SQLite's WAL lets them read while it writes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import threading
import time
from pathlib import Path

from appliance.config.schema import ApplianceConfig
from appliance.events.delivery import Delivery, make_sinks
from appliance.events.outbox import EventRecord, Outbox, OutboxError

FOLLOW_POLL_S = 0.5


def add_events_arguments(parser: argparse.ArgumentParser, default_config: Path) -> None:
    actions = parser.add_subparsers(dest="events_command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-c", "--config", type=Path, default=default_config, help="config file (default: the demo)")
        sub.add_argument("--kind", help="only this kind, or a family: ppe (= ppe.*)")
        sub.add_argument("--stream", help="only this stream")
        sub.add_argument("--json", action="store_true", help="print each event's JSON, one per line")

    listing = actions.add_parser("list", help="stored events, oldest first, with the sinks still waiting for them")
    common(listing)
    listing.add_argument("--pending", metavar="SINK", help="only events not yet acknowledged by SINK")
    listing.add_argument("--since", type=_time, help="written at or after (ISO 8601 or Unix seconds)")
    listing.add_argument("--limit", type=int, default=100)

    tail = actions.add_parser("tail", help="the newest stored events; -f follows new ones")
    common(tail)
    tail.add_argument("-n", "--lines", type=int, default=10)
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing events as they are written")

    replay = actions.add_parser("replay", help="queue stored events for a sink again (delivered at least once more)")
    common(replay)
    replay.add_argument("--sink", required=True, help="the sink id (events.sinks[].id)")
    replay.add_argument("--since", type=_time, help="events written at or after (ISO 8601 or Unix seconds)")
    replay.add_argument("--id", dest="ids", action="append", default=[], help="this event (repeatable)")
    replay.add_argument("--deliver", type=float, nargs="?", const=60.0, default=None, metavar="SECONDS",
                        help="also deliver them now, waiting at most SECONDS (default 60); without it the running "
                             "appliance delivers them")


def run_events(args: argparse.Namespace) -> int:
    from appliance.config.loader import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    path = config.events.outbox.path
    if not config.events.sinks:
        print(f"{args.config}: events.sinks is empty: events are not kept in an outbox", file=sys.stderr)
        return 1
    if not path.is_file():
        print(f"{path}: no outbox yet (no event was stored with this config)", file=sys.stderr)
        return 1
    try:
        outbox = Outbox(path, (), config.events.outbox.max_bytes, forget_other_sinks=False)
    except OutboxError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        if args.events_command == "list":
            _print(outbox.records(kind=args.kind, stream=args.stream, pending_for=args.pending, since=args.since,
                                  limit=args.limit), args.json)
        elif args.events_command == "tail":
            return _tail(outbox, args)
        else:
            return _replay(config, outbox, args)
    finally:
        outbox.close()
    return 0


def _tail(outbox: Outbox, args: argparse.Namespace) -> int:
    records = outbox.records(kind=args.kind, stream=args.stream, limit=args.lines, newest=True)
    _print(records, args.json)
    if not args.follow:
        return 0
    last = records[-1].row.seq if records else _newest_seq(outbox)
    try:
        while True:
            time.sleep(FOLLOW_POLL_S)
            records = outbox.records(kind=args.kind, stream=args.stream, after=last, limit=1000)
            _print(records, args.json)
            if records:
                last = records[-1].row.seq
    except KeyboardInterrupt:
        return 0


def _newest_seq(outbox: Outbox) -> int:
    newest = outbox.records(limit=1, newest=True)
    return newest[0].row.seq if newest else 0


def _replay(config: ApplianceConfig, outbox: Outbox, args: argparse.Namespace) -> int:
    known = [s.id for s in config.events.sinks]
    if args.sink not in known:
        print(f"{args.config}: no sink '{args.sink}' (configured: {', '.join(known)})", file=sys.stderr)
        return 1
    if args.since is None and not args.ids and not args.kind and not args.stream:
        print("say which events to replay: --since, --id, --kind or --stream", file=sys.stderr)
        return 1
    records = outbox.records(kind=args.kind, stream=args.stream, since=args.since, ids=args.ids, limit=10_000_000)
    missing = sorted(set(args.ids) - {r.row.id for r in records})
    for ident in missing:
        print(f"event {ident}: not in the outbox (never stored, or removed by the quota)", file=sys.stderr)
    queued = outbox.queue_again(args.sink, [r.row.seq for r in records])
    print(f"{len(records)} events queued for sink {args.sink} ({len(records) - queued} were still pending)")
    if args.deliver is None:
        return 1 if missing else 0
    stop = threading.Event()
    client_id = f"{config.mqtt.client_id if config.mqtt and config.mqtt.client_id else config.device.id}-replay"
    runners = [r for r in make_sinks(config, stop, client_id) if r.sink.id == args.sink]
    delivery = Delivery(outbox, runners, stop)
    delivery.start()
    try:
        done = delivery.drain(args.deliver)
    finally:
        delivery.stop()
    pending, _ = outbox.backlog(args.sink)
    print(f"sink {args.sink}: {'all delivered' if done else f'{pending} events still pending'}")
    return 0 if done and not missing else 1


def _print(records: list[EventRecord], as_json: bool) -> None:
    for record in records:
        row = record.row
        if as_json:
            print(row.body)
            continue
        written = datetime.datetime.fromtimestamp(row.created_at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = "pending: " + ",".join(record.pending_for) if record.pending_for else "delivered"
        attributes = json.dumps(row.event().get("attributes", {}), separators=(",", ":"))
        print(f"{written} {row.id} {row.kind} {row.phase} stream={row.stream_id} [{state}] {attributes}")
    sys.stdout.flush()


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use ISO 8601 or Unix seconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()
