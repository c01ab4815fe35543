"""The rig is a real server: systemd, pinned SSH, the provider's env/stdin semantics, SFTP, apt."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from .server import Rig, new_ed25519_pair
from .ssh import CommandError, run_command

pytestmark = pytest.mark.rig

# Lists the TCP ports that processes in the container listen on. The network is the host's, so
# /proc/net/tcp shows every socket on the machine; the container's own /proc/<pid>/fd narrows
# it to sockets its processes hold.
LISTENING_PORTS = r"""
import glob, os
inodes = {}
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for row in open(table).read().splitlines()[1:]:
        fields = row.split()
        if fields[3] == "0A":
            inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
ports = set()
for fd in glob.glob("/proc/[0-9]*/fd/*"):
    try:
        target = os.readlink(fd)
    except OSError:
        continue
    if target.startswith("socket:["):
        ports.add(inodes.get(target[8:-1]))
print(" ".join(str(p) for p in sorted(ports - {None})))
"""


def test_systemd_is_pid_1_and_the_system_is_running(rig: Rig) -> None:
    assert rig.run("cat /proc/1/comm").stdout == "systemd\n"
    state = rig.run("systemctl is-system-running --wait", timeout=120)
    failed = rig.run("systemctl --failed --no-legend --plain").stdout
    assert (state.exit_status, state.stdout.strip(), failed) == (0, "running", "")


def test_only_sshd_listens_on_the_shared_network(rig: Rig) -> None:
    ports = rig.run("python3 -", stdin=LISTENING_PORTS).stdout.split()
    assert ports == [str(rig.port)]
    assert rig.run("systemctl is-enabled ssh.socket").stdout.strip() == "masked"


def test_pinned_host_key_admits_and_a_wrong_pin_is_refused(rig: Rig) -> None:
    assert rig.run("id -un").stdout == "root\n"
    _, other_host_key = new_ed25519_pair("not-the-rig")
    with pytest.raises(paramiko.BadHostKeyException):
        run_command(dataclasses.replace(rig.connection, host_key=other_host_key), "true")


def test_an_unknown_client_key_is_refused(rig: Rig) -> None:
    other_private_key, _ = new_ed25519_pair("stranger")
    with pytest.raises(paramiko.AuthenticationException):
        run_command(dataclasses.replace(rig.connection, private_key=other_private_key), "true")


def test_stock_sshd_drops_environment_but_stdin_arrives(rig: Rig) -> None:
    # Debian's stock sshd_config accepts only LANG and LC_*: LANG arriving proves the env requests
    # are sent, SITELINE_RELEASE missing proves the server drops the rest, as with the provider.
    result = rig.run(
        'printf "%s|%s|" "${SITELINE_RELEASE-unset}" "${LANG-unset}"; cat',
        stdin="release-42\n",
        env={"SITELINE_RELEASE": "r42", "LANG": "C.UTF-8"},
    )
    assert result == (0, "unset|C.UTF-8|release-42\n", "")
    assert rig.run("grep -rh '^AcceptEnv' /etc/ssh/sshd_config /etc/ssh/sshd_config.d").stdout == (
        "AcceptEnv LANG LC_*\n"
    )


def test_failures_and_outputs_follow_the_provider(rig: Rig) -> None:
    with pytest.raises(CommandError, match="exit 3"):
        run_command(rig.connection, "echo partial; exit 3", check=True)
    assert rig.run("echo out; echo err >&2").provider_outputs() == ("out", "err")


def test_copy_to_remote_round_trips(rig: Rig, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "release.tar").write_bytes(payload)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>siteline</h1>\n")

    rig.copy_to_remote(tmp_path / "release.tar", "/root/release.tar")
    rig.run("mkdir -p /srv/a /srv/b", timeout=30)
    rig.copy_to_remote(tmp_path / "site", "/srv/a")  # the directory lands inside
    rig.copy_to_remote(f"{tmp_path / 'site'}/", "/srv/b")  # only its contents

    digest = rig.run("sha256sum /root/release.tar").stdout.split()[0]
    assert digest == hashlib.sha256(payload).hexdigest()
    assert rig.run("cat /srv/a/site/index.html /srv/b/index.html").stdout == "<h1>siteline</h1>\n" * 2


def test_stop_leaves_nothing_behind_and_spares_other_rigs(rig: Rig) -> None:
    with Rig() as other:
        assert other.run("hostname").stdout == "siteline-rig\n"
        assert (other.port, other.host_key) != (rig.port, rig.host_key)
        session_dir, container_root = other.session_dir, other.root_dir
        assert (container_root / "etc/ssh/sshd_config.d/siteline-rig.conf").exists()
    assert other.leftover_pids == []  # a clean poweroff: nothing had to be killed
    assert not container_root.exists()  # its PID 1 is gone
    assert not session_dir.exists()
    with socket.socket() as probe:
        assert probe.connect_ex((other.host, other.port)) != 0
    assert rig.run("true").exit_status == 0


def test_nginx_and_postgresql_install_and_run_under_systemd(
    rig: Rig, record_property: Callable[[str, object], None]
) -> None:
    """What the VPS bootstrap does, with start-at-install held back: the network is the host's,
    so the stock ports (80, 5432) are moved off before anything listens."""
    nginx_port = _free_port_inside(rig)
    steps = {
        "hold_back_starts": "printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d",
        "apt_update": "apt-get update -q",
        "install_nginx_light": _apt_install("nginx-light"),
        "start_nginx": f"sed -i 's/listen 80 default_server;/listen 127.0.0.1:{nginx_port} default_server;/;"
        f"/listen \\[::\\]:80/d' /etc/nginx/sites-enabled/default && systemctl start nginx",
        "install_postgresql": _apt_install("postgresql"),
        "start_postgresql": "pg_conftool 15 main set listen_addresses '' && systemctl start postgresql@15-main",
        "release_starts": "rm /usr/sbin/policy-rc.d",
    }
    for name, command in steps.items():
        started = time.monotonic()
        result = rig.run(command, timeout=900)
        seconds = round(time.monotonic() - started, 1)
        record_property(f"{name}_seconds", seconds)
        print(f"rig: {name} took {seconds} s")
        assert result.exit_status == 0, f"{name}: {result.stdout[-2000:]}{result.stderr[-2000:]}"

    assert rig.run("systemctl is-active nginx postgresql@15-main").stdout == "active\nactive\n"
    assert "Welcome to nginx" in rig.run(f"curl -fsS http://127.0.0.1:{nginx_port}/").stdout
    assert rig.run("runuser -u postgres -- psql -XAtc 'select 6 * 7'").stdout == "42\n"
    ports = rig.run("python3 -", stdin=LISTENING_PORTS).stdout.split()
    assert sorted(ports) == sorted([str(rig.port), str(nginx_port)])


def _apt_install(package: str) -> str:
    return f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {package}"


def _free_port_inside(rig: Rig) -> int:
    probe = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
    return int(rig.run(f'python3 -c "{probe}"').stdout)
