"""systemd notification (``sd_notify``) and the frame watchdog.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a unix datagram socket
(a leading ``@`` names one in the abstract namespace); each notification is one
datagram of ``KEY=value`` lines. With ``WatchdogSec=`` it also passes
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``): a service that sends no
``WATCHDOG=1`` within that time is killed and, with ``Restart=on-failure``,
started again.

The appliance sends ``READY=1`` once its pipelines are started, ``STOPPING=1``
when it shuts down, and ``WATCHDOG=1`` only while frames are analyzed, so a
frozen pipeline gets restarted. While no stream is running at all (every camera
is down and being reconnected, which the stream metrics and ``stream.down``
events report) the watchdog is fed too: a restart would not bring a camera back.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

from appliance.clock import Clock

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends notifications to systemd; does nothing where the service was not started by systemd."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Sends ``KEY=value`` lines in one datagram; False (logged) where it could not be sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(assignments).encode(), target)
        except OSError as exc:
            log.warning("systemd notification %s to %s failed: %s", assignments, self.address, exc)
            return False
        return True


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """How often to send ``WATCHDOG=1``: half of ``$WATCHDOG_USEC`` (as ``sd_watchdog_enabled`` advises),
    or None where systemd watches no one, or another process (``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1e6 / 2


class FrameWatchdog:
    """Feeds systemd's watchdog while frames advance; called from the run loop on every tick."""

    def __init__(
        self,
        notifier: SystemdNotifier,
        interval_s: float | None,
        clock: Clock,
        frames_analyzed: Callable[[], int],
        streams_running: Callable[[], int],
    ) -> None:
        self._notifier = notifier
        self.interval_s = interval_s
        self._clock = clock
        self._frames_analyzed = frames_analyzed
        self._streams_running = streams_running
        self._last_feed = clock.monotonic()
        self._frames_at_feed = frames_analyzed()
        self.withheld = False  # the last due feed was withheld: frames did not advance

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None and self._notifier.enabled

    def tick(self) -> bool:
        """Sends ``WATCHDOG=1`` when one is due and frames were analyzed since the last one. True if sent."""
        if not self.enabled:
            return False
        now = self._clock.monotonic()
        if now - self._last_feed < self.interval_s:
            return False
        frames = self._frames_analyzed()
        if frames == self._frames_at_feed and self._streams_running() > 0:
            if not self.withheld:
                log.error("no frame analyzed for %.1f s while streams are running: withholding the "
                          "systemd watchdog so the appliance is restarted", now - self._last_feed)
            self.withheld = True
            return False
        self.withheld = False
        self._last_feed = now
        self._frames_at_feed = frames
        return self._notifier.notify("WATCHDOG=1")
