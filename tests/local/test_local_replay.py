"""The local target for real: the dev stack's commands replayed as a normal user, v1 -> v2 -> broken v3 -> destroy.

The tests of this module run in file order against ONE running stack (v1, v2, rerun, broken v3, ...,
destroy): each starts from the state the previous one left, so run the module whole, not a single test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import REPO
from tests.local.site import Site, alive, command_line, free_port, group, package, port_open, running_site, why_not
from tests.replay import CommandError, CommandState, local_runner


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    reason = why_not()
    if reason:
        if os.environ.get("SITELINE_REQUIRE_RIG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with running_site() as running:
        yield running


@pytest.fixture(scope="module")
def packages(site: Site) -> dict[str, dict[str, Any]]:
    return {"v1": package(site.root, "1.0.0"), "v2": package(site.root, "2.0.0", "migration"),
            "v3": package(site.root, "3.0.0", "unhealthy")}


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
    # Private from the first run: the home, the mail the site sent, the logs.
    modes = {name: oct((site.home / name).stat().st_mode & 0o777)
             for name in ("", "mail", "db", "site.log", "mail.log", mails[0].relative_to(site.home).as_posix())}
    assert modes == {"": "0o700", "mail": "0o700", "db": "0o700", "site.log": "0o600", "mail.log": "0o600",
                     mails[0].relative_to(site.home).as_posix(): "0o640"}


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
    assert [pid for pid in v1_pids if pid != site_pid and alive(pid) and pid not in site.pids()] == []


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


def test_a_failing_migration_leaves_database_and_release_as_they_were(site: Site) -> None:
    """004 is fine, 005 fails: the release's migrations roll back together and v2 never stops."""
    pid = (site.home / "site.pid").read_text()
    with pytest.raises(CommandError) as failure:
        site.up(package(site.root, "2.5.0", "failing-migration"))
    assert "migrations of 2.5.0 failed" in failure.value.stderr
    assert "005_broken.sql" in failure.value.stderr + failure.value.stdout
    with psycopg.connect(site.database_url()) as conn:
        assert conn.execute("SELECT to_regclass('public.news')").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == ("003",)
    assert (site.home / "site.pid").read_text() == pid, "the serving release was stopped"
    assert "Release 2.0.0" in site.get("/")[1]


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


COMPOUND_STARTS = [
    # Compound start commands: the process group's leader stays a shell with gunicorn as its child, so
    # signalling only the recorded pid would orphan gunicorn (and its port).
    "cd . && gunicorn --bind 127.0.0.1:${PORT} --workers 2 app:application; echo site stopped",
    "true && gunicorn --bind 127.0.0.1:${PORT} --workers 2 --graceful-timeout 5 app:application || exit 1",
]


def test_same_version_with_other_contents_is_refused_before_unpacking(site: Site) -> None:
    (site.root / "again").mkdir()
    other = package(site.root / "again", "2.0.0")  # 2.0.0 without the migration: other contents
    releases = sorted(p.name for p in (site.home / "releases").iterdir())
    with pytest.raises(CommandError) as failure:
        site.up(other)
    assert "serving with different contents" in failure.value.stderr
    assert sorted(p.name for p in (site.home / "releases").iterdir()) == releases, "left a half-made release"
    assert not (site.home / "packages" / f"{other['sha256']}.zip").exists()
    assert not (site.home / "shared" / "app.env.new").exists()
    assert "Release 2.0.0" in site.get("/")[1]


def test_a_plain_200_health_answer_counts(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    site.overrides["siteline:site.healthPath"] = "/"  # an HTML page, no JSON, no release in it
    try:
        site.up(packages["v2"])
    finally:
        del site.overrides["siteline:site.healthPath"]
    assert site.get("/")[0] == 200
    lib = REPO / "components" / "scripts" / "local-lib.sh"
    port = site.ports["site"]

    def healthy(path: str, version: str) -> int:
        return subprocess.run(site.wrap(["bash", "-c", f'. "{lib}"; healthy "$1" "$2" 2', "_",
                                         f"http://127.0.0.1:{port}{path}", version]), capture_output=True).returncode

    # A JSON "release" still has to match; a plain 200 counts whatever the version.
    assert (healthy("/healthz", "2.0.0"), healthy("/healthz", "9.9.9"), healthy("/", "9.9.9")) == (0, 1, 0)


def test_a_compound_start_command_is_stopped_as_a_whole(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    before = site.processes()
    generations = []
    for start in COMPOUND_STARTS:
        site.overrides["siteline:site.start"] = start
        site.up(packages["v2"])
        leader = int((site.home / "site.pid").read_text())
        members = group(leader)
        assert command_line(leader)[0] == "bash", "the start command was not compound after all"
        assert any("gunicorn" in " ".join(command_line(pid)) for pid in members if pid != leader)
        generations.append(members)
        status, page = site.get("/")
        assert status == 200 and "Release 2.0.0" in page
    # Every process of the plain site and of the first compound site is gone, not only their leaders.
    assert [pid for pid in before if alive(pid) and pid not in site.processes()] == []
    assert [pid for pid in generations[0] if alive(pid)] == []


def test_port_changes_move_the_database_and_the_mail_sink(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    old = dict(site.ports)
    old_sink = int((site.home / "mail.pid").read_text())
    site.ports.update(db=free_port(), mail=free_port())
    site.up(packages["v2"])
    assert not port_open(old["db"]) and not port_open(old["mail"]) and not alive(old_sink)
    assert port_open(site.ports["db"]) and port_open(site.ports["mail"])
    assert f":{site.ports['db']}/" in site.database_url()
    with psycopg.connect(site.database_url()) as conn:
        assert conn.execute("SELECT current_setting('port')").fetchone() == (str(site.ports["db"]),)
    mails = len(list((site.home / "mail").glob("*.eml")))
    form = urllib.parse.urlencode({"name": "Ada", "email": "ada@example.org", "message": "Moved"}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{site.ports['site']}/contact", data=form)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.url.endswith("/contact?sent=1")
    assert len(list((site.home / "mail").glob("*.eml"))) == mails + 1


def test_changed_scripts_restart_the_mail_sink(site: Site) -> None:
    sink = next(c for c in site.state if c.name.endswith("-mail-sink"))
    old = int((site.home / "mail.pid").read_text())
    site.run("create", sink, SITELINE_SCRIPTS="another-digest")  # what a changed mailsink.py feeds it
    new = int((site.home / "mail.pid").read_text())
    assert new != old and not alive(old) and alive(new) and port_open(site.ports["mail"])
    assert "already listening" in site.run("create", sink, SITELINE_SCRIPTS="another-digest")
    site.run("create", sink)  # back to what the state says is running
    assert not alive(new) and port_open(site.ports["mail"])


def test_another_stack_cannot_take_ports_in_use(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    # A second stack on this machine (a review stack, say) left on the ports dev already uses.
    other_home = site.root / "second stack"
    commands = {c.name.rsplit("-", 1)[-1]: c for c in site.evaluate(packages["v2"], home=other_home)}
    database, mail, release = commands["database"], commands["sink"], commands["release"]
    serving = site.processes()
    for command, key, port in ((mail, "hosting.local.mailPort", "mail"), (database, "hosting.local.dbPort", "db"),
                               (release, "site.port", "site")):
        with pytest.raises(CommandError) as failure:
            site.run("create", command)
        assert f"port {site.ports[port]} " in failure.value.stderr
        assert f"pulumi config set --path siteline:{key} <port>" in failure.value.stderr
    assert not (other_home / "dev" / "db" / "data").exists() and not (other_home / "dev" / "mail.pid").exists()
    assert site.processes() == serving and "Release 2.0.0" in site.get("/")[1]

    with pytest.raises(CommandError) as failure:
        site.run("create", database, DB_VERSION="12")
    assert "PostgreSQL 12 server binaries not found; installed: " in failure.value.stderr
    assert "pulumi config set --path siteline:database.version" in failure.value.stderr
    assert failure.value.stderr.rstrip().endswith("-s dev (or install postgresql-12)")
    if os.geteuid() == 0:
        with pytest.raises(CommandError) as failure:
            site.run("create", mail, as_root=True, MAIL_PORT=str(free_port()))
        assert "runs as a normal user" in failure.value.stderr


def test_destroy_leaves_nothing_running(site: Site) -> None:
    pids = site.processes()
    assert len(pids) >= 5  # postgres, the sink, the compound site's shell, gunicorn and its workers
    site.destroy()
    assert [pid for pid in pids if alive(pid)] == []
    assert site.strays() == [], "a process still runs in or names the stack's directory"
    for port in (site.ports["site"], site.ports["db"], site.ports["mail"]):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    assert not (site.home / "releases").exists()
    assert (site.home / "db" / "data").exists(), "the database is kept unless retainOnDestroy is false"


def test_destroy_succeeds_without_postgresql_binaries(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    database = next(c for c in site.evaluate(packages["v2"]) if c.name.endswith("-database"))
    printed = site.run("delete", database, DB_VERSION="12")
    assert "PostgreSQL is not running" in printed


def test_database_in_a_home_with_spaces(site: Site, packages: dict[str, dict[str, Any]]) -> None:
    ports = {"site": free_port(), "db": free_port(), "mail": free_port()}
    database = next(c for c in site.evaluate(packages["v2"], home=site.root / "second stack", ports=ports)
                    if c.name.endswith("-database"))
    try:
        site.run("create", database)
        password = database.inputs["stdin"].strip()
        with psycopg.connect(host="127.0.0.1", port=ports["db"], dbname="site", user="siteline",
                             password=password) as conn:
            sockets = conn.execute("SELECT current_setting('unix_socket_directories')").fetchone()
        assert sockets is not None and sockets[0].endswith("second stack/dev/db/run")
    finally:
        # As if PostgreSQL had been uninstalled meanwhile: the running cluster is still stopped.
        printed = site.run("delete", database, DB_VERSION="12")
    assert "stopping PostgreSQL" in printed and not port_open(ports["db"])
