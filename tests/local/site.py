"""A dev stack of the local target running for real: evaluated under mocks, its commands replayed.

Shared by tests/local and bench/local_release.py.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO, build_package
from tests.harness import evaluate
from tests.replay import CommandError, CommandState, commands, destroy, local_runner, up

USER = os.environ.get("SITELINE_TEST_USER", "siteline-test")
SITE = REPO / "examples" / "site"


def why_not() -> str | None:
    if shutil.which("setpriv") is None and os.geteuid() == 0:
        return "setpriv (util-linux) is needed to run the local target as a normal user"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and shutil.which("initdb") is None:
        return "PostgreSQL server binaries are not installed (apt-get install postgresql)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pg_version() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return found[-1].split("/")[4] if found else "15"


@dataclass
class Site:
    """A dev stack of the local target, running for real under `root`."""

    root: Path
    uid: int
    gid: int
    ports: dict[str, int]
    state: list[CommandState] = field(default_factory=list)
    # Extra stack config (dot paths), e.g. {"siteline:site.start": ...}: tests change it between `up`s.
    overrides: dict[str, object] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "state" / "dev"

    def wrap(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *argv]

    def evaluate(self, release: dict[str, str], home: Path | None = None,
                 ports: dict[str, int] | None = None) -> list[CommandState]:
        """The dev stack's commands; `home` and `ports` stand in for another stack on the same machine."""
        ports = ports or self.ports
        evaluation = evaluate("dev", overrides={
            "siteline:release": release,
            "siteline:site.port": ports["site"],
            "siteline:site.healthTimeout": 15,
            "siteline:database.version": pg_version(),
            "siteline:hosting.local": {"home": str(home or self.root / "state"), "dbPort": ports["db"],
                                       "mailPort": ports["mail"]},
            **self.overrides,
        })
        return commands(evaluation)

    def run(self, step: str, command: CommandState, as_root: bool = False, **environment: str) -> str:
        """Run one step of one command (environment entries overridden); returns what it printed."""
        if environment:
            command = CommandState(command.name, command.type, {**command.inputs, "environment": {
                **command.inputs["environment"], **environment}}, command.dependencies, command.urn)
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "LANG": "C.UTF-8"}
        before = len(self.log)
        local_runner((lambda argv: argv) if as_root else self.wrap, env, str(REPO), self.log)(step, command)
        return "".join(self.log[before:])

    def up(self, release: dict[str, str]) -> float:
        desired = self.evaluate(release)
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "LANG": "C.UTF-8"}
        started = time.monotonic()
        self.state = up(desired, self.state, local_runner(self.wrap, env, str(REPO), self.log))
        return time.monotonic() - started

    def destroy(self) -> None:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "LANG": "C.UTF-8"}
        destroy(self.state, local_runner(self.wrap, env, str(REPO), self.log))
        self.state = []

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['site']}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def database_url(self) -> str:
        stdin = next(c for c in self.state if c.name.endswith("-release")).inputs["stdin"]
        line = next(x for x in stdin.splitlines() if x.startswith("DATABASE_URL="))
        return line.split("=", 1)[1].strip('"')

    def pids(self) -> list[int]:
        """The recorded pids of every stack home under root (the site, the sink, PostgreSQL)."""
        found = []
        for pidfile in [*self.root.glob("*/*/*.pid"), *self.root.glob("*/*/db/data/postmaster.pid")]:
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text:
                found.append(int(text.splitlines()[0]))
        return found

    def processes(self) -> list[int]:
        """The recorded pids and every process in their process groups (a compound start's children)."""
        return sorted({member for pid in self.pids() for member in [pid, *group(pid)]})

    def strays(self) -> list[int]:
        """Processes running in or naming this site's directory: what a broken stop could have orphaned."""
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if (os.readlink(proc / "cwd").startswith(str(self.root))
                        or str(self.root) in " ".join(command_line(int(proc.name)))):
                    found.append(int(proc.name))
        return found


def group(pgid: int) -> list[int]:
    """The processes whose process group is `pgid`, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def package(root: Path, version: str, change: str = "") -> dict[str, str]:
    """Build a release from a copy of the example site; `change` alters the copy for the test."""
    source = root / f"src-{version}"
    shutil.copytree(SITE, source, ignore=shutil.ignore_patterns("__pycache__"))
    if change == "migration":
        (source / "migrations" / "003_pages.sql").write_text(
            "CREATE TABLE IF NOT EXISTS pages (slug text PRIMARY KEY, body text NOT NULL);\n")
    if change == "failing-migration":
        (source / "migrations" / "003_pages.sql").write_text(
            "CREATE TABLE IF NOT EXISTS pages (slug text PRIMARY KEY, body text NOT NULL);\n")
        (source / "migrations" / "004_news.sql").write_text("CREATE TABLE news (id bigserial PRIMARY KEY);\n")
        (source / "migrations" / "005_broken.sql").write_text("ALTER TABLE no_such_table ADD COLUMN x int;\n")
    if change == "unhealthy":
        (source / "app.py").rename(source / "site_app.py")
        (source / "app.py").write_text(
            "from site_app import application as site\n\n\n"
            "def application(environ, start_response):\n"
            "    if environ.get('PATH_INFO') == '/healthz':\n"
            "        start_response('503 Service Unavailable', [('Content-Type', 'application/json')])\n"
            "        return [b'{\"status\": \"broken\"}']\n"
            "    return site(environ, start_response)\n")
    return build_package(version, root / "dist", source)



def unprivileged_directory(prefix: str) -> tuple[Path, int, int]:
    """A fresh directory owned by the unprivileged user that runs PostgreSQL and the site (USER when
    running as root, else the current user): (directory, uid, gid)."""
    if os.geteuid() == 0:
        subprocess.run(["useradd", "--system", "--create-home", USER], capture_output=True)
        account = pwd.getpwnam(USER)
        uid, gid = account.pw_uid, account.pw_gid
    else:
        uid, gid = os.geteuid(), os.getegid()
    # Not pytest's tmp_path: its parent is private to root, and the servers run as another user.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    os.chown(root, uid, gid)
    return root, uid, gid


@contextlib.contextmanager
def running_site() -> Iterator[Site]:
    """A Site in a fresh directory, run by an unprivileged user; everything it started is stopped after."""
    root, uid, gid = unprivileged_directory("siteline-local-")
    site = Site(root, uid, gid, {"site": free_port(), "db": free_port(), "mail": free_port()})
    try:
        yield site
    finally:
        if site.state:
            with contextlib.suppress(CommandError):
                site.destroy()
        for pid in {*site.processes(), *site.strays()} - {os.getpid()}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        shutil.rmtree(root, ignore_errors=True)
