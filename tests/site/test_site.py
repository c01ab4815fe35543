"""End-to-end tests of the example site and the mail sink: real PostgreSQL, gunicorn and SMTP."""

from __future__ import annotations

import email
import email.policy
import hashlib
import http.client
import importlib.util
import io
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "examples" / "site"
MAILSINK = REPO / "components" / "scripts" / "mailsink.py"
RELEASE = "1.2.3"
PG_OS_USER = "sitetest"
# Distinctive secret values: a test greps every output for them.
DB_PASSWORD = "pg-Secret-7f3a"
SMTP_PASSWORD = "smtp-Secret-91bc"
ADMIN_TOKEN = "admin-Secret-5d2e"
CONNECTOR_KEY = "connector-Secret-0c4d"
SECRETS = (DB_PASSWORD, SMTP_PASSWORD, ADMIN_TOKEN, CONNECTOR_KEY)
SMTP_FROM = "Siteline <siteline@example.test>"
CONTACT_TO = "webmaster@example.net"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def assert_no_secrets(text: str, where: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{where} contains secret values {leaked}"


def base_environment() -> dict[str, str]:
    """A clean environment: the runner's own DATABASE_URL or SMTP_* must not leak into a test."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


# Mail sink


@dataclass
class MailSink:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    output: Path
    pidfile: Path

    def messages(self) -> list[Path]:
        return sorted(self.directory.glob("*.eml"))

    def log(self) -> str:
        return self.output.read_text()


def start_mailsink(base: Path) -> MailSink:
    output = base / "mailsink.out"
    pidfile = base / "mailsink.pid"
    directory = base / "mail"
    with open(output, "wb") as stream:
        process = subprocess.Popen(
            [
                sys.executable,
                str(MAILSINK),
                "--listen",
                "127.0.0.1",
                "--port",
                "0",
                "--dir",
                str(directory),
                "--pidfile",
                str(pidfile),
            ],
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=base_environment(),
        )

    def listening() -> re.Match[str] | None:
        assert process.poll() is None, f"mail sink exited: {output.read_text()}"
        return re.search(r"listening on 127\.0\.0\.1:(\d+)", output.read_text())

    match = wait_for(listening, 10, "the mail sink to listen")
    return MailSink(process, int(match.group(1)), directory, output, pidfile)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return int(process.returncode)


@pytest.fixture(scope="module")
def mailsink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSink]:
    sink = start_mailsink(tmp_path_factory.mktemp("mailsink"))
    yield sink
    stop_process(sink.process)


def test_mailsink_stores_message_unstuffed_with_envelope(mailsink: MailSink) -> None:
    before = set(mailsink.messages())
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = "first@one.example, second@two.example"
    message["Subject"] = "dot stuffing"
    message.set_content(
        ".starts with a dot\n..two dots\nplain line\n.\nafter a lone dot\n"
    )
    with smtplib.SMTP("127.0.0.1", mailsink.port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("auth")
        smtp.login("site-user", SMTP_PASSWORD)
        refused = smtp.send_message(message)
    assert refused == {}

    new = [path for path in mailsink.messages() if path not in before]
    assert len(new) == 1
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-\d{6}\.eml", new[0].name)
    raw = new[0].read_bytes()
    stored = email.message_from_bytes(raw, policy=email.policy.default)
    assert stored["Return-Path"] == "<sender@example.test>"
    assert stored.get_all("Delivered-To") == ["first@one.example", "second@two.example"]
    assert stored["Subject"] == "dot stuffing"
    body = stored.get_content()
    assert body.splitlines() == [
        ".starts with a dot",
        "..two dots",
        "plain line",
        ".",
        "after a lone dot",
    ]
    # No half-written files, and the credentials are nowhere.
    assert [
        path.name for path in mailsink.directory.iterdir() if path.suffix != ".eml"
    ] == []
    assert SMTP_PASSWORD.encode() not in raw
    log = mailsink.log()
    assert_no_secrets(log, "mail sink output")
    assert f"received {new[0].name} for one.example, two.example" in log
    assert "first@" not in log


def test_mailsink_enforces_command_order(mailsink: MailSink) -> None:
    with smtplib.SMTP("127.0.0.1", mailsink.port, timeout=10) as smtp:
        assert smtp.helo("client.test")[0] == 250
        assert smtp.noop()[0] == 250
        assert smtp.docmd("RCPT", "TO:<x@example.test>")[0] == 503
        assert smtp.docmd("DATA")[0] == 503
        assert smtp.docmd("MAIL", "FROM:<a@example.test>")[0] == 250
        assert smtp.docmd("MAIL", "FROM:<a@example.test>")[0] == 503
        assert smtp.rset()[0] == 250
        assert smtp.docmd("RCPT", "TO:<x@example.test>")[0] == 503
        assert smtp.docmd("MAIL", "FROM:<>")[0] == 250
        assert smtp.docmd("RCPT", "TO:bare@example.test")[0] == 250
        assert smtp.docmd("AUTH", "CRAM-MD5")[0] == 504
        assert smtp.docmd("BOGUS")[0] == 500
        smtp.user, smtp.password = "site-user", SMTP_PASSWORD
        assert smtp.auth("LOGIN", smtp.auth_login)[0] == 235
    assert_no_secrets(mailsink.log(), "mail sink output")


def test_mailsink_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    sink = start_mailsink(tmp_path)
    try:
        assert sink.pidfile.read_text().strip() == str(sink.process.pid)
        idle = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
        returncode = stop_process(sink.process, timeout=5)
        idle.close()
    finally:
        stop_process(sink.process)
    assert returncode == 0, sink.log()
    assert not sink.pidfile.exists()
    assert sink.log().rstrip().endswith("mailsink: stopped")


# PostgreSQL


@dataclass
class Cluster:
    port: int
    user: str = "siteline"
    created: int = 0

    def url(self, database: str) -> str:
        return (
            f"postgresql://{self.user}:{DB_PASSWORD}@127.0.0.1:{self.port}/{database}"
        )

    def create_database(self) -> str:
        self.created += 1
        name = f"site_{self.created}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)


def find_postgres_bin() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: (
            int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster on a free loopback port, run as a non-root user."""
    bindir = find_postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        # initdb refuses to run as root.
        try:
            owner = pwd.getpwnam(PG_OS_USER)
        except KeyError:
            created = subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    PG_OS_USER,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if created.returncode != 0:
                pytest.skip(
                    f"running as root and cannot create user {PG_OS_USER}: {created.stderr}"
                )
            owner = pwd.getpwnam(PG_OS_USER)
        as_user = ["runuser", "-u", PG_OS_USER, "--"]

    base = Path(tempfile.mkdtemp(prefix="siteline-pg-"))
    data = base / "data"
    pwfile = base / "pwfile"
    pwfile.write_text(DB_PASSWORD + "\n")
    pwfile.chmod(0o600)
    if owner is not None:
        for path in (base, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()

    def run(*command: str) -> None:
        result = subprocess.run(
            [*as_user, *command], cwd=base, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (
            f"{command[0]} failed:\n{result.stdout}\n{result.stderr}"
        )

    run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "siteline",
        f"--pwfile={pwfile}",
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
    )
    options = f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "postgres.log"),
        "-o",
        options,
        "-w",
        "-t",
        "30",
        "start",
    )
    try:
        yield Cluster(port)
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def run_migrate(site_dir: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "migrate.py"],
        cwd=site_dir,
        env={**base_environment(), "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_no_secrets(result.stdout + result.stderr, "migrate.py output")
    return result


def query(database_url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql.encode(), params or None).fetchall()


def copy_site(destination: Path) -> Path:
    return Path(
        shutil.copytree(SITE, destination, ignore=shutil.ignore_patterns("__pycache__"))
    )


def test_migrate_applies_each_migration_once(cluster: Cluster) -> None:
    url = cluster.create_database()
    first = run_migrate(SITE, url)
    assert first.returncode == 0, first.stderr
    assert "applying 001_initial.sql" in first.stdout
    assert "applying 002_people.sql" in first.stdout
    rows = query(
        url, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
    )
    assert [(version, name) for version, name, _ in rows] == [
        ("001", "initial"),
        ("002", "people"),
    ]
    assert all(applied_at is not None for _, _, applied_at in rows)
    assert query(url, "SELECT value FROM site_settings WHERE key = 'site_title'") == [
        ("Siteline example site",)
    ]
    people = query(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'people' ORDER BY ordinal_position",
    )
    assert [column for (column,) in people] == [
        "id",
        "full_name",
        "email",
        "phone",
        "created_at",
    ]
    contact = query(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'contact_messages'"
        " ORDER BY ordinal_position",
    )
    assert [column for (column,) in contact] == [
        "id",
        "name",
        "email",
        "phone",
        "message",
        "created_at",
    ]

    second = run_migrate(SITE, url)
    assert second.returncode == 0, second.stderr
    assert "001_initial.sql already applied" in second.stdout
    assert "002_people.sql already applied" in second.stdout
    assert "applying" not in second.stdout
    assert (
        query(
            url,
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version",
        )
        == rows
    )


def test_failing_migration_rolls_back_and_exits_non_zero(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = cluster.create_database()
    assert run_migrate(SITE, url).returncode == 0
    before = query(
        url, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
    )

    site = copy_site(tmp_path / "site")
    (site / "migrations" / "003_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n"
    )
    result = run_migrate(site, url)
    assert result.returncode != 0
    assert "003_broken.sql" in result.stderr
    assert 'relation "no_such_table" does not exist' in result.stderr
    assert (
        query(
            url,
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version",
        )
        == before
    )
    assert query(url, "SELECT to_regclass('half_done')") == [(None,)]

    # A release's migrations are all or nothing: a good 003 is rolled back with a failing 004.
    (site / "migrations" / "003_broken.sql").unlink()
    (site / "migrations" / "003_pages.sql").write_text("CREATE TABLE pages (slug text PRIMARY KEY);\n")
    (site / "migrations" / "004_broken.sql").write_text("SELECT * FROM no_such_table;\n")
    result = run_migrate(site, url)
    assert result.returncode != 0 and "004_broken.sql" in result.stderr
    assert query(url, "SELECT to_regclass('pages')") == [(None,)]
    assert query(url, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version") == before
    (site / "migrations" / "003_pages.sql").unlink()
    (site / "migrations" / "004_broken.sql").unlink()
    (site / "migrations" / "3-misnamed.sql").write_text("SELECT 1;\n")
    misnamed = run_migrate(site, url)
    assert misnamed.returncode != 0
    assert "3-misnamed.sql" in misnamed.stderr


def test_concurrent_migrations_never_interleave(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = cluster.create_database()
    site = copy_site(tmp_path / "site")
    (site / "migrations" / "003_slow.sql").write_text(
        "CREATE TABLE slow_table (id int);\nSELECT pg_sleep(0.5);\n"
    )
    environment = {**base_environment(), "DATABASE_URL": url}
    runs = [
        subprocess.Popen(
            [sys.executable, "migrate.py"],
            cwd=site,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    combined = "".join(stdout for stdout, _ in outputs)
    assert combined.count("applying 003_slow.sql") == 1
    assert combined.count("applying 001_initial.sql") == 1
    assert query(url, "SELECT version FROM schema_migrations ORDER BY version") == [
        ("001",),
        ("002",),
        ("003",),
    ]


# The site under gunicorn, from an unpacked release package


def run_package(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SITE / "package.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built by package.py, unpacked the way the deploy scripts do it."""
    base = tmp_path_factory.mktemp("release")
    built = run_package(
        "--version",
        RELEASE,
        "--source",
        str(SITE),
        "--out",
        str(base / "dist"),
        "--json",
    )
    assert built.returncode == 0, built.stderr
    package = json.loads(built.stdout)["package"]
    directory = base / RELEASE
    with zipfile.ZipFile(package) as archive:
        archive.extractall(directory)
    return directory


@dataclass
class RunningSite:
    port: int
    database_url: str
    release_dir: Path
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def post_form(
        self,
        path: str,
        fields: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        body = urllib.parse.urlencode(fields).encode()
        all_headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **(headers or {}),
        }
        return self.request("POST", path, body, all_headers)


def site_environment(database_url: str, sink: MailSink) -> dict[str, str]:
    return {
        **base_environment(),
        "DATABASE_URL": database_url,
        "SITELINE_ROLE": "test",
        "SITELINE_RELEASE": RELEASE,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "SMTP_USERNAME": "site-user",
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "SMTP_FROM": SMTP_FROM,
        "SMTP_MODE": "sink",
        "CONTACT_TO": CONTACT_TO,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        # A connector setting: the site must ignore it.
        "SEARCH_CONNECTOR_API_KEY": CONNECTOR_KEY,
    }


@pytest.fixture(scope="module")
def site(
    cluster: Cluster,
    mailsink: MailSink,
    release: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningSite]:
    url = cluster.create_database()
    migrated = run_migrate(release, url)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    workdir = tmp_path_factory.mktemp("gunicorn")
    log = workdir / "gunicorn.log"
    environment = site_environment(url, mailsink)
    # gunicorn >= 25 opens a control socket under $XDG_RUNTIME_DIR (else ~/.gunicorn): keep it here.
    environment["XDG_RUNTIME_DIR"] = str(workdir)
    with open(log, "wb") as stream:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--graceful-timeout",
                "10",
                "app:application",
            ],
            cwd=release,
            env=environment,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    running = RunningSite(port, url, release, log)

    def healthy() -> bool:
        assert process.poll() is None, f"gunicorn exited:\n{log.read_text()}"
        try:
            return running.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 20, "the site to pass its health check")
        yield running
    finally:
        stop_process(process)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def assert_security_headers(
    headers: http.client.HTTPMessage | Mapping[str, str],
) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


def test_home_page_shows_runtime_title_and_release(site: RunningSite) -> None:
    status, headers, body = site.request("GET", "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert_security_headers(headers)
    page = body.decode()
    ((title,),) = query(
        site.database_url, "SELECT value FROM site_settings WHERE key = 'site_title'"
    )
    assert f'<h1 class="site-title"><a href="/">{title}</a></h1>' in page
    assert f'<p class="release">Release {RELEASE}</p>' in page
    assert '<a href="/contact">' in page
    assert '<p class="role">test environment</p>' in page


def test_healthz_reports_release_and_database(site: RunningSite) -> None:
    status, headers, body = site.request("GET", "/healthz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "release": RELEASE, "database": "ok"}
    assert_security_headers(headers)
    head_status, head_headers, head_body = site.request("HEAD", "/healthz")
    assert (head_status, head_body) == (200, b"")
    assert head_headers["Content-Length"] == str(len(body))


def test_site_reconnects_after_the_database_drops_its_connections(
    site: RunningSite,
) -> None:
    assert site.request("GET", "/")[0] == 200
    terminated = query(
        site.database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'siteline-site'",
    )
    assert terminated, "the site keeps no database connection open"
    statuses = [site.request("GET", "/")[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 200]


def test_unknown_pages_and_methods(site: RunningSite) -> None:
    status, headers, _ = site.request("GET", "/no-such-page")
    assert status == 404
    assert_security_headers(headers)
    status, headers, _ = site.request("DELETE", "/")
    assert (status, headers["Allow"]) == (405, "GET")
    status, headers, _ = site.request("GET", "/admin/settings")
    assert (status, headers["Allow"]) == (405, "POST")


def test_contact_form_stores_message_and_mails_it(
    site: RunningSite, mailsink: MailSink
) -> None:
    status, _, body = site.request("GET", "/contact")
    assert status == 200
    for field in ('name="name"', 'name="email"', 'name="message"', 'method="post"'):
        assert field in body.decode()

    before = set(mailsink.messages())
    message = "Hello from the tests,\nwith a second line & a <tag> and ü."
    status, headers, _ = site.post_form(
        "/contact",
        {
            "name": "Ada Lovelace",
            "email": "ada@example.org",
            "phone": "+44 20 7946 0000",
            "message": message,
        },
    )
    assert status == 303
    assert headers["Location"] == "/contact?sent=1"
    assert_security_headers(headers)
    assert "Thank you" in site.request("GET", "/contact?sent=1")[2].decode()

    rows = query(
        site.database_url,
        "SELECT name, email, phone, message FROM contact_messages WHERE email = 'ada@example.org'",
    )
    assert rows == [("Ada Lovelace", "ada@example.org", "+44 20 7946 0000", message)]

    new = wait_for(
        lambda: [path for path in mailsink.messages() if path not in before],
        5,
        "the contact mail",
    )
    assert len(new) == 1
    mail = email.message_from_bytes(new[0].read_bytes(), policy=email.policy.default)
    assert mail["Delivered-To"] == CONTACT_TO
    assert mail["Return-Path"] == "<siteline@example.test>"
    assert mail["From"] == SMTP_FROM
    assert mail["To"] == CONTACT_TO
    assert mail["Reply-To"] == "Ada Lovelace <ada@example.org>"
    assert mail["Subject"] == "Contact form: Ada Lovelace"
    content = mail.get_content().replace("\r\n", "\n")
    assert message in content
    assert f"release {RELEASE}" in content

    assert "received" in mailsink.log()
    assert_no_secrets(mailsink.log(), "mail sink output")
    site_log = site.log.read_text()
    assert "contact mail sent to domain example.net" in site_log
    assert_no_secrets(site_log, "site log")
    assert "ada@example.org" not in site_log


def test_contact_form_rejects_bad_input_and_escapes_it(site: RunningSite) -> None:
    count = query(site.database_url, "SELECT count(*) FROM contact_messages")
    status, headers, body = site.post_form(
        "/contact",
        {"name": "<script>alert(1)</script>", "email": "not-an-email", "message": "hi"},
    )
    assert status == 400
    assert_security_headers(headers)
    page = body.decode()
    assert "Please enter a valid email address." in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page

    status, _, body = site.post_form(
        "/contact", {"name": " ", "email": "", "message": ""}
    )
    assert status == 400
    for error in (
        "Please enter your name.",
        "Please enter your email address.",
        "Please enter a message.",
    ):
        assert error in body.decode()

    status, _, _ = site.request(
        "POST", "/contact", b"{}", {"Content-Type": "application/json"}
    )
    assert status == 415
    assert query(site.database_url, "SELECT count(*) FROM contact_messages") == count


def test_admin_setting_persists_across_migrations(site: RunningSite) -> None:
    new_title = "Editors & Co <live>"
    assert site.post_form("/admin/settings", {"site_title": new_title})[0] == 401
    status, headers, _ = site.post_form(
        "/admin/settings",
        {"site_title": new_title},
        {"Authorization": "Bearer wrong-token"},
    )
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")

    status, _, body = site.post_form(
        "/admin/settings",
        {"site_title": new_title},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert status == 200
    assert json.loads(body) == {"status": "ok", "site_title": new_title}
    escaped = "Editors &amp; Co &lt;live&gt;"
    assert escaped in site.request("GET", "/")[2].decode()

    # A delivery runs the migrations again: the editor's title must survive it.
    rerun = run_migrate(site.release_dir, site.database_url)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 applied" in rerun.stdout
    assert query(
        site.database_url, "SELECT value FROM site_settings WHERE key = 'site_title'"
    ) == [(new_title,)]
    assert escaped in site.request("GET", "/")[2].decode()
    assert_no_secrets(site.log.read_text(), "site log")


# The WSGI application in-process, for configurations the running site does not have


def load_app_module(site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(site_dir))
    monkeypatch.delitem(sys.modules, "migrate", raising=False)
    for name in ("DATABASE_URL", "SMTP_MODE", "SMTP_PORT", "ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location(
        "siteline_site_app", site_dir / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses resolve their annotations through sys.modules.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def call(
    application: Callable[..., Any],
    method: str,
    path: str,
    form: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    body = urllib.parse.urlencode(form).encode() if form is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    payload = b"".join(application(environ, start_response))
    return captured["status"], captured["headers"], payload


def test_healthz_is_503_until_migrated_and_hides_secrets(
    cluster: Cluster, release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_app_module(release, monkeypatch)
    url = cluster.create_database()
    app = module.create_app({"DATABASE_URL": url, "SITELINE_RELEASE": "9.9.9"}, release)
    status, headers, body = call(app, "GET", "/healthz")
    assert status == 503
    assert_security_headers(headers)
    assert json.loads(body) == {
        "status": "error",
        "release": RELEASE,
        "database": "not migrated",
        "reason": "migrations not applied: 001, 002",
    }
    assert run_migrate(release, url).returncode == 0
    assert call(app, "GET", "/healthz")[0] == 200

    unreachable = cluster.url("site_1").replace(f":{cluster.port}/", f":{free_port()}/")
    down = module.create_app({"DATABASE_URL": unreachable}, release)
    status, _, body = call(down, "GET", "/healthz")
    assert status == 503
    assert json.loads(body)["database"] == "unavailable"
    assert_no_secrets(body.decode(), "health check")
    assert call(down, "GET", "/")[0] == 503

    # Outside a package (no VERSION file) the release comes from SITELINE_RELEASE.
    source_module = load_app_module(SITE, monkeypatch)
    unpackaged = source_module.create_app(
        {"DATABASE_URL": url, "SITELINE_RELEASE": "9.9.9"}, SITE
    )
    assert json.loads(call(unpackaged, "GET", "/healthz")[2])["release"] == "9.9.9"


def test_admin_hidden_without_token_and_allowlist_mode(
    site: RunningSite,
    mailsink: MailSink,
    release: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = load_app_module(release, monkeypatch)
    environment = {
        "DATABASE_URL": site.database_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(mailsink.port),
        "SMTP_MODE": "allowlist",
        "SMTP_ALLOW": " Example.org , other.test",
        "CONTACT_TO": "someone@example.com",
    }
    suppressing = module.create_app(environment, release)
    assert call(suppressing, "POST", "/admin/settings", {"site_title": "x"})[0] == 404

    before = set(mailsink.messages())
    form = {"name": "Grace", "email": "grace@example.org", "message": "allowlist check"}
    with caplog.at_level("INFO", logger="siteline.site"):
        assert call(suppressing, "POST", "/contact", form)[0] == 303
    assert (
        "contact mail suppressed: recipient domain example.com is not in SMTP_ALLOW"
        in caplog.text
    )
    assert "someone@" not in caplog.text

    allowed = module.create_app(
        {**environment, "CONTACT_TO": "someone@example.org"}, release
    )
    assert call(allowed, "POST", "/contact", form)[0] == 303
    new = wait_for(
        lambda: [p for p in mailsink.messages() if p not in before],
        5,
        "the allowed mail",
    )
    assert len(new) == 1
    assert b"Delivered-To: someone@example.org" in new[0].read_bytes()


def test_invalid_mail_settings_fail_at_startup(
    release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_app_module(release, monkeypatch)
    with pytest.raises(ValueError, match="SMTP_MODE"):
        module.create_app(
            {"SMTP_MODE": "broadcast", "SMTP_PASSWORD": SMTP_PASSWORD}, release
        )
    with pytest.raises(ValueError, match="SMTP_PORT"):
        module.create_app({"SMTP_PORT": "smtp"}, release)
    config = module.SiteConfig.from_environ(
        {
            "DATABASE_URL": "postgresql://u:" + DB_PASSWORD + "@h/d",
            "SMTP_PASSWORD": SMTP_PASSWORD,
            "ADMIN_TOKEN": ADMIN_TOKEN,
        },
        release,
    )
    assert_no_secrets(repr(config), "repr of the site configuration")


# Packaging


def test_package_is_reproducible_and_complete(tmp_path: Path) -> None:
    source = copy_site(tmp_path / "source")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"compiled")
    (source / "tests").mkdir()
    (source / "tests" / "test_x.py").write_text("")
    (source / "VERSION").write_text("0.0.0-stale\n")

    first = run_package(
        "--version", RELEASE, "--source", str(source), "--out", str(tmp_path / "a")
    )
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0] == f"version={RELEASE}"
    package = Path(lines[1].removeprefix("package="))
    assert package.is_absolute()
    assert package == tmp_path / "a" / f"site-{RELEASE}.zip"
    sha256 = lines[2].removeprefix("sha256=")
    assert re.fullmatch(r"[0-9a-f]{64}", sha256)
    assert hashlib.sha256(package.read_bytes()).hexdigest() == sha256

    # New modification times do not change the package.
    for path in source.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = run_package(
        "--version",
        RELEASE,
        "--source",
        str(source),
        "--out",
        str(tmp_path / "b"),
        "--json",
    )
    assert second.returncode == 0, second.stderr
    described = json.loads(second.stdout)
    assert set(described) == {"version", "package", "sha256"}
    assert described["version"] == RELEASE
    assert described["sha256"] == sha256
    assert Path(described["package"]).read_bytes() == package.read_bytes()

    with zipfile.ZipFile(package) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == sorted(names)
        assert archive.read("VERSION") == f"{RELEASE}\n".encode()
        assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {info.external_attr >> 16 for info in infos} == {0o100644}
    assert {
        "VERSION",
        "app.py",
        "migrate.py",
        "requirements.txt",
        "README.md",
        "migrations/001_initial.sql",
        "migrations/002_people.sql",
    } <= set(names)
    assert not [
        name
        for name in names
        if name == "package.py" or "__pycache__" in name or name.endswith(".pyc")
    ]
    assert not [name for name in names if name.startswith("tests/")]

    other = run_package(
        "--version", "1.2.4", "--source", str(source), "--out", str(tmp_path / "a")
    )
    assert other.returncode == 0
    assert other.stdout.splitlines()[2] != f"sha256={sha256}"

    rejected = run_package(
        "--version", "v1.2", "--source", str(source), "--out", str(tmp_path / "c")
    )
    assert rejected.returncode != 0
    assert "v1.2" in rejected.stderr
    assert (
        not list((tmp_path / "c").glob("*.zip")) if (tmp_path / "c").exists() else True
    )


def fake_wheel(directory: Path, module: str, body: str) -> None:
    """A pure-Python wheel for `module`, so --with-deps is tested with no index (PIP_NO_INDEX)."""
    directory.mkdir(parents=True, exist_ok=True)
    dist = module.replace("_", "-")
    info = f"{module}-1.0.dist-info"
    files = {
        f"{module}/__init__.py": body,
        f"{module}/tests/__init__.py": "",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(directory / f"{module}-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            wheel.writestr(name, text)


def test_package_with_deps_carries_them_reproducibly(tmp_path: Path) -> None:
    source = copy_site(tmp_path / "source")
    (source / "requirements.txt").write_text("vendored-dep==1.0\n")
    fake_wheel(tmp_path / "wheels", "vendored_dep", "ANSWER = 42\n")
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "wheels")}

    def build(out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SITE / "package.py"), "--version", RELEASE, "--with-deps",
             "--source", str(source), "--out", str(tmp_path / out), "--json"],
            capture_output=True, text=True, timeout=120, check=False, env=offline,
        )  # fmt: skip

    first, second = build("a"), build("b")
    assert first.returncode == 0, first.stderr
    built = json.loads(first.stdout)
    assert json.loads(second.stdout)["sha256"] == built["sha256"]
    with zipfile.ZipFile(built["package"]) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert archive.read("vendored_dep/__init__.py") == b"ANSWER = 42\n"
        # A dependency keeps its own `tests` package: the site's exclusions are not applied to it.
        assert "vendored_dep/tests/__init__.py" in names
        assert "vendored_dep-1.0.dist-info/METADATA" in names
        assert {"app.py", "migrate.py", "VERSION"} <= set(names)
        assert not [n for n in names if n.startswith("bin/") or n.endswith(".pyc")]
        archive.extractall(tmp_path / "unpacked")
    # From the unpacked package, the dependency is what the site imports.
    imported = subprocess.run(
        [sys.executable, "-c", "import vendored_dep; print(vendored_dep.__file__)"],
        cwd=tmp_path / "unpacked", capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(imported.stdout.strip()).parent == tmp_path / "unpacked" / "vendored_dep"

    # Without the wheel, the build fails and says why; no package is left behind.
    (tmp_path / "wheels" / "vendored_dep-1.0-py3-none-any.whl").unlink()
    failed = build("c")
    assert failed.returncode == 2 and "vendored-dep" in failed.stderr
    assert not list((tmp_path / "c").glob("*.zip"))
