"""The masking SQL, as text: what each strategy writes, how names and values are quoted, the salt guard.

tests/local/test_mask_pg.py runs the same script on a real PostgreSQL.
"""

from __future__ import annotations

import re

import pydantic
import pytest

from components import mask
from components.settings import MaskRule


def rule(column: str, strategy: str, table: str = "people", value: str | None = None) -> MaskRule:
    return MaskRule(table=table, column=column, strategy=strategy, value=value)  # type: ignore[arg-type]


def assignment(script: str, column: str) -> str:
    """The SET clause of the final UPDATE for `column`."""
    match = re.search(rf'^  "{column}" = (.*?),?$', script, re.MULTILINE)
    assert match, f"no assignment for {column} in:\n{script}"
    return match.group(1)


def test_email_is_numbered_at_the_reserved_domain() -> None:
    script = mask.script([rule("email", "email")])
    assert "CREATE TEMPORARY SEQUENCE siteline_mask_1;" in script
    assert assignment(script, "email") == (
        "CASE WHEN \"email\" IS NULL THEN NULL ELSE 'user-' || nextval('pg_temp.siteline_mask_1') "
        "|| '@example.invalid' END")


def test_name_and_phone_are_numbered_from_their_own_sequences() -> None:
    script = mask.script([rule("full_name", "name"), rule("phone", "phone")])
    assert assignment(script, "full_name").endswith("ELSE 'Person ' || nextval('pg_temp.siteline_mask_1') END")
    assert assignment(script, "phone").endswith("ELSE pg_temp.siteline_phone(nextval('pg_temp.siteline_mask_2')) END")
    # 7 digits at least, never cut short: lpad alone would truncate the 10-millionth row to a duplicate.
    assert "lpad(n::text, greatest(7, length(n::text)), '0')" in script
    assert script.count("CREATE FUNCTION pg_temp.siteline_phone") == 1


def test_null_sets_null_without_numbering() -> None:
    script = mask.script([rule("phone", "null", table="contact_messages")])
    assert assignment(script, "phone") == "NULL"
    assert "SEQUENCE" not in script and "siteline_phone" not in script
    assert 'UPDATE public."contact_messages" SET' in script


def test_hash_is_keyed_by_the_salt() -> None:
    script = mask.script([rule("full_name", "hash")])
    assert assignment(script, "full_name") == (
        "CASE WHEN \"full_name\" IS NULL THEN NULL ELSE "
        "md5(current_setting('siteline.mask_salt', true) || \"full_name\"::text) END")
    assert "SEQUENCE" not in script


def test_fixed_is_numbered_only_on_a_unique_column() -> None:
    script = mask.script([rule("email", "fixed", value="nobody@example.invalid")])
    value = assignment(script, "email")
    assert "CASE WHEN EXISTS (SELECT 1 FROM pg_index" in value
    assert "'public.\"people\"'::regclass AND i.indisunique AND a.attname = 'email'" in value
    assert value.endswith(
        "THEN 'nobody@example.invalid' || '-' || nextval('pg_temp.siteline_mask_1') "
        "ELSE 'nobody@example.invalid' END END")


def test_fixed_value_is_quoted_as_a_literal() -> None:
    hostile = "x'); DROP TABLE people; --"
    script = mask.script([rule("message", "fixed", table="contact_messages", value=hostile)])
    quoted = "'x''); DROP TABLE people; --'"
    assert assignment(script, "message").count(quoted) == 2
    # Every quote in the script is paired: the value cannot end the literal early.
    assert hostile not in script.replace(quoted, "")


def test_identifiers_are_quoted() -> None:
    # Reserved words are valid names under the config pattern; quoting keeps them working.
    script = mask.script([rule("order", "name", table="user")])
    assert 'UPDATE public."user" SET\n  "order" = CASE WHEN "order" IS NULL' in script
    assert "'public.\"user\"'::regclass" in script
    assert 'WHERE "order" IS NOT NULL OR' not in script and 'WHERE "order" IS NOT NULL;' in script
    assert mask.ident('we"ird') == '"we""ird"'


def test_the_config_refuses_names_that_are_not_plain_identifiers() -> None:
    with pytest.raises(pydantic.ValidationError):
        rule('email"; DROP TABLE people; --', "email")
    with pytest.raises(pydantic.ValidationError):
        rule("email", "email", table="public.people")


def test_one_update_per_table() -> None:
    script = mask.script([rule("email", "email"), rule("full_name", "name"), rule("phone", "null"),
                          rule("email", "email", table="contact_messages")])
    assert script.count('UPDATE public."people" SET\n') == 1
    assert script.count('UPDATE public."contact_messages" SET\n') == 1
    assert 'WHERE "email" IS NOT NULL OR "full_name" IS NOT NULL OR "phone" IS NOT NULL;' in script


def test_unique_generated_columns_first_move_out_of_the_way_when_already_masked() -> None:
    script = mask.script([rule("email", "email"), rule("full_name", "hash")])
    placeholder = script.index("UPDATE public.\"people\" SET \"email\" = '~' || nextval('pg_temp.siteline_mask_1')")
    assert "starts_with(\"email\"::text, 'user-')" in script
    reset = script.index("ALTER SEQUENCE pg_temp.siteline_mask_1 RESTART;")
    assert placeholder < reset < script.index('UPDATE public."people" SET\n')
    assert "SET \"full_name\" = '~'" not in script  # hashes cannot collide with the values they replace


def test_the_salt_guard_comes_first() -> None:
    for rules in ([], [rule("email", "email")]):
        script = mask.script(rules)
        assert script.startswith("DO $siteline$ BEGIN\n  IF coalesce(current_setting('siteline.mask_salt', true), '')"
                                 " = '' THEN\n    RAISE EXCEPTION 'siteline.mask_salt is not set")
        assert script.endswith("\n")
    # Only the setting's name is in the script: the salt itself is never part of it.
    assert "set_config" not in mask.script([rule("email", "hash")]).replace("SELECT set_config(''", "")


def test_two_rules_for_one_column_are_refused() -> None:
    with pytest.raises(ValueError, match=r"people\.email has more than one rule"):
        mask.script([rule("email", "email"), rule("email", "null")])


def test_the_prelude_sets_the_salt_quoted() -> None:
    assert mask.prelude("a'b") == "SET siteline.mask_salt = 'a''b';\n"
