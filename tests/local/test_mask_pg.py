"""The masking script on a real PostgreSQL: a throwaway cluster, the example site's schema, generated people.

As root the server runs as the unprivileged `siteline-test` (PostgreSQL refuses root), like tests/local/site.py.
Without PostgreSQL server binaries the module is skipped, unless SITELINE_REQUIRE_RIG=1 (then it fails).
`Cluster` is shared with bench/refresh_mask.py.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from components import mask
from components.settings import MaskRule
from tests.conftest import REPO
from tests.local.site import free_port, unprivileged_directory

MIGRATIONS = sorted((REPO / "examples" / "site" / "migrations").glob("*.sql"))
SALT = "test-salt-5d1c8e0a"


def server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def why_not() -> str | None:
    if server_bin() is None:
        return "PostgreSQL server binaries are not installed (apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is needed to run PostgreSQL as a normal user"
    for client in ("psql", "pg_dump", "pg_restore"):
        if shutil.which(client) is None and not (server_bin() / client).exists():  # type: ignore[operator]
            return f"{client} is not installed"
    return None


@dataclass
class Cluster:
    """A PostgreSQL cluster in a fresh directory, trust auth on a free loopback port, user `postgres`."""

    root: Path
    port: int
    uid: int
    gid: int

    def tool(self, name: str) -> str:
        local = server_bin() / name  # type: ignore[operator]
        return str(local) if local.exists() else name

    def as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *argv]

    def url(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True)

    def client(self, name: str, *args: str) -> list[str]:
        return [self.tool(name), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *args]

    def psql(self, database: str, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.client("psql", "-X", "-q", "-d", database, *args), input=stdin,
                              capture_output=True, text=True, env={**os.environ, "PGCONNECT_TIMEOUT": "10"})

    def pid(self) -> int | None:
        pidfile = self.root / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pidfile.read_text().splitlines()[0])
        return None


@contextlib.contextmanager
def cluster(settings: Sequence[str] = ()) -> Iterator[Cluster]:
    """A running cluster; stopped by its PID and removed afterwards. `settings` are extra `-c name=value`."""
    root, uid, gid = unprivileged_directory("siteline-mask-")
    db = Cluster(root, free_port(), uid, gid)
    try:
        subprocess.run(db.as_owner([db.tool("initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                                    "--encoding=UTF8", "--locale=C.UTF-8"]), check=True, capture_output=True)
        options = " ".join([f"-p {db.port}", "-c listen_addresses=127.0.0.1", f"-k {root}",
                            *(f"-c {setting}" for setting in settings)])
        started = subprocess.run(db.as_owner([db.tool("pg_ctl"), "-D", str(root / "data"), "-l",
                                              str(root / "server.log"), "-o", options, "-w", "-t", "60", "start"]),
                                 capture_output=True, text=True)
        if started.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {started.stdout}{started.stderr}{log}")
        yield db
    finally:
        pid = db.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # fast shutdown: rolls back sessions, no checkpoint wait for clients
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def create_site_database(db: Cluster, name: str) -> None:
    """A database with the example site's schema, built from its migration files in order."""
    with db.connect("postgres") as conn:
        conn.execute(f"CREATE DATABASE {mask.ident(name)}")  # type: ignore[arg-type]
    for migration in MIGRATIONS:
        ran = db.psql(name, migration.read_text(), "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-")
        assert ran.returncode == 0, ran.stderr


def run_mask(db: Cluster, database: str, rules: Sequence[MaskRule], salt: str | None = SALT
             ) -> subprocess.CompletedProcess[str]:
    """The documented contract: the salt then the script, over stdin, one transaction, stop at the first error."""
    prelude = mask.prelude(salt) if salt is not None else ""
    return db.psql(database, prelude + mask.script(rules), "--single-transaction", "-v", "ON_ERROR_STOP=1")


# --- the tests -----------------------------------------------------------------------------------------------------

PEOPLE = 300
MESSAGES = 500


def rule(table: str, column: str, strategy: str, value: str | None = None) -> MaskRule:
    return MaskRule(table=table, column=column, strategy=strategy, value=value)  # type: ignore[arg-type]


RULES = [
    rule("people", "full_name", "name"),
    rule("people", "email", "email"),
    rule("people", "phone", "phone"),
    rule("contact_messages", "name", "fixed", "Redacted"),
    rule("contact_messages", "email", "hash"),
    rule("contact_messages", "phone", "null"),
]


def seed(db: Cluster, database: str) -> None:
    """Generated people (unique email and, with an extra index, unique phone), their messages, an edited setting."""
    with db.connect(database) as conn:
        conn.execute("CREATE UNIQUE INDEX people_phone_key ON people (phone)")
        conn.execute(
            "INSERT INTO people (full_name, email, phone) SELECT 'Real Person ' || i, "
            "'real.person' || i || '@mail.example.com', '+44 20 7946 ' || lpad(i::text, 4, '0') "
            "FROM generate_series(1, %s) i", (PEOPLE,))
        # Several messages per person, so equal emails must hash equal; some without a phone.
        conn.execute(
            "INSERT INTO contact_messages (name, email, phone, message) SELECT 'Real Person ' || p, "
            "'real.person' || p || '@mail.example.com', CASE WHEN i %% 3 = 0 THEN NULL ELSE '+44 7700 ' || i END, "
            "'Message ' || i FROM generate_series(1, %s) i, LATERAL (SELECT (i %% %s) + 1 AS p) x", (MESSAGES, PEOPLE))
        conn.execute("UPDATE site_settings SET value = 'Edited on live', updated_at = now() WHERE key = 'site_title'")


def snapshot(db: Cluster, database: str) -> dict[str, list[tuple[Any, ...]]]:
    with db.connect(database) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # type: ignore[arg-type]
                for table in ("people", "contact_messages", "site_settings")}


def column(rows: list[tuple[Any, ...]], index: int) -> list[Any]:
    return [row[index] for row in rows]


@pytest.fixture(scope="module")
def db() -> Iterator[Cluster]:
    reason = why_not()
    if reason:
        if os.environ.get("SITELINE_REQUIRE_RIG") == "1":
            pytest.fail(f"SITELINE_REQUIRE_RIG=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    with cluster() as running:
        yield running


@pytest.fixture()
def fresh(db: Cluster, request: pytest.FixtureRequest) -> str:
    """A seeded database of its own for each test."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:50]
    create_site_database(db, name)
    seed(db, name)
    return name


PEOPLE_COLUMNS = {"id": 0, "full_name": 1, "email": 2, "phone": 3, "created_at": 4}
MESSAGE_COLUMNS = {"id": 0, "name": 1, "email": 2, "phone": 3, "message": 4, "created_at": 5}


def test_masked_copy_holds_no_original_personal_data(db: Cluster, fresh: str) -> None:
    before = snapshot(db, fresh)
    ran = run_mask(db, fresh, RULES)
    assert ran.returncode == 0, ran.stderr
    assert SALT not in ran.stdout + ran.stderr
    after = snapshot(db, fresh)

    # Row counts and ids unchanged: masking rewrites cells, never rows.
    for table in before:
        assert column(after[table], 0) == column(before[table], 0), table

    originals = {value for table, indexes in (("people", PEOPLE_COLUMNS), ("contact_messages", MESSAGE_COLUMNS))
                 for name in ("full_name", "name", "email", "phone") if name in indexes
                 for value in column(before[table], indexes[name]) if value is not None}
    for table, indexes, masked in (("people", PEOPLE_COLUMNS, ("full_name", "email", "phone")),
                                   ("contact_messages", MESSAGE_COLUMNS, ("name", "email", "phone"))):
        for name in masked:
            leaked = set(column(after[table], indexes[name])) & originals
            assert not leaked, f"{table}.{name} still holds original personal data: {sorted(leaked)[:3]}"

    people = after["people"]
    emails, phones, names = (column(people, PEOPLE_COLUMNS[c]) for c in ("email", "phone", "full_name"))
    assert len(set(emails)) == PEOPLE and all(e.endswith("@example.invalid") for e in emails)
    assert len(set(phones)) == PEOPLE and all(p.startswith("+1 555 ") for p in phones)
    assert all(n.startswith("Person ") for n in names)

    messages = after["contact_messages"]
    assert set(column(messages, MESSAGE_COLUMNS["name"])) == {"Redacted"}
    assert column(messages, MESSAGE_COLUMNS["phone"]) == [None] * MESSAGES
    # Untouched columns are exactly as they were.
    for name in ("message", "created_at"):
        assert column(messages, MESSAGE_COLUMNS[name]) == column(before["contact_messages"], MESSAGE_COLUMNS[name])
    assert column(people, PEOPLE_COLUMNS["created_at"]) == column(before["people"], PEOPLE_COLUMNS["created_at"])
    # The runtime setting an editor changed on live survives.
    assert after["site_settings"] == before["site_settings"]
    assert ("site_title", "Edited on live") in [row[:2] for row in after["site_settings"]]


def test_hash_is_deterministic_per_salt(db: Cluster, fresh: str) -> None:
    before = snapshot(db, fresh)["contact_messages"]
    other = fresh + "_other_salt"
    create_site_database(db, other)
    seed(db, other)
    hash_rule = [rule("contact_messages", "email", "hash")]
    assert run_mask(db, fresh, hash_rule).returncode == 0
    assert run_mask(db, other, hash_rule, salt="another-salt-77").returncode == 0
    ours = snapshot(db, fresh)["contact_messages"]
    theirs = snapshot(db, other)["contact_messages"]
    email = MESSAGE_COLUMNS["email"]

    hashed: dict[str, str] = {}
    for original, masked in zip(column(before, email), column(ours, email), strict=True):
        assert masked != original and len(masked) == 32
        assert hashed.setdefault(original, masked) == masked, "equal inputs must hash equal with one salt"
    assert len(set(hashed.values())) == len(hashed), "distinct inputs must hash distinct"
    assert len(hashed) < MESSAGES  # the seed really repeats emails, so the check above meant something
    # Same data, another salt: no hash in common.
    assert not set(column(ours, email)) & set(column(theirs, email))


def test_the_documented_set_config_prelude_works(db: Cluster, fresh: str) -> None:
    prelude = f"SELECT set_config('siteline.mask_salt', {mask.literal(SALT)}, false);\n"
    ran = db.psql(fresh, prelude + mask.script(RULES), "--single-transaction", "-v", "ON_ERROR_STOP=1")
    assert ran.returncode == 0, ran.stderr
    assert all(e.endswith("@example.invalid") for e in column(snapshot(db, fresh)["people"], PEOPLE_COLUMNS["email"]))
    assert SALT in ran.stdout  # why mask.prelude() (SET, which prints nothing) is the better way to pass it


def test_fixed_on_a_unique_column_stays_unique(db: Cluster, fresh: str) -> None:
    ran = run_mask(db, fresh, [rule("people", "email", "fixed", "nobody@example.invalid"),
                               rule("people", "phone", "fixed", "+1 555 0100"),
                               rule("contact_messages", "email", "fixed", "nobody@example.invalid")])
    assert ran.returncode == 0, ran.stderr
    after = snapshot(db, fresh)
    emails = column(after["people"], PEOPLE_COLUMNS["email"])
    assert len(set(emails)) == PEOPLE and all(e.startswith("nobody@example.invalid-") for e in emails)
    assert len(set(column(after["people"], PEOPLE_COLUMNS["phone"]))) == PEOPLE
    # Not unique there: the plain value, unnumbered.
    assert set(column(after["contact_messages"], MESSAGE_COLUMNS["email"])) == {"nobody@example.invalid"}


def test_masking_an_already_masked_copy_keeps_unique_columns_unique(db: Cluster, fresh: str) -> None:
    # dev may copy from test, whose data is masked already: new numbers must not collide with the old.
    assert run_mask(db, fresh, RULES).returncode == 0
    with db.connect(fresh) as conn:  # reorder the rows so the new numbering differs from the old
        conn.execute("CLUSTER people USING people_phone_key")
    ran = run_mask(db, fresh, RULES, salt="second-copy-salt")
    assert ran.returncode == 0, ran.stderr
    people = snapshot(db, fresh)["people"]
    for name in ("email", "phone"):
        values = column(people, PEOPLE_COLUMNS[name])
        assert len(set(values)) == PEOPLE and not any(v.startswith("~") for v in values)


def test_a_rule_naming_a_missing_column_changes_nothing(db: Cluster, fresh: str) -> None:
    before = snapshot(db, fresh)
    # The bad rule comes last: the rules before it would have masked rows were it not one transaction.
    ran = run_mask(db, fresh, [*RULES, rule("contact_messages", "no_such_column", "null")])
    assert ran.returncode != 0
    assert 'column "no_such_column"' in ran.stderr
    assert snapshot(db, fresh) == before


def test_a_missing_salt_fails_and_changes_nothing(db: Cluster, fresh: str) -> None:
    before = snapshot(db, fresh)
    for salt in (None, ""):
        ran = run_mask(db, fresh, RULES, salt=salt)
        assert ran.returncode != 0
        assert "siteline.mask_salt is not set" in ran.stderr
        assert snapshot(db, fresh) == before


def test_a_null_rule_on_a_not_null_column_fails_and_changes_nothing(db: Cluster, fresh: str) -> None:
    before = snapshot(db, fresh)
    ran = run_mask(db, fresh, [*RULES, rule("contact_messages", "message", "null")])
    assert ran.returncode != 0 and "not-null constraint" in ran.stderr
    assert snapshot(db, fresh) == before
