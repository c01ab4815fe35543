"""Boots a cached Debian bookworm root under systemd-nspawn with sshd on a loopback port.

Each session boots the cached root under an overlay (nspawn --overlay=LOWER:UPPER:/), so it
costs no copy, never writes to the cache, and leaves no mount behind: the overlay lives in
nspawn's own mount namespace.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .ssh import CommandResult, Connection, copy_to_remote, run_command

# What a fresh Debian/Ubuntu machine needs: `apt-get install --no-install-recommends` these.
APT_PACKAGES = ("debootstrap", "systemd-container")

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_ARGS = (
    "--variant=minbase",
    "--include=systemd,systemd-sysv,openssh-server,dbus,ca-certificates,python3,curl",
    SUITE,
)
# The container shares the host's network, so nothing may listen except our sshd (ssh.socket
# would take port 22); the apt timers would take the dpkg lock in the middle of a test.
MASKED_UNITS = (
    "ssh.socket",
    "apt-daily.timer",
    "apt-daily.service",
    "apt-daily-upgrade.timer",
    "apt-daily-upgrade.service",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)
SOURCES_LIST = (
    f"deb {MIRROR} {SUITE} main\n"
    f"deb {MIRROR} {SUITE}-updates main\n"
    f"deb http://deb.debian.org/debian-security {SUITE}-security main\n"
)
HOSTNAME = "siteline-rig"
# Anything that changes the cached root changes its directory name, so a stale root is never used.
RECIPE = repr((MIRROR, DEBOOTSTRAP_ARGS, MASKED_UNITS, SOURCES_LIST, HOSTNAME))

LOOPBACK = "127.0.0.1"


def cache_dir() -> Path:
    return Path(os.environ.get("SITELINE_RIG_CACHE", "/var/cache/siteline-rig"))


def cached_root_path() -> Path:
    return cache_dir() / f"{SUITE}-{hashlib.sha256(RECIPE.encode()).hexdigest()[:12]}"


def unavailable_reason() -> str | None:
    """Why the rig cannot run on this machine, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "the rig needs Linux (systemd-nspawn)"
    if os.geteuid() != 0:
        return "the rig needs root: systemd-nspawn and debootstrap run as root"
    missing = [tool for tool in ("systemd-nspawn", "debootstrap") if shutil.which(tool) is None]
    if missing and not (missing == ["debootstrap"] and cached_root_path().is_dir()):
        return f"missing {', '.join(missing)}: apt-get install {' '.join(APT_PACKAGES)}"
    capabilities = int(_status_field("CapEff"), 16)
    if not capabilities & (1 << 21):
        return "the rig needs CAP_SYS_ADMIN (an unprivileged container cannot run systemd-nspawn)"
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    hierarchy = Path("/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/systemd")
    if not hierarchy.is_dir() or not os.access(hierarchy, os.W_OK):
        return f"{hierarchy} is missing or read-only: systemd in the container needs cgroups"
    return None


def ensure_cached_root() -> Path:
    """Returns the cached root, building it once; concurrent callers wait for one build."""
    root = cached_root_path()
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root.parent / f"{root.name}.lock"):
        if root.is_dir():
            return root
        # A build killed half-way; we hold the lock, so nobody is still writing it.
        for leftover in root.parent.glob(f".build-{root.name}-*"):
            shutil.rmtree(leftover)
        build = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".build-{root.name}-"))
        try:
            build.chmod(0o755)  # it becomes the container's /
            _debootstrap(build, root.parent / f"{root.name}.log")
            _customise(build)
            build.rename(root)  # atomic: a reader sees no root or a whole one
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    return root


def _debootstrap(target: Path, log_path: Path) -> None:
    with log_path.open("wb") as log:
        done = subprocess.run(
            ["debootstrap", *DEBOOTSTRAP_ARGS, str(target), MIRROR],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"debootstrap failed ({done.returncode}), see {log_path}:\n{tail}")


def _customise(root: Path) -> None:
    for unit in MASKED_UNITS:
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each session gets its own host key
    (root / "etc/apt/sources.list").write_text(SOURCES_LIST)
    (root / "etc/hostname").write_text(f"{HOSTNAME}\n")


class Rig:
    """A booted server: sshd on 127.0.0.1:`port` lets `user` in with `private_key` and
    presents `host_key`. Use it as a context manager; stop() powers it off and removes it."""

    host = LOOPBACK
    user = "root"

    def __init__(self, boot_timeout: float = 60.0, stop_timeout: float = 30.0) -> None:
        self.boot_timeout = boot_timeout
        self.stop_timeout = stop_timeout
        # Seconds per phase, for the README and benchmarks.
        self.timings: dict[str, float] = {}
        # Processes stop() had to kill after nspawn exited; empty after a clean poweroff.
        self.leftover_pids: list[int] = []
        self.port = 0
        self.private_key = ""
        self.host_key = ""
        self.session_dir = Path()
        self.upper_dir = Path()  # the session's changes to the cached root
        self._init_pid = 0
        self._session_lock: IO[str] | None = None
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._cgroups: list[Path] = []

    @property
    def root_dir(self) -> Path:
        """The container's / as seen from the host, while it runs."""
        return Path(f"/proc/{self._init_pid}/root")

    @property
    def connection(self) -> Connection:
        return Connection(self.host, self.port, self.user, self.private_key, self.host_key)

    def run(
        self,
        cmd: str,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 600.0,
    ) -> CommandResult:
        return run_command(self.connection, cmd, environment=env, stdin=stdin, timeout=timeout)

    def copy_to_remote(self, local_path: str | Path, remote_path: str) -> None:
        copy_to_remote(self.connection, local_path, remote_path)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        cached = ensure_cached_root()
        self.timings["cache"] = time.monotonic() - started
        sessions = cached.parent / "sessions"
        sessions.mkdir(exist_ok=True)
        # Held while sweeping and creating, so a sweep never sees a session without its lock.
        with _locked(sessions / ".lock"):
            _remove_dead_sessions(sessions)
            self.session_dir = Path(tempfile.mkdtemp(dir=sessions, prefix="session-"))
            self._session_lock = (self.session_dir / ".lock").open("w")
            fcntl.flock(self._session_lock, fcntl.LOCK_EX)
        self.upper_dir = self.session_dir / "upper"
        self.upper_dir.mkdir(mode=0o755)  # it becomes the container's /
        self._configure(cached)
        started = time.monotonic()
        nspawn = self._boot(cached)
        self._wait_for_ssh(nspawn)
        self.timings["boot_to_ssh"] = time.monotonic() - started
        self._init_pid = _container_init(nspawn.pid)

    def _configure(self, lower: Path) -> None:
        """Writes this session's keys, port and machine id into the overlay's upper layer."""
        self.port = _free_port()
        self.private_key, client_public = new_ed25519_pair("siteline-rig-client")
        host_private, self.host_key = new_ed25519_pair(f"root@{HOSTNAME}")
        # A drop-in, so sshd_config itself stays stock (AcceptEnv LANG LC_* and all).
        sshd = f"Port {self.port}\nListenAddress {LOOPBACK}\n"
        files = {
            "etc/ssh/ssh_host_ed25519_key": (host_private, 0o600),
            "etc/ssh/ssh_host_ed25519_key.pub": (f"{self.host_key}\n", 0o644),
            "etc/ssh/sshd_config.d/siteline-rig.conf": (
                f"{sshd}PermitRootLogin prohibit-password\n",
                0o644,
            ),
            "root/.ssh/authorized_keys": (f"{client_public}\n", 0o600),
            "etc/machine-id": (f"{uuid.uuid4().hex}\n", 0o444),
        }
        for relative, (text, mode) in files.items():
            _write_layer(self.upper_dir, lower, relative, text, mode)

    def _boot(self, lower: Path) -> subprocess.Popen[bytes]:
        name = _machine_name(self.session_dir)
        self._cgroups = _private_cgroups(name)
        command = [
            *_launcher(self._cgroups),
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            f"--machine={name}",
            f"--directory={lower}",
            f"--overlay={lower}:{self.upper_dir}:/",
            "--boot",
            "--console=passive",
            "--private-users=no",
            "--resolv-conf=copy-host",
            "--link-journal=no",
        ]
        console = (self.session_dir / "console.log").open("wb")
        with console:
            self._nspawn = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal must not bypass stop()
            )
        (self.session_dir / "nspawn.pid").write_text(f"{self._nspawn.pid}\n")
        return self._nspawn

    def _wait_for_ssh(self, nspawn: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {nspawn.returncode}:\n{self._console_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as probe:
                    probe.settimeout(2)
                    if probe.recv(8).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"no sshd on port {self.port} after {self.boot_timeout} s:\n{self._console_tail()}")

    def _console_tail(self) -> str:
        return (self.session_dir / "console.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Powers the container off (nspawn turns SIGTERM into a clean shutdown), then makes sure
        nothing of it is left: killing nspawn with SIGKILL leaves the container running."""
        started = time.monotonic()
        if self._nspawn is not None:
            self._nspawn.terminate()
            try:
                self._nspawn.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._nspawn.kill()
                self._nspawn.wait()
            self._nspawn = None
        self.leftover_pids = _empty_cgroups(self._cgroups)
        self._cgroups = []
        self.timings["stop"] = time.monotonic() - started
        self._init_pid = 0
        if self.session_dir != Path():
            shutil.rmtree(self.session_dir, ignore_errors=True)
            self.session_dir = Path()
        if self._session_lock is not None:
            self._session_lock.close()
            self._session_lock = None


def new_ed25519_pair(comment: str) -> tuple[str, str]:
    """(private key in OpenSSH format, public "ssh-ed25519 AAAA... comment" line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)


def _write_layer(upper: Path, lower: Path, relative: str, text: str, mode: int) -> None:
    """Writes a file into an overlay's upper layer. Its new parent directories copy the lower
    layer's mode and owner, because the upper one's win (/root must stay 0700 for sshd)."""
    for parent in reversed(Path(relative).parents[:-1]):
        if not (upper / parent).is_dir():
            below = (lower / parent).stat()
            (upper / parent).mkdir()
            os.chown(upper / parent, below.st_uid, below.st_gid)
            (upper / parent).chmod(below.st_mode & 0o7777)
    _write(upper / relative, text, mode)


def _container_init(nspawn_pid: int) -> int:
    """The container's PID 1, nspawn's only child once the container is up."""
    children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    return int(children[0])


def _free_port() -> int:
    """A free port below the ephemeral range, so outgoing connections cannot take it meanwhile."""
    for _ in range(100):
        port = random.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1 between 20000 and 32000")


def _status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split()[1]
    raise KeyError(name)


def _cgroup_parents() -> list[Path]:
    """Where a container's own cgroups go, on a host whose PID 1 is not systemd (sandboxes, CI
    containers). There nspawn --keep-unit would split the caller's cgroup, often the root, into
    "supervisor" and "payload", and every concurrent container would share them. On a systemd
    host the caller's unit is the container's, as --keep-unit intends, so this returns []."""
    if Path("/run/systemd/system").exists():
        return []
    mounts = {
        "name=systemd": Path("/sys/fs/cgroup/systemd"),
        "": Path("/sys/fs/cgroup/unified"),
    }
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        mounts = {"": Path("/sys/fs/cgroup")}
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path
    return [
        mount / own[controllers].lstrip("/")
        for controllers, mount in mounts.items()
        if controllers in own and mount.is_dir()
    ]


def _private_cgroups(name: str) -> list[Path]:
    cgroups = [parent / name for parent in _cgroup_parents()]
    for cgroup in cgroups:
        cgroup.mkdir()
    return cgroups


def _launcher(cgroups: list[Path]) -> list[str]:
    """Runs nspawn in the container's own cgroups, and has the kernel send it SIGTERM (a clean
    poweroff) if the test process dies without calling stop(). A shell rather than preexec_fn,
    which is unsafe once paramiko has started threads."""
    joins = "".join(f"echo 0 > {shlex.quote(str(cgroup / 'cgroup.procs'))}; " for cgroup in cgroups)
    return ["setpriv", "--pdeathsig", "TERM", "sh", "-c", joins + 'exec "$@"', "sh"]


def _empty_cgroups(cgroups: list[Path]) -> list[int]:
    """Kills whatever is still in the container's cgroups, removes them, returns the pids killed."""
    killed: list[int] = []
    for cgroup in cgroups:
        for _ in range(50):
            pids = _cgroup_pids(cgroup)
            if not pids:
                break
            for pid in pids:
                killed.append(pid)
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        _remove_cgroup(cgroup)
    return sorted(set(killed))


def _cgroup_pids(cgroup: Path) -> list[int]:
    return [int(pid) for procs in cgroup.rglob("cgroup.procs") for pid in procs.read_text().split()]


def _remove_cgroup(cgroup: Path) -> None:
    for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()), reverse=True):
        directory.rmdir()  # deepest first: a cgroup with children cannot be removed
    cgroup.rmdir()


def _machine_name(session: Path) -> str:
    # A digest, not the directory name: mkdtemp's random suffix may hold `_` or end so that the name
    # is no valid host name (a label ending in `-`), which systemd-nspawn refuses.
    return f"{HOSTNAME}-{hashlib.sha256(session.name.encode()).hexdigest()[:12]}"


def _remove_dead_sessions(sessions: Path) -> None:
    """Removes session directories of test processes that died; a live one holds its lock."""
    for session in sessions.iterdir():
        if not session.is_dir() or _session_alive(session):
            continue
        shutil.rmtree(session)
        for parent in _cgroup_parents():
            cgroup = parent / _machine_name(session)
            if cgroup.is_dir() and not _cgroup_pids(cgroup):
                _remove_cgroup(cgroup)


def _session_alive(session: Path) -> bool:
    with (session / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return _nspawn_alive(session)  # its owner died and the container is still powering off


def _nspawn_alive(session: Path) -> bool:
    try:
        pid = int((session / "nspawn.pid").read_text())
        return str(session) in Path(f"/proc/{pid}/cmdline").read_text()
    except (OSError, ValueError):
        return False


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv: list[str]) -> int:
    """python -m tests.rig.server [check|build|rebuild|boot]: see README.md."""
    action = argv[0] if argv else "check"
    reason = unavailable_reason()
    if reason is not None:
        print(f"rig unavailable: {reason}", file=sys.stderr)
        return 1
    if action == "rebuild":
        sessions = cache_dir() / "sessions"
        live = [s for s in sessions.iterdir() if _session_alive(s)] if sessions.is_dir() else []
        if live:  # their overlays sit on the cached root
            print(f"rig sessions running, not rebuilding: {live}", file=sys.stderr)
            return 1
        shutil.rmtree(cached_root_path(), ignore_errors=True)
    if action in ("build", "rebuild"):
        started = time.monotonic()
        print(ensure_cached_root(), f"({time.monotonic() - started:.1f} s)")
    if action == "boot":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds through stop()
        with Rig() as rig:
            key = rig.session_dir / "client_key"
            _write(key, rig.private_key, 0o600)
            print(f"ssh -i {key} -p {rig.port} {rig.user}@{rig.host}")
            print(f"host key: {rig.host_key}\ntimings: {rig.timings}\nCtrl-C stops it.")
            with suppress(KeyboardInterrupt):
                signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
