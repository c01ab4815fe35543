"""Masking: the SQL that replaces personal data in a fresh copy before anyone can read it.

The script runs in one transaction (`psql --single-transaction -v ON_ERROR_STOP=1`). The caller
first sets the secret salt on the same connection, over stdin, so it never appears on a command
line: `prelude(salt)` (`SET`, which prints nothing) or `SELECT set_config('siteline.mask_salt',
'<salt>', false);` (which works too, but psql prints the salt it returns). Any error (a missing salt, a
missing table or column, a NULL into a NOT NULL column) rolls the whole copy back to as it was.

Uniqueness: generated values (email, name, phone, and fixed on a column in a unique index) are
numbered from a per-rule temporary sequence, so no two rows get the same value; hashes are keyed by
the salt. PostgreSQL checks a unique index row by row during an UPDATE, so a new value must never
equal a value another row still holds: when the copy already holds values in the generated form
(a copy of an already-masked stack), the column first moves to `~<n>` placeholders (an original
value of exactly that form would then fail the script, and so change nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

from components.settings import MaskRule

SALT = "current_setting('siteline.mask_salt', true)"
RESERVED_DOMAIN = "example.invalid"
GENERATED = ("email", "name", "phone", "fixed")
PHONE_FUNCTION = (
    "CREATE FUNCTION pg_temp.siteline_phone(n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS\n"
    "  $$ SELECT '+1 555 ' || lpad(n::text, greatest(7, length(n::text)), '0') $$;"
)


def ident(name: str) -> str:
    """A quoted SQL identifier (the config already restricts names; quoting keeps reserved words working)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table(rule: MaskRule) -> str:
    return f"public.{ident(rule.table)}"


def _unique(rule: MaskRule) -> str:
    """True when a unique index (or primary key) includes the column: such a column gets numbered values."""
    return (
        "EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        f"AND a.attnum = ANY (i.indkey::int2[]) WHERE i.indrelid = {literal(_table(rule))}::regclass "
        f"AND i.indisunique AND a.attname = {literal(rule.column)})"
    )


def _sequence(index: int) -> str:
    return literal(f"pg_temp.siteline_mask_{index}")


def _prefix(rule: MaskRule) -> str:
    """What every generated value of the rule starts with (to detect a copy that already holds them)."""
    return {"email": "'user-'", "name": "'Person '", "phone": "'+1 555 '"}.get(
        rule.strategy, literal(f"{rule.value or ''}-"))


def value(rule: MaskRule, index: int) -> str:
    """The new value of a non-NULL cell; `index` names the rule's numbering sequence."""
    column = ident(rule.column)
    n = f"nextval({_sequence(index)})"
    if rule.strategy == "email":
        return f"'user-' || {n} || '@{RESERVED_DOMAIN}'"
    if rule.strategy == "name":
        return f"'Person ' || {n}"
    if rule.strategy == "phone":
        # 555 numbers are fictional; at least 7 digits, never cut short (lpad alone truncates an 8-digit n).
        return f"pg_temp.siteline_phone({n})"
    if rule.strategy == "hash":
        # Keyed with the secret salt, so a dictionary of likely values cannot be matched back;
        # equal inputs give equal outputs, so joins on the column still line up.
        return f"md5({SALT} || {column}::text)"
    if rule.strategy == "fixed":
        fixed = literal(rule.value or "")
        return f"CASE WHEN {_unique(rule)} THEN {fixed} || '-' || {n} ELSE {fixed} END"
    return "NULL"


def _placeholders(rule: MaskRule, index: int) -> str:
    """Moves a unique column out of the way when the copy already holds values in the generated form."""
    table, column = _table(rule), ident(rule.column)
    return (
        f"UPDATE {table} SET {column} = '~' || nextval({_sequence(index)})\n"
        f"  WHERE {column} IS NOT NULL AND {_unique(rule)}\n"
        f"    AND EXISTS (SELECT 1 FROM {table} WHERE starts_with({column}::text, {_prefix(rule)}));\n"
        f"ALTER SEQUENCE pg_temp.siteline_mask_{index} RESTART;"
    )


def statement(table_rules: Sequence[tuple[int, MaskRule]]) -> str:
    """One UPDATE for all the rules of one table: the table is rewritten once, not once per column."""
    table = _table(table_rules[0][1])
    sets = []
    for index, rule in table_rules:
        column = ident(rule.column)
        new = ("NULL" if rule.strategy == "null"
               else f"CASE WHEN {column} IS NULL THEN NULL ELSE {value(rule, index)} END")
        sets.append(f"{column} = {new}")
    touched = " OR ".join(f"{ident(rule.column)} IS NOT NULL" for _, rule in table_rules)
    return f"UPDATE {table} SET\n  " + ",\n  ".join(sets) + f"\n  WHERE {touched};"


def prelude(salt: str) -> str:
    """Sets the salt for the session without printing it back.

    `SELECT set_config('siteline.mask_salt', '<salt>', false);` works as well, but psql prints the
    value that SELECT returns, i.e. the salt, to its output (and so to deployment logs).
    """
    return f"SET siteline.mask_salt = {literal(salt)};\n"


def script(rules: Sequence[MaskRule]) -> str:
    """The whole masking script; empty rules still check the salt is set."""
    seen: set[tuple[str, str]] = set()
    for rule in rules:
        if (rule.table, rule.column) in seen:
            raise ValueError(f"database.mask: {rule.table}.{rule.column} has more than one rule; keep one.")
        seen.add((rule.table, rule.column))
    # Fails the transaction when the caller forgot the salt, instead of hashing with ''.
    lines = [
        "DO $siteline$ BEGIN\n"
        f"  IF coalesce({SALT}, '') = '' THEN\n"
        "    RAISE EXCEPTION 'siteline.mask_salt is not set: run SELECT set_config(''siteline.mask_salt'', "
        "<salt>, false) on the same session first';\n"
        "  END IF;\n"
        "END $siteline$;"
    ]
    if any(rule.strategy == "phone" for rule in rules):
        lines.append(PHONE_FUNCTION)
    numbered = list(enumerate(rules, start=1))
    for index, rule in numbered:
        if rule.strategy in GENERATED:
            lines.append(f"CREATE TEMPORARY SEQUENCE siteline_mask_{index};")
    for index, rule in numbered:
        if rule.strategy in GENERATED:
            lines.append(_placeholders(rule, index))
    tables: dict[str, list[tuple[int, MaskRule]]] = {}
    for index, rule in numbered:
        tables.setdefault(rule.table, []).append((index, rule))
    lines += [statement(table_rules) for table_rules in tables.values()]
    return "\n".join(lines) + "\n"
