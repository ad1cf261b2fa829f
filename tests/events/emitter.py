"""A process that emits events the way ``appliance run`` does (outbox first, then delivery threads).

    python -m tests.events.emitter CONFIG --count N [--interval S]   # prints each id once it is stored
    python -m tests.events.emitter CONFIG --drain SECONDS            # only delivers what is pending, then exits

The SIGKILL test kills the first form while events flow and checks, with the
second, that every id printed before the kill reaches the subscriber.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from appliance.clock import SystemClock
from appliance.config.loader import load_config
from appliance.events.delivery import Delivery, open_outbox, store_event
from appliance.events.factory import EventFactory
from appliance.metrics import ApplianceMetrics


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--drain", type=float, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = load_config(args.config)
    clock = SystemClock()
    metrics = ApplianceMetrics()
    outbox = open_outbox(config, metrics, clock)
    delivery = Delivery.from_config(config, outbox, metrics, clock)
    delivery.start()
    factory = EventFactory(config.device.id, config.version, clock)
    for n in range(args.count):
        event = factory.make("defect.part", "start", "line-1", clock.wall(), attributes={"n": n})
        if store_event(outbox, event):
            print(event.id, flush=True)
        if args.interval:
            time.sleep(args.interval)
    drained = delivery.drain(args.drain) if args.drain is not None else True
    delivery.stop()
    outbox.close()
    return 0 if drained else 1


if __name__ == "__main__":
    sys.exit(main())
