"""The local target for real: the dev stack's commands replayed as a normal user, v1 -> v2 -> broken v3 -> destroy."""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import REPO
from tests.local.site import Site, alive, package, running_site, why_not
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
    assert [pid for pid in pids if alive(pid)] == []
    for port in (site.ports["site"], site.ports["db"], site.ports["mail"]):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    assert not (site.home / "releases").exists()
    assert (site.home / "db" / "data").exists(), "the database is kept unless retainOnDestroy is false"
