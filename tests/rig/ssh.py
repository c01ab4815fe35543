"""SSH client with the semantics of pulumi-command's remote.Command and remote.CopyToRemote."""

from __future__ import annotations

import base64
import io
import posixpath
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import paramiko


@dataclass(frozen=True)
class Connection:
    """Where and how to log in, like the provider's `connection` input plus a pinned host key."""

    host: str
    port: int
    user: str
    private_key: str
    host_key: str  # "ssh-ed25519 AAAA..." line; the server must offer exactly this key


class CommandResult(NamedTuple):
    exit_status: int
    stdout: str
    stderr: str

    def provider_outputs(self) -> tuple[str, str]:
        """stdout and stderr as the provider records them: one trailing newline dropped."""
        return self.stdout.removesuffix("\n"), self.stderr.removesuffix("\n")


class CommandError(RuntimeError):
    """A non-zero exit, which the provider reports as a failed create/update/delete."""

    def __init__(self, command: str, result: CommandResult) -> None:
        super().__init__(f"exit {result.exit_status} running {command!r}:\n{result.stdout}{result.stderr}")
        self.result = result


def pinned_key(line: str) -> paramiko.PKey:
    """Parses an authorized_keys-style line: "ssh-ed25519 AAAA... [comment]"."""
    kind, blob = line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuses any key but the pinned one, so a wrong server is refused rather than learned."""

    def __init__(self, pinned: paramiko.PKey) -> None:
        self._pinned = pinned

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if key != self._pinned:
            raise paramiko.BadHostKeyException(hostname, key, self._pinned)


def _private_key(text: str) -> paramiko.PKey:
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text))
        except paramiko.SSHException:
            continue
    raise ValueError("private key is not an unencrypted ed25519, ECDSA or RSA key")


def connect(connection: Connection, timeout: float = 30.0) -> paramiko.SSHClient:
    """Logs in with the key only: no agent, no ~/.ssh, no known_hosts, as the provider does."""
    host_key = pinned_key(connection.host_key)
    client = paramiko.SSHClient()
    # A known key makes paramiko ask the server for that key type first, then check it; the
    # policy refuses whatever else the server might offer.
    name = connection.host if connection.port == 22 else f"[{connection.host}]:{connection.port}"
    client.get_host_keys().add(name, host_key.get_name(), host_key)
    client.set_missing_host_key_policy(PinnedHostKeyPolicy(host_key))
    client.connect(
        connection.host,
        port=connection.port,
        username=connection.user,
        pkey=_private_key(connection.private_key),
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        allow_agent=False,
        look_for_keys=False,
    )
    return client


def run_command(
    connection: Connection,
    command: str,
    environment: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 600.0,
    check: bool = False,
) -> CommandResult:
    """Runs one command on a fresh connection, as each remote.Command create/update/delete does.

    `environment` goes out as SSH "env" requests whose refusal is ignored: a stock sshd
    (AcceptEnv LANG LC_* on Debian) drops everything else, exactly as with the real provider.
    `timeout` bounds each wait for output and the wait for the exit status.
    """
    with connect(connection) as client:
        transport = client.get_transport()
        assert transport is not None  # connect() succeeded, so the transport exists
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        for name, value in (environment or {}).items():
            channel.set_environment_variable(name, value)
        channel.exec_command(command)
        # Read both streams while stdin is written, so a chatty command cannot stall on a full window.
        with ThreadPoolExecutor(max_workers=2) as pool:
            stdout = pool.submit(channel.makefile("rb").read)
            stderr = pool.submit(channel.makefile_stderr("rb").read)
            if stdin:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            output, errors = stdout.result(), stderr.result()
        if not channel.status_event.wait(timeout):
            raise TimeoutError(f"no exit status after {timeout} s from {command!r}")
        result = CommandResult(
            channel.exit_status,
            output.decode(errors="replace"),
            errors.decode(errors="replace"),
        )
    if check and result.exit_status != 0:
        raise CommandError(command, result)
    return result


def copy_to_remote(connection: Connection, local_path: str | Path, remote_path: str) -> None:
    """Copies over SFTP with CopyToRemote's rules: a file into an existing directory keeps its
    name; a directory lands inside `remote_path`, or only its contents if the source ends in "/".
    """
    source = str(local_path)
    with connect(connection) as client, client.open_sftp() as sftp:
        if not Path(source).is_dir():
            if _remote_is_dir(sftp, remote_path):
                remote_path = posixpath.join(remote_path, Path(source).name)
            sftp.put(source, remote_path)
            return
        if not _remote_is_dir(sftp, remote_path):
            sftp.mkdir(remote_path)
        if not source.endswith("/"):
            remote_path = posixpath.join(remote_path, Path(source).name)
            if not _remote_is_dir(sftp, remote_path):
                sftp.mkdir(remote_path)
        for local in sorted(Path(source).rglob("*")):
            target = posixpath.join(remote_path, local.relative_to(source).as_posix())
            if local.is_dir():
                if not _remote_is_dir(sftp, target):
                    sftp.mkdir(target)
            else:
                sftp.put(str(local), target)


def _remote_is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        mode = sftp.stat(path).st_mode
    except FileNotFoundError:
        return False
    return mode is not None and stat.S_ISDIR(mode)
