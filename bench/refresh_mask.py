"""Benchmark: a database refresh with masking, against a raw `pg_dump | pg_restore` of the same data.

A throwaway PostgreSQL cluster (as root the server runs as `siteline-test`, like tests/local) gets
the example site's schema and about `--rows` generated rows, split between `people` and
`contact_messages` (generate_series). Then, in the same command, each run times:

- raw: `pg_dump -Fc <source> | pg_restore -d <new database>`;
- refresh: the same dump and restore into another new database, then the masking script
  (components/mask.py: name, email, phone and hash rules) in one `psql --single-transaction`.

Runs alternate which of the two goes first; every copy is dropped after it is timed. Prints wall
seconds per run and the medians, and the ratio refresh / raw. Asserts nothing.

    venv/bin/python bench/refresh_mask.py [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import mask
from components.settings import MaskRule
from tests.local.test_mask_pg import Cluster, cluster, create_site_database, why_not

SOURCE = "live"
RULES = [
    MaskRule(table="people", column="full_name", strategy="name"),
    MaskRule(table="people", column="email", strategy="email"),
    MaskRule(table="people", column="phone", strategy="phone"),
    MaskRule(table="contact_messages", column="name", strategy="name"),
    MaskRule(table="contact_messages", column="email", strategy="hash"),
    MaskRule(table="contact_messages", column="phone", strategy="phone"),
]
SALT = "bench-salt-0123456789abcdef"


def generate(db: Cluster, rows: int) -> None:
    people, messages = rows // 2, rows - rows // 2
    create_site_database(db, SOURCE)
    with db.connect(SOURCE) as conn:
        conn.execute(
            "INSERT INTO people (full_name, email, phone) SELECT 'Real Person ' || i, "
            "'real.person' || i || '@mail.example.com', '+44 20 ' || lpad(i::text, 8, '0') "
            "FROM generate_series(1, %s) i", (people,))
        conn.execute(
            "INSERT INTO contact_messages (name, email, phone, message) SELECT 'Real Person ' || p, "
            "'real.person' || p || '@mail.example.com', CASE WHEN i %% 3 = 0 THEN NULL ELSE '+44 7700 ' || i END, "
            "'A message of about a hundred characters, as a contact form would receive it, number ' || i "
            "FROM generate_series(1, %s) i, LATERAL (SELECT (i %% %s) + 1 AS p) x", (messages, people))
        conn.execute("UPDATE site_settings SET value = 'Edited on live' WHERE key = 'site_title'")
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    print(f"source: {people} people + {messages} contact_messages = {rows} rows, {size[0] if size else '?'}",
          flush=True)


def copy(db: Cluster, target: str) -> None:
    """The dump of the source piped into a restore in a new database."""
    with db.connect("postgres") as conn:
        conn.execute(f"CREATE DATABASE {mask.ident(target)}")  # type: ignore[arg-type]
    dump = " ".join(db.client("pg_dump", "-Fc", "-d", SOURCE))
    restore = " ".join(db.client("pg_restore", "--no-owner", "--exit-on-error", "-d", target))
    subprocess.run(["bash", "-o", "pipefail", "-c", f"{dump} | {restore}"], check=True)


def drop(db: Cluster, target: str) -> None:
    with db.connect("postgres") as conn:
        conn.execute(f"DROP DATABASE {mask.ident(target)}")  # type: ignore[arg-type]


def raw(db: Cluster, target: str) -> float:
    started = time.monotonic()
    copy(db, target)
    elapsed = time.monotonic() - started
    drop(db, target)
    return elapsed


def refresh(db: Cluster, target: str) -> tuple[float, float]:
    """(whole refresh, the masking part) in wall seconds."""
    started = time.monotonic()
    copy(db, target)
    masking = time.monotonic()
    ran = db.psql(target, mask.prelude(SALT) + mask.script(RULES), "--single-transaction", "-v", "ON_ERROR_STOP=1")
    if ran.returncode != 0:
        raise SystemExit(f"masking failed: {ran.stderr}")
    finished = time.monotonic()
    drop(db, target)
    return finished - started, finished - masking


def main() -> int:
    parser = argparse.ArgumentParser(description="A database refresh with masking, against a raw dump and restore.")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    reason = why_not()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    raws: list[float] = []
    refreshes: list[float] = []
    maskings: list[float] = []
    with cluster() as db:
        generate(db, args.rows)
        for run in range(1, args.runs + 1):
            order = ("raw", "refresh") if run % 2 else ("refresh", "raw")
            for kind in order:
                if kind == "raw":
                    raws.append(raw(db, f"raw_{run}"))
                else:
                    whole, masking = refresh(db, f"refresh_{run}")
                    refreshes.append(whole)
                    maskings.append(masking)
            print(f"run {run} ({' first, '.join(order)} second): raw {raws[-1]:.2f} s, refresh {refreshes[-1]:.2f} s "
                  f"(masking {maskings[-1]:.2f} s), ratio {refreshes[-1] / raws[-1]:.2f}", flush=True)
    raw_median, refresh_median = statistics.median(raws), statistics.median(refreshes)
    print(f"median of {args.runs}: raw pg_dump | pg_restore {raw_median:.2f} s; refresh with masking "
          f"{refresh_median:.2f} s (masking {statistics.median(maskings):.2f} s); "
          f"ratio refresh / raw {refresh_median / raw_median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
