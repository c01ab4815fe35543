"""Masking: the SQL that replaces personal data in a fresh copy before anyone can read it.

The script runs in one transaction (`psql --single-transaction -v ON_ERROR_STOP=1`). The caller
first sets the secret salt with `SELECT set_config('siteline.mask_salt', '<salt>', false);` on the
same connection, over stdin, so it never appears on a command line. Strategies keep a unique
column unique: generated values are numbered per row, hashes are keyed by the salt.
"""

from __future__ import annotations

from collections.abc import Sequence

from components.settings import MaskRule

SALT = "current_setting('siteline.mask_salt')"
RESERVED_DOMAIN = "example.invalid"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _unique(table: str, column: str) -> str:
    """True when a single-column unique index (or primary key) covers the column."""
    return (
        "EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        f"AND a.attnum = i.indkey[0] WHERE i.indrelid = 'public.{table}'::regclass AND i.indisunique "
        f"AND i.indnatts = 1 AND a.attname = {_literal(column)})"
    )


def _value(rule: MaskRule) -> str:
    """The new value, in terms of the row number `n` and the old value `old`."""
    if rule.strategy == "email":
        return f"'user-' || n || '@{RESERVED_DOMAIN}'"
    if rule.strategy == "name":
        return "'Person ' || n"
    if rule.strategy == "phone":
        return "'+1 555 ' || lpad(n::text, 7, '0')"
    if rule.strategy == "hash":
        # Keyed with the secret salt, so a dictionary of likely values cannot be matched back.
        return f"md5({SALT} || old::text)"
    if rule.strategy == "fixed":
        fixed = _literal(rule.value or "")
        return f"CASE WHEN {_unique(rule.table, rule.column)} THEN {fixed} || '-' || n ELSE {fixed} END"
    return "NULL"


def statement(rule: MaskRule) -> str:
    table, column = f'public."{rule.table}"', f'"{rule.column}"'
    return (
        f"UPDATE {table} AS t SET {column} = {_value(rule)}\n"
        f"  FROM (SELECT ctid AS row_id, {column} AS old, row_number() OVER () AS n\n"
        f"        FROM {table} WHERE {column} IS NOT NULL) AS m\n"
        f"  WHERE t.ctid = m.row_id;"
    )


def script(rules: Sequence[MaskRule]) -> str:
    """The whole masking script; empty rules still check the salt is set."""
    # Fails the transaction when the caller forgot the salt, instead of hashing with ''.
    lines = [f"SELECT 1 / (length({SALT}) > 0)::int;"]
    lines += [statement(rule) for rule in rules]
    return "\n".join(lines) + "\n"
