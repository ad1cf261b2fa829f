"""SIGINT and SIGTERM as a stop request, for the long-running commands."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("appliance")


def stop_on_signals(doing: str) -> threading.Event:
    """An event set by SIGINT or SIGTERM (logged as ``received SIGTERM, <doing>``)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, %s", signal.Signals(signum).name, doing)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop
