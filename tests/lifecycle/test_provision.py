"""``tools/provision`` in a throwaway root: the file layout, a second run that changes nothing, uninstall."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from tests.support import REPO

PROVISION = REPO / "tools" / "provision"
ACCOUNT_BACKUPS = {"etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-", "etc/.pwd.lock"}


def fresh_root(root: Path) -> Path:
    """The account files of a bare Debian-like system, where video and render exist already."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\nvideo:x:44:\nrender:x:105:\n")
    for name, text in (("shadow", "root:*:19000:0:99999:7:::\n"), ("gshadow", "root:*::\nvideo:!::\nrender:!::\n")):
        (etc / name).write_text(text)
        (etc / name).chmod(0o600)
    return root


def listing(root: Path) -> dict[str, tuple]:
    """Every path below ``root`` with its type, mode, owner, mtime and content hash (or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            what: str = "link:" + os.readlink(path)
        elif path.is_file():
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = "dir"
        found[str(path.relative_to(root))] = (what, info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns)
    return found


def provision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROVISION), *args], capture_output=True, text=True, timeout=120)


def account(root: Path, file: str, name: str) -> list[str] | None:
    for line in (root / "etc" / file).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def test_install_twice_then_uninstall(tmp_path):
    root = fresh_root(tmp_path / "root")
    before = listing(root)
    config = tmp_path / "site.yaml"
    config.write_text("device: {id: pack-line-3}\nsources: [{id: a, uri: 'test://ball'}]\n")
    key = tmp_path / "fleet.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")

    first = provision("--root", str(root), "--config", str(config), "--fleet-key", str(key), "--no-venv")
    assert first.returncode == 0, first.stdout + first.stderr
    user = account(root, "passwd", "appliance")
    assert user is not None and user[5:] == ["/var/lib/appliance", "/usr/sbin/nologin"]
    uid, gid = int(user[2]), int(user[3])
    for group in ("video", "render"):
        assert "appliance" in account(root, "group", group)[3].split(","), group
    state = root / "var/lib/appliance"
    assert (state.stat().st_uid, state.stat().st_gid, state.stat().st_mode & 0o777) == (uid, gid, 0o750)
    current = state / "config/current.yaml"
    assert current.read_text() == config.read_text() and current.stat().st_uid == uid
    assert (root / "etc/appliance/appliance.yaml").read_text() == config.read_text()
    assert (root / "etc/appliance/fleet.pub").read_text() == key.read_text()
    units = root / "etc/systemd/system"
    for unit in ("appliance.service", "appliance-engines.service", "appliance-agent.service"):
        assert "ExecStart=/opt/appliance/venv/bin/appliance " in (units / unit).read_text()
    for unit in ("appliance.service", "appliance-agent.service"):
        assert os.readlink(units / "multi-user.target.wants" / unit) == f"/etc/systemd/system/{unit}"
    assert (root / "opt/appliance/engines/blobs.onnx").read_bytes() == (REPO / "engines/blobs.onnx").read_bytes()
    assert "appliance.service" in (root / "etc/polkit-1/rules.d/50-appliance.rules").read_text()

    installed = listing(root)
    second = provision("--root", str(root), "--config", str(config), "--fleet-key", str(key), "--no-venv")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "provision: nothing to change"
    assert listing(root) == installed

    # A config pushed by the fleet since is kept by a re-run.
    current.write_text("sources: [{id: pushed, uri: 'test://ball'}]\n")
    third = provision("--root", str(root), "--config", str(config), "--no-venv")
    assert third.returncode == 0 and "kept /var/lib/appliance/config/current.yaml" in third.stdout
    assert "pushed" in current.read_text()

    gone = provision("--root", str(root), "--uninstall")
    assert gone.returncode == 0, gone.stderr
    after = listing(root)
    files_before = {p: v[:1] for p, v in before.items() if v[0] != "dir"}
    files_after = {p: v[:1] for p, v in after.items() if v[0] != "dir" and p not in ACCOUNT_BACKUPS}
    assert files_after == files_before  # accounts as they were, nothing of ours left


def test_bad_arguments_are_refused_with_a_reason(tmp_path):
    root = fresh_root(tmp_path / "root")
    before = listing(root)
    missing = provision("--root", str(root), "--config", str(tmp_path / "nope.yaml"), "--no-venv")
    assert missing.returncode == 1 and "nope.yaml: no such file" in missing.stderr
    no_config = provision("--root", str(root), "--no-venv")
    assert no_config.returncode == 1 and "--config FILE is required" in no_config.stderr
    unknown = provision("--frobnicate")
    assert unknown.returncode == 2 and "unknown argument --frobnicate" in unknown.stderr
    assert listing(root) == before  # nothing was written
