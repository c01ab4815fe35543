"""The local target for real: the dev stack's commands replayed as a normal user, v1 -> v2 -> broken v3 -> destroy."""

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
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import REPO, build_package
from tests.harness import evaluate
from tests.replay import CommandError, CommandState, commands, destroy, local_runner, up

USER = os.environ.get("SITELINE_TEST_USER", "siteline-test")
SITE = REPO / "examples" / "site"


def _why_not() -> str | None:
    if shutil.which("setpriv") is None and os.geteuid() == 0:
        return "setpriv (util-linux) is needed to run the local target as a normal user"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and shutil.which("initdb") is None:
        return "PostgreSQL server binaries are not installed (apt-get install postgresql)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pg_version() -> str:
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
    log: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "state" / "dev"

    def wrap(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *argv]

    def evaluate(self, release: dict[str, str]) -> list[CommandState]:
        evaluation = evaluate("dev", overrides={
            "siteline:release": release,
            "siteline:site.port": self.ports["site"],
            "siteline:site.healthTimeout": 15,
            "siteline:database.version": _pg_version(),
            "siteline:hosting.local": {"home": str(self.root / "state"), "dbPort": self.ports["db"],
                                       "mailPort": self.ports["mail"]},
        })
        return commands(evaluation)

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
        found = []
        for pidfile in [*self.home.glob("*.pid"), self.home / "db" / "data" / "postmaster.pid"]:
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text:
                found.append(int(text.splitlines()[0]))
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _package(root: Path, version: str, change: str = "") -> dict[str, str]:
    """Build a release from a copy of the example site; `change` alters the copy for the test."""
    source = root / f"src-{version}"
    shutil.copytree(SITE, source, ignore=shutil.ignore_patterns("__pycache__"))
    if change == "migration":
        (source / "migrations" / "003_pages.sql").write_text(
            "CREATE TABLE IF NOT EXISTS pages (slug text PRIMARY KEY, body text NOT NULL);\n")
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


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    reason = _why_not()
    if reason:
        if os.environ.get("SITELINE_REQUIRE_RIG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    if os.geteuid() == 0:
        subprocess.run(["useradd", "--system", "--create-home", USER], capture_output=True)
        account = pwd.getpwnam(USER)
        uid, gid = account.pw_uid, account.pw_gid
    else:
        uid, gid = os.geteuid(), os.getegid()
    # Not pytest's tmp_path: its parent is private to root, and the site runs as another user.
    root = Path(tempfile.mkdtemp(prefix="siteline-local-"))
    os.chmod(root, 0o755)
    os.chown(root, uid, gid)
    running = Site(root, uid, gid, {"site": _free_port(), "db": _free_port(), "mail": _free_port()})
    try:
        yield running
    finally:
        if running.state:
            with contextlib.suppress(CommandError):
                running.destroy()
        for pid in running.pids():
            if _alive(pid):
                os.kill(pid, 9)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def packages(site: Site) -> dict[str, dict[str, Any]]:
    return {"v1": _package(site.root, "1.0.0"), "v2": _package(site.root, "2.0.0", "migration"),
            "v3": _package(site.root, "3.0.0", "unhealthy")}


def test_v1_serves_with_database_migrations_and_mail_sink(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    site.up(packages["v1"])
    status, page = site.get("/")
    assert status == 200 and "Release 1.0.0" in page and "Siteline example site" in page
    status, health = site.get("/healthz")
    assert status == 200 and '"release": "1.0.0"' in health.replace('":"', '": "')
    with psycopg.connect(site.database_url()) as conn:
        applied = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert applied == ["001", "002"]

    form = urllib.parse.urlencode({"name": "Ada", "email": "ada@example.org", "message": "Hello"}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{site.ports['site']}/contact", data=form)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200 and answer.url.endswith("/contact?sent=1")
    mails = list((site.home / "mail").glob("*.eml"))
    assert len(mails) == 1 and "Hello" in mails[0].read_text()
    assert oct((site.home / "shared" / "app.env").stat().st_mode & 0o777) == "0o600"


def test_v2_replaces_v1_and_keeps_runtime_settings(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    with psycopg.connect(site.database_url()) as conn:
        conn.execute("UPDATE site_settings SET value = 'Edited on the site' WHERE key = 'site_title'")
    v1_pids = site.pids()
    seconds = site.up(packages["v2"])
    print(f"local release v1 -> v2 took {seconds:.2f} s")
    status, page = site.get("/")
    assert status == 200 and "Release 2.0.0" in page
    assert "Edited on the site" in page, "a delivery overwrote a runtime setting"
    with psycopg.connect(site.database_url()) as conn:
        assert conn.execute("SELECT to_regclass('public.pages')").fetchone() == ("pages",)
    assert sorted(p.name for p in (site.home / "releases").iterdir()) == ["2.0.0"]
    site_pid = int((site.home / "site.pid").read_text())
    assert [pid for pid in v1_pids if pid != site_pid and _alive(pid) and pid not in site.pids()] == []


def test_rerunning_the_same_release_changes_nothing(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    pid = (site.home / "site.pid").read_text()
    before = list(site.log)
    site.up(packages["v2"])
    assert site.log == before, "an unchanged stack ran commands"
    release = next(c for c in site.state if c.name.endswith("-release"))
    run = local_runner(site.wrap, {"PATH": os.environ["PATH"], "HOME": str(site.root)}, str(REPO), site.log)
    run("update", release)
    assert "nothing to do" in site.log[-1]
    assert (site.home / "site.pid").read_text() == pid


def test_broken_v3_is_rejected_and_v2_keeps_serving(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(CommandError) as failure:
        site.up(packages["v3"])
    assert "failed its health check" in failure.value.stderr
    status, page = site.get("/")
    assert status == 200 and "Release 2.0.0" in page
    assert os.readlink(site.home / "current").endswith("/2.0.0")


def test_corrupt_package_is_refused(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    bad = dict(packages["v1"], version="4.0.0", sha256="0" * 64)
    desired = site.evaluate(packages["v2"])
    release = next(c for c in desired if c.name.endswith("-release"))
    tampered = CommandState(release.name, release.type, {**release.inputs, "environment": {
        **release.inputs["environment"], "RELEASE_VERSION": bad["version"], "RELEASE_SHA256": bad["sha256"]}},
        release.dependencies, release.urn)
    run = local_runner(site.wrap, {"PATH": os.environ["PATH"], "HOME": str(site.root)}, str(REPO), site.log)
    with pytest.raises(CommandError) as failure:
        run("update", tampered)
    assert "expected " + "0" * 64 in failure.value.stderr
    assert "Release 2.0.0" in site.get("/")[1]


def test_destroy_leaves_nothing_running(site: Site) -> None:
    pids = site.pids()
    assert len(pids) >= 2
    site.destroy()
    assert [pid for pid in pids if _alive(pid)] == []
    for port in (site.ports["site"], site.ports["db"], site.ports["mail"]):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    assert not (site.home / "releases").exists()
    assert (site.home / "db" / "data").exists(), "the database is kept unless retainOnDestroy is false"
