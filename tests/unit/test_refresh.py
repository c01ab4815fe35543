"""Refresh resolution: where a copy may come from, refused before anything is declared."""

from __future__ import annotations

from typing import Any

import pytest

from components.refresh import RefreshError, current_database, database_name
from tests.harness import evaluate

LIVE = "organization/siteline/live"
REFRESH = {"siteline:database.refreshFrom": LIVE, "siteline:database.refreshId": "2026-11-26"}


def _live(target: str, **database: Any) -> dict[str, dict[str, Any]]:
    return {LIVE: {"role": "live", "target": target, "contract": 1, "database": {
        "engine": "postgres", "host": "db.example.com", "port": 5432, "name": "site", "id": "x", **database}}}


def test_copy_names_are_new_per_refresh_id() -> None:
    assert database_name("site", "2026-11-26") == "site_r2026_11_26"
    assert database_name("site", "A.b-c") == "site_ra_b_c"


@pytest.mark.parametrize("role", ["test", "dev", "review"])
def test_a_copy_only_flows_down(dev_package: dict[str, str], role: str) -> None:
    upstream = _live("local")
    upstream[LIVE]["role"] = role
    evaluation = evaluate("dev", overrides=REFRESH, upstream=upstream)
    if role == "test":
        assert not isinstance(evaluation.error, RefreshError) or "can take a database copy only" in str(
            evaluation.error), "dev may take a copy from test"
    else:
        assert isinstance(evaluation.error, RefreshError)
        assert f"has the role '{role}'" in str(evaluation.error)
        assert evaluation.resources == []


def test_a_source_without_a_database_id_is_refused(dev_package: dict[str, str]) -> None:
    upstream = _live("vps")
    upstream[LIVE]["database"].pop("id")
    evaluation = evaluate("dev", overrides=REFRESH, upstream=upstream)
    assert isinstance(evaluation.error, RefreshError)
    assert evaluation.resources == []


def test_an_unsupported_pair_of_targets_is_refused(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev", overrides=REFRESH, upstream=_live("azure"))
    assert isinstance(evaluation.error, RefreshError)
    assert "the local target can take a database copy only from" in str(evaluation.error)
    assert evaluation.resources == []


def test_current_database_follows_the_refresh_id(dev_package: dict[str, str]) -> None:
    from components.settings import DatabaseSpec

    class Fake:
        def __init__(self, **db: Any) -> None:
            self.config = type("C", (), {"database": DatabaseSpec.model_validate(db)})()

    assert current_database(Fake()) == "site"  # type: ignore[arg-type]
    assert current_database(Fake(refreshFrom=LIVE, refreshId="7")) == "site_r7"  # type: ignore[arg-type]
