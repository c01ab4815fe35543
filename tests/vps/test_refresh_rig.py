"""Database refresh on a real server: `test` (target vps) takes a masked copy of a live database over SSH.

One server stands for both: the database `live_site` (seeded here with the example site's migrations,
generated people and a changed runtime setting) is live, reached as the mocked upstream
`organization/siteline/live` through its `database` output (ssh://root@127.0.0.1:<port>/live_site and
the server's host key). The tests run in file order: deploy test without a refresh, refresh r1, re-run,
refresh r2 (r1 dropped), a refresh r3 that fails while masking (r2 keeps serving), r3 redone, destroy.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.conftest import REPO
from tests.harness import evaluate
from tests.local.site import pg_version, running_site, why_not
from tests.replay import commands, local_runner, up
from tests.rig.server import Rig
from tests.vps.replay import StepError
from tests.vps.stack import RefreshReplayer, RigStack, build_package, get, health

pytestmark = pytest.mark.rig

LIVE_DB = "live_site"
PEOPLE = 2000
MESSAGES = 300
LIVE_TITLE = "Live title changed at runtime 4c1e"
# What live holds, in forms a masked value can never take (the masks write example.invalid, 'Person n', +1 555).
SEED = f"""
INSERT INTO people (full_name, email, phone)
SELECT 'Realname ' || n || ' Livesurname', 'customer' || n || '@live-customer.example.org',
       '+44 20 7946 ' || lpad(n::text, 4, '0')
  FROM generate_series(1, {PEOPLE}) AS n;
INSERT INTO contact_messages (name, email, phone, message)
SELECT 'Realname ' || n || ' Livesurname', 'customer' || n || '@live-customer.example.org',
       '+44 20 7946 ' || lpad(n::text, 4, '0'), 'Private message ' || n
  FROM generate_series(1, {MESSAGES}) AS n;
UPDATE site_settings SET value = '{LIVE_TITLE}', updated_at = now() WHERE key = 'site_title';
"""
# Everything live holds, as one checksum: "live untouched" is this value not changing.
FINGERPRINT = ("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM (SELECT p::text AS t FROM people p "
               "UNION ALL SELECT c::text FROM contact_messages c UNION ALL SELECT s::text FROM site_settings s) x")


class Refreshing:
    def __init__(self, rig: Rig, out: Path) -> None:
        self.rig = rig
        self.stack = RigStack.on(rig.connection)
        self.release = build_package("1.0.0", out)
        self.replayer = RefreshReplayer()
        self.timings: dict[str, float] = {}
        self.source = {"engine": "postgres", "host": "127.0.0.1", "port": self.stack.db_port, "name": LIVE_DB,
                       "id": f"ssh://root@127.0.0.1:{rig.connection.port}/{LIVE_DB}",
                       "hostKey": rig.connection.host_key}
        self.live_fingerprint = ""

    def up(self, label: str, refresh_id: Optional[str], mask: Optional[list[dict[str, str]]] = None) -> None:
        started = time.monotonic()
        try:
            self.replayer.up(self.stack.evaluate_refreshing(self.release, refresh_id, self.source, mask))
        finally:
            self.timings[label] = round(time.monotonic() - started, 1)

    def sh(self, command: str, stdin: Optional[str] = None) -> str:
        result = self.rig.run(command, stdin=stdin)
        assert result.exit_status == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    def sql(self, database: str, query: str) -> str:
        return self.sh(f"cd / && runuser -u postgres -- psql -p {self.stack.db_port} -X -At -v ON_ERROR_STOP=1 "
                       f"-d {database}", stdin=query)

    def databases(self) -> set[str]:
        return set(self.sql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'site%'").split())

    def serving_database(self) -> str:
        active = self.sh("cat /etc/siteline/active")
        url = self.sh(f"grep ^DATABASE_URL= /etc/siteline/{active}.env")
        return url.rsplit("/", 1)[1].strip('"')

    def title(self) -> str:
        status, body = get(self.stack.url + "/")
        assert status == 200, body[:500]
        return body


@pytest.fixture(scope="module")
def refreshing(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refreshing]:
    deployed = Refreshing(rig, tmp_path_factory.mktemp("refresh-packages"))
    yield deployed
    if deployed.replayer.state:  # a test failed before destroy: leave the shared rig clean
        deployed.replayer.destroy()
    deployed.rig.run(f"cd / && runuser -u postgres -- psql -p {deployed.stack.db_port} -X -q "
                     f"-c 'DROP DATABASE IF EXISTS {LIVE_DB} WITH (FORCE)' 2>/dev/null || true")
    print(f"\nrefresh rig timings (s): {deployed.timings}")


def test_test_runs_on_its_own_database_and_live_is_seeded(refreshing: Refreshing) -> None:
    refreshing.up("deploy without refresh", None)
    assert refreshing.serving_database() == "site"
    assert "Siteline example site" in refreshing.title()
    started = time.monotonic()
    refreshing.sql("postgres", f"CREATE DATABASE {LIVE_DB}")
    url = f"postgresql:///{LIVE_DB}?host=/var/run/postgresql&port={refreshing.stack.db_port}"
    refreshing.sh(f"cd /srv/siteline/current && runuser -u postgres -- env DATABASE_URL='{url}' python3 migrate.py")
    refreshing.sql(LIVE_DB, SEED)
    refreshing.timings["seed live"] = round(time.monotonic() - started, 1)
    assert refreshing.sql(LIVE_DB, "SELECT count(*) FROM people") == str(PEOPLE)
    refreshing.live_fingerprint = refreshing.sql(LIVE_DB, FINGERPRINT)


def assert_masked_copy(refreshing: Refreshing, copy: str) -> None:
    counts = "SELECT (SELECT count(*) FROM people) || ' ' || (SELECT count(*) FROM contact_messages)"
    assert refreshing.sql(copy, counts) == refreshing.sql(LIVE_DB, counts) == f"{PEOPLE} {MESSAGES}"
    # No masked column holds any value live holds in it (row by row and across rows).
    for table, column in [("people", "email"), ("people", "full_name"), ("people", "phone"),
                          ("contact_messages", "email"), ("contact_messages", "name"),
                          ("contact_messages", "phone"), ("contact_messages", "message")]:
        live_values = refreshing.sql(LIVE_DB, f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")
        copy_values = refreshing.sql(copy, f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")
        leaked = set(live_values.splitlines()) & set(copy_values.splitlines())
        assert not leaked, f"{copy}.{table}.{column} still holds live values, e.g. {sorted(leaked)[:3]}"
    dump = refreshing.sh(f"cd / && runuser -u postgres -- pg_dump -p {refreshing.stack.db_port} -a {copy}")
    assert "live-customer.example.org" not in dump and "Livesurname" not in dump and "+44 20 7946" not in dump
    # Unique constraints hold (the index is there and valid) and masked emails are distinct.
    assert refreshing.sql(copy, "SELECT count(DISTINCT email) FROM people") == str(PEOPLE)
    assert refreshing.sql(copy, "SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'people'::regclass "
                                "AND indisunique") == "t"
    # The runtime setting changed on live survived the copy; the site owns its objects, PUBLIC cannot connect.
    title = "SELECT value FROM site_settings WHERE key = 'site_title'"
    assert refreshing.sql(copy, title) == refreshing.sql(LIVE_DB, title)
    assert refreshing.sql(copy, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'") == "siteline"
    assert refreshing.sql("postgres", f"SELECT has_database_privilege('public', '{copy}', 'CONNECT')") == "f"
    assert refreshing.sql(LIVE_DB, FINGERPRINT) == refreshing.live_fingerprint, "live changed"


def test_a_refresh_serves_a_masked_copy_of_live(refreshing: Refreshing) -> None:
    refreshing.up("refresh r1", "r1")
    assert refreshing.serving_database() == "site_rr1"
    assert LIVE_TITLE in refreshing.title(), "the site (through nginx) does not read the copy"
    assert health(refreshing.stack.url)[0] == 200
    assert_masked_copy(refreshing, "site_rr1")
    assert refreshing.databases() == {"site", "site_rr1"}, "the base database is never dropped"


def test_the_same_refresh_id_runs_nothing_again(refreshing: Refreshing) -> None:
    before = len(refreshing.replayer.journal.steps)
    refreshing.up("re-run r1", "r1")
    assert len(refreshing.replayer.journal.steps) == before
    # The command itself, run again with the same id against a complete copy, changes nothing.
    [command] = [c for c in refreshing.replayer.state if c.name.endswith("-vps-refresh")]
    refreshing.replayer._run("create", command)
    assert "already a complete masked copy; nothing to do" in refreshing.replayer.journal.steps[-1].stdout


def test_no_command_prints_a_secret(refreshing: Refreshing) -> None:
    """The salt, the generated passwords and the SSH key travel on stdin and are never printed back."""
    steps = refreshing.replayer.journal.steps
    assert any(step.stdout for step in steps), "no output was recorded: the scan would prove nothing"
    for step in steps:
        for marker in ("MARKERpw", "MARKER-", "PRIVATE KEY"):
            assert marker not in step.stdout + step.stderr, f"{marker} printed by {step}"


def test_a_new_refresh_id_replaces_the_copy_and_drops_the_previous(refreshing: Refreshing) -> None:
    refreshing.sql(LIVE_DB, "UPDATE site_settings SET value = value || ' v2' WHERE key = 'site_title'")
    refreshing.live_fingerprint = refreshing.sql(LIVE_DB, FINGERPRINT)
    refreshing.up("refresh r2", "r2")
    assert refreshing.serving_database() == "site_rr2"
    assert LIVE_TITLE + " v2" in refreshing.title()
    assert refreshing.databases() == {"site", "site_rr2"}, "the previous copy was not dropped after the switch"
    assert_masked_copy(refreshing, "site_rr2")


def test_a_refresh_that_fails_part_way_leaves_the_previous_copy_serving(refreshing: Refreshing) -> None:
    broken_mask: list[dict[str, Any]] = [{"table": "people", "column": "email", "strategy": "email"},
                                         {"table": "people", "column": "no_such_column", "strategy": "null"}]
    with pytest.raises(StepError) as failed:
        refreshing.up("failing refresh r3", "r3", mask=broken_mask)
    assert failed.value.name.endswith("-vps-refresh")
    assert "masking site_rr3 failed" in failed.value.stderr and "no_such_column" in failed.value.stderr
    assert refreshing.serving_database() == "site_rr2"
    assert LIVE_TITLE + " v2" in refreshing.title()
    # The half-done copy is left unreadable: nobody but postgres may connect, and it is not marked complete.
    assert "site_rr3" in refreshing.databases()
    assert refreshing.sql("postgres", "SELECT has_database_privilege('siteline', 'site_rr3', 'CONNECT')") == "f"
    assert refreshing.sql("site_rr3", "SELECT count(*) FROM people WHERE email LIKE '%@example.invalid'") == "0"
    # The same refresh id, fixed: the half-done copy is dropped and redone, then the site switches.
    refreshing.up("refresh r3 redone", "r3")
    assert refreshing.serving_database() == "site_rr3"
    assert refreshing.databases() == {"site", "site_rr3"}
    assert_masked_copy(refreshing, "site_rr3")


def test_a_refresh_whose_dump_fails_changes_nothing(refreshing: Refreshing) -> None:
    """The dump itself fails (the source names a database that is not there): nothing is switched."""
    source = refreshing.source
    refreshing.source = {**source, "id": source["id"].replace(LIVE_DB, "no_such_db")}
    try:
        with pytest.raises(StepError) as failed:
            refreshing.up("failing dump r4", "r4")
    finally:
        refreshing.source = source
    assert "copying no_such_db into site_rr4 failed" in failed.value.stderr
    assert refreshing.serving_database() == "site_rr3"
    assert health(refreshing.stack.url)[0] == 200
    assert refreshing.sql("postgres", "SELECT has_database_privilege('siteline', 'site_rr4', 'CONNECT')") == "f"


def test_the_local_target_takes_a_masked_copy_of_the_same_source(refreshing: Refreshing) -> None:
    """dev on target local (as a normal user) refreshed from the vps source: its cluster and refresh commands
    replayed for real, then the prune the local release runs after a switch. The local release itself is
    covered by tests/local."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    rig = refreshing.rig.connection
    mask = [{"table": "people", "column": "email", "strategy": "email"},
            {"table": "people", "column": "full_name", "strategy": "name"},
            {"table": "people", "column": "phone", "strategy": "phone"}]
    with running_site() as site:
        env = {"PATH": os.environ["PATH"], "HOME": str(site.root), "LANG": "C.UTF-8"}

        def dev(refresh_id: str) -> list[Any]:
            evaluation = evaluate("dev", overrides={
                "siteline:site.port": site.ports["site"], "siteline:database.version": pg_version(),
                "siteline:hosting.local": {"home": str(site.root / "state"), "dbPort": site.ports["db"],
                                           "mailPort": site.ports["mail"]},
                "siteline:database.refreshFrom": "organization/siteline/live",
                "siteline:database.refreshId": refresh_id,
                "siteline:database.mask": mask,
            }, secrets={"siteline:sshPrivateKey": rig.private_key},
                upstream={"organization/siteline/live": {"role": "live", "target": "vps", "contract": 1,
                                                         "database": refreshing.source}})
            # The cluster and the refresh; the release would need the site's runtime for this user.
            return [c for c in commands(evaluation) if c.name.endswith(("-local-database", "-local-refresh"))]

        def psql(database: str, query: str) -> str:
            done = subprocess.run(site.wrap([f"/usr/lib/postgresql/{pg_version()}/bin/psql", "-X", "-At",
                                             "-h", str(site.home / "db" / "run"), "-p", str(site.ports["db"]),
                                             "-U", "siteline", "-d", database, "-c", query]),
                                  capture_output=True, text=True, check=True)
            return done.stdout.strip()

        started = time.monotonic()
        site.state = up(dev("l1"), site.state, local_runner(site.wrap, env, str(REPO), site.log))
        refreshing.timings["local refresh l1"] = round(time.monotonic() - started, 1)
        assert psql("site_rl1", "SELECT count(*) FROM people") == str(PEOPLE)
        assert psql("site_rl1", "SELECT count(*) FROM people WHERE email LIKE '%@live-customer.example.org' "
                                "OR full_name LIKE '%Livesurname' OR phone LIKE '+44%'") == "0"
        assert psql("site_rl1", "SELECT count(DISTINCT email) FROM people") == str(PEOPLE)
        title = "SELECT value FROM site_settings WHERE key = 'site_title'"
        assert psql("site_rl1", title) == refreshing.sql(LIVE_DB, title)
        site.state = up(dev("l2"), site.state, local_runner(site.wrap, env, str(REPO), site.log))
        assert {"site_rl1", "site_rl2"} <= set(psql("postgres", "SELECT datname FROM pg_database").split())
        # What local-release.sh runs once the site restarted on the new copy.
        subprocess.run(site.wrap(["bash", str(REPO / "components/scripts/local-refresh.sh"), "prune"]), check=True,
                       env={**env, "SITELINE_HOME": str(site.home), "DB_PORT": str(site.ports["db"]),
                            "DB_VERSION": pg_version(), "DB_NAME": "site", "DB_CURRENT": "site_rl2"})
        assert set(psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'site%'").split()) == {
            "site", "site_rl2"}
    assert refreshing.sql(LIVE_DB, FINGERPRINT) == refreshing.live_fingerprint


def test_destroy_drops_test_and_its_copies_and_leaves_live(refreshing: Refreshing) -> None:
    refreshing.replayer.destroy()
    assert refreshing.databases() == set()
    assert refreshing.sql(LIVE_DB, FINGERPRINT) == refreshing.live_fingerprint
