"""A local Mosquitto broker on 127.0.0.1, for the delivery benchmark and the tests.

``mosquitto -c <generated conf>`` with a plain listener and optionally a TLS
listener that requires client certificates, a password file, and persistence
(a stop with SIGTERM saves sessions and queued messages, a start restores them).
"""

from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass
from pathlib import Path

from appliance.loopback import free_port, wait_for_port


@dataclass(frozen=True)
class BrokerTls:
    ca: Path
    cert: Path
    key: Path


class Mosquitto:
    def __init__(self, folder: Path, tls: BrokerTls | None = None, password: tuple[str, str] | None = None,
                 acl: str | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.tls = tls
        self.password = password
        self.acl = acl  # the text of an ACL file for the plain listener
        self._process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "mosquitto.log"
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(self._conf())

    def _conf(self) -> str:
        lines = [
            f"user {getpass.getuser()}\n",  # as root, mosquitto would switch to a user that cannot read these files
            f"persistence true\npersistence_location {self.folder}/\n",
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n",
            "max_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\n",
            "per_listener_settings true\n",
            f"listener {self.port} 127.0.0.1\n",
        ]
        if self.password:
            passwords = self.folder / "passwords"
            passwords.write_text(f"{self.password[0]}:{self.password[1]}\n")
            subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True)
            lines.append(f"allow_anonymous false\npassword_file {passwords}\n")
        else:
            lines.append("allow_anonymous true\n")
        if self.acl is not None:
            (self.folder / "acl").write_text(self.acl)
            lines.append(f"acl_file {self.folder / 'acl'}\n")
        if self.tls:
            lines.append(
                f"listener {self.tls_port} 127.0.0.1\nallow_anonymous true\n"
                f"cafile {self.tls.ca}\ncertfile {self.tls.cert}\nkeyfile {self.tls.key}\n"
                "require_certificate true\nuse_identity_as_username true\n"
            )
        return "".join(lines)

    def start(self) -> None:
        self._process = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
            if self.tls_port:
                wait_for_port(self.tls_port)
        except TimeoutError:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"mosquitto did not start: {log}") from None

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its sessions and queued messages, then exits."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
