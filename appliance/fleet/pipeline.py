"""The pipeline the agent restarts on a new config: its own child, or a systemd unit."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


MAX_RESTART_DELAY_S = 30.0


class Pipeline(Protocol):
    def start(self) -> None:
        """Make sure the pipeline runs (no restart when it does)."""
        ...

    def restart(self) -> None: ...

    def reload(self) -> None:
        """Have the running pipeline take its config file again (SIGHUP); start it if it is not running."""
        ...

    def keep_running(self, now: float) -> None:
        """Called between bundles: restart a pipeline that stopped, if nobody else does."""
        ...

    def exit_code(self) -> int | None:
        """The exit status once the pipeline stopped on its own since the last restart, else None."""
        ...

    def stop(self) -> None: ...


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the agent dies (even by SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ChildPipeline:
    """``appliance run -c CONFIG`` as a child of the agent (for machines without systemd, and tests).

    The agent must call :meth:`restart` from one long-lived thread: the child is told
    to die with the thread that started it.
    """

    def __init__(self, config: Path, stop_timeout_s: float = 20.0, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "appliance", "run", "-c", str(config)]
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._restart_delay = 1.0
        self._restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        if self._process is None:
            self.restart()

    def restart(self) -> None:
        self.stop()
        log.info("starting the pipeline: %s", " ".join(self.command))
        self._process = subprocess.Popen(self.command, preexec_fn=_die_with_parent)  # noqa: PLW1509

    def reload(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            self.restart()
            return
        log.info("asking the pipeline (pid %d) to reload its config", process.pid)
        process.send_signal(signal.SIGHUP)

    def keep_running(self, now: float) -> None:
        """Restart a pipeline that exited, with capped exponential backoff (as systemd would)."""
        code = self.exit_code()
        if code is None:
            return
        if self._restart_at is None:
            self._restart_at = now + self._restart_delay
            log.warning("pipeline exited with code %d; restarting in %.0f s", code, self._restart_delay)
            self._restart_delay = min(self._restart_delay * 2, MAX_RESTART_DELAY_S)
        elif now >= self._restart_at:
            self._restart_at = None
            self.restart()

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("pipeline did not stop within %.0f s; killing it", self.stop_timeout_s)
            process.kill()
            process.wait()


class SystemdPipeline:
    """The pipeline as ``appliance.service``: restarted with systemctl (a polkit rule allows it)."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self._restarts_before: int | None = None

    def _show(self) -> dict[str, str]:
        done = subprocess.run(
            ["systemctl", "show", "--property=ActiveState,NRestarts,ExecMainStatus", self.unit],
            capture_output=True, text=True, check=False,
        )
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)

    def _systemctl(self, action: str) -> None:
        done = subprocess.run(["systemctl", action, self.unit], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"systemctl {action} {self.unit} failed: {done.stderr.strip()}")
        self._restarts_before = int(self._show().get("NRestarts", "0") or 0)

    def start(self) -> None:
        self._systemctl("start")

    def restart(self) -> None:
        self._systemctl("restart")

    def reload(self) -> None:
        self._systemctl("reload-or-restart")  # ExecReload sends SIGHUP

    def keep_running(self, now: float) -> None:
        """systemd restarts the unit itself (Restart=on-failure)."""

    def exit_code(self) -> int | None:
        shown = self._show()
        restarted = int(shown.get("NRestarts", "0") or 0) != self._restarts_before
        if shown.get("ActiveState") == "failed" or restarted:
            return int(shown.get("ExecMainStatus", "1") or 1)
        return None

    def stop(self) -> None:
        """The unit keeps running when the agent stops: the pipeline outlives the agent."""
