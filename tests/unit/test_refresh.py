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


VPS_SOURCE = {"id": "ssh://deploy@198.51.100.7:2222/site", "port": 5433,
              "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNvdXJjZWhvc3RrZXlmb3J0ZXN0c29ubHkwMDAw root@live"}
SSH_KEY_MARKER = "MARKER-dev-ssh-key-71aa"


def test_local_takes_a_masked_copy_of_a_vps_source(dev_package: dict[str, str]) -> None:
    from tests.harness import is_secret, plain_text

    mask = [{"table": "people", "column": "email", "strategy": "email"}]
    evaluation = evaluate("dev", overrides={**REFRESH, "siteline:database.mask": mask},
                          secrets={"siteline:sshPrivateKey": SSH_KEY_MARKER}, upstream=_live("vps", **VPS_SOURCE))
    assert evaluation.error is None, evaluation.error
    refresh = evaluation.named("-refresh")
    env = refresh.plain_inputs["environment"]
    assert (env["SOURCE_HOST"], env["SOURCE_PORT"], env["SOURCE_USER"], env["SOURCE_DB_PORT"]) == (
        "198.51.100.7", "2222", "deploy", "5433")
    assert env["COPY_DB"] == "site_r2026_11_26" and env["ON_TARGET"].endswith("local-refresh.sh")
    assert "TARGET_HOST" not in env, "the copy goes into this machine's cluster, not over SSH"
    assert '"people"' in env["MASK_SQL"]
    assert refresh.plain_inputs["create"].endswith("vps-refresh.sh pull")
    assert refresh.plain_inputs["triggers"] == ["2026-11-26", "site_r2026_11_26"]
    assert "delete" not in refresh.inputs
    assert is_secret(refresh.inputs["stdin"]) and refresh.plain_inputs["stdin"].endswith(SSH_KEY_MARKER)
    assert SSH_KEY_MARKER not in plain_text([r.inputs for r in evaluation.resources])
    release = evaluation.named("-release")
    assert refresh.urn in release.dependencies
    assert '/site_r2026_11_26"' in release.plain_inputs["stdin"]
    assert release.plain_inputs["environment"]["DB_CURRENT"] == "site_r2026_11_26"
    assert evaluation.plain_outputs["database"]["name"] == "site_r2026_11_26"


def test_local_without_a_refresh_declares_none(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev")
    assert evaluation.error is None, evaluation.error
    assert not [r for r in evaluation.resources if r.name.endswith("-refresh")]
    assert evaluation.named("-release").plain_inputs["environment"]["DB_CURRENT"] == "site"


def test_local_refuses_a_vps_source_without_an_ssh_key(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev", overrides=REFRESH, upstream=_live("vps", **VPS_SOURCE))
    assert isinstance(evaluation.error, RefreshError) and "siteline:sshPrivateKey" in str(evaluation.error)
    assert evaluation.resources == []
