"""Apply the site's numbered SQL migrations to DATABASE_URL, in order, once each."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_FILE = re.compile(r"^(?P<version>[0-9]{3,})_(?P<name>[a-z0-9_]+)\.sql$")
# One key for every release of this site: two runs against one database never interleave.
MIGRATION_LOCK_KEY = 5_174_696_965_001
KEYWORD_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def file_name(self) -> str:
        return self.path.name


class MigrationError(Exception):
    """The migrations directory or the database cannot be migrated; the message is safe to print."""


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations shipped in `directory`, ordered by number.

    A `.sql` file with a malformed name is an error rather than silently skipped, so a typo can
    never drop a schema change from a release.
    """
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: migration files must be named NNN_name.sql "
                "(digits, underscore, lower-case letters, digits or underscores)"
            )
        number = int(match["version"])
        if number in migrations:
            raise MigrationError(
                f"{path.name}: number {match['version']} is also used by "
                f"{migrations[number].file_name}"
            )
        migrations[number] = Migration(match["version"], match["name"], path)
    return [migrations[number] for number in sorted(migrations)]


def redact(text: str, database_url: str) -> str:
    """`text` with the password of `database_url` (and the URL itself) masked."""
    if not database_url:
        return text
    # A keyword/value conninfo ("host=... password=...") instead of a URL.
    for match in KEYWORD_PASSWORD.finditer(database_url):
        secret = match.group(1).strip("'")
        if secret:
            text = text.replace(secret, "***")
    try:
        parsed = urllib.parse.urlsplit(database_url)
        password = parsed.password
    except ValueError:
        parsed, password = None, None
    if parsed is not None and password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
        text = text.replace(database_url, parsed._replace(netloc=netloc).geturl())
        for secret in {password, urllib.parse.unquote(password)}:
            text = text.replace(secret, "***")
    else:
        text = text.replace(database_url, "<DATABASE_URL>")
    return text


def _say(message: str) -> None:
    print(f"migrate: {message}", flush=True)


def _database_error(error: psycopg.Error) -> str:
    diag = error.diag
    if not diag.message_primary:
        return str(error).strip()
    parts = [diag.message_primary]
    parts += [extra for extra in (diag.message_detail, diag.message_hint) if extra]
    if diag.sqlstate:
        parts.append(f"SQLSTATE {diag.sqlstate}")
    return "; ".join(parts)


def migrate(database_url: str, migrations: list[Migration]) -> int:
    """Apply every pending migration; returns how many were applied."""
    try:
        conn = psycopg.connect(
            database_url,
            autocommit=True,
            connect_timeout=10,
            application_name="siteline-migrate",
        )
    except psycopg.Error as error:
        raise MigrationError(
            f"cannot connect to the database: {_database_error(error)}"
        ) from None

    with conn:
        acquired = conn.execute(
            "SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)
        ).fetchone()
        if not (acquired and acquired[0]):
            _say("another migration is running; waiting for the migration lock")
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        _say("migration lock acquired")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text, applied_at timestamptz)"
        )
        applied = {
            row[0] for row in conn.execute("SELECT version FROM schema_migrations")
        }
        shipped = {migration.version for migration in migrations}
        newer = sorted(applied - shipped)
        if newer:
            # Expand/contract: an older release keeps running on a schema a newer one expanded.
            _say(
                f"database also has migrations this release does not ship: {', '.join(newer)}"
            )

        for migration in migrations:
            if migration.version in applied:
                _say(f"{migration.file_name} already applied")
        pending = [m for m in migrations if m.version not in applied]
        current = ""
        try:
            # One transaction for the whole release: a failing file rolls back the files before
            # it too, so the database stays exactly as the serving release left it.
            with conn.transaction():
                for migration in pending:
                    current = migration.file_name
                    _say(f"applying {migration.file_name}")
                    started = time.monotonic()
                    sql = migration.path.read_text(encoding="utf-8")
                    # Without parameters psycopg sends a simple query, so a file may hold
                    # several statements; bytes, because file text is not a LiteralString.
                    conn.execute(sql.encode("utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at)"
                        " VALUES (%s, %s, now())",
                        (migration.version, migration.name),
                    )
                    elapsed_ms = (time.monotonic() - started) * 1000
                    _say(f"applied {migration.file_name} in {elapsed_ms:.0f} ms")
        except psycopg.Error as error:
            raise MigrationError(
                f"{current} failed; this release's {len(pending)} migration(s) were all rolled back: "
                f"{_database_error(error)}"
            ) from None
        count = len(pending)
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Apply the numbered SQL files in migrations/ to the database in DATABASE_URL."
    )
    parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        print("migrate: DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        migrations = discover()
        latest = migrations[-1].version if migrations else "none"
        _say(f"{len(migrations)} migration(s) shipped, latest {latest}")
        count = migrate(database_url, migrations)
    except MigrationError as error:
        print(
            f"migrate: {redact(str(error), database_url)}", file=sys.stderr, flush=True
        )
        return 1
    _say(f"done: {count} applied, schema at {latest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
